/*
 * json.h - the one way the sink's HTTP APIs (api.c, mailpit.c) put a string
 * into JSON.
 */
#ifndef TERN_SINK_JSON_H
#define TERN_SINK_JSON_H

#include <jansson.h>

/* A JSON string of s (NULL: ""), anything that is not valid UTF-8 replaced by
 * '?'.  NULL only when out of memory (jansson's packers then fail cleanly). */
json_t *sink_json_str(const char *s);

#endif
