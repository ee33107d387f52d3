/*
 * checks.c - inbound SPF, DKIM and DMARC for `tern serve` (see checks.h).
 *
 * MAIL FROM (loop thread) -> spf_run (pool) -> spf_done (loop): the verdict
 * is kept in the session's struct checks_state for the end of data, and
 * the MAIL is answered.  SPF runs when spf or dmarc is not none (DMARC
 * needs its result); DKIM runs at end of data when dkim or dmarc is not
 * none; each is written into the header only when its own key is not none.
 *
 * End of data (loop) -> msg_run (pool): DKIM over the message as received,
 * the From domain, DMARC (record, alignment, pct sampling), then either a
 * refusal or the message rewritten (our forged Authentication-Results
 * removed, ours prepended) and, for a DMARC quarantine, every Maildir
 * target moved into the quarantine folder -> msg_done (loop): go().
 *
 * Policy (what [checks] says, see docs/CONFIG.md "Inbound checks"):
 *   spf = reject    550 5.7.23 at MAIL FROM on fail (RFC 7372); softfail,
 *                   permerror and temperror are only tagged
 *   dkim = reject   550 5.7.20 when the message has signatures and none
 *                   passed and none had a temporary failure
 *   dmarc = reject  550 5.7.1 on fail whatever p= says, and on a From
 *                   field DMARC cannot use (none, several, no one address)
 *   dmarc = honor   p=reject: 550 5.7.1; p=quarantine: the quarantine
 *                   folder; both after pct sampling (one step lower)
 * Temporary failures are tagged temperror and the mail accepted.
 */
#include "server/checks.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "conf/snapshot.h"
#include "core/address.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/netaddr.h"
#include "dns/dns.h"
#include "mailauth/arh.h"
#include "mailauth/dkim.h"
#include "mailauth/dmarc.h"
#include "mailauth/spf.h"
#include "queue/envelope.h"
#include "server/serve.h"
#include "server/workers.h"
#include "smtp/session.h"

struct checks {
    struct workers *pool;
    struct psl *psl; /* NULL: the list could not be read (default rule only) */
    atomic_bool stopping;
};

/* Per session, loop thread only. */
struct checks_state {
    unsigned refs; /* the session's + the jobs' */
    bool closed;
    bool have_spf; /* SPF ran for the current MAIL FROM */
    struct spf_verdict spf;
    char mail_from[ADDR_PATH_MAX + 1]; /* "" for <> */
    char helo[256];
};

static void state_put(struct checks_state *st)
{
    if (st && --st->refs == 0)
        free(st);
}

void checks_session_close(struct receive_session *rs)
{
    if (rs->checks) {
        rs->checks->closed = true;
        state_put(rs->checks);
        rs->checks = NULL;
    }
}

/* ---- the per-thread resolver -------------------------------------------------- */

static __thread struct dns_resolver *chk_res;
static __thread char chk_servers[CONF_STR_MAX];

static void checks_thread_exit(void)
{
    dns_resolver_free(chk_res);
    chk_res = NULL;
}

/* This thread's resolver for servers (made again when [remote] dns_servers changed). */
static struct dns_resolver *checks_resolver(const char *servers, char *why, size_t whylen)
{
    if (chk_res && strcmp(chk_servers, servers) == 0)
        return chk_res;
    dns_resolver_free(chk_res);
    struct dns_conf dc = {
        .servers = servers, .timeout_ms = CHECKS_DNS_TIMEOUT_MS, .tries = CHECKS_DNS_TRIES};
    chk_res = dns_resolver_new(&dc, why, whylen);
    snprintf(chk_servers, sizeof(chk_servers), "%s", chk_res ? servers : "");
    return chk_res;
}

