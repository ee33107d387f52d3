/*
 * attempt.h - one delivery attempt of one queued item, and what follows
 * from it: the retry time, the give-up, the delay warning, the DSNs.
 *
 * attempt_run() runs on a delivery worker thread.  It reads the item's
 * envelope and message from the store, hands every pending recipient to
 * the courier of its typed target (one call per local recipient, one per
 * destination domain for smtp), records each struct rcpt_result in the
 * envelope, and then, with the clock read AFTER the couriers returned:
 *   - recipients still pending past give_up fail with 4.4.7;
 *   - with recipients pending, the next attempt is due the retry table's
 *     delay (+-10 % jitter) after the attempt ENDED; past delay_warning the
 *     sender gets one "delayed" DSN; the envelope is rewritten (fsynced);
 *   - with none pending, one "failed" DSN lists the failed recipients and
 *     the item is removed;
 *   - recipients just delivered that asked NOTIFY=SUCCESS get a "delivered"
 *     or "relayed" DSN (not when the next hop took the DSN request itself).
 * DSNs are committed to the same store from the null sender, routed with
 * the attempt's snapshot.  A crash at any point repeats at most this
 * attempt: the envelope is rewritten before the item is released, and the
 * item is removed only after its DSN is queued.  Times: the clock is passed
 * in (milliseconds), so that tests drive it.  The attempt owns nothing
 * after it returns but its output fields.
 */
#ifndef TERN_DELIVER_ATTEMPT_H
#define TERN_DELIVER_ATTEMPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/address.h"
#include "deliver/courier.h"
#include "queue/envelope.h"

struct qstore;
struct snapshot;

#define ATTEMPT_JITTER 0.1 /* the retry delay is scaled by a factor in [0.9, 1.1] */
#define ATTEMPT_DSN_MAX 3  /* success, delayed, failed */

/* What every attempt of an engine shares (read-only while attempts run). */
struct attempt_env {
    struct qstore *store;
    const struct courier_ops *const *couriers; /* [COURIER_KINDS] */
    int64_t (*now_ms)(void *ctx);              /* the clock, Unix milliseconds */
    void *clock_ctx;
    const struct sockaddr_storage *self; /* our listening endpoints (loop check) */
    size_t nself;
};

/* A queued item the attempt created (a DSN), for the schedule. */
struct attempt_item {
    char id[ENV_ID_MAX + 1];
    char dest[ADDR_DOMAIN_MAX + 1];
};

struct attempt {
    /* in */
    const struct attempt_env *ae;
    struct snapshot *snap; /* the configuration in force when the attempt began */
    char id[ENV_ID_MAX + 1];
    double u01; /* a random number in [0, 1): the jitter */
    /* out */
    bool removed;                   /* the item is gone (done, deleted, quarantined) */
    int64_t next_ms;                /* otherwise: when to try again */
    char dest[ADDR_DOMAIN_MAX + 1]; /* otherwise: its destination from now on */
    struct attempt_item dsn[ATTEMPT_DSN_MAX];
    size_t ndsn;
    size_t delivered, deferred, failed; /* recipients, by this attempt's results */
};

void attempt_run(struct attempt *a);

/*
 * Queue a DSN of kind about env (whose message is msg[0..len)), from the
 * null sender to env's sender, routed with snap.  Returns 1 with the new
 * item in *out, 0 when no DSN is due, -1 when it could not be queued
 * (logged).  pick: see struct dsn_info.
 */
int attempt_queue_dsn(const struct attempt_env *ae, const struct snapshot *snap,
                      const struct envelope *env, int kind, const bool *pick, const char *msg,
                      size_t len, int64_t now_s, struct attempt_item *out);

#endif
