/*
 * engine.c - the delivery engine (see engine.h).
 *
 * State: the schedule (ids, destinations, due times), the snapshot in
 * force, counters.  An attempt job carries its own snapshot reference and
 * a copy of its id; the schedule holds the item INFLIGHT until done() runs
 * on the owner's thread, so no item is ever attempted twice at once.  The
 * timer is armed only when the next wake-up changes; a tick first forgets
 * the spent timer so that it is armed again.  A pickup job (one at a time;
 * another request while it runs makes it run once more) moves items that
 * `tern sendmail` wrote into the pickup spool into the queue, routing their
 * recipients with the snapshot, committing first and removing the pickup
 * copy second (a crash between the two duplicates, never loses).
 */
#include "deliver/engine.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/snapshot.h"
#include "core/clock.h"
#include "core/log.h"
#include "deliver/attempt.h"
#include "deliver/route.h"
#include "queue/schedule.h"
#include "queue/store.h"

struct engine {
    struct engine_conf c;
    struct snapshot *snap;
    struct schedule *sched;
    struct attempt_env ae;
    uint64_t rng;
    bool stopping;
    size_t busy; /* jobs submitted, done() not yet run */
    bool pickup_running, pickup_again;
    int64_t armed; /* what arm() was last told; INT64_MIN: nothing armed */
    struct engine_stats n;
};

struct engine_job {
    struct engine *e;
    struct attempt a;
};

struct pickup_job {
    struct engine *e;
    struct snapshot *snap;
    struct attempt_item *items; /* committed to the queue */
    size_t n, cap;
};

static int64_t engine_now(const struct engine *e)
{
    return e->c.now_ms(e->c.clock_ctx);
}

static void engine_rearm(struct engine *e)
{
    int64_t at = e->stopping ? INT64_MAX : schedule_wakeup(e->sched, engine_now(e));
    if (at != e->armed) {
        e->armed = at;
        e->c.arm(e->c.arm_ctx, at);
    }
}

static void engine_run(void *arg)
{
    struct engine_job *j = arg;
    attempt_run(&j->a);
}

static void engine_kick(struct engine *e);

static void engine_done(void *arg)
{
    struct engine_job *j = arg;
    struct engine *e = j->e;
    int64_t now = engine_now(e);
    e->busy--;
    e->n.delivered += j->a.delivered;
    e->n.deferred += j->a.deferred;
    e->n.failed += j->a.failed;
    if (j->a.removed)
        log_info("id=%s: done", j->a.id);
    if (schedule_done(e->sched, j->a.id, j->a.removed, j->a.dest, j->a.next_ms, now) < 0)
        log_error("id=%s: finished an attempt the schedule did not know", j->a.id);
    for (size_t i = 0; i < j->a.ndsn; i++) {
        e->n.dsns++;
        if (schedule_add(e->sched, j->a.dsn[i].id, j->a.dsn[i].dest, now) < 0)
            log_error("id=%s: scheduled twice", j->a.dsn[i].id);
    }
    snapshot_put(j->a.snap);
    free(j);
    engine_kick(e);
}

static void engine_kick(struct engine *e)
{
    const char *id, *dest;
    int64_t now = engine_now(e);
    while (!e->stopping && (id = schedule_next(e->sched, now, &dest))) {
        struct engine_job *j = calloc(1, sizeof(*j));
        if (!j)
            fatal("out of memory");
        j->e = e;
        j->a.ae = &e->ae;
        j->a.snap = snapshot_ref(e->snap);
        snprintf(j->a.id, sizeof(j->a.id), "%s", id);
        snprintf(j->a.dest, sizeof(j->a.dest), "%s", dest);
        j->a.u01 = rand_u01(&e->rng);
        e->busy++;
        e->n.attempts++;
        e->c.submit(e->c.submit_ctx, engine_run, engine_done, j);
    }
    engine_rearm(e);
}

static void engine_apply_limits(struct engine *e)
{
    struct schedule_limits lim = {.max_inflight = e->snap->conf.concurrency,
                                  .per_dest = e->snap->conf.per_destination};
    schedule_set_limits(e->sched, &lim);
}