void checks_init(struct serve *sv)
{
    char why[256];
    struct checks *ck = calloc(1, sizeof(*ck));
    if (!ck)
        fatal("out of memory");
    atomic_init(&ck->stopping, false);
    ck->pool = workers_new(sv->base, CHECKS_THREADS);
    workers_on_thread_exit(ck->pool, checks_thread_exit);
    ck->psl = psl_load(NULL, why, sizeof(why));
    if (!ck->psl)
        log_warn("public suffix list: %s: DMARC relaxed alignment falls back to the last two "
                 "labels (install Debian's publicsuffix)",
                 why);
    sv->checks = ck;
}

void checks_free(struct serve *sv)
{
    struct checks *ck = sv->checks;
    if (!ck)
        return;
    atomic_store(&ck->stopping, true);
    workers_free(ck->pool); /* jobs not begun are skipped; all answer */
    psl_free(ck->psl);
    free(ck);
    sv->checks = NULL;
}

static bool checks_peer(struct smtp_session *s, struct sockaddr_storage *out);

/* The host itself: 127.0.0.1 or ::1 (local programs, a content filter reinjecting). */
static bool checks_is_self(struct smtp_session *s)
{
    static const unsigned char one4[4] = {127, 0, 0, 1};
    struct sockaddr_storage ss;
    if (!checks_peer(s, &ss))
        return false;
    if (ss.ss_family == AF_INET)
        return memcmp(&((struct sockaddr_in *)&ss)->sin_addr, one4, 4) == 0;
    return ss.ss_family == AF_INET6 &&
           IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr);
}

/* A session whose mail is checked: the smtp listener, not authenticated, not from the
 * host itself (trusted like OpenDMARC's default IgnoreHosts), some check on. */
static bool checks_apply(struct serve *sv, struct smtp_session *s, const struct conf *c)
{
    if (!sv->checks || smtp_session_server(s) != sv->smtp || smtp_session_auth_user(s))
        return false;
    if (!c->check_spf && !c->check_dkim && !c->check_dmarc)
        return false;
    return !checks_is_self(s);
}

static struct checks_state *checks_state_of(struct receive_session *rs)
{
    if (!rs->checks) {
        rs->checks = calloc(1, sizeof(*rs->checks));
        if (!rs->checks)
            fatal("out of memory");
        rs->checks->refs = 1;
    }
    return rs->checks;
}

/* ---- SPF at MAIL FROM ------------------------------------------------------------ */

struct spf_job {
    struct checks *ck;
    struct smtp_server *srv;
    uint64_t session_id;
    struct checks_state *st; /* a reference */
    struct snapshot *snap;   /* a reference */
    struct sockaddr_storage ip;
    bool have_ip, skipped;
    char helo[256], from[ADDR_PATH_MAX + 1], host[INET6_ADDRSTRLEN];
    struct smtp_verdict ok; /* the reply MAIL gets when SPF does not refuse it */
    struct spf_verdict out;
};

/* The client's address from the session's "addr:port" text; IPv4-mapped IPv6 as IPv4. */
static bool checks_peer(struct smtp_session *s, struct sockaddr_storage *out)
{
    socklen_t len;
    const char *why;
    if (netaddr_parse(smtp_session_peer(s), out, &len, &why) < 0)
        return false;
    if (out->ss_family == AF_INET6) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)out;
        if (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr)) {
            struct sockaddr_in a4 = {.sin_family = AF_INET};
            memcpy(&a4.sin_addr, a6->sin6_addr.s6_addr + 12, 4);
            memset(out, 0, sizeof(*out));
            memcpy(out, &a4, sizeof(a4));
        }
    }
    return true;
}

static void spf_run(void *arg)
{
    struct spf_job *j = arg;
    char why[200];
    if (atomic_load(&j->ck->stopping)) {
        j->skipped = true;
        return;
    }
    struct dns_resolver *r = checks_resolver(j->snap->conf.dns_servers, why, sizeof(why));
    if (!r || !j->have_ip) {
        memset(&j->out, 0, sizeof(j->out));
        j->out.result = SPF_TEMPERROR;
        snprintf(j->out.why, sizeof(j->out.why), "%s", r ? "no client address" : why);
        return;
    }
    spf_check(r, (const struct sockaddr *)&j->ip, j->helo, j->from, j->snap->conf.hostname,
              &j->out);
}

