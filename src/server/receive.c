/*
 * receive.c - what `tern serve` accepts, and the promise behind its 250.
 *
 * Policy at each step: AUTH against the users files (below); MAIL from an
 * authenticated user only as one of its own addresses (when
 * senders_must_match), and only while the queue has room (452 4.3.1);
 * RCPT to a local user or alias (550 5.1.1 otherwise), to another domain
 * only for authenticated sessions (554 5.7.1), never to an address that
 * plays routing tricks ('%', '!', source routes, quoted '@').
 *
 * At end of data: too many Received: fields is a loop (554 5.4.6);
 * otherwise the recipients are expanded through the aliases into delivery
 * targets, a Received: field is prepended (naming the recipient only when
 * there is one), and the message and its envelope are committed to the
 * queue on a worker thread (written, fsynced, renamed, directory fsynced).
 * The session waits (SMTP_V_PENDING) and answers 250 only after that
 * commit; a full disk answers 452, any other failure 451.  The committed
 * item then goes to the delivery engine.
 *
 * Unauthenticated mail on the smtp listener is checked first (checks.c):
 * SPF at MAIL FROM, DKIM and DMARC at end of data, each on the checks pool;
 * the session waits for them as for the commit.
 *
 * AUTH resists guessing.  The password is hashed (yescrypt, tens of
 * milliseconds of CPU) on a small pool of its own, never on the event loop,
 * and the session waits (SMTP_V_PENDING) meanwhile.  At most
 * RECEIVE_AUTH_PENDING_MAX checks are in flight, RECEIVE_AUTH_PER_NET of
 * them from one client network (beyond: 454 4.7.0 at once); a check whose
 * session closed before a thread took it is skipped.
 * Failures are counted across sessions per client network (IPv4 /24, IPv6
 * /64) and per user name (normalized like a login) in fixed-size tables
 * (server/throttle.h): a failure is answered after a growing delay (0.5 s
 * doubling, at most 4 s), and once either count reaches auth_max_failures
 * AUTH answers 454 4.7.0 at once, without hashing, for auth_lockout.  A
 * successful login clears its user's count (not its network's).  Every
 * failure is one log line, "auth failed: ip=ADDR user=NAME session=N" (the
 * address first: a user name cannot pose as it), and a lock one more.
 *
 * Every session holds the configuration snapshot in force when it
 * connected (taken in on_connect, dropped in on_close): a reload in the
 * middle of a transaction never mixes two configurations.
 */
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "conf/aliases.h"
#include "conf/snapshot.h"
#include "core/clock.h"
#include "core/header.h"
#include "core/log.h"
#include "deliver/engine.h"
#include "deliver/route.h"
#include "queue/store.h"
#include "server/checks.h"
#include "server/serve.h"
#include "server/throttle.h"
#include "server/workers.h"
#include "smtp/session.h"

#define RECEIVE_MAX_HOPS 30
#define RECEIVE_AUTH_THREADS 2        /* hashing is CPU work: about the cores of a small box */
#define RECEIVE_AUTH_PENDING_MAX 32   /* checks in flight; then 454 at once */
#define RECEIVE_AUTH_PER_NET 4        /* checks in flight from one client network */
#define RECEIVE_THROTTLE_ENTRIES 4096 /* per table (networks, users): 128 KiB each */
#define RECEIVE_KEY_MAX 512           /* "user:" + 64 + "@" + 255 */

/* The configuration this session started with. */
static struct snapshot *receive_snap(struct smtp_session *s)
{
    return ((struct receive_session *)smtp_session_data(s))->snap;
}

/* "local@domain" of a recipient; the bare RCPT TO:<Postmaster> of RFC 5321 4.5.1
 * is postmaster@ the server's host name when that is a local domain, else
 * postmaster@ the first local domain. */