struct engine *engine_new(const struct engine_conf *ec, struct snapshot *snap)
{
    struct engine *e = calloc(1, sizeof(*e));
    if (!e)
        fatal("out of memory");
    e->c = *ec;
    if (!e->c.couriers)
        e->c.couriers = courier_table;
    e->snap = snapshot_ref(snap);
    struct schedule_limits lim = {.max_inflight = snap->conf.concurrency,
                                  .per_dest = snap->conf.per_destination};
    e->sched = schedule_new(&lim);
    e->ae = (struct attempt_env){.store = ec->store,
                                 .couriers = e->c.couriers,
                                 .now_ms = ec->now_ms,
                                 .clock_ctx = ec->clock_ctx,
                                 .self = ec->self,
                                 .nself = ec->nself};
    e->rng = ec->seed ? ec->seed : clock_mono_us();
    e->armed = INT64_MIN;
    return e;
}

void engine_set_snapshot(struct engine *e, struct snapshot *snap)
{
    struct snapshot *old = e->snap;
    e->snap = snapshot_ref(snap);
    snapshot_put(old);
    engine_apply_limits(e);
    engine_kick(e);
}

static void engine_schedule_env(struct engine *e, const struct envelope *env, int64_t due_ms)
{
    char dest[ADDR_DOMAIN_MAX + 1];
    route_dest(env, dest, sizeof(dest));
    if (schedule_add(e->sched, env->id, dest, due_ms) < 0)
        log_warn("id=%s: already scheduled", env->id);
}

#define ENGINE_PICKUP_STALE_S 3600 /* a pickup tmp/ file this old is a killed writer's */

static void engine_recovered(void *ctx, struct envelope *env)
{
    engine_schedule_env(ctx, env, env->next_attempt * 1000);
}

int engine_recover(struct engine *e, struct qstore_stats *st, char *why, size_t whylen)
{
    if (qstore_recover(e->c.store, engine_recovered, e, st, why, whylen) < 0)
        return -1;
    /* the pickup has writers of its own (`tern sendmail`): only what they left
     * long ago can be junk */
    if (e->c.pickup)
        qstore_clean_stale(e->c.pickup, engine_now(e) / 1000, ENGINE_PICKUP_STALE_S);
    engine_kick(e);
    return 0;
}

void engine_add(struct engine *e, const struct envelope *env)
{
    engine_schedule_env(e, env, engine_now(e));
    engine_kick(e);
}

void engine_tick(struct engine *e)
{
    e->armed = INT64_MIN; /* the timer is spent */
    engine_kick(e);
}

void engine_retry_all(struct engine *e)
{
    schedule_retry_all(e->sched, engine_now(e));
    engine_kick(e);
    engine_pickup(e);
}

/* ---- pickup: `tern sendmail` writes into its own spool; we route and queue ---------- */

