/*
 * metrics.c - the catalogue of tern's metrics, lock-free recording and the
 * Prometheus text exposition (see metrics.h).
 *
 * Storage is static: a family is a fixed array of series, each series its
 * label values and atomics (a counter's count; a gauge's double as bits; a
 * histogram's per-bucket counts, count and sum).  Series are appended under
 * one mutex and published by a release store of the family's count, so a
 * reader that loads the count with acquire sees whole label values; values
 * are relaxed atomics (a scrape may see one event in the count and not yet
 * in the sum, which the format allows).  Nothing is freed.
 */
#include "core/metrics.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"

enum metric_type { MT_COUNTER, MT_GAUGE, MT_HISTOGRAM };

#define BUCKETS_MAX 16

struct metric_def {
    const char *name, *help;
    enum metric_type type;
    const char *label1, *label2;
    unsigned programs;
    const double *bounds; /* histograms: upper bounds, increasing */
    size_t nbounds;
};

/* one courier call: a Maildir fsync to a slow remote server */
static const double duration_bounds[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                         1,     2.5,   5,    10,    30,   60,  300};
/* arrival to delivery: at once, after retries, up to the 5 days of give_up
 * (the queue's times are whole seconds) */
static const double latency_bounds[] = {1,   2,    5,    10,    30,    60,    300,
                                        900, 1800, 3600, 14400, 43200, 86400, 432000};

#define SERVER (METRICS_SERVE | METRICS_SINK)
#define CLIENT (METRICS_SERVE | METRICS_SEND)
#define ALL (METRICS_SERVE | METRICS_SINK | METRICS_SEND)
#define NB(a) (sizeof(a) / sizeof((a)[0]))