static void receive_rcpt_addr(const struct policy *p, const struct conf *c,
                              const struct mailaddr *a, char *out, size_t size)
{
    if (a->domain[0]) {
        addr_format(a, out, size);
        return;
    }
    const char *d = policy_domain(p, c->hostname) || p->n == 0 ? c->hostname : p->v[0].name;
    snprintf(out, size, "postmaster@%.240s", d);
}

static void receive_auth_cancel(struct receive_auth *ra, struct smtp_session *s);

/* ---- hooks ----------------------------------------------------------------- */

static void receive_connect(void *ctx, struct smtp_session *s, struct smtp_verdict *v)
{
    struct serve *sv = ctx;
    (void)v;
    struct receive_session *rs = calloc(1, sizeof(*rs));
    if (!rs)
        fatal("out of memory");
    rs->snap = snapshot_ref(sv->snap);
    smtp_session_set_data(s, rs);
}

static void receive_close(void *ctx, struct smtp_session *s)
{
    struct serve *sv = ctx;
    if (sv->auth)
        receive_auth_cancel(sv->auth, s);
    struct receive_session *rs = smtp_session_data(s);
    if (rs) {
        checks_session_close(rs);
        snapshot_put(rs->snap);
        free(rs);
    }
    smtp_session_set_data(s, NULL);
}

/* ---- AUTH ------------------------------------------------------------------ */

struct auth_job {
    struct receive_auth *ra;
    struct smtp_server *srv;
    uint64_t session_id;
    struct snapshot *snap; /* a reference: the job may outlive its session */
    char user[1024], pass[1024];
    char host[INET6_ADDRSTRLEN + 8], net[INET6_ADDRSTRLEN + 8], user_key[RECEIVE_KEY_MAX];
    atomic_bool cancelled; /* the session went away before the check began: skip it */
    bool ok, skipped;
    struct auth_job *prev, *next; /* in flight (loop thread only) */
};

struct receive_auth {
    struct workers *pool;
    struct throttle *nets, *users;
    struct auth_job *inflight; /* submitted, done() not yet run */
    size_t ninflight;
    atomic_bool stopping; /* checks not begun are skipped */
};

void receive_init(struct serve *sv)
{
    uint64_t seed[2];
    if (getrandom(seed, sizeof(seed), 0) != (ssize_t)sizeof(seed)) {
        seed[0] = clock_mono_us();
        seed[1] = (uint64_t)time(NULL) * 2654435761u;
    }
    struct receive_auth *ra = calloc(1, sizeof(*ra));
    if (!ra)
        fatal("out of memory");
    ra->pool = workers_new(sv->base, RECEIVE_AUTH_THREADS);
    ra->nets = throttle_new(RECEIVE_THROTTLE_ENTRIES, seed[0]);
    ra->users = throttle_new(RECEIVE_THROTTLE_ENTRIES, seed[1]);
    atomic_init(&ra->stopping, false);
    sv->auth = ra;
    checks_init(sv);
}

void receive_free(struct serve *sv)
{
    struct receive_auth *ra = sv->auth;
    checks_free(sv); /* checks in flight end (skipped if not begun) and answer */
    if (!ra)
        return;
    atomic_store(&ra->stopping, true);
    workers_free(ra->pool); /* checks in flight end (skipped if not begun) and answer */
    throttle_free(ra->nets);
    throttle_free(ra->users);
    free(ra);
    sv->auth = NULL;
}

/* The throttle key of a login: "user:LOCAL@DOMAIN" normalized as policy_auth()
 * looks users up (case, drop characters), so that variants share one count. */
static void receive_user_key(const struct snapshot *snap, const char *login, char *out, size_t size)
{
    const char *at = strrchr(login, '@');
    char local[USERS_NAME_MAX + 1];
    if (at && at > login && (size_t)(at - login) <= USERS_NAME_MAX) {
        char part[USERS_NAME_MAX + 1];
        memcpy(part, login, (size_t)(at - login));
        part[at - login] = '\0';
        alias_key(part, snap->policy.drop_chars, NULL, local);
        snprintf(out, size, "user:%s@%.255s", local, at + 1);
    } else {
        snprintf(out, size, "user:%.255s", login);
    }
    for (char *p = out; *p; p++)
        *p = (char)tolower((unsigned char)*p);
}

