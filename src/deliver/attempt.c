/*
 * attempt.c - one delivery attempt (see attempt.h).
 *
 * Invariants: the envelope read at the start is the attempt's own copy;
 * every recipient's result is recorded in it before anything is decided;
 * the envelope on disk is rewritten (or the item removed) only after any
 * DSN the attempt owes has been committed, so that a crash costs a
 * duplicate notice, never a lost one.  Remote recipients are grouped by
 * domain among those pending when the attempt began (one already sent
 * must not hide its domain's others), and the envelope is saved after a
 * domain only when another domain follows.
 */
#include "deliver/attempt.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/snapshot.h"
#include "core/log.h"
#include "core/metrics.h"
#include "deliver/remote.h"
#include "deliver/route.h"
#include "deliver/sts.h"
#include "queue/dsn.h"
#include "queue/schedule.h"
#include "queue/store.h"

#define ATTEMPT_IO_RETRY_MS 60000 /* the item could not be read: try again in a minute */

static int64_t attempt_now(const struct attempt_env *ae)
{
    return ae->now_ms(ae->clock_ctx);
}

/* The text recorded for a result: a server's reply as it came, else "STATUS text". */
static const char *attempt_text(const struct rcpt_result *r, char *buf, size_t size)
{
    if (r->cls == RESULT_OK)
        return "";
    if (r->code)
        return r->text;
    snprintf(buf, size, "%s %s", r->status, r->text);
    return buf;
}

static void attempt_record(struct attempt *a, struct envelope *env, size_t i,
                           const struct rcpt_result *res, const char *via, const char *info,
                           int64_t now_s, bool *pick)
{
    struct env_rcpt *r = &env->rcpts[i];
    char buf[RESULT_STATUS_MAX + RESULT_TEXT_MAX + 2];
    const char *text = attempt_text(res, buf, sizeof(buf));
    enum env_rcpt_status st = res->cls == RESULT_OK     ? ENV_RCPT_SENT
                              : res->cls == RESULT_PERM ? ENV_RCPT_FAILED
                                                        : ENV_RCPT_PENDING;
    envelope_rcpt_result(r, st, now_s, text);
    metrics_inc(M_DELIVERY_ATTEMPTS, via, metrics_result_class(res->cls));
    if (st == ENV_RCPT_SENT)
        metrics_observe(M_DELIVERY_LATENCY,
                        (double)(now_s > env->created ? now_s - env->created : 0), via, NULL);
    if (st == ENV_RCPT_SENT) {
        a->delivered++;
        pick[i] = !res->dsn_passed; /* the next hop took NOTIFY: its report, not ours */
    } else if (st == ENV_RCPT_FAILED) {
        a->failed++;
    } else {
        a->deferred++;
    }
    log_info("id=%s to=<%s> via=%s%s%s %s%s", env->id, r->addr, via, info[0] ? " " : "", info,
             st == ENV_RCPT_SENT     ? "delivered"
             : st == ENV_RCPT_FAILED ? "failed: "
                                     : "deferred: ",
             text);
}

/* Deliver the recipients of todo[] whose domain is domain (lower case) in one call. */
static void attempt_smtp(struct attempt *a, struct envelope *env, const char *domain,
                         const struct buf *msg, const struct remote_conf *rc, bool *todo,
                         bool *pick, int64_t now_s)
{
    size_t n = 0;
    const struct env_rcpt **rcpts = calloc(env->nrcpt, sizeof(*rcpts));
    size_t *idx = calloc(env->nrcpt, sizeof(*idx));
    if (!rcpts || !idx)
        fatal("out of memory");
    for (size_t i = 0; i < env->nrcpt; i++) {
        const char *at = todo[i] ? strrchr(env->rcpts[i].addr, '@') : NULL;
        if (!at || strcasecmp(at + 1, domain) != 0)
            continue;
        todo[i] = false;
        idx[n] = i;
        rcpts[n++] = &env->rcpts[i];
    }
    struct remote_dest d;
    route_next_hop(a->snap, domain, &d);
    char info[400] = "";
    struct courier_job j = {.env = env,
                            .rcpts = rcpts,
                            .n = n,
                            .arg = "",
                            .msg = msg->p,
                            .len = msg->len,
                            .hostname = a->snap->conf.hostname,
                            .remote = rc,
                            .dest = &d,
                            .info = info,
                            .infosize = sizeof(info)};
    struct rcpt_result *res = calloc(n, sizeof(*res));
    if (!res)
        fatal("out of memory");
    const struct courier_ops *ops = a->ae->couriers[COURIER_SMTP];
    uint64_t t0 = metrics_now_us();
    ops->deliver(&j, res);
    metrics_observe(M_DELIVERY_DURATION, metrics_since(t0), ops->name, NULL);
    for (size_t k = 0; k < n; k++)
        attempt_record(a, env, idx[k], &res[k], ops->name, info, now_s, pick);
    free(res);
    free(rcpts);
    free(idx);
}

