/*
 * sched.c - the schedule of queued items: who is tried when, and what
 * happens after each attempt.
 *
 * The loop thread owns the list of items; an item being delivered is
 * "busy" and only its worker touches its envelope until the worker's done()
 * runs back on the loop.  An attempt (on a delivery worker) runs the
 * courier of every pending recipient (Maildir, MDA, pipe; remote SMTP
 * arrives with the next part), records each result in the envelope, and
 * then either removes the finished item (after queueing one DSN for its
 * failed recipients, RFC 3464) or rewrites its envelope with the next
 * attempt time from the retry table (+-10 % jitter).  Past give_up the
 * remaining recipients fail with 4.4.7; past delay_warning the sender gets
 * one "delayed" DSN.  The envelope is rewritten (fsynced) before the item is
 * released, so a crash repeats at most the last attempt, never loses one.
 */
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "deliver/maildir.h"
#include "deliver/mda.h"
#include "deliver/pipe.h"
#include "deliver/remote.h"
#include "queue/dsn.h"
#include "server/serve.h"
#include "server/workers.h"

#define SCHED_TICK_MS 500

struct sched_item {
    struct envelope *env;
    bool busy;
    bool retry; /* a retry-all came while busy: try again right after this attempt */
    bool found; /* taken in by a scan of the queue folder (sched_found) */
    char dest[ADDR_DOMAIN_MAX + 1]; /* while busy: the remote domain it works on, "" if none */
    struct sched_item *prev, *next;
};

struct sched {
    struct serve *sv;
    struct sched_item *head;
    size_t n, busy, max_busy;
    size_t n_found; /* items with found set */
    struct event *timer;
    uint64_t rng;
};

struct deliver_job {
    struct sched *s;
    struct sched_item *item;
    struct policy_ref *pr;
    struct envelope *dsn; /* a DSN queued by this attempt, for the schedule */
    bool removed;
    double jitter;
    /* the [queue] timing in force when the attempt began (SIGHUP may change sv->conf) */
    uint64_t retry_ms[CONF_RETRY_MAX];
    size_t n_retry;
    uint64_t give_up_ms, delay_warning_ms;
};

static void sched_kick(struct sched *s);

/* ---- one attempt, on a delivery worker --------------------------------------- */

/* Create the missing folders above a Maildir (0700 each); the Maildir itself is
 * made by maildir_deliver(), which also refuses symlinks there. */
static void deliver_mkparents(const char *maildir)
{
    char p[CONF_STR_MAX];
    snprintf(p, sizeof(p), "%s", maildir);
    char *slash = strrchr(p, '/');
    if (!slash || slash == p)
        return;
    *slash = '\0';
    for (char *q = p + 1; *q; q++) {
        if (*q != '/')
            continue;
        *q = '\0';
        if (mkdir(p, 0700) < 0 && errno != EEXIST)
            return;
        *q = '/';
    }
    if (mkdir(p, 0700) < 0 && errno != EEXIST)
        log_debug("mkdir %s: %s", p, strerror(errno));
}

static enum courier_result deliver_rcpt(struct serve *sv, const struct envelope *env,
                                        const struct env_rcpt *r, const struct buf *msg,
                                        struct courier_error *err)
{
    char prefix[2 * ADDR_PATH_MAX + 64], user[ADDR_LOCAL_MAX + 1] = "", domain[256] = "";
    const char *at = strrchr(r->addr, '@');
    if (at && (size_t)(at - r->addr) < sizeof(user)) {
        memcpy(user, r->addr, (size_t)(at - r->addr));
        user[at - r->addr] = '\0';
        snprintf(domain, sizeof(domain), "%s", at + 1);
    }
    struct courier_vars vars = {.from = env->sender,
                                .to = r->addr,
                                .to_user = user,
                                .to_domain = domain,
                                .orig_to = r->orig};
    snprintf(prefix, sizeof(prefix), "Return-Path: <%s>\r\nDelivered-To: %s\r\n", env->sender,
             r->addr);
    courier_error_clear(err);
    if (strncmp(r->target, "maildir:", 8) == 0) {
        deliver_mkparents(r->target + 8);
        return maildir_deliver(r->target + 8, prefix, msg->p, msg->len, sv->conf.hostname, err);
    }
    if (strcmp(r->target, "mda") == 0)
        return mda_deliver(sv->conf.mda_command, &vars, prefix, msg->p, msg->len,
                           (unsigned)(sv->conf.mda_timeout_ms / 1000), err);
    if (strncmp(r->target, "pipe:", 5) == 0)
        return pipe_deliver(r->target + 5, &vars, prefix, msg->p, msg->len, err);
    return courier_fail(err, COURIER_TEMP, "4.3.5", "unknown delivery target");
}