static void auth_run(void *arg)
{
    struct auth_job *j = arg;
    if (atomic_load(&j->cancelled) || atomic_load(&j->ra->stopping))
        j->skipped = true;
    else
        j->ok = policy_auth(&j->snap->policy, j->user, j->pass);
    explicit_bzero(j->pass, sizeof(j->pass));
}

static void auth_done(void *arg)
{
    struct auth_job *j = arg;
    struct receive_auth *ra = j->ra;
    const struct conf *c = &j->snap->conf;
    struct throttle_conf tc = {.max_failures = c->auth_max_failures,
                               .lockout_ms = c->auth_lockout_ms};
    unsigned long long id = (unsigned long long)j->session_id;
    struct smtp_verdict v;

    *(j->prev ? &j->prev->next : &ra->inflight) = j->next;
    if (j->next)
        j->next->prev = j->prev;
    ra->ninflight--;
    memset(&v, 0, sizeof(v));
    if (j->skipped) {
        smtp_verdict_set(&v, 454, "4.7.0", "Temporary authentication failure, try again later");
    } else if (j->ok) {
        throttle_clear(ra->users, j->user_key);
        smtp_verdict_set(&v, 235, "2.7.0", "Authentication successful");
        log_info("auth ok: ip=%s user=%s session=%llu", j->host, j->user, id);
    } else {
        uint64_t now = clock_mono_ms();
        bool net_locked, user_locked;
        unsigned nn = throttle_fail(ra->nets, j->net, now, &tc, &net_locked);
        unsigned nu = throttle_fail(ra->users, j->user_key, now, &tc, &user_locked);
        smtp_verdict_set(&v, 535, "5.7.8", "Authentication credentials invalid");
        v.delay_ms = throttle_delay_ms(nn > nu ? nn : nu);
        log_info("auth failed: ip=%s user=%s session=%llu", j->host, j->user, id);
        if (net_locked)
            log_warn("auth locked: net=%s failures=%u for=%llus session=%llu", j->net, nn,
                     (unsigned long long)(tc.lockout_ms / 1000), id);
        if (user_locked)
            log_warn("auth locked: user=%s failures=%u for=%llus session=%llu", j->user, nu,
                     (unsigned long long)(tc.lockout_ms / 1000), id);
    }
    smtp_server_resume(j->srv, j->session_id, &v); /* a session gone meanwhile: nothing to say */
    snapshot_put(j->snap);
    explicit_bzero(j, sizeof(*j));
    free(j);
}

/* A session that closes while its check waits for a thread: the check is skipped (nobody
 * would learn its result, so it need not count either). */
static void receive_auth_cancel(struct receive_auth *ra, struct smtp_session *s)
{
    for (struct auth_job *j = ra->inflight; j; j = j->next)
        if (j->srv == smtp_session_server(s) && j->session_id == smtp_session_id(s))
            atomic_store(&j->cancelled, true);
}

static void receive_auth(void *ctx, struct smtp_session *s, const char *user, const char *pass,
                         struct smtp_verdict *v)
{
    struct serve *sv = ctx;
    struct receive_auth *ra = sv->auth;
    struct snapshot *snap = receive_snap(s);
    unsigned long long id = (unsigned long long)smtp_session_id(s);
    char host[INET6_ADDRSTRLEN + 8], net[INET6_ADDRSTRLEN + 8], ukey[RECEIVE_KEY_MAX];