/* Move one pickup item into the queue (on a worker thread). */
static void pickup_item(void *ctx, struct envelope *in)
{
    struct pickup_job *j = ctx;
    struct engine *e = j->e;
    const struct conf *c = &j->snap->conf;
    struct buf msg = {0};
    struct envelope out;
    char why[256];

    if (qstore_read_msg(e->c.pickup, in->id, &msg, why, sizeof(why)) < 0) {
        log_error("pickup id=%s: %s", in->id, why);
        buf_free(&msg);
        return;
    }
    if (qstore_check_msg(in, msg.p, msg.len, why, sizeof(why)) < 0) { /* damaged since */
        /* moved first, then said: whoever reads the line finds it in quarantine/ */
        qstore_quarantine(e->c.pickup, in->id, why);
        log_error("pickup id=%s: %s; quarantined, not queued", in->id, why);
        buf_free(&msg);
        return;
    }
    envelope_init(&out);
    envelope_set(&out.sender, in->sender);
    out.created = out.next_attempt = e->c.now_ms(e->c.clock_ctx) / 1000;
    out.ret = in->ret;
    envelope_set(&out.envid, in->envid);
    out.smtputf8 = in->smtputf8;
    out.eightbitmime = in->eightbitmime;
    envelope_set(&out.helo, in->helo);
    envelope_set(&out.peer, in->peer);
    envelope_set(&out.auth_user, in->auth_user);
    for (size_t i = 0; i < in->nrcpt; i++) {
        const struct env_rcpt *r = &in->rcpts[i];
        if (route_expand(c, &j->snap->policy, &out, r->addr, r->addr, r->notify, r->orcpt) > 0)
            continue;
        /* nowhere to deliver it (no such local user, a loop): the sender gets a DSN */
        struct env_rcpt *f = envelope_add_rcpt(&out, r->addr, r->addr, "none");
        char text[ADDR_PATH_MAX + 64];
        snprintf(text, sizeof(text), "550 5.1.1 <%.256s>: no such recipient here", r->addr);
        f->notify = r->notify;
        envelope_set(&f->orcpt, r->orcpt);
        envelope_rcpt_result(f, ENV_RCPT_FAILED, out.created, text);
    }
    dkimkeys_sign(&j->snap->dkim, out.sender, &msg, "pickup"); /* local mail: DKIM */
    if (qstore_commit(e->c.store, &out, msg.p, msg.len, why, sizeof(why)) < 0) {
        log_error("pickup id=%s: cannot queue it: %s; it stays in the pickup folder", in->id, why);
    } else {
        log_info("queued id=%s from=<%s> rcpts=%zu size=%zu pickup=%s", out.id, out.sender,
                 out.nrcpt, msg.len, in->id);
        if (qstore_remove(e->c.pickup, in->id, why, sizeof(why)) < 0)
            log_error("pickup id=%s: queued as %s but not removed: %s", in->id, out.id, why);
        if (j->n == j->cap) {
            j->cap = j->cap ? 2 * j->cap : 16;
            j->items = realloc(j->items, j->cap * sizeof(*j->items));
            if (!j->items)
                fatal("out of memory");
        }
        snprintf(j->items[j->n].id, sizeof(j->items[j->n].id), "%s", out.id);
        route_dest(&out, j->items[j->n].dest, sizeof(j->items[j->n].dest));
        j->n++;
    }
    envelope_free(&out);
    buf_free(&msg);
}

static void pickup_run(void *arg)
{
    struct pickup_job *j = arg;
    char why[256];
    if (qstore_take(j->e->c.pickup, pickup_item, j, why, sizeof(why)) < 0)
        log_error("pickup: %s", why);
}

static void pickup_done(void *arg)
{
    struct pickup_job *j = arg;
    struct engine *e = j->e;
    int64_t now = engine_now(e);
    e->busy--;
    e->pickup_running = false;
    for (size_t i = 0; i < j->n; i++)
        if (schedule_add(e->sched, j->items[i].id, j->items[i].dest, now) < 0)
            log_error("id=%s: scheduled twice", j->items[i].id);
    e->n.picked_up += j->n;
    snapshot_put(j->snap);
    free(j->items);
    free(j);
    if (e->pickup_again) {
        e->pickup_again = false;
        engine_pickup(e);
    }
    engine_kick(e);
}

void engine_pickup(struct engine *e)
{
    if (!e->c.pickup || e->stopping)
        return;
    if (e->pickup_running) {
        e->pickup_again = true;
        return;
    }
    struct pickup_job *j = calloc(1, sizeof(*j));
    if (!j)
        fatal("out of memory");
    j->e = e;
    j->snap = snapshot_ref(e->snap);
    e->pickup_running = true;
    e->busy++;
    e->c.submit(e->c.submit_ctx, pickup_run, pickup_done, j);
}

void engine_stop(struct engine *e)
{
    e->stopping = true;
    engine_rearm(e);
}

void engine_stats(const struct engine *e, struct engine_stats *st)
{
    struct schedule_stats ss;
    schedule_stats(e->sched, &ss);
    *st = e->n;
    st->queued = ss.total;
    st->waiting = ss.waiting;
    st->due = ss.due;
    st->inflight = ss.inflight;
    st->held = ss.held;
}

size_t engine_busy(const struct engine *e)
{
    return e->busy;
}

const struct schedule *engine_schedule(const struct engine *e)
{
    return e->sched;
}

void engine_free(struct engine *e)
{
    if (!e)
        return;
    schedule_free(e->sched);
    snapshot_put(e->snap);
    free(e);
}