static void spf_done(void *arg)
{
    struct spf_job *j = arg;
    const struct conf *c = &j->snap->conf;
    struct smtp_verdict v;
    memset(&v, 0, sizeof(v));
    if (j->skipped) {
        smtp_verdict_set(&v, 421, "4.3.2", "%s Service shutting down", c->hostname);
        v.action = SMTP_V_REPLY_CLOSE;
    } else {
        metrics_inc(M_CHECKS, "spf", spf_result_name(j->out.result));
        log_info("session %llu: spf=%s identity=%s domain=%s lookups=%u (%s)",
                 (unsigned long long)j->session_id, spf_result_name(j->out.result),
                 j->from[0] ? "mailfrom" : "helo", j->out.domain, j->out.lookups, j->out.why);
        if (!j->st->closed) {
            j->st->have_spf = true;
            j->st->spf = j->out;
            snprintf(j->st->mail_from, sizeof(j->st->mail_from), "%s", j->from);
            snprintf(j->st->helo, sizeof(j->st->helo), "%s", j->helo);
        }
        if (c->check_spf == CONF_CHECK_REJECT && j->out.result == SPF_FAIL)
            smtp_verdict_set(&v, 550, "5.7.23",
                             "SPF check failed: %.60s does not allow %s to send its mail%s%.100s",
                             j->out.domain, j->host, j->out.explanation[0] ? ": " : "",
                             j->out.explanation);
        else
            v = j->ok;
    }
    smtp_server_resume(j->srv, j->session_id, &v); /* a session gone: nothing to say */
    state_put(j->st);
    snapshot_put(j->snap);
    free(j);
}

void checks_mail(struct serve *sv, struct smtp_session *s, struct receive_session *rs,
                 const struct mail_params *p, struct smtp_verdict *v)
{
    const struct conf *c = &rs->snap->conf;
    if (!checks_apply(sv, s, c))
        return;
    struct checks_state *st = checks_state_of(rs);
    st->have_spf = false;
    if (!c->check_spf && !c->check_dmarc)
        return;
    struct spf_job *j = calloc(1, sizeof(*j));
    if (!j)
        fatal("out of memory");
    j->ck = sv->checks;
    j->srv = smtp_session_server(s);
    j->session_id = smtp_session_id(s);
    j->st = st;
    st->refs++;
    j->snap = snapshot_ref(rs->snap);
    j->have_ip = checks_peer(s, &j->ip);
    if (j->have_ip) {
        const void *a = j->ip.ss_family == AF_INET
                            ? (const void *)&((struct sockaddr_in *)&j->ip)->sin_addr
                            : (const void *)&((struct sockaddr_in6 *)&j->ip)->sin6_addr;
        inet_ntop(j->ip.ss_family, a, j->host, sizeof(j->host));
    }
    snprintf(j->helo, sizeof(j->helo), "%s", smtp_session_helo(s) ? smtp_session_helo(s) : "");
    if (!p->from.is_null)
        addr_format(&p->from, j->from, sizeof(j->from));
    j->ok = *v;
    j->ok.action = SMTP_V_REPLY;
    v->action = SMTP_V_PENDING;
    workers_submit(sv->checks->pool, spf_run, spf_done, j);
}

/* ---- DKIM, DMARC and the header at end of data ----------------------------------- */

struct msg_job {
    struct checks *ck;
    struct snapshot *snap; /* a reference */
    uint64_t session_id;
    struct envelope *env; /* the caller's, until go() */
    struct buf *msg;      /* the caller's, until go() */
    checks_go_fn go;
    void *arg;
    bool have_spf, skipped, refused, quarantined;
    struct spf_verdict spf;
    char mail_from[ADDR_PATH_MAX + 1], helo[256];
    unsigned sample; /* 0..99 for pct= */
    struct smtp_verdict refusal;
    size_t ndkim;
    struct dkim_verdict dkim[DKIM_MAX_VERIFY];
    bool from_ok;
    char from_why[200];
    struct dmarc_verdict dmarc;
    bool dmarc_ran;
    size_t stripped;
};