    throttle_net(smtp_session_peer(s), net, sizeof(net), host, sizeof(host));
    receive_user_key(snap, user, ukey, sizeof(ukey));
    uint64_t now = clock_mono_ms();
    uint64_t wait = throttle_locked(ra->nets, net, now);
    uint64_t wait_user = throttle_locked(ra->users, ukey, now);
    if (wait || wait_user) {
        smtp_verdict_set(v, 454, "4.7.0", "Too many authentication failures, try again later");
        log_info("auth refused: ip=%s user=%s session=%llu locked=%s for=%llus", host, user, id,
                 wait ? "net" : "user",
                 (unsigned long long)((wait > wait_user ? wait : wait_user) + 999) / 1000);
        return;
    }
    size_t same_net = 0;
    for (const struct auth_job *j = ra->inflight; j; j = j->next)
        same_net += strcmp(j->net, net) == 0;
    if (ra->ninflight >= RECEIVE_AUTH_PENDING_MAX || same_net >= RECEIVE_AUTH_PER_NET) {
        smtp_verdict_set(v, 454, "4.7.0", "Temporary authentication failure, try again later");
        log_warn("auth busy: ip=%s user=%s session=%llu: %zu checks in flight, %zu from %s", host,
                 user, id, ra->ninflight, same_net, net);
        return;
    }
    struct auth_job *j = calloc(1, sizeof(*j));
    if (!j)
        fatal("out of memory");
    j->ra = ra;
    j->srv = smtp_session_server(s);
    j->session_id = smtp_session_id(s);
    j->snap = snapshot_ref(snap);
    snprintf(j->user, sizeof(j->user), "%s", user);
    snprintf(j->pass, sizeof(j->pass), "%s", pass);
    memcpy(j->host, host, sizeof(host));
    memcpy(j->net, net, sizeof(net));
    memcpy(j->user_key, ukey, sizeof(ukey));
    atomic_init(&j->cancelled, false);
    j->next = ra->inflight;
    if (j->next)
        j->next->prev = j;
    ra->inflight = j;
    ra->ninflight++;
    v->action = SMTP_V_PENDING;
    workers_submit(ra->pool, auth_run, auth_done, j);
}

static void receive_mail(void *ctx, struct smtp_session *s, const struct mail_params *p,
                         struct smtp_verdict *v)
{
    struct serve *sv = ctx;
    const struct snapshot *snap = receive_snap(s);
    const char *login = smtp_session_auth_user(s);
    char why[256];

    if (sv->stopping) {
        smtp_verdict_set(v, 421, "4.3.2", "%s Service shutting down", snap->conf.hostname);
        v->action = SMTP_V_REPLY_CLOSE;
        return;
    }
    if (login && snap->conf.senders_must_match && !p->from.is_null) {
        if (!policy_sender_allowed(&snap->policy, login, &p->from)) {
            smtp_verdict_set(v, 553, "5.7.1", "Sender address not owned by user %s", login);
            return;
        }
    }
    struct qstore_limits lim = {.min_free_bytes = snap->conf.queue_min_free,
                                .max_items = (size_t)snap->conf.queue_max_items};
    if (qstore_check_room(sv->store, &lim, p->size_given ? p->size : 0, why, sizeof(why)) < 0) {
        log_warn("session %llu: refusing mail: %s", (unsigned long long)smtp_session_id(s), why);
        smtp_verdict_set(v, 452, "4.3.1", "Insufficient system storage");
        return;
    }
    checks_mail(sv, s, smtp_session_data(s), p, v); /* SPF (checks.c) */
}

static void receive_rcpt(void *ctx, struct smtp_session *s, const struct rcpt_params *p,
                         struct smtp_verdict *v)
{
    (void)ctx;
    const struct snapshot *snap = receive_snap(s);
    struct route_result r;
    char addr[ADDR_PATH_MAX + 1];
    receive_rcpt_addr(&snap->policy, &snap->conf, &p->to, addr, sizeof(addr));
    int st = p->to.domain[0] ? route_resolve(&snap->policy, &p->to, &r)
                             : route_resolve_str(&snap->policy, addr, &r);
    route_result_free(&r);

