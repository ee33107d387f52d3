/*
 * web.c - serves the web inbox's embedded files (see web.h).
 *
 * Every answer carries a Content-Security-Policy that allows only this
 * origin's own script and style, no plugins, no framing by others, and
 * fetches only to this origin (the JSON API and /api/events).  The HTML of
 * a message is shown by the page in an <iframe sandbox> through srcdoc, which
 * inherits this policy on top of its own: no script can run there, and no
 * image or style can come from anywhere but data: URLs and the message itself.
 */
#include "sink/web.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <string.h>

#define WEB_CSP                                                                                    \
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "                    \
    "img-src 'self' data:; connect-src 'self'; frame-src 'self'; base-uri 'none'; "                \
    "form-action 'none'; frame-ancestors 'none'"

bool web_handle(struct evhttp_request *req, const char *path)
{
    const struct web_asset *a = NULL;
    if (strcmp(path, "/") == 0)
        path = "/index.html";
    for (size_t i = 0; i < web_nassets && !a; i++)
        if (strcmp(web_assets[i].path, path) == 0)
            a = &web_assets[i];
    if (!a)
        return false;
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
        evhttp_add_header(h, "Allow", "GET, HEAD");
        evhttp_send_error(req, 405, NULL);
        return true;
    }
    struct evbuffer *out = evbuffer_new();
    if (!out || evbuffer_add_reference(out, a->data, a->len, NULL, NULL) < 0) {
        if (out)
            evbuffer_free(out);
        evhttp_send_error(req, 500, NULL);
        return true;
    }
    evhttp_add_header(h, "Content-Type", a->type);
    evhttp_add_header(h, "Content-Security-Policy", WEB_CSP);
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "Referrer-Policy", "no-referrer");
    evhttp_add_header(h, "Cache-Control", "no-cache");
    evhttp_send_reply(req, 200, "OK", out);
    evbuffer_free(out);
    return true;
}