/* Deliver the LMTP recipients of todo[] in one call per endpoint (their target's,
 * else the configured one): one transaction, one reply per recipient. */
static void attempt_lmtp(struct attempt *a, struct envelope *env, const struct buf *msg,
                         const struct remote_conf *rc, bool *todo, bool *pick, int64_t now_s)
{
    const struct conf *c = &a->snap->conf;
    const struct courier_ops *ops = a->ae->couriers[COURIER_LMTP];
    const struct env_rcpt **rcpts = calloc(env->nrcpt ? env->nrcpt : 1, sizeof(*rcpts));
    size_t *idx = calloc(env->nrcpt ? env->nrcpt : 1, sizeof(*idx));
    struct rcpt_result *res = calloc(env->nrcpt ? env->nrcpt : 1, sizeof(*res));
    if (!rcpts || !idx || !res)
        fatal("out of memory");
    for (size_t i = 0; i < env->nrcpt; i++) {
        enum courier_kind kind;
        const char *arg, *ep, *other;
        size_t n = 0;
        if (!todo[i] || route_parse_target(env->rcpts[i].target, &kind, &arg) < 0)
            continue;
        ep = arg[0] ? arg : c->lmtp;
        for (size_t k = i; k < env->nrcpt; k++) {
            if (!todo[k] || route_parse_target(env->rcpts[k].target, &kind, &other) < 0 ||
                strcmp(other[0] ? other : c->lmtp, ep) != 0)
                continue;
            todo[k] = false;
            idx[n] = k;
            rcpts[n++] = &env->rcpts[k];
        }
        char info[400] = "";
        struct courier_job j = {.env = env,
                                .rcpts = rcpts,
                                .n = n,
                                .arg = ep,
                                .msg = msg->p,
                                .len = msg->len,
                                .hostname = c->hostname,
                                .remote = rc,
                                .info = info,
                                .infosize = sizeof(info)};
        for (size_t k = 0; k < n; k++)
            result_clear(&res[k]);
        uint64_t t0 = metrics_now_us();
        ops->deliver(&j, res);
        metrics_observe(M_DELIVERY_DURATION, metrics_since(t0), ops->name, NULL);
        for (size_t k = 0; k < n; k++)
            attempt_record(a, env, idx[k], &res[k], ops->name, info, now_s, pick);
    }
    free(res);
    free(rcpts);
    free(idx);
}

/* Deliver one local recipient (maildir, mda, pipe). */
static void attempt_local(struct attempt *a, struct envelope *env, size_t i, enum courier_kind kind,
                          const char *arg, const struct buf *msg, int64_t now_s, bool *pick)
{
    const struct conf *c = &a->snap->conf;
    const struct env_rcpt *r = &env->rcpts[i];
    struct courier_job j = {.env = env,
                            .rcpts = &r,
                            .n = 1,
                            .arg = arg,
                            .msg = msg->p,
                            .len = msg->len,
                            .hostname = c->hostname,
                            .mda_command = c->mda_command,
                            .mda_timeout_ms = (unsigned)c->mda_timeout_ms};
    struct rcpt_result res;
    result_clear(&res);
    const struct courier_ops *ops = a->ae->couriers[kind];
    uint64_t t0 = metrics_now_us();
    ops->deliver(&j, &res);
    metrics_observe(M_DELIVERY_DURATION, metrics_since(t0), ops->name, NULL);
    attempt_record(a, env, i, &res, ops->name, "", now_s, pick);
}

