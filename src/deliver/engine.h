/*
 * engine.h - the delivery engine: which queued item is attempted when, on
 * which thread, and what happens to the schedule afterwards.
 *
 * The engine joins the pure scheduler (queue/schedule.h: due times,
 * per-destination limits, item states) to the attempts (deliver/attempt.h)
 * and to the queue on disk.  It knows no event loop, no thread and no wall
 * clock: its owner passes in
 *   - an executor: submit(run, done, arg) runs run(arg) somewhere (a worker
 *     thread in `tern serve`, inline in tests) and later done(arg) on the
 *     owner's thread;
 *   - a clock (Unix milliseconds);
 *   - arm(at_ms): "call engine_tick() at this time" (INT64_MAX: nothing is
 *     waiting on time), called whenever the next wake-up changes.
 * Work is driven by events only: a new item (engine_add), an attempt done,
 * the timer (engine_tick), SIGUSR1 (engine_retry_all), a pickup.  Each costs
 * O(log n) in the number of queued items; nothing polls.
 *
 * Every attempt holds a reference to the configuration snapshot in force
 * when it began; engine_set_snapshot() swaps the engine's own (and its
 * limits) on reload.  All calls are made from the owner's one thread.
 */
#ifndef TERN_DELIVER_ENGINE_H
#define TERN_DELIVER_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "deliver/courier.h"

struct engine;
struct envelope;
struct qstore;
struct qstore_stats;
struct snapshot;

typedef void (*engine_fn)(void *arg);

struct engine_conf {
    struct qstore *store;  /* the queue */
    struct qstore *pickup; /* items left by `tern sendmail`, NULL if none */
    void (*submit)(void *ctx, engine_fn run, engine_fn done, void *arg);
    void *submit_ctx;
    int64_t (*now_ms)(void *ctx);
    void *clock_ctx;
    void (*arm)(void *ctx, int64_t at_ms);
    void *arm_ctx;
    const struct courier_ops *const *couriers; /* [COURIER_KINDS]; NULL: courier_table */
    uint64_t seed;                             /* jitter */
    const struct sockaddr_storage *self;       /* our listening endpoints (loop check) */
    size_t nself;
};

/* A new engine holding its own reference to snap. */
struct engine *engine_new(const struct engine_conf *ec, struct snapshot *snap);

/* Reload: the engine takes a reference to snap and drops the old one. */
void engine_set_snapshot(struct engine *e, struct snapshot *snap);

/* Start-up: recover the queue (queue/store.h) and schedule every item. */
int engine_recover(struct engine *e, struct qstore_stats *st, char *why, size_t whylen);

/* A new item was committed (env is not kept): schedule it, due now. */
void engine_add(struct engine *e, const struct envelope *env);

/* The timer armed through arm() went off. */
void engine_tick(struct engine *e);

/* Every queued item is due now (SIGUSR1, `tern queue retry`). */
void engine_retry_all(struct engine *e);

/* Take in what `tern sendmail` left in the pickup folder (on a worker). */
void engine_pickup(struct engine *e);

/* Start nothing new from now on (attempts running finish). */
void engine_stop(struct engine *e);

struct engine_stats {
    size_t queued, waiting, due, inflight, held;
    uint64_t attempts, delivered, deferred, failed, dsns, picked_up;
};
void engine_stats(const struct engine *e, struct engine_stats *st);

/* Attempts and pickups in flight. */
size_t engine_busy(const struct engine *e);

/* The schedule, read-only, for the metrics (on the engine's thread only). */
const struct schedule *engine_schedule(const struct engine *e);

void engine_free(struct engine *e);

#endif