    switch (st) {
    case ROUTE_OK:
        return;
    case ROUTE_NOT_LOCAL:
        if (smtp_session_auth_user(s))
            return;
        smtp_verdict_set(v, 554, "5.7.1", "<%s>: Relay access denied", addr);
        break;
    case ROUTE_UNKNOWN:
        smtp_verdict_set(v, 550, "5.1.1", "<%s>: Recipient address rejected: no such user", addr);
        break;
    case ROUTE_ELOOP:
        smtp_verdict_set(v, 550, "5.4.6", "<%s>: Alias loop", addr);
        break;
    case ROUTE_EUNSAFE:
        smtp_verdict_set(v, 554, "5.7.1", "<%s>: Relay access denied", addr);
        break;
    default:
        smtp_verdict_set(v, 553, "5.1.3", "<%s>: Bad recipient address syntax", addr);
        break;
    }
    log_info("session %llu: RCPT <%s> refused: %s", (unsigned long long)smtp_session_id(s), addr,
             route_status_str(st));
}

struct commit_job {
    struct serve *sv;
    struct smtp_server *srv;
    uint64_t session_id;
    struct envelope *env;
    struct buf msg;
    struct snapshot *sign; /* an authenticated submission: DKIM keys to sign with, or NULL */
    int rc, err;
    char why[256];
};

static void commit_run(void *arg)
{
    struct commit_job *j = arg;
    if (j->sign) /* RSA costs about 0.25 ms: here, not on the event loop */
        dkimkeys_sign(&j->sign->dkim, j->env->sender, &j->msg, "submission");
    j->rc = qstore_commit(j->sv->store, j->env, j->msg.p, j->msg.len, j->why, sizeof(j->why));
    j->err = errno;
}

static void commit_done(void *arg)
{
    struct commit_job *j = arg;
    struct smtp_verdict v;
    memset(&v, 0, sizeof(v));
    if (j->rc == 0) {
        j->sv->accepted++;
        smtp_verdict_set(&v, 250, "2.0.0", "Ok: queued as %s", j->env->id);
        log_info("queued id=%s from=<%s> rcpts=%zu size=%zu session=%llu", j->env->id,
                 j->env->sender, j->env->nrcpt, j->msg.len, (unsigned long long)j->session_id);
        if (smtp_server_resume(j->srv, j->session_id, &v) < 0)
            log_warn("queued id=%s but session %llu is gone: the client may send it again",
                     j->env->id, (unsigned long long)j->session_id);
        engine_add(j->sv->engine, j->env);
    } else {
        j->sv->refused++;
        log_warn("session %llu: queue commit failed: %s", (unsigned long long)j->session_id,
                 j->why);
        if (j->err == ENOSPC || j->err == EDQUOT)
            smtp_verdict_set(&v, 452, "4.3.1", "Insufficient system storage");
        else
            smtp_verdict_set(&v, 451, "4.3.0", "Local error in processing");
        smtp_server_resume(j->srv, j->session_id, &v);
    }
    if (j->env) {
        envelope_free(j->env);
        free(j->env);
    }
    snapshot_put(j->sign);
    buf_free(&j->msg);
    free(j);
}

/* The inbound checks are done (checks.c): refuse, or commit the message they tagged. */
static void receive_checked(void *arg, const struct smtp_verdict *refuse)
{
    struct commit_job *j = arg;
    struct smtp_verdict v;
    if (!refuse && !j->sv->commit_pool) { /* shutting down: the client was not told 250 */
        memset(&v, 0, sizeof(v));
        smtp_verdict_set(&v, 451, "4.3.2", "Service shutting down, try again later");
        refuse = &v;
    }
    if (!refuse) {
        workers_submit(j->sv->commit_pool, commit_run, commit_done, j);
        return;
    }
    j->sv->refused++;
    smtp_server_resume(j->srv, j->session_id, refuse);
    envelope_free(j->env);
    free(j->env);
    snapshot_put(j->sign);
    buf_free(&j->msg);
    free(j);
}

