/*
 * web.h - the web inbox (web.c): the page, its script and its style sheet,
 * embedded in the binary at build time (src/sink/web/embed.cmake turns
 * every file of src/sink/web/ into web_assets[]) and served at /, /app.js and /app.css.
 *
 * The files are static: no message data is ever put into them on the
 * server; the page fetches the JSON API and builds its DOM with textContent.
 */
#ifndef TERN_SINK_WEB_H
#define TERN_SINK_WEB_H

#include <stdbool.h>
#include <stddef.h>

struct evhttp_request;

struct web_asset {
    const char *path, *type; /* "/index.html", "text/html; charset=utf-8" */
    const unsigned char *data;
    size_t len;
};

extern const struct web_asset web_assets[]; /* generated: sink_web_assets.c */
extern const size_t web_nassets;

/* Answer req when path is one of the page's files (/ is /index.html);
 * returns false, having sent nothing, for any other path. */
bool web_handle(struct evhttp_request *req, const char *path);

#endif