static const struct metric_def defs[M_N] = {
    [M_SMTP_CONNECTIONS] = {"tern_smtp_connections_total", "SMTP connections accepted, by listener",
                            MT_COUNTER, "listener", NULL, SERVER, NULL, 0},
    [M_SMTP_CONNECTIONS_REFUSED] = {"tern_smtp_connections_refused_total",
                                    "SMTP connections refused with 421 over a connection limit",
                                    MT_COUNTER, "listener", NULL, SERVER, NULL, 0},
    [M_SMTP_SESSIONS_ACTIVE] = {"tern_smtp_sessions_active", "SMTP sessions open now", MT_GAUGE,
                                "listener", NULL, SERVER, NULL, 0},
    [M_SMTP_SESSIONS] = {"tern_smtp_sessions_total",
                         "SMTP sessions ended, by whether they used TLS (STARTTLS or implicit)",
                         MT_COUNTER, "listener", "tls", SERVER, NULL, 0},
    [M_SMTP_MESSAGES] = {"tern_smtp_messages_total",
                         "Messages received (end of DATA), by the class of the reply given",
                         MT_COUNTER, "listener", "class", SERVER, NULL, 0},
    [M_SMTP_RECEIVED_BYTES] = {"tern_smtp_received_bytes_total",
                               "Message octets received (after dot-unstuffing), accepted or not",
                               MT_COUNTER, "listener", NULL, SERVER, NULL, 0},
    [M_SMTP_AUTH] = {"tern_smtp_auth_total", "AUTH attempts, by result", MT_COUNTER, "listener",
                     "result", SERVER, NULL, 0},
    [M_QUEUE_ITEMS] = {"tern_queue_items",
                       "Queue items by scheduler state (waiting, due, in_flight, held)", MT_GAUGE,
                       "state", NULL, METRICS_SERVE, NULL, 0},
    [M_QUEUE_OLDEST_AGE] = {"tern_queue_oldest_item_age_seconds",
                            "Age of the oldest queue item (0 when the queue is empty)", MT_GAUGE,
                            NULL, NULL, METRICS_SERVE, NULL, 0},
    [M_DELIVERY_ATTEMPTS] = {"tern_delivery_attempts_total",
                             "Delivery attempts, one per recipient per attempt, by courier and "
                             "result class (ok, temp, perm)",
                             MT_COUNTER, "courier", "class", METRICS_SERVE, NULL, 0},
    [M_DELIVERY_DURATION] = {"tern_delivery_attempt_duration_seconds",
                             "Time of one courier call (one local recipient, or one remote domain)",
                             MT_HISTOGRAM, "courier", NULL, METRICS_SERVE, duration_bounds,
                             NB(duration_bounds)},
    [M_DELIVERY_LATENCY] = {"tern_delivery_latency_seconds",
                            "Time from a message's arrival in the queue to its delivery, per "
                            "recipient delivered",
                            MT_HISTOGRAM, "courier", NULL, METRICS_SERVE, latency_bounds,
                            NB(latency_bounds)},
    [M_CLIENT_CONNECTIONS] = {"tern_smtp_client_connections_total",
                              "Outgoing SMTP sessions set up, by whether they use TLS", MT_COUNTER,
                              "tls", NULL, CLIENT, NULL, 0},
    [M_CLIENT_CONNECT_FAILS] = {"tern_smtp_client_connect_failures_total",
                                "Outgoing SMTP connections that could not be made", MT_COUNTER,
                                NULL, NULL, CLIENT, NULL, 0},
    [M_CLIENT_SENT_BYTES] = {"tern_smtp_client_sent_bytes_total",
                             "Octets written by the SMTP client (commands and messages)",
                             MT_COUNTER, NULL, NULL, CLIENT, NULL, 0},
    [M_SINK_MESSAGES] = {"tern_sink_messages_total", "Messages stored by the sink", MT_COUNTER,
                         NULL, NULL, METRICS_SINK, NULL, 0},
    [M_SINK_FAULTS] = {"tern_sink_faults_total", "Faults injected, by kind", MT_COUNTER, "kind",
                       NULL, METRICS_SINK, NULL, 0},
    [M_SEND_MESSAGES] = {"tern_send_messages_total", "Messages finished, by result (sent, failed)",
                         MT_COUNTER, "result", NULL, METRICS_SEND, NULL, 0},
    [M_SEND_RETRIES] = {"tern_send_retries_total",
                        "Messages put back in the queue after a transient failure", MT_COUNTER,
                        NULL, NULL, METRICS_SEND, NULL, 0},
    [M_CHECKS] = {"tern_inbound_checks_total",
                  "Inbound SPF, DKIM and DMARC results on the smtp listener, by method and "
                  "result (RFC 8601 words)",
                  MT_COUNTER, "method", "result", METRICS_SERVE, NULL, 0},
    [M_START_TIME] = {"tern_start_time_seconds", "When the process started, in Unix time", MT_GAUGE,
                      NULL, NULL, ALL, NULL, 0},
    [M_SERIES_DROPPED] = {"tern_metrics_series_dropped_total",
                          "Events not recorded: their metric had too many label combinations",
                          MT_COUNTER, NULL, NULL, ALL, NULL, 0},
};

struct series {
    char l1[METRICS_LABEL_MAX + 1], l2[METRICS_LABEL_MAX + 1];
    _Atomic uint64_t v; /* counter: the count; gauge: a double's bits */
    _Atomic uint64_t count, sum_bits;
    _Atomic uint64_t b[BUCKETS_MAX]; /* per bucket, not cumulative */
};

struct family {
    _Atomic size_t n;
    struct series s[METRICS_SERIES_MAX];
};

static struct family fams[M_N];
static pthread_mutex_t fams_lock = PTHREAD_MUTEX_INITIALIZER;
static metrics_collect_fn collector;
static void *collector_ctx;

static uint64_t dbits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return u;
}