/* "maildir:PATH" -> "maildir:PATH/.FOLDER" for every Maildir recipient. */
static void checks_quarantine(struct envelope *env, const char *folder)
{
    char t[CONF_STR_MAX + 80];
    for (size_t i = 0; i < env->nrcpt; i++) {
        const char *cur = env->rcpts[i].target;
        if (!cur || strncmp(cur, "maildir:", 8) != 0)
            continue;
        size_t n = strlen(cur);
        while (n > 9 && cur[n - 1] == '/')
            n--;
        if (snprintf(t, sizeof(t), "%.*s/.%s", (int)n, cur, folder) < (int)sizeof(t))
            envelope_set(&env->rcpts[i].target, t);
    }
}

static void msg_header(struct msg_job *j, struct buf *out)
{
    const struct conf *c = &j->snap->conf;
    struct arh_result res[2 + DKIM_MAX_VERIFY];
    size_t n = 0;
    char dreason[80];

    if (c->check_spf && j->have_spf) {
        struct arh_result *r = &res[n++];
        memset(r, 0, sizeof(*r));
        r->method = "spf";
        r->result = spf_result_name(j->spf.result);
        r->reason = j->spf.why;
        if (j->mail_from[0]) {
            r->props[0].name = "smtp.mailfrom";
            r->props[0].value = j->mail_from;
        } else {
            r->props[0].name = "smtp.helo";
            r->props[0].value = j->helo;
        }
        r->nprops = 1;
    }
    if (c->check_dkim) {
        if (j->ndkim == 0) {
            memset(&res[n], 0, sizeof(res[n]));
            res[n].method = "dkim";
            res[n++].result = "none";
        }
        for (size_t i = 0; i < j->ndkim; i++) {
            struct arh_result *r = &res[n++];
            const struct dkim_verdict *d = &j->dkim[i];
            memset(r, 0, sizeof(*r));
            r->method = "dkim";
            r->result = dkim_status_name(d->status);
            r->reason = d->status == DKIM_PASS ? NULL : d->why;
            r->props[0].name = "header.d";
            r->props[0].value = d->domain;
            r->props[1].name = "header.s";
            r->props[1].value = d->selector;
            r->props[2].name = "header.a";
            r->props[2].value = d->algo;
            r->props[3].name = "header.b";
            r->props[3].value = d->b8;
            r->nprops = 4;
        }
    }
    if (c->check_dmarc) {
        struct arh_result *r = &res[n++];
        memset(r, 0, sizeof(*r));
        r->method = "dmarc";
        if (!j->from_ok) {
            r->result = "permerror";
            r->reason = j->from_why;
        } else {
            r->result = dmarc_result_name(j->dmarc.result);
            if (j->dmarc.have_record) {
                snprintf(dreason, sizeof(dreason), "p=%s sp=%s dis=%s",
                         dmarc_policy_name(j->dmarc.rec.p), dmarc_policy_name(j->dmarc.rec.sp),
                         j->quarantined ? "quarantine" : "none");
                r->reason = dreason;
            } else {
                r->reason = j->dmarc.why;
            }
            r->props[0].name = "header.from";
            r->props[0].value = j->dmarc.from_domain;
            r->nprops = 1;
        }
    }
    const char *id = c->authserv_id[0] ? c->authserv_id : c->hostname;
    if (arh_build(out, id, res, n) < 0)
        log_warn("checks: authserv-id '%s' unusable: no Authentication-Results added", id);
}