/* Deliver the pending "smtp" recipients of one domain; records each result. */
static void deliver_remote(struct serve *sv, struct envelope *env, const char *domain,
                           const struct buf *msg, int64_t now, bool save)
{
    const char *rcpts[ENV_RCPT_MAX < 1000 ? ENV_RCPT_MAX : 1000];
    size_t idx[sizeof(rcpts) / sizeof(rcpts[0])], n = 0;
    for (size_t i = 0; i < env->nrcpt && n < sizeof(rcpts) / sizeof(rcpts[0]); i++) {
        struct env_rcpt *r = &env->rcpts[i];
        const char *at = strrchr(r->addr, '@');
        if (r->status != ENV_RCPT_PENDING || strcmp(r->target, "smtp") != 0 || !at ||
            strcasecmp(at + 1, domain) != 0)
            continue;
        idx[n] = i;
        rcpts[n++] = r->addr;
    }
    if (n == 0)
        return;
    const struct conf *c = &sv->conf;
    const struct conf_route *route = conf_route_for(c, domain);
    struct remote_dest d = {.domain = domain, .tls = (enum remote_tls)c->remote_tls};
    if (c->smarthost_host[0]) {
        d.host = c->smarthost_host;
        d.port = c->smarthost_port;
        d.tls = (enum remote_tls)c->smarthost_tls;
        d.auth_user = c->smarthost_user[0] ? c->smarthost_user : NULL;
        d.auth_pass = sv->smarthost_pass;
    }
    if (route && route->host[0]) {
        d.host = route->host;
        d.port = route->port;
        d.auth_user = d.auth_pass = NULL;
    }
    if (route && route->tls >= 0)
        d.tls = (enum remote_tls)route->tls;
    struct remote_conf rc = {.helo = c->hostname,
                             .mx_port = c->remote_port,
                             .tls_ca = c->tls_ca[0] ? c->tls_ca : NULL,
                             .dns_servers = c->dns_servers[0] ? c->dns_servers : NULL,
                             .max_hosts = c->max_hosts,
                             .timeout_ms = (unsigned)c->remote_timeout_ms,
                             .self = sv->self,
                             .nself = sv->nself};
    struct remote_result res[sizeof(rcpts) / sizeof(rcpts[0])];
    char info[400];
    remote_deliver(&rc, &d, env->sender, rcpts, n, msg->p, msg->len, res, info, sizeof(info));
    for (size_t k = 0; k < n; k++) {
        struct env_rcpt *r = &env->rcpts[idx[k]];
        envelope_rcpt_result(r,
                             res[k].res == COURIER_OK     ? ENV_RCPT_SENT
                             : res[k].res == COURIER_PERM ? ENV_RCPT_FAILED
                                                          : ENV_RCPT_PENDING,
                             now, res[k].res == COURIER_OK ? "" : res[k].text);
        log_info("id=%s to=<%s> via=smtp%s%s %s%s", env->id, r->addr, info[0] ? " " : "", info,
                 res[k].res == COURIER_OK     ? "delivered"
                 : res[k].res == COURIER_PERM ? "failed: "
                                              : "deferred: ",
                 res[k].res == COURIER_OK ? "" : res[k].text);
    }
    if (!save)
        return;    /* the end of the attempt records (or removes) the item anyway */
    char why[256]; /* a crash from here on retries only the others */
    if (qstore_update(sv->store, env, why, sizeof(why)) < 0 && errno != ENOENT)
        log_error("id=%s: cannot record the attempt: %s", env->id, why);
}

