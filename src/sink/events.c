/*
 * events.c - server-sent events for the web inbox (see events.h).
 *
 * Each client is one evhttp request answered with a chunked reply that
 * never ends: evhttp_send_reply_start(), then one small chunk per event.
 * The connection's close callback unlinks and frees the client; a client
 * too slow to read (more than EVENTS_MAX_PENDING unsent) has its connection
 * freed by us, after we unhook that callback.  Clients live in a doubly
 * linked list owned by struct sink_events; nothing else keeps a pointer to
 * them.  Event data is built from a type name and a number only: no message
 * content ever goes into a stream.
 */
#include "sink/events.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/log.h"

struct events_client {
    struct sink_events *ev;
    struct evhttp_request *req;
    struct evhttp_connection *conn;
    struct events_client *prev, *next;
};

struct sink_events {
    struct event *keepalive;
    struct evbuffer *scratch;
    struct events_client *clients;
    size_t nclients;
    uint64_t dropped;
};

static void events_unlink(struct events_client *c)
{
    struct sink_events *ev = c->ev;
    if (c->prev)
        c->prev->next = c->next;
    else
        ev->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    ev->nclients--;
    free(c);
}

/* The peer closed (or the server is going down).  When evhttp has already
 * detached our unfinished request from the connection it no longer frees it:
 * ending the reply then frees it (libevent 2.1's rule for EOF mid-reply). */
static void events_closed(struct evhttp_connection *conn, void *arg)
{
    struct events_client *c = arg;
    struct evhttp_request *req = c->req;
    (void)conn;
    events_unlink(c);
    if (!evhttp_request_get_connection(req))
        evhttp_send_reply_end(req);
}

/* Drop a client that does not read: free its connection (and request). */
static void events_drop(struct events_client *c)
{
    struct evhttp_connection *conn = c->conn;
    c->ev->dropped++;
    log_info("events: dropping a slow client");
    evhttp_connection_set_closecb(conn, NULL, NULL);
    events_unlink(c);
    evhttp_connection_free(conn);
}

static size_t events_pending(const struct events_client *c)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(c->conn);
    return bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

/* Send text (len octets) to every client, dropping those that lag. */
static void events_send_all(struct sink_events *ev, const char *text, size_t len)
{
    struct events_client *c = ev->clients, *next;
    for (; c; c = next) {
        next = c->next;
        if (events_pending(c) + len > EVENTS_MAX_PENDING ||
            evbuffer_add(ev->scratch, text, len) < 0) {
            evbuffer_drain(ev->scratch, evbuffer_get_length(ev->scratch));
            events_drop(c);
            continue;
        }
        evhttp_send_reply_chunk(c->req, ev->scratch); /* moves the octets out */
        evbuffer_drain(ev->scratch, evbuffer_get_length(ev->scratch));
    }
}

static void events_keepalive_cb(evutil_socket_t fd, short what, void *arg)
{
    static const char ping[] = ": keep-alive\n\n";
    (void)fd;
    (void)what;
    events_send_all(arg, ping, sizeof(ping) - 1);
}

struct sink_events *events_new(struct event_base *base)
{
    struct sink_events *ev = calloc(1, sizeof(*ev));
    if (!ev)
        return NULL;
    struct timeval tv = {EVENTS_KEEPALIVE_MS / 1000, (EVENTS_KEEPALIVE_MS % 1000) * 1000};
    ev->scratch = evbuffer_new();
    ev->keepalive = event_new(base, -1, EV_PERSIST, events_keepalive_cb, ev);
    if (!ev->scratch || !ev->keepalive || event_add(ev->keepalive, &tv) < 0) {
        events_free(ev);
        return NULL;
    }
    return ev;
}

void events_free(struct sink_events *ev)
{
    if (!ev)
        return;
    while (ev->clients) { /* still open (evhttp not freed): close them */
        struct events_client *c = ev->clients;
        struct evhttp_connection *conn = c->conn;
        evhttp_connection_set_closecb(conn, NULL, NULL);
        events_unlink(c);
        evhttp_connection_free(conn);
    }
    if (ev->keepalive)
        event_free(ev->keepalive);
    if (ev->scratch)
        evbuffer_free(ev->scratch);
    free(ev);
}

void events_handle(struct sink_events *ev, struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        evhttp_add_header(h, "Allow", "GET");
        evhttp_send_error(req, 405, NULL);
        return;
    }
    if (!ev) {
        evhttp_send_error(req, 503, NULL);
        return;
    }
    if (ev->nclients >= EVENTS_MAX_CLIENTS) {
        evhttp_add_header(h, "Retry-After", "10");
        evhttp_send_error(req, 503, "Too many event streams");
        return;
    }
    struct events_client *c = calloc(1, sizeof(*c));
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    if (!c || !conn) {
        free(c);
        evhttp_send_error(req, 500, NULL);
        return;
    }
    c->ev = ev;
    c->req = req;
    c->conn = conn;
    c->next = ev->clients;
    if (ev->clients)
        ev->clients->prev = c;
    ev->clients = c;
    ev->nclients++;
    evhttp_connection_set_closecb(conn, events_closed, c);
    evhttp_add_header(h, "Content-Type", "text/event-stream");
    evhttp_add_header(h, "Cache-Control", "no-cache");
    evhttp_add_header(h, "X-Accel-Buffering", "no");
    evhttp_send_reply_start(req, 200, "OK");
    static const char hello[] = "retry: 2000\n: tern sink events\n\n";
    if (evbuffer_add(ev->scratch, hello, sizeof(hello) - 1) == 0)
        evhttp_send_reply_chunk(req, ev->scratch);
    evbuffer_drain(ev->scratch, evbuffer_get_length(ev->scratch));
}

void events_publish(struct sink_events *ev, const char *type, uint64_t id)
{
    char buf[96];
    if (!ev || !ev->clients)
        return;
    int n = snprintf(buf, sizeof(buf), "event: %s\ndata: {\"id\": %llu}\n\n", type,
                     (unsigned long long)id);
    if (n > 0 && (size_t)n < sizeof(buf))
        events_send_all(ev, buf, (size_t)n);
}

size_t events_clients(const struct sink_events *ev)
{
    return ev ? ev->nclients : 0;
}