static void msg_run(void *arg)
{
    struct msg_job *j = arg;
    const struct conf *c = &j->snap->conf;
    char why[200];
    if (atomic_load(&j->ck->stopping)) {
        j->skipped = true;
        return;
    }
    struct dns_resolver *r = checks_resolver(c->dns_servers, why, sizeof(why));

    /* DKIM: over the message as received (our Received: is not signed) */
    if (c->check_dkim || c->check_dmarc) {
        if (r) {
            j->ndkim = dkim_verify(r, j->msg->p, j->msg->len, time(NULL), j->dkim, DKIM_MAX_VERIFY);
        } else {
            j->ndkim = 1;
            memset(&j->dkim[0], 0, sizeof(j->dkim[0]));
            j->dkim[0].status = DKIM_TEMPERROR;
            snprintf(j->dkim[0].why, sizeof(j->dkim[0].why), "%s", why);
        }
    }
    /* DMARC */
    if (c->check_dmarc) {
        char from[DMARC_DOMAIN_MAX + 1];
        j->from_ok = dmarc_from_domain(j->msg->p, j->msg->len, from, sizeof(from), j->from_why,
                                       sizeof(j->from_why)) == 0;
        if (j->from_ok) {
            const char *pass[DKIM_MAX_VERIFY];
            size_t np = 0;
            for (size_t i = 0; i < j->ndkim; i++)
                if (j->dkim[i].status == DKIM_PASS)
                    pass[np++] = j->dkim[i].domain;
            struct dmarc_auth a = {.spf_domain = j->have_spf ? j->spf.domain : "",
                                   .spf_pass = j->have_spf && j->spf.result == SPF_PASS,
                                   .dkim_domains = pass,
                                   .ndkim = np};
            if (r) {
                dmarc_check(r, j->ck->psl, from, &a, j->sample, &j->dmarc);
            } else {
                memset(&j->dmarc, 0, sizeof(j->dmarc));
                j->dmarc.result = DMARC_TEMPERROR;
                snprintf(j->dmarc.from_domain, sizeof(j->dmarc.from_domain), "%s", from);
                snprintf(j->dmarc.why, sizeof(j->dmarc.why), "%s", why);
            }
            j->dmarc_ran = true;
        }
    }

    /* policy */
    if (c->check_dkim == CONF_CHECK_REJECT && j->ndkim > 0) {
        bool pass = false, temp = false;
        for (size_t i = 0; i < j->ndkim; i++) {
            pass |= j->dkim[i].status == DKIM_PASS;
            temp |= j->dkim[i].status == DKIM_TEMPERROR;
        }
        if (!pass && !temp) {
            j->refused = true;
            smtp_verdict_set(&j->refusal, 550, "5.7.20", "No valid DKIM signature: %.60s: %.100s",
                             j->dkim[0].domain[0] ? j->dkim[0].domain : "(unreadable)",
                             j->dkim[0].why);
        }
    }
    if (!j->refused && c->check_dmarc == CONF_CHECK_REJECT) {
        if (!j->from_ok) {
            j->refused = true;
            smtp_verdict_set(&j->refusal, 550, "5.7.1",
                             "Message rejected: %.100s (DMARC needs "
                             "exactly one From address)",
                             j->from_why);
        } else if (j->dmarc.result == DMARC_FAIL) {
            j->refused = true;
            smtp_verdict_set(&j->refusal, 550, "5.7.1",
                             "Message rejected by DMARC: %.100s fails authentication",
                             j->dmarc.from_domain);
        }
    }
    if (!j->refused && c->check_dmarc == CONF_CHECK_HONOR && j->dmarc_ran &&
        j->dmarc.result == DMARC_FAIL) {
        if (j->dmarc.apply == DMARC_P_REJECT) {
            j->refused = true;
            smtp_verdict_set(&j->refusal, 550, "5.7.1",
                             "Message rejected by DMARC policy of %.100s (p=reject)",
                             j->dmarc.from_domain);
        } else if (j->dmarc.apply == DMARC_P_QUARANTINE) {
            j->quarantined = true;
        }
    }
    if (j->refused)
        return;

    /* the message: forged copies of our results out, ours in at the top */
    const char *id = c->authserv_id[0] ? c->authserv_id : c->hostname;
    j->stripped = arh_strip(j->msg->p, &j->msg->len, id);
    struct buf nb = {0};
    msg_header(j, &nb);
    buf_append(&nb, j->msg->p, j->msg->len);
    buf_free(j->msg);
    *j->msg = nb;
    if (j->quarantined)
        checks_quarantine(j->env, c->quarantine_folder);
}