int attempt_queue_dsn(const struct attempt_env *ae, const struct snapshot *snap,
                      const struct envelope *env, int kind, const bool *pick, const char *msg,
                      size_t len, int64_t now_s, struct attempt_item *out)
{
    const struct conf *c = &snap->conf;
    struct dsn_info info = {.hostname = c->hostname, .kind = kind, .now = now_s, .pick = pick};
    static const char *const names[] = {
        [DSN_FAILED] = "failure", [DSN_DELAYED] = "delay", [DSN_SUCCESS] = "success"};
    if (kind == DSN_DELAYED) { /* the configured warning goes to every sender */
        info.default_notify = NOTIFY_FAILURE | NOTIFY_DELAY;
        info.retry_until = env->created + (int64_t)(c->give_up_ms / 1000);
    }
    if (!dsn_wanted(&info, env))
        return 0;
    struct buf text = {0};
    dsn_build(&info, env, msg, len, &text);
    dkimkeys_sign(&snap->dkim, "", &text, "dsn"); /* From: MAILER-DAEMON@hostname */
    struct envelope d;
    char why[256];
    int rc = 1;
    envelope_init(&d);
    envelope_set(&d.sender, "");
    d.created = d.next_attempt = now_s;
    envelope_set(&d.helo, c->hostname);
    envelope_set(&d.peer, "local");
    envelope_set(&d.auth_user, "");
    if (route_expand(c, &snap->policy, &d, env->sender, env->sender, 0, "") == 0 ||
        qstore_commit(ae->store, &d, text.p, text.len, why, sizeof(why)) < 0) {
        log_error("id=%s: cannot queue the %s notice to <%s>", env->id, names[kind], env->sender);
        rc = -1;
    } else {
        snprintf(out->id, sizeof(out->id), "%s", d.id);
        route_dest(&d, out->dest, sizeof(out->dest));
        log_info("id=%s: %s notice to <%s> queued as %s", env->id, names[kind], env->sender, d.id);
    }
    envelope_free(&d);
    buf_free(&text);
    return rc;
}

static void attempt_dsn(struct attempt *a, const struct envelope *env, int kind, const bool *pick,
                        const struct buf *msg, int64_t now_s)
{
    if (a->ndsn < ATTEMPT_DSN_MAX && attempt_queue_dsn(a->ae, a->snap, env, kind, pick, msg->p,
                                                       msg->len, now_s, &a->dsn[a->ndsn]) == 1)
        a->ndsn++;
}

/* Read the item (env is initialised whatever happens); false, with a->removed or
 * a->next_ms set, when there is nothing to attempt. */
static bool attempt_load(struct attempt *a, struct envelope *env, struct buf *msg, int64_t start)
{
    const struct attempt_env *ae = a->ae;
    char why[256];
    int rc = qstore_read_item(ae->store, a->id, env, msg, why, sizeof(why));
    if (rc == 0)
        return true;
    if (rc < 0 && errno == ENOENT) { /* `tern queue delete` */
        log_info("id=%s: removed from the queue by an administrator", a->id);
        qstore_count_adjust(ae->store, -1);
        a->removed = true;
    } else if (rc > 0) { /* an envelope or message damaged after its commit: keep it for a person */
        qstore_quarantine(ae->store, a->id, why); /* moved, then said */
        log_error("id=%s: %s; quarantined, not delivered", a->id, why);
        a->removed = true;
    } else {
        log_error("id=%s: %s; trying again later", a->id, why);
        a->next_ms = start + ATTEMPT_IO_RETRY_MS;
    }
    return false;
}

