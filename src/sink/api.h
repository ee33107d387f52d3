/*
 * api.h - the sink's HTTP API (api.c): JSON over evhttp on the sink's event
 * loop, listing, reading and deleting stored messages, showing counters and
 * showing or replacing the fault settings.
 *
 * The API sees the rest of the sink only through struct sink_api, which the
 * caller (sink.c) fills and keeps alive while the API runs: the store and
 * the fault state it reads and changes, and the counters it shows.  It
 * knows nothing of the SMTP side, so sink.c sits above it, never beside it.
 */
#ifndef TERN_SINK_API_H
#define TERN_SINK_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sink/fault.h"
#include "sink/store.h"

struct event_base;
struct evhttp;
struct sink_events;

struct sink_api {
    struct sink_store *store;         /* listed, read and deleted */
    struct fault_state *faults;       /* shown, replaced by PUT /api/faults */
    const uint64_t *connections;      /* SMTP connections so far, for /api/stats */
    const uint64_t *messages_refused; /* refused at end of data, for /api/stats */
    uint64_t started_ms;              /* clock_mono_ms() at start, for uptime_ms */
    struct evhttp *http;              /* set by sink_api_start(); the caller frees it */
    /* --compat mail-test-srv: /count and /mail/N count one record per recipient */
    bool compat_mts;
    /* GET /api/events and what to tell it (NULL: none) */
    struct sink_events *events;
};

/* Bind addr and serve the API on base; the bound address into bound.
 * Returns 0, or -1 with a reason in why. */
int sink_api_start(struct sink_api *api, struct event_base *base, const char *addr, char *bound,
                   size_t boundsize, char *why, size_t whysize);

#endif