/* "Received: from HELO (PEER) by HOST (tern) with ESMTPSA id ID for <rcpt>; DATE" */
static void receive_received(const struct conf *c, struct smtp_session *s, const struct smtp_txn *t,
                             struct buf *out)
{
    char date[64], line[1024], rcpt[ADDR_PATH_MAX + 1];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    const char *with = smtp_session_tls(s) ? (smtp_session_auth_user(s) ? "ESMTPSA" : "ESMTPS")
                                           : (smtp_session_auth_user(s) ? "ESMTPA" : "ESMTP");
    int n = snprintf(line, sizeof(line), "Received: from %s (%s)\r\n\tby %s (tern) with %s",
                     smtp_session_helo(s), smtp_session_peer(s), c->hostname, with);
    if (n < 0 || n >= (int)sizeof(line) - 300)
        n = (int)sizeof(line) - 300; /* cannot happen: HELO, host and peer are bounded */
    if (t->nrcpt == 1) {
        addr_format(&t->rcpts[0].to, rcpt, sizeof(rcpt));
        n += snprintf(line + n, sizeof(line) - (size_t)n, "\r\n\tfor <%.250s>", rcpt);
    }
    n += snprintf(line + n, sizeof(line) - (size_t)n, "; %s\r\n", date);
    if (n >= (int)sizeof(line))
        n = (int)sizeof(line) - 1;
    buf_append(out, line, (size_t)n);
}

static void receive_message(void *ctx, struct smtp_session *s, struct smtp_txn *t,
                            struct smtp_verdict *v)
{
    struct serve *sv = ctx;
    const struct snapshot *snap = receive_snap(s);
    char addr[ADDR_PATH_MAX + 1];

    if (header_count(t->body.p, t->body.len, "Received") > RECEIVE_MAX_HOPS) {
        smtp_verdict_set(v, 554, "5.4.6", "Too many hops: mail loop detected");
        return;
    }
    struct envelope *env = calloc(1, sizeof(*env));
    struct commit_job *j = calloc(1, sizeof(*j));
    if (!env || !j)
        fatal("out of memory");
    envelope_init(env);
    addr_format(&t->mail.from, addr, sizeof(addr));
    envelope_set(&env->sender, addr);
    env->created = time(NULL);
    env->next_attempt = env->created;
    env->ret = t->mail.ret;
    envelope_set(&env->envid, t->mail.envid);
    env->smtputf8 = t->mail.smtputf8;
    env->eightbitmime = t->mail.body == BODY_8BITMIME;
    envelope_set(&env->helo, smtp_session_helo(s));
    envelope_set(&env->peer, smtp_session_peer(s));
    const char *au = smtp_session_auth_user(s);
    envelope_set(&env->auth_user, au ? au : "");
    for (size_t i = 0; i < t->nrcpt; i++) {
        receive_rcpt_addr(&snap->policy, &snap->conf, &t->rcpts[i].to, addr, sizeof(addr));
        route_expand(&snap->conf, &snap->policy, env, addr, addr, t->rcpts[i].notify,
                     t->rcpts[i].orcpt);
    }
    if (env->nrcpt == 0) {
        envelope_free(env);
        free(env);
        free(j);
        smtp_verdict_set(v, 550, "5.1.1", "No deliverable recipient");
        return;
    }
    receive_received(&snap->conf, s, t, &j->msg);
    buf_append(&j->msg, t->body.p, t->body.len);
    if (au) /* an authenticated submission: signed by the commit worker (DKIM) */
        j->sign = snapshot_ref(receive_snap(s));
    j->sv = sv;
    j->srv = smtp_session_server(s);
    j->session_id = smtp_session_id(s);
    j->env = env;
    v->action = SMTP_V_PENDING;
    if (!checks_message(sv, s, smtp_session_data(s), env, &j->msg, receive_checked, j))
        workers_submit(sv->commit_pool, commit_run, commit_done, j);
}

const struct smtp_hooks receive_hooks = {
    .on_connect = receive_connect,
    .on_close = receive_close,
    .on_auth = receive_auth,
    .on_mail = receive_mail,
    .on_rcpt = receive_rcpt,
    .on_message = receive_message,
};