void attempt_run(struct attempt *a)
{
    const struct attempt_env *ae = a->ae;
    const struct conf *c = &a->snap->conf;
    struct envelope env;
    struct buf msg = {0};
    char why[256];
    int64_t start = attempt_now(ae), now_s = start / 1000;

    a->removed = false;
    a->ndsn = 0;
    a->delivered = a->deferred = a->failed = 0;
    if (!attempt_load(a, &env, &msg, start)) {
        envelope_free(&env);
        buf_free(&msg);
        return;
    }
    size_t nr = env.nrcpt ? env.nrcpt : 1;
    bool *todo = calloc(nr, sizeof(*todo)), *pick = calloc(nr, sizeof(*pick));
    bool *lmtp = calloc(nr, sizeof(*lmtp)), any_lmtp = false;
    if (!todo || !pick || !lmtp)
        fatal("out of memory");
    for (size_t i = 0; i < env.nrcpt; i++) {
        struct env_rcpt *r = &env.rcpts[i];
        enum courier_kind kind;
        const char *arg;
        if (r->status != ENV_RCPT_PENDING)
            continue;
        if (route_parse_target(r->target, &kind, &arg) < 0 ||
            (kind == COURIER_SMTP && !strrchr(r->addr, '@'))) {
            struct rcpt_result res;
            result_fail(&res, RESULT_TEMP, "4.3.5", "unknown delivery target");
            attempt_record(a, &env, i, &res, "none", "", now_s, pick);
        } else if (kind == COURIER_SMTP) {
            todo[i] = true;
        } else if (kind == COURIER_LMTP) {
            lmtp[i] = any_lmtp = true;
        } else {
            attempt_local(a, &env, i, kind, arg, &msg, now_s, pick);
        }
    }
    struct remote_conf rc = {.helo = c->hostname,
                             .mx_port = c->remote_port,
                             .tls_ca = c->tls_ca[0] ? c->tls_ca : NULL,
                             .dns_servers = c->dns_servers[0] ? c->dns_servers : NULL,
                             .max_hosts = c->max_hosts,
                             .timeout_ms = (unsigned)c->remote_timeout_ms,
                             .self = ae->self,
                             .nself = ae->nself};
    char sts_dir[CONF_STR_MAX + 16]; /* MTA-STS policies: DATA_DIR/mta-sts/DOMAIN */
    snprintf(sts_dir, sizeof(sts_dir), "%s/mta-sts", c->data_dir);
    struct sts_conf sts = {.enabled = c->mta_sts,
                           .ca = c->mta_sts_ca[0] ? c->mta_sts_ca : NULL,
                           .port = c->mta_sts_port == 443 ? 0 : c->mta_sts_port,
                           .cache_dir = sts_dir,
                           .dns_servers = rc.dns_servers};
    rc.sts = &sts;
    if (any_lmtp)
        attempt_lmtp(a, &env, &msg, &rc, lmtp, pick, now_s);
    free(lmtp);
    for (size_t i = 0; i < env.nrcpt; i++) {
        if (!todo[i])
            continue;
        char domain[ADDR_DOMAIN_MAX + 1];
        size_t k = 0;
        for (const char *d = strrchr(env.rcpts[i].addr, '@') + 1; *d && k + 1 < sizeof(domain); d++)
            domain[k++] = (char)tolower((unsigned char)*d);
        domain[k] = '\0';
        attempt_smtp(a, &env, domain, &msg, &rc, todo, pick, now_s);
        bool more = false;
        for (k = i + 1; k < env.nrcpt && !more; k++)
            more = todo[k];
        if (more && qstore_update(ae->store, &env, why, sizeof(why)) < 0 && errno != ENOENT)
            log_error("id=%s: cannot record the attempt: %s", env.id, why);
    }
    free(todo);

    /* what follows is measured from the END of the attempt */
    int64_t end = attempt_now(ae), end_s = end / 1000;
    attempt_dsn(a, &env, DSN_SUCCESS, pick, &msg, end_s);
    free(pick);
    size_t pending = envelope_count(&env, ENV_RCPT_PENDING);
    if (pending && end_s >= env.created + (int64_t)(c->give_up_ms / 1000)) {
        for (size_t i = 0; i < env.nrcpt; i++) {
            struct env_rcpt *r = &env.rcpts[i];
            if (r->status != ENV_RCPT_PENDING)
                continue;
            char text[ENV_VALUE_MAX];
            snprintf(text, sizeof(text), "4.4.7 delivery time expired; last error: %.3000s",
                     r->error);
            r->status = ENV_RCPT_FAILED;
            envelope_set(&r->error, text);
            a->failed++;
        }
        pending = 0;
    }
    if (pending) {
        unsigned attempts = 0;
        for (size_t i = 0; i < env.nrcpt; i++)
            if (env.rcpts[i].status == ENV_RCPT_PENDING && env.rcpts[i].attempts > attempts)
                attempts = env.rcpts[i].attempts;
        a->next_ms = end + (int64_t)schedule_retry_delay(c->retry_ms, c->n_retry, attempts,
                                                         ATTEMPT_JITTER, a->u01);
        env.next_attempt = (a->next_ms + 999) / 1000;
        if (c->delay_warning_ms && !env.delay_warned &&
            end - env.created * 1000 >= (int64_t)c->delay_warning_ms) {
            attempt_dsn(a, &env, DSN_DELAYED, NULL, &msg, end_s);
            env.delay_warned = true;
        }
        if (qstore_update(ae->store, &env, why, sizeof(why)) < 0) {
            if (errno == ENOENT) { /* deleted while we were at it */
                qstore_count_adjust(ae->store, -1);
                a->removed = true;
            } else {
                log_error("id=%s: cannot record the attempt: %s", env.id, why);
            }
        }
        route_dest(&env, a->dest, sizeof(a->dest));
    } else {
        if (envelope_count(&env, ENV_RCPT_FAILED))
            attempt_dsn(a, &env, DSN_FAILED, NULL, &msg, end_s);
        if (qstore_remove(ae->store, env.id, why, sizeof(why)) < 0)
            log_error("id=%s: cannot remove the finished item: %s", env.id, why);
        a->removed = true;
    }
    envelope_free(&env);
    buf_free(&msg);
}
