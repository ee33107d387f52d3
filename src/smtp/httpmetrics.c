/*
 * httpmetrics.c - GET /metrics on evhttp (see httpmetrics.h).
 *
 * Own-thread mode: the thread runs its own event base; httpmetrics_free()
 * writes one octet into a pipe the loop watches, the loop exits and the
 * thread is joined (no libevent locking is needed: nothing else touches
 * that base).
 */
#include "smtp/httpmetrics.h"

#include <errno.h>
#include <fcntl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/netaddr.h"
#include "smtp/listen.h"

struct httpmetrics {
    struct event_base *base; /* own: created here, freed here */
    bool own;
    struct evhttp *http;
    unsigned programs;
    pthread_t thread;
    int stop_pipe[2];
    struct event *stop_ev;
};

int httpmetrics_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a))
            return 1;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return 0;
}

static void httpmetrics_cb(struct evhttp_request *req, void *arg)
{
    struct httpmetrics *hm = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    struct evbuffer *out = evbuffer_new();
    if (!out) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    if (!path || (strcmp(path, "/metrics") != 0 && strcmp(path, "/") != 0)) {
        evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
        evbuffer_add_printf(out, "not found: see /metrics\n");
        evhttp_send_reply(req, 404, "Not Found", out);
    } else if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
        evhttp_add_header(h, "Allow", "GET, HEAD");
        evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
        evbuffer_add_printf(out, "method not allowed\n");
        evhttp_send_reply(req, 405, "Method Not Allowed", out);
    } else if (strcmp(path, "/") == 0) {
        evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
        evbuffer_add_printf(out, "tern: metrics at /metrics\n");
        evhttp_send_reply(req, 200, "OK", out);
    } else {
        struct buf b = {0};
        metrics_expose(hm->programs, &b);
        evhttp_add_header(h, "Content-Type", METRICS_CONTENT_TYPE);
        if (m == EVHTTP_REQ_GET && evbuffer_add(out, b.p ? b.p : "", b.len) < 0) {
            buf_free(&b);
            evbuffer_free(out);
            evhttp_send_error(req, 500, NULL);
            return;
        }
        buf_free(&b);
        evhttp_send_reply(req, 200, "OK", out); /* HEAD: headers only */
    }
    evbuffer_free(out);
}

static void httpmetrics_stop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopexit(arg, NULL);
}

static void *httpmetrics_thread(void *arg)
{
    struct httpmetrics *hm = arg;
    if (event_base_dispatch(hm->base) < 0)
        log_warn("metrics listener: event loop failed");
    return NULL;
}

static void httpmetrics_release(struct httpmetrics *hm)
{
    if (hm->http)
        evhttp_free(hm->http);
    if (hm->stop_ev)
        event_free(hm->stop_ev);
    if (hm->own && hm->base)
        event_base_free(hm->base);
    for (int i = 0; i < 2; i++)
        if (hm->stop_pipe[i] >= 0)
            close(hm->stop_pipe[i]);
    free(hm);
}

struct httpmetrics *httpmetrics_start(struct event_base *base, const char *addr, unsigned programs,
                                      char *bound, size_t boundsize, char *why, size_t whysize)
{
    struct httpmetrics *hm = calloc(1, sizeof(*hm));
    if (!hm)
        fatal("out of memory");
    hm->stop_pipe[0] = hm->stop_pipe[1] = -1;
    hm->programs = programs;
    hm->own = base == NULL;
    hm->base = base ? base : event_base_new();
    if (!hm->base) {
        snprintf(why, whysize, "cannot create an event loop");
        free(hm);
        return NULL;
    }
    int fd = listen_socket(addr, why, whysize);
    if (fd < 0) {
        httpmetrics_release(hm);
        return NULL;
    }
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sslen) == 0)
        netaddr_format((struct sockaddr *)&ss, bound, boundsize);
    else
        snprintf(bound, boundsize, "%s", addr);
    hm->http = evhttp_new(hm->base);
    if (!hm->http || !evhttp_accept_socket_with_handle(hm->http, fd)) {
        snprintf(why, whysize, "%s: cannot serve HTTP", addr);
        close(fd);
        httpmetrics_release(hm);
        return NULL;
    }
    evhttp_set_allowed_methods(hm->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                             EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
    evhttp_set_max_body_size(hm->http, 0);
    evhttp_set_max_headers_size(hm->http, 8 * 1024);
    evhttp_set_timeout(hm->http, 10);
    evhttp_set_gencb(hm->http, httpmetrics_cb, hm);
    if (hm->own) {
        if (pipe2(hm->stop_pipe, O_CLOEXEC) < 0 ||
            !(hm->stop_ev =
                  event_new(hm->base, hm->stop_pipe[0], EV_READ, httpmetrics_stop_cb, hm->base)) ||
            event_add(hm->stop_ev, NULL) < 0 ||
            pthread_create(&hm->thread, NULL, httpmetrics_thread, hm) != 0) {
            snprintf(why, whysize, "cannot start the metrics thread: %s", strerror(errno));
            httpmetrics_release(hm);
            return NULL;
        }
    }
    return hm;
}

void httpmetrics_free(struct httpmetrics *hm)
{
    if (!hm)
        return;
    if (hm->own) {
        char c = 0;
        while (write(hm->stop_pipe[1], &c, 1) < 0 && errno == EINTR)
            ;
        pthread_join(hm->thread, NULL);
    }
    httpmetrics_release(hm);
}