static double bitsd(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

static void label_copy(char *dst, const char *v)
{
    size_t n = v ? strnlen(v, METRICS_LABEL_MAX) : 0;
    memcpy(dst, v ? v : "", n);
    dst[n] = '\0';
}

/* The series of (l1, l2) in family id, created on first use; NULL when full. */
static struct series *series_get(enum metric_id id, const char *l1, const char *l2)
{
    struct family *f = &fams[id];
    char a[METRICS_LABEL_MAX + 1], b[METRICS_LABEL_MAX + 1];
    label_copy(a, defs[id].label1 ? l1 : NULL);
    label_copy(b, defs[id].label2 ? l2 : NULL);
    size_t n = atomic_load_explicit(&f->n, memory_order_acquire);
    for (size_t i = 0; i < n; i++)
        if (strcmp(f->s[i].l1, a) == 0 && strcmp(f->s[i].l2, b) == 0)
            return &f->s[i];
    struct series *s = NULL;
    pthread_mutex_lock(&fams_lock);
    size_t m = atomic_load_explicit(&f->n, memory_order_relaxed);
    for (size_t i = n; i < m && !s; i++) /* appended meanwhile */
        if (strcmp(f->s[i].l1, a) == 0 && strcmp(f->s[i].l2, b) == 0)
            s = &f->s[i];
    if (!s && m < METRICS_SERIES_MAX) {
        s = &f->s[m];
        memcpy(s->l1, a, sizeof(a));
        memcpy(s->l2, b, sizeof(b));
        atomic_store_explicit(&f->n, m + 1, memory_order_release);
    }
    pthread_mutex_unlock(&fams_lock);
    if (!s && id != M_SERIES_DROPPED)
        metrics_add(M_SERIES_DROPPED, 1, NULL, NULL);
    return s;
}

static void check_type(enum metric_id id, enum metric_type t)
{
    if ((unsigned)id >= M_N || defs[id].type != t)
        fatal("metrics: %d used as the wrong type", (int)id);
}

void metrics_add(enum metric_id id, uint64_t n, const char *l1, const char *l2)
{
    check_type(id, MT_COUNTER);
    struct series *s = series_get(id, l1, l2);
    if (s)
        atomic_fetch_add_explicit(&s->v, n, memory_order_relaxed);
}

static void double_add(_Atomic uint64_t *p, double d)
{
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(p, &old, dbits(bitsd(old) + d),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

void metrics_gauge_add(enum metric_id id, int64_t delta, const char *l1, const char *l2)
{
    check_type(id, MT_GAUGE);
    struct series *s = series_get(id, l1, l2);
    if (s)
        double_add(&s->v, (double)delta);
}

void metrics_gauge_set(enum metric_id id, double v, const char *l1, const char *l2)
{
    check_type(id, MT_GAUGE);
    struct series *s = series_get(id, l1, l2);
    if (s)
        atomic_store_explicit(&s->v, dbits(v), memory_order_relaxed);
}

void metrics_observe(enum metric_id id, double v, const char *l1, const char *l2)
{
    check_type(id, MT_HISTOGRAM);
    struct series *s = series_get(id, l1, l2);
    if (!s)
        return;
    const struct metric_def *d = &defs[id];
    size_t k = 0;
    while (k < d->nbounds && v > d->bounds[k])
        k++;
    if (k < d->nbounds) /* over the last bound: only in +Inf, which is the count */
        atomic_fetch_add_explicit(&s->b[k], 1, memory_order_relaxed);
    double_add(&s->sum_bits, v);
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
}

void metrics_touch(enum metric_id id, const char *l1, const char *l2)
{
    (void)series_get(id, l1, l2);
}

const char *metrics_reply_class(int code)
{
    static const char *const c[] = {"other", "other", "2xx", "3xx", "4xx", "5xx"};
    return code >= 200 && code < 600 ? c[code / 100] : "other";
}

const char *metrics_result_class(int cls)
{
    return cls == 0 ? "ok" : cls == 1 ? "temp" : "perm";
}

uint64_t metrics_now_us(void)
{
    return clock_mono_us();
}

double metrics_since(uint64_t start_us)
{
    uint64_t now = clock_mono_us();
    return now > start_us ? (double)(now - start_us) / 1e6 : 0.0;
}

void metrics_set_collector(metrics_collect_fn fn, void *ctx)
{
    collector = fn;
    collector_ctx = ctx;
}

/* ---- exposition ------------------------------------------------------------------- */

char *metrics_escape_label(const char *v, char *out, size_t size)
{
    size_t o = 0;
    for (; *v && o + 3 < size; v++) {
        unsigned char c = (unsigned char)*v;
        if (c == '\\' || c == '"') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = c < 0x20 || c >= 0x7f ? '?' : (char)c; /* always valid UTF-8 */
        }
    }
    out[o] = '\0';
    return out;
}

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        buf_append(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static void fmt_double(double v, char *out, size_t size)
{
    if (v != v)
        snprintf(out, size, "NaN");
    else if (v > -1e15 && v < 1e15 && (double)(int64_t)v == v)
        snprintf(out, size, "%" PRId64, (int64_t)v);
    else
        snprintf(out, size, "%.17g", v);
}

/* {a="x",b="y"} for series s, plus an extra label (le) when given; "" when none. */
static void fmt_labels(const struct metric_def *d, const struct series *s, const char *extra,
                       const char *extra_v, char *out, size_t size)
{
    char e1[2 * METRICS_LABEL_MAX + 2], e2[2 * METRICS_LABEL_MAX + 2];
    size_t o = 0;
    out[0] = '\0';
    const char *names[3] = {d->label1, d->label2, extra};
    const char *vals[3] = {metrics_escape_label(s->l1, e1, sizeof(e1)),
                           metrics_escape_label(s->l2, e2, sizeof(e2)), extra_v};
    for (int i = 0; i < 3; i++) {
        if (!names[i])
            continue;
        int n = snprintf(out + o, size - o, "%s%s=\"%s\"", o ? "," : "{", names[i], vals[i]);
        if (n < 0 || (size_t)n >= size - o)
            return;
        o += (size_t)n;
    }
    if (o && o + 1 < size) {
        out[o++] = '}';
        out[o] = '\0';
    }
}

static void expose_family(enum metric_id id, struct buf *out)
{
    const struct metric_def *d = &defs[id];
    static const char *const types[] = {"counter", "gauge", "histogram"};
    if (!d->label1)
        metrics_touch(id, NULL, NULL); /* a family without labels always has its one value */
    put(out, "# HELP %s %s\n# TYPE %s %s\n", d->name, d->help, d->name, types[d->type]);
    size_t n = atomic_load_explicit(&fams[id].n, memory_order_acquire);
    char lab[256], num[64];
    for (size_t i = 0; i < n; i++) {
        const struct series *s = &fams[id].s[i];
        if (d->type == MT_COUNTER) {
            fmt_labels(d, s, NULL, NULL, lab, sizeof(lab));
            put(out, "%s%s %" PRIu64 "\n", d->name, lab,
                atomic_load_explicit(&s->v, memory_order_relaxed));
        } else if (d->type == MT_GAUGE) {
            fmt_labels(d, s, NULL, NULL, lab, sizeof(lab));
            fmt_double(bitsd(atomic_load_explicit(&s->v, memory_order_relaxed)), num, sizeof(num));
            put(out, "%s%s %s\n", d->name, lab, num);
        } else {
            /* count first: the buckets read after it never add up to more */
            uint64_t count = atomic_load_explicit(&s->count, memory_order_relaxed), cum = 0;
            for (size_t k = 0; k < d->nbounds; k++) {
                cum += atomic_load_explicit(&s->b[k], memory_order_relaxed);
                if (cum > count)
                    cum = count;
                fmt_double(d->bounds[k], num, sizeof(num));
                fmt_labels(d, s, "le", num, lab, sizeof(lab));
                put(out, "%s_bucket%s %" PRIu64 "\n", d->name, lab, cum);
            }
            fmt_labels(d, s, "le", "+Inf", lab, sizeof(lab));
            put(out, "%s_bucket%s %" PRIu64 "\n", d->name, lab, count);
            fmt_labels(d, s, NULL, NULL, lab, sizeof(lab));
            fmt_double(bitsd(atomic_load_explicit(&s->sum_bits, memory_order_relaxed)), num,
                       sizeof(num));
            put(out, "%s_sum%s %s\n", d->name, lab, num);
            put(out, "%s_count%s %" PRIu64 "\n", d->name, lab, count);
        }
    }
}

static _Atomic uint64_t start_time_bits;

__attribute__((constructor)) static void metrics_start(void)
{
    atomic_store(&start_time_bits, dbits((double)time(NULL)));
}

void metrics_expose(unsigned programs, struct buf *out)
{
    if (collector)
        collector(collector_ctx);
    metrics_gauge_set(M_START_TIME, bitsd(atomic_load(&start_time_bits)), NULL, NULL);
    for (int id = 0; id < M_N; id++)
        if (defs[id].programs & programs)
            expose_family((enum metric_id)id, out);
}

void metrics_reset(void)
{
    pthread_mutex_lock(&fams_lock);
    memset(fams, 0, sizeof(fams));
    collector = NULL;
    collector_ctx = NULL;
    pthread_mutex_unlock(&fams_lock);
}