/* Queue a DSN of kind about env (from the null sender, to env's sender). */
static struct envelope *deliver_dsn(struct sched *s, struct policy_ref *pr,
                                    const struct envelope *env, enum dsn_kind kind,
                                    const struct buf *msg, int64_t now, uint64_t give_up_ms)
{
    struct serve *sv = s->sv;
    struct dsn_info info = {.hostname = sv->conf.hostname, .kind = kind, .now = now};
    if (kind == DSN_DELAYED) /* the configured warning goes to every sender */
        info.default_notify = NOTIFY_FAILURE | NOTIFY_DELAY;
    if (kind == DSN_DELAYED)
        info.retry_until = env->created + (int64_t)(give_up_ms / 1000);
    if (!dsn_wanted(&info, env))
        return NULL;
    struct buf out = {0};
    dsn_build(&info, env, msg->p, msg->len, &out);
    struct envelope *d = calloc(1, sizeof(*d));
    if (!d)
        fatal("out of memory");
    envelope_init(d);
    envelope_set(&d->sender, "");
    d->created = d->next_attempt = now;
    envelope_set(&d->helo, sv->conf.hostname);
    envelope_set(&d->peer, "local");
    envelope_set(&d->auth_user, "");
    char why[256];
    if (receive_expand(sv, &pr->p, d, env->sender, env->sender, 0, "") == 0 ||
        qstore_commit(sv->store, d, out.p, out.len, why, sizeof(why)) < 0) {
        log_error("id=%s: cannot queue the %s notice to <%s>", env->id,
                  kind == DSN_FAILED ? "failure" : "delay", env->sender);
        envelope_free(d);
        free(d);
        d = NULL;
    } else {
        log_info("id=%s: %s notice to <%s> queued as %s", env->id,
                 kind == DSN_FAILED ? "failure" : "delay", env->sender, d->id);
    }
    buf_free(&out);
    return d;
}

static void deliver_run(void *arg)
{
    struct deliver_job *j = arg;
    struct serve *sv = j->s->sv;
    struct envelope *env = j->item->env;
    struct buf msg = {0};
    char why[256];
    int64_t now = time(NULL);

    if (qstore_read_msg(sv->store, env->id, &msg, why, sizeof(why)) < 0) {
        if (errno == ENOENT) { /* deleted by `tern queue delete` */
            log_info("id=%s: removed from the queue by an administrator", env->id);
            qstore_count_adjust(sv->store, -1);
            j->removed = true;
            return;
        }
        log_error("id=%s: %s; trying again later", env->id, why);
        env->next_attempt = now + 60;
        return;
    }
    for (size_t i = 0; i < env->nrcpt; i++) {
        struct env_rcpt *r = &env->rcpts[i];
        struct courier_error err;
        char text[800];
        if (r->status != ENV_RCPT_PENDING || strcmp(r->target, "smtp") == 0)
            continue;
        enum courier_result res = deliver_rcpt(sv, env, r, &msg, &err);
        snprintf(text, sizeof(text), "%s %s", err.status, err.text);
        envelope_rcpt_result(r,
                             res == COURIER_OK     ? ENV_RCPT_SENT
                             : res == COURIER_PERM ? ENV_RCPT_FAILED
                                                   : ENV_RCPT_PENDING,
                             now, res == COURIER_OK ? "" : text);
        log_info("id=%s to=<%s> via=%.*s %s%s%s", env->id, r->addr, (int)strcspn(r->target, ":"),
                 r->target,
                 res == COURIER_OK     ? "delivered"
                 : res == COURIER_PERM ? "failed: "
                                       : "deferred: ",
                 res == COURIER_OK ? "" : "", res == COURIER_OK ? "" : text);
    }
    /* remote recipients: one delivery per destination domain, for the recipients pending
     * when the attempt began (one already sent must not hide its domain's others) */
    bool *todo = calloc(env->nrcpt ? env->nrcpt : 1, sizeof(*todo));
    if (!todo)
        fatal("out of memory");
    for (size_t i = 0; i < env->nrcpt; i++)
        todo[i] = env->rcpts[i].status == ENV_RCPT_PENDING &&
                  strcmp(env->rcpts[i].target, "smtp") == 0 && strrchr(env->rcpts[i].addr, '@');
    for (size_t i = 0; i < env->nrcpt; i++) {
        struct env_rcpt *r = &env->rcpts[i];
        const char *at = strrchr(r->addr, '@');
        if (!todo[i] || r->status != ENV_RCPT_PENDING)
            continue;
        bool seen = false; /* domains before i were done with it */
        for (size_t k = 0; k < i && !seen; k++)
            seen = todo[k] && strcasecmp(strrchr(env->rcpts[k].addr, '@') + 1, at + 1) == 0;
        if (!seen) {
            char domain[ADDR_DOMAIN_MAX + 1];
            snprintf(domain, sizeof(domain), "%s", at + 1);
            /* save after this domain only if another domain of this attempt follows */
            bool more = false;
            for (size_t k = i + 1; k < env->nrcpt && !more; k++) {
                const char *at2 = strrchr(env->rcpts[k].addr, '@');
                more = env->rcpts[k].status == ENV_RCPT_PENDING &&
                       strcmp(env->rcpts[k].target, "smtp") == 0 && at2 &&
                       strcasecmp(at2 + 1, at + 1) != 0;
            }
            deliver_remote(sv, env, domain, &msg, now, more);
        }
    }
    free(todo);
    size_t pending = envelope_count(env, ENV_RCPT_PENDING);
    if (pending && now >= env->created + (int64_t)(j->give_up_ms / 1000)) {
        for (size_t i = 0; i < env->nrcpt; i++) {
            struct env_rcpt *r = &env->rcpts[i];
            if (r->status != ENV_RCPT_PENDING)
                continue;
            char text[ENV_VALUE_MAX];
            snprintf(text, sizeof(text), "4.4.7 delivery time expired; last error: %.3000s",
                     r->error);
            r->status = ENV_RCPT_FAILED;
            envelope_set(&r->error, text);
        }
        pending = 0;
    }
    if (pending) {
        unsigned attempts = 0;
        for (size_t i = 0; i < env->nrcpt; i++)
            if (env->rcpts[i].status == ENV_RCPT_PENDING && env->rcpts[i].attempts > attempts)
                attempts = env->rcpts[i].attempts;
        size_t k = attempts ? attempts - 1 : 0;
        if (k >= j->n_retry)
            k = j->n_retry - 1;
        int64_t delay = (int64_t)((double)j->retry_ms[k] * j->jitter / 1000.0);
        env->next_attempt = now + (delay > 0 ? delay : 1);
        if (j->delay_warning_ms && !env->delay_warned &&
            now - env->created >= (int64_t)(j->delay_warning_ms / 1000)) {
            j->dsn = deliver_dsn(j->s, j->pr, env, DSN_DELAYED, &msg, now, j->give_up_ms);
            env->delay_warned = true;
        }
        if (qstore_update(sv->store, env, why, sizeof(why)) < 0)
            log_error("id=%s: cannot record the attempt: %s", env->id, why);
    } else {
        if (envelope_count(env, ENV_RCPT_FAILED))
            j->dsn = deliver_dsn(j->s, j->pr, env, DSN_FAILED, &msg, now, j->give_up_ms);
        if (qstore_remove(sv->store, env->id, why, sizeof(why)) < 0)
            log_error("id=%s: cannot remove the finished item: %s", env->id, why);
        j->removed = true;
    }
    buf_free(&msg);
}