static void msg_done(void *arg)
{
    struct msg_job *j = arg;
    struct smtp_verdict v;
    if (j->skipped) {
        memset(&v, 0, sizeof(v));
        smtp_verdict_set(&v, 451, "4.3.2", "Service shutting down, try again later");
        j->go(j->arg, &v);
    } else {
        const struct conf *c = &j->snap->conf;
        if (c->check_dkim) {
            if (j->ndkim == 0)
                metrics_inc(M_CHECKS, "dkim", "none");
            for (size_t i = 0; i < j->ndkim; i++)
                metrics_inc(M_CHECKS, "dkim", dkim_status_name(j->dkim[i].status));
        }
        if (c->check_dmarc)
            metrics_inc(M_CHECKS, "dmarc",
                        j->from_ok ? dmarc_result_name(j->dmarc.result) : "permerror");
        log_info("session %llu: dkim=%s%s%s dmarc=%s from=%s%s%s",
                 (unsigned long long)j->session_id,
                 j->ndkim ? dkim_status_name(j->dkim[0].status) : "none", j->ndkim ? " d=" : "",
                 j->ndkim ? j->dkim[0].domain : "",
                 j->from_ok ? dmarc_result_name(j->dmarc.result) : "permerror",
                 j->from_ok ? j->dmarc.from_domain : "-",
                 j->refused ? " refused: " : (j->quarantined ? " quarantined" : ""),
                 j->refused ? j->refusal.text : "");
        if (j->stripped)
            log_info("session %llu: removed %zu Authentication-Results field(s) with our id",
                     (unsigned long long)j->session_id, j->stripped);
        j->go(j->arg, j->refused ? &j->refusal : NULL);
    }
    snapshot_put(j->snap);
    free(j);
}

bool checks_message(struct serve *sv, struct smtp_session *s, struct receive_session *rs,
                    struct envelope *env, struct buf *msg, checks_go_fn go, void *arg)
{
    const struct conf *c = &rs->snap->conf;
    if (sv->checks && smtp_session_auth_user(s) &&
        (c->check_spf || c->check_dkim || c->check_dmarc)) {
        /* our users' mail is not checked, but may not carry results in our name either */
        size_t n = arh_strip(msg->p, &msg->len, c->authserv_id[0] ? c->authserv_id : c->hostname);
        if (n)
            log_info("session %llu: removed %zu Authentication-Results field(s) with our id",
                     (unsigned long long)smtp_session_id(s), n);
        return false;
    }
    if (!checks_apply(sv, s, c))
        return false;
    struct msg_job *j = calloc(1, sizeof(*j));
    if (!j)
        fatal("out of memory");
    j->ck = sv->checks;
    j->snap = snapshot_ref(rs->snap);
    j->session_id = smtp_session_id(s);
    j->env = env;
    j->msg = msg;
    j->go = go;
    j->arg = arg;
    struct checks_state *st = rs->checks;
    if (st && st->have_spf) {
        j->have_spf = true;
        j->spf = st->spf;
        memcpy(j->mail_from, st->mail_from, sizeof(j->mail_from));
        memcpy(j->helo, st->helo, sizeof(j->helo));
    }
    uint32_t rnd;
    if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        rnd = (uint32_t)time(NULL);
    j->sample = rnd % 100;
    workers_submit(sv->checks->pool, msg_run, msg_done, j);
    return true;
}
