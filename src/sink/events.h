/*
 * events.h - server-sent events (events.c): GET /api/events streams what
 * changes in the sink to every connected browser, so that the web inbox
 * updates without polling:
 *
 *   event: new        data: {"id": N}     a message was stored
 *   event: delete     data: {"id": N}     messages were deleted (N: 0 when
 *                                         api.c does not know which)
 *   event: clear      data: {"id": 0}     all messages were deleted
 *   event: faults     data: {"id": 0}     the fault settings changed
 *
 * and a comment line every 15 s to keep proxies and the connection alive.
 * At most EVENTS_MAX_CLIENTS streams (then 503); a client whose unsent
 * output grows beyond EVENTS_MAX_PENDING is dropped; a client that closes
 * is freed.  With no client connected, events_publish() is one test.
 * Runs on the sink's one event loop: no locks.
 */
#ifndef TERN_SINK_EVENTS_H
#define TERN_SINK_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#define EVENTS_MAX_CLIENTS 64
#define EVENTS_MAX_PENDING (256 * 1024)
#define EVENTS_KEEPALIVE_MS 15000

struct event_base;
struct evhttp_request;
struct sink_events;

/* NULL when out of memory. */
struct sink_events *events_new(struct event_base *base);
/* Frees ev; call after evhttp_free() (which closes the streams). NULL is fine. */
void events_free(struct sink_events *ev);
/* GET /api/events: start a stream (or answer 405/503). */
void events_handle(struct sink_events *ev, struct evhttp_request *req);
/* Tell every client; type is "new", "delete", "clear" or "faults".  ev may be NULL. */
void events_publish(struct sink_events *ev, const char *type, uint64_t id);
/* Streams open now (for /api/stats). */
size_t events_clients(const struct sink_events *ev);

#endif