static void sched_unlink(struct sched *s, struct sched_item *it)
{
    if (it->prev)
        it->prev->next = it->next;
    else
        s->head = it->next;
    if (it->next)
        it->next->prev = it->prev;
    s->n--;
    if (it->found)
        s->n_found--;
}

static void deliver_done(void *arg)
{
    struct deliver_job *j = arg;
    struct sched *s = j->s;
    struct sched_item *it = j->item;
    serve_policy_put(j->pr);
    s->busy--;
    it->busy = false;
    if (j->removed) {
        log_info("id=%s: done", it->env->id);
        sched_unlink(s, it);
        envelope_free(it->env);
        free(it->env);
        free(it);
    } else if (it->retry) {
        it->retry = false;
        it->env->next_attempt = time(NULL);
    }
    if (j->dsn)
        sched_add(s, j->dsn);
    free(j);
    if (!s->sv->stopping)
        sched_kick(s);
}

/* ---- the schedule -------------------------------------------------------------- */

/* The remote domain an item is waiting for (its first pending remote recipient's),
 * or NULL when it has only local work: the per-destination limit counts these. */
static const char *sched_dest(const struct envelope *env)
{
    for (size_t i = 0; i < env->nrcpt; i++) {
        const struct env_rcpt *r = &env->rcpts[i];
        const char *at = strrchr(r->addr, '@');
        if (r->status == ENV_RCPT_PENDING && strcmp(r->target, "smtp") == 0 && at)
            return at + 1;
    }
    return NULL;
}

static bool sched_dest_full(const struct sched *s, const char *dest)
{
    size_t n = 0;
    if (!dest)
        return false;
    for (const struct sched_item *it = s->head; it; it = it->next) /* busy envelopes are the
                                                                      workers': use it->dest */
        if (it->busy && strcasecmp(it->dest, dest) == 0 && ++n >= s->sv->conf.per_destination)
            return true;
    return false;
}

