/*
 * mailpit.h - Mailpit's HTTP API v1 on the sink (mailpit.c), so that clients
 * and CI helpers written for Mailpit work unchanged against tern sink.
 *
 * api.c hands every request under /api/v1/ to mailpit_handle(), which
 * answers it fully (200 JSON or text, 400/404 text as Mailpit does, 405
 * with Allow).  Same one event loop as the rest of the API: no locks.
 */
#ifndef TERN_SINK_MAILPIT_H
#define TERN_SINK_MAILPIT_H

#include <event2/http.h>

#include <stdint.h>

#include "sink/store.h"

/* What the Mailpit API reads and changes: filled in by api.c per request. */
struct mailpit_env {
    struct sink_store *store;         /* listed, read, marked read and deleted */
    const uint64_t *messages_refused; /* refused at end of data, for /api/v1/info */
    uint64_t started_ms;              /* clock_mono_ms() at start, for the uptime */
};

/* path is the request's path, starting with "/api/v1/" */
void mailpit_handle(struct mailpit_env *env, struct evhttp_request *req, const char *path);

#endif
