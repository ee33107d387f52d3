/*
 * metrics.h - the process's counters, gauges and histograms, and their
 * Prometheus text exposition (format 0.0.4).
 *
 * One catalogue (metrics.c) names every metric tern has: its name, help,
 * type, up to two label names and the programs that show it (serve, sink,
 * send).  Call sites record by id and label values, one line each:
 *     metrics_inc(M_SMTP_CONNECTIONS, listener, NULL);
 * Recording is lock-free (C11 atomics) and may happen on any thread.  A
 * family keeps at most METRICS_SERIES_MAX label combinations; the first use
 * of a combination takes a mutex once, a further one beyond the maximum is
 * dropped (and counted in tern_metrics_series_dropped_total).  Label values
 * must come from small fixed sets (listener, courier, class names): never
 * an address or a user name.  They are copied (at most 31 octets) and
 * escaped on output; metric names and help texts are ours.
 *
 * Gauges whose value belongs to one thread (the queue by state) are filled
 * by collectors that metrics_expose() calls first, on the caller's thread.
 */
#ifndef TERN_CORE_METRICS_H
#define TERN_CORE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* Programs, to pick the families one of them shows. */
enum {
    METRICS_SERVE = 1,
    METRICS_SINK = 2,
    METRICS_SEND = 4,
};

enum metric_id {
    /* the SMTP server side (serve, sink); label listener */
    M_SMTP_CONNECTIONS,         /* {listener} accepted */
    M_SMTP_CONNECTIONS_REFUSED, /* {listener} over a connection limit: 421 */
    M_SMTP_SESSIONS_ACTIVE,     /* {listener} gauge */
    M_SMTP_SESSIONS,            /* {listener, tls} ended */
    M_SMTP_MESSAGES,            /* {listener, class} reply at end of DATA */
    M_SMTP_RECEIVED_BYTES,      /* {listener} message octets at end of DATA */
    M_SMTP_AUTH,                /* {listener, result} */
    /* the queue (serve; collected at scrape) */
    M_QUEUE_ITEMS,          /* {state} */
    M_QUEUE_OLDEST_AGE,     /* seconds since the oldest item arrived */
    M_DELIVERY_ATTEMPTS,    /* {courier, class} one per recipient per attempt */
    M_DELIVERY_DURATION,    /* {courier} histogram: one courier call */
    M_DELIVERY_LATENCY,     /* {courier} histogram: arrival to delivery */
    M_CLIENT_CONNECTIONS,   /* {tls} SMTP client sessions set up (serve, send) */
    M_CLIENT_CONNECT_FAILS, /* connections or set-ups that failed */
    M_CLIENT_SENT_BYTES,    /* octets written by the SMTP client */
    M_SINK_MESSAGES,        /* stored by the sink */
    M_SINK_FAULTS,          /* {kind} injected */
    M_SEND_MESSAGES,        /* {result} sent / failed */
    M_SEND_RETRIES,         /* transient failures put back in the queue */
    M_CHECKS,               /* {method, result} inbound SPF/DKIM/DMARC results (serve) */
    M_START_TIME,           /* process start, Unix seconds */
    M_SERIES_DROPPED,       /* label combinations over METRICS_SERIES_MAX */
    M_N
};

#define METRICS_SERIES_MAX 48
#define METRICS_LABEL_MAX 31

/* Record.  l1 / l2: the family's label values, in the catalogue's order (NULL when
 * the family has fewer labels).  Wrong use (a counter given a gauge call) aborts. */
void metrics_add(enum metric_id id, uint64_t n, const char *l1, const char *l2);
static inline void metrics_inc(enum metric_id id, const char *l1, const char *l2)
{
    metrics_add(id, 1, l1, l2);
}
void metrics_gauge_add(enum metric_id id, int64_t delta, const char *l1, const char *l2);
void metrics_gauge_set(enum metric_id id, double v, const char *l1, const char *l2);
void metrics_observe(enum metric_id id, double v, const char *l1, const char *l2);
/* Make a series exist (shown as 0) before its first event. */
void metrics_touch(enum metric_id id, const char *l1, const char *l2);

/* Label values for common cases: "2xx" "3xx" "4xx" "5xx" "other"; "ok" "temp" "perm". */
const char *metrics_reply_class(int code);
const char *metrics_result_class(int cls);
/* A monotonic start time, and the seconds since one. */
uint64_t metrics_now_us(void);
double metrics_since(uint64_t start_us);

/* Called by metrics_expose() before it writes (e.g. to set the queue gauges). */
typedef void (*metrics_collect_fn)(void *ctx);
void metrics_set_collector(metrics_collect_fn fn, void *ctx);

/* The families of programs (METRICS_* bits) in text format 0.0.4, appended to out. */
void metrics_expose(unsigned programs, struct buf *out);
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Forget every series and value (tests). */
void metrics_reset(void);

/* Escape a label value for the text format (\ " and newline) into out (size >= 1);
 * returns out.  Exposed for tests. */
char *metrics_escape_label(const char *v, char *out, size_t size);

#endif