static void sched_kick(struct sched *s)
{
    int64_t now = time(NULL);
    for (struct sched_item *it = s->head; it && s->busy < s->max_busy; it = it->next) {
        if (it->busy || it->env->next_attempt > now || sched_dest_full(s, sched_dest(it->env)))
            continue;
        struct deliver_job *j = calloc(1, sizeof(*j));
        if (!j)
            fatal("out of memory");
        j->s = s;
        j->item = it;
        j->pr = serve_policy_get(s->sv);
        j->jitter = 0.9 + 0.2 * rand_u01(&s->rng);
        memcpy(j->retry_ms, s->sv->conf.retry_ms, sizeof(j->retry_ms));
        j->n_retry = s->sv->conf.n_retry;
        j->give_up_ms = s->sv->conf.give_up_ms;
        j->delay_warning_ms = s->sv->conf.delay_warning_ms;
        const char *dest = sched_dest(it->env);
        snprintf(it->dest, sizeof(it->dest), "%s", dest ? dest : "");
        it->busy = true;
        s->busy++;
        workers_submit(s->sv->deliver_pool, deliver_run, deliver_done, j);
    }
}

static void sched_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct sched *s = arg;
    if (!s->sv->stopping)
        sched_kick(s);
}

struct sched *sched_new(struct serve *sv)
{
    struct sched *s = calloc(1, sizeof(*s));
    if (!s)
        fatal("out of memory");
    s->sv = sv;
    s->max_busy = sv->conf.concurrency ? sv->conf.concurrency : 16;
    s->rng = clock_mono_us();
    s->timer = event_new(sv->base, -1, EV_PERSIST, sched_tick, s);
    struct timeval tv = {0, SCHED_TICK_MS * 1000};
    if (!s->timer || event_add(s->timer, &tv) < 0)
        fatal("cannot arm the scheduler");
    return s;
}

void sched_add(struct sched *s, struct envelope *env)
{
    /* a scan (sched_retry_all) may have taken in a commit before its commit_done() adds it:
     * one item per id, or it is delivered twice */
    for (struct sched_item *o = s->n_found ? s->head : NULL; o; o = o->next) {
        if (o->found && strcmp(o->env->id, env->id) == 0) {
            envelope_free(env);
            free(env);
            return;
        }
    }
    struct sched_item *it = calloc(1, sizeof(*it));
    if (!it)
        fatal("out of memory");
    it->env = env;
    it->next = s->head;
    if (s->head)
        s->head->prev = it;
    s->head = it;
    s->n++;
    if (!s->sv->stopping)
        sched_kick(s);
}

static void sched_recovered(void *ctx, struct envelope *env)
{
    struct sched *s = ctx;
    struct envelope *e = malloc(sizeof(*e));
    if (!e)
        fatal("out of memory");
    *e = *env;
    envelope_init(env);
    sched_add(s, e);
}

void sched_recover(struct sched *s)
{
    struct qstore_stats st;
    char why[256];
    if (qstore_recover(s->sv->store, sched_recovered, s, &st, why, sizeof(why)) < 0)
        fatal("queue %s: %s", qstore_dir(s->sv->store), why);
    log_info("queue recovered: %zu items, %zu incomplete removed, %zu orphans removed, "
             "%zu quarantined",
             st.recovered, st.incomplete, st.orphans, st.quarantined);
}

static void sched_found(void *ctx, struct envelope *env)
{
    struct sched *s = ctx;
    for (struct sched_item *it = s->head; it; it = it->next)
        if (strcmp(it->env->id, env->id) == 0)
            return;
    log_info("id=%s: taken in from the queue folder", env->id);
    qstore_count_adjust(s->sv->store, 1);
    sched_recovered(s, env);
    s->head->found = true; /* sched_add() put it first (no other item has its id) */
    s->n_found++;
}

void sched_retry_all(struct sched *s)
{
    char why[256];
    /* items committed by `tern sendmail` are on disk only: take them in */
    if (qstore_list(s->sv->store, sched_found, s, why, sizeof(why)) < 0)
        log_error("queue scan: %s", why);
    /* every item is due now, also those beyond max_busy or busy at this moment (a one-shot
     * flag would be lost for them) */
    int64_t now = time(NULL);
    for (struct sched_item *it = s->head; it; it = it->next) {
        if (it->busy)
            it->retry = true; /* its envelope is the worker's until deliver_done() */
        else if (it->env->next_attempt > now)
            it->env->next_attempt = now;
    }
    sched_kick(s);
}

size_t sched_busy(const struct sched *s)
{
    return s->busy;
}

void sched_free(struct sched *s)
{
    if (!s)
        return;
    while (s->head) {
        struct sched_item *it = s->head;
        sched_unlink(s, it);
        envelope_free(it->env);
        free(it->env);
        free(it);
    }
    event_free(s->timer);
    free(s);
}
