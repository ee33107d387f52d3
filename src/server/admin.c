/*
 * admin.c - the admin listener of `tern serve` (see admin.h).
 *
 * A scrape runs on the event loop, the thread that owns the engine, so the
 * collector reads the schedule without locks.  The oldest item's age comes
 * from the queue ids, which begin with the arrival time in Unix seconds
 * (queue/store.c): one pass over the schedule, O(items), no disk access.
 */
#include "server/admin.h"

#include <stdio.h>
#include <time.h>

#include "conf/snapshot.h"
#include "core/log.h"
#include "core/metrics.h"
#include "deliver/engine.h"
#include "queue/schedule.h"
#include "server/serve.h"
#include "smtp/httpmetrics.h"

static struct httpmetrics *admin_http[CONF_LISTEN_MAX];
static size_t admin_n;

static void admin_oldest(void *ctx, const char *id, const char *dest, enum schedule_state st,
                         int64_t due_ms)
{
    (void)dest;
    (void)st;
    (void)due_ms;
    int64_t *oldest = ctx, t = 0;
    int k = 0;
    for (; k < 12 && id[k] >= '0' && id[k] <= '9'; k++)
        t = t * 10 + (id[k] - '0');
    if (k >= 9 && id[k] == '-' && t < *oldest) /* an id of another form says nothing */
        *oldest = t;
}

static void admin_collect(void *ctx)
{
    struct serve *sv = ctx;
    if (!sv->engine)
        return;
    struct engine_stats st;
    engine_stats(sv->engine, &st);
    metrics_gauge_set(M_QUEUE_ITEMS, (double)st.waiting, "waiting", NULL);
    metrics_gauge_set(M_QUEUE_ITEMS, (double)st.due, "due", NULL);
    metrics_gauge_set(M_QUEUE_ITEMS, (double)st.inflight, "in_flight", NULL);
    metrics_gauge_set(M_QUEUE_ITEMS, (double)st.held, "held", NULL);
    int64_t oldest = INT64_MAX, now = (int64_t)time(NULL);
    schedule_each(engine_schedule(sv->engine), admin_oldest, &oldest);
    metrics_gauge_set(M_QUEUE_OLDEST_AGE,
                      oldest == INT64_MAX || oldest > now ? 0.0 : (double)(now - oldest), NULL,
                      NULL);
}

int serve_admin_start(struct serve *sv)
{
    const struct conf *cf = &sv->boot->conf;
    char why[256], bound[80];
    const struct conf_listeners *ls[] = {&cf->smtp, &cf->submission, &cf->submissions};
    static const char *const names[] = {"smtp", "submission", "submissions"};
    for (size_t i = 0; i < 3; i++) /* shown as 0 before the first connection */
        if (ls[i]->n)
            metrics_touch(M_SMTP_CONNECTIONS, names[i], NULL);
    metrics_set_collector(admin_collect, sv);
    for (size_t i = 0; i < cf->admin.n; i++) {
        struct httpmetrics *hm = httpmetrics_start(sv->base, cf->admin.v[i].text, METRICS_SERVE,
                                                   bound, sizeof(bound), why, sizeof(why));
        if (!hm) {
            fprintf(stderr, "tern serve: cannot listen (admin): %s\n", why);
            return -1;
        }
        admin_http[admin_n++] = hm;
        log_info("admin listening on %s (GET /metrics)", bound);
    }
    return 0;
}

void serve_admin_free(void)
{
    for (size_t i = 0; i < admin_n; i++)
        httpmetrics_free(admin_http[i]);
    admin_n = 0;
}
