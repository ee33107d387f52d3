/*
 * remote.c - the "smtp" courier: one destination domain per call (see
 * remote.h).
 *
 * Route: the configured next hop, else the MX hosts from dns_route(): a
 * domain that does not exist or has a null MX fails permanently; a DNS
 * failure (SERVFAIL, timeout) defers without falling back to A records.
 * A route that leads back to this server (our name among the MX hosts at
 * the lowest preference, or one of our own listening addresses) fails with
 * 5.4.6 instead of looping.
 *
 * Each address of each host (at most max_hosts hosts) is tried in turn
 * while recipients remain whose result is transient (4xx, 421, dropped
 * connection, timeout, TLS or connection error); a 5xx is final for the
 * recipients it answers.  TLS: none; may (STARTTLS when offered, not
 * verified; a failed handshake is retried in clear, which the client does
 * by itself); verify (STARTTLS required, certificate verified against the
 * MX host name, else defer); implicit.  The SMTP client sends CRLF only,
 * dot-stuffed, and refuses 8-bit data or UTF-8 addresses towards servers
 * that do not offer 8BITMIME / SMTPUTF8 (a permanent error for those
 * recipients).  MTA-STS (deliver/sts.c), for delivery by MX only: in
 * enforce mode only the MX hosts of the policy are tried, with STARTTLS
 * required and the certificate verified for the MX name, else 4.7.5.
 *
 * Connections are cached per worker thread (REMOTE_CACHE entries, keyed by
 * address, port, TLS policy (and the name verified) and user) and reused
 * while younger than REMOTE_IDLE_S; a cached connection the server has closed meanwhile costs
 * one immediate reconnect (max_connects = 2).
 */
#include "deliver/remote.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/command.h"
#include "core/log.h"
#include "deliver/sts.h"
#include "dns/dns.h"
#include "queue/envelope.h"
#include "smtp/client.h"

#define REMOTE_CACHE 8
#define REMOTE_IDLE_S 30

struct remote_conn {
    char key[700];
    struct smtp_client *c;
    time_t last;
};

static __thread struct remote_conn remote_cache[REMOTE_CACHE];

void remote_thread_cleanup(void)
{
    for (int i = 0; i < REMOTE_CACHE; i++) {
        if (remote_cache[i].c)
            smtp_client_free(remote_cache[i].c); /* QUIT */
        remote_cache[i].c = NULL;
        remote_cache[i].key[0] = '\0';
    }
}

/* A client for key, from the cache or new (evicting the oldest). */
static struct smtp_client *remote_client(const char *key, const struct smtp_client_conf *cc)
{
    time_t now = time(NULL);
    int oldest = 0;
    for (int i = 0; i < REMOTE_CACHE; i++) {
        struct remote_conn *rc = &remote_cache[i];
        if (rc->c && now - rc->last > REMOTE_IDLE_S) {
            smtp_client_free(rc->c);
            rc->c = NULL;
            rc->key[0] = '\0';
        }
        if (rc->c && strcmp(rc->key, key) == 0) {
            rc->last = now;
            return rc->c;
        }
        if (!rc->c || (remote_cache[oldest].c && rc->last < remote_cache[oldest].last))
            oldest = i;
    }
    struct remote_conn *rc = &remote_cache[oldest];
    if (rc->c)
        smtp_client_free(rc->c);
    rc->c = smtp_client_new(cc);
    snprintf(rc->key, sizeof(rc->key), "%s", key);
    rc->last = now;
    return rc->c;
}

/* Every recipient gets the same local verdict (no server said it): code and status
 * come first in the text, as a reply would ("451 4.4.3 ..."). */
__attribute__((format(printf, 6, 7))) static void remote_all(struct rcpt_result *res, size_t n,
                                                             enum result_class cls, int code,
                                                             const char *status, const char *fmt,
                                                             ...)
{
    char text[RESULT_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    for (size_t i = 0; i < n; i++) {
        result_fail(&res[i], cls, status, "%d %s %s", code, status, text);
        res[i].code = code;
    }
}

static bool remote_is_self(const struct remote_conf *rc, const struct sockaddr *sa, unsigned port)
{
    for (size_t i = 0; i < rc->nself; i++) {
        const struct sockaddr_storage *s = &rc->self[i];
        if (s->ss_family != sa->sa_family)
            continue;
        if (sa->sa_family == AF_INET) {
            const struct sockaddr_in *x = (const void *)s, *y = (const void *)sa;
            bool any = x->sin_addr.s_addr == htonl(INADDR_ANY);
            if (ntohs(x->sin_port) == port && (any || x->sin_addr.s_addr == y->sin_addr.s_addr))
                return true;
        } else if (sa->sa_family == AF_INET6) {
            const struct sockaddr_in6 *x = (const void *)s, *y = (const void *)sa;
            bool any = IN6_IS_ADDR_UNSPECIFIED(&x->sin6_addr);
            if (ntohs(x->sin6_port) == port &&
                (any || memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(y->sin6_addr)) == 0))
                return true;
        }
    }
    return false;
}

/* One connection target. */
struct remote_try {
    char addr[INET6_ADDRSTRLEN + 2]; /* what the client connects to */
    char name[DNS_NAME_MAX + 3];     /* the host name, for TLS verification and the log */
    const char *port;
};

void remote_deliver(const struct remote_conf *rc, const struct remote_dest *d,
                    const struct smtp_envelope *e, const char *msg, size_t len,
                    struct rcpt_result *res, char *info, size_t infosize)
{
    size_t n = e->nrcpt;
    static __thread struct dns_route route;
    struct remote_try tries[DNS_MAX_HOSTS * DNS_MAX_ADDRS];
    size_t ntries = 0;
    char why[512];
    static __thread struct sts_state sts; /* MODE_NONE unless by MX with a policy */
    sts.mode = MTASTS_MODE_NONE;

    if (info && infosize)
        info[0] = '\0';
    if (d->host) { /* the configured next hop: the client resolves its name */
        struct remote_try *t = &tries[ntries++];
        const char *h = d->host;
        size_t hl = strlen(h);
        if (h[0] == '[' && hl > 2 && hl - 2 < sizeof(t->addr)) {
            memcpy(t->addr, h + 1, hl - 2);
            t->addr[hl - 2] = '\0';
        } else {
            snprintf(t->addr, sizeof(t->addr), "%.*s", (int)(sizeof(t->addr) - 1), h);
            if (strlen(h) >= sizeof(t->addr)) /* a long name: let the client look it up */
                snprintf(t->addr, sizeof(t->addr), "%.45s", h);
        }
        snprintf(t->name, sizeof(t->name), "%s", h);
        t->port = d->port;
    } else {
        struct dns_conf dc = {.servers = rc->dns_servers};
        int r = dns_route(&dc, d->domain, &route, why, sizeof(why));
        if (r == DNS_PERMANENT) {
            remote_all(res, n, RESULT_PERM, 550, "5.1.2", "%.180s", why);
            return;
        }
        if (r != DNS_OK) {
            remote_all(res, n, RESULT_TEMP, 451, "4.4.3", "%.180s", why);
            return;
        }
        if (dns_route_drop_self(&route, rc->helo) < 0) {
            remote_all(res, n, RESULT_PERM, 554, "5.4.6",
                       "mail for %.100s loops back to myself (%.100s)", d->domain, rc->helo);
            return;
        }
        if (sts_prepare(rc->sts, d->domain, d->tls_explicit, &route, &sts, why, sizeof(why)) < 0) {
            remote_all(res, n, RESULT_TEMP, 451, "4.7.5", "%.300s", why);
            return;
        }
        unsigned port = (unsigned)atoi(rc->mx_port);
        for (size_t h = 0; h < route.nhosts && h < rc->max_hosts; h++) {
            const struct dns_host *dh = &route.hosts[h];
            for (size_t a = 0; a < dh->naddrs; a++) {
                const struct sockaddr *sa = (const struct sockaddr *)&dh->addrs[a].ss;
                if (remote_is_self(rc, sa, port)) {
                    remote_all(res, n, RESULT_PERM, 554, "5.4.6",
                               "mail for %.100s loops back to myself (%.100s)", d->domain,
                               dh->name);
                    return;
                }
                struct remote_try *t = &tries[ntries++];
                const void *ip = sa->sa_family == AF_INET6
                                     ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                                     : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
                if (!inet_ntop(sa->sa_family, ip, t->addr, sizeof(t->addr)))
                    ntries--;
                snprintf(t->name, sizeof(t->name), "%s", dh->name);
                t->port = rc->mx_port;
            }
        }
        if (ntries == 0) {
            remote_all(res, n, RESULT_TEMP, 451, "4.4.4", "%.100s: no usable address (%.150s)",
                       d->domain, route.notes);
            return;
        }
    }

    size_t *pending = calloc(n ? n : 1, sizeof(*pending)), npending = n;
    struct smtp_rcpt *list = calloc(n ? n : 1, sizeof(*list));
    struct rcpt_result *rr = calloc(n ? n : 1, sizeof(*rr));
    if (!pending || !list || !rr)
        fatal("out of memory");
    remote_all(res, n, RESULT_TEMP, 451, "4.4.1", "%s: not attempted", d->domain);
    for (size_t i = 0; i < n; i++)
        pending[i] = i;
    for (size_t t = 0; t < ntries && npending > 0; t++) {
        struct remote_try *x = &tries[t];
        struct smtp_client_conf cc = {
            .host = x->addr,
            .port = x->port,
            .helo_name = rc->helo,
            .tls = d->tls == REMOTE_TLS_NONE     ? SMTP_TLS_NONE
                   : d->tls == REMOTE_TLS_MAY    ? SMTP_TLS_OPPORTUNISTIC
                   : d->tls == REMOTE_TLS_VERIFY ? SMTP_TLS_REQUIRED
                                                 : SMTP_TLS_IMPLICIT,
            .tls_verify = d->tls == REMOTE_TLS_VERIFY || d->tls == REMOTE_TLS_IMPLICIT,
            .tls_ca_file = rc->tls_ca,
            .tls_name = x->name[0] == '[' ? NULL : x->name,
            .auth_user = d->auth_user,
            .auth_pass = d->auth_pass,
            .connect_ms = 10000,
            .greeting_ms = rc->timeout_ms,
            .command_ms = rc->timeout_ms,
            .data_init_ms = rc->timeout_ms,
            .data_block_ms = rc->timeout_ms,
            .data_end_ms = rc->timeout_ms,
            .reconnect_base_ms = 10,
            .reconnect_max_ms = 10,
            .give_up_ms = 60000,
            .max_connects = 2,
        };
        sts_client_conf(&sts, x->name, &cc);
        char key[700]; /* MTA-STS may raise the TLS policy: the key says what the client does */
        snprintf(key, sizeof(key), "%s|%s|%d|%d|%s|%s", x->addr, x->port, (int)cc.tls,
                 cc.tls_verify, cc.tls_verify ? x->name : "", d->auth_user ? d->auth_user : "");
        struct smtp_client *c = remote_client(key, &cc);
        for (size_t i = 0; i < npending; i++)
            list[i] = e->rcpts[pending[i]];
        struct smtp_envelope sub = *e;
        sub.rcpts = list;
        sub.nrcpt = npending;
        smtp_client_send(c, &sub, msg, len, rr);
        sts_after(&sts, x->name, c, rr, npending);
        if (info && x->name[0] == '[') /* an address literal: no name to show twice */
            snprintf(info, infosize, "%s:%s tls=%s", x->name, x->port, smtp_client_tls_info(c));
        else if (info)
            snprintf(info, infosize, "%s[%s]:%s tls=%s", x->name, x->addr, x->port,
                     smtp_client_tls_info(c));
        size_t still = 0;
        for (size_t i = 0; i < npending; i++) {
            res[pending[i]] = rr[i];
            if (rr[i].cls == RESULT_TEMP)
                pending[still++] = pending[i];
        }
        npending = still;
    }
    free(pending);
    free(list);
    free(rr);
}

/* ---- the smtp courier ------------------------------------------------------------ */

/* The recipients of one domain with their DSN parameters, passed on to a next hop
 * that offers DSN (RFC 3461 4.1): NOTIFY as given, ORCPT as given or else the
 * address the client named in RCPT TO; the client drops them for a next hop
 * without DSN. */
static void remote_courier(const struct courier_job *j, struct rcpt_result *res)
{
    struct smtp_rcpt *rcpts = calloc(j->n ? j->n : 1, sizeof(*rcpts));
    char(*orcpt)[ORCPT_MAX + 1] = calloc(j->n ? j->n : 1, sizeof(*orcpt));
    if (!rcpts || !orcpt)
        fatal("out of memory");
    for (size_t i = 0; i < j->n; i++) {
        const struct env_rcpt *r = j->rcpts[i];
        rcpts[i].addr = r->addr;
        rcpts[i].notify = r->notify;
        if (r->orcpt[0]) {
            rcpts[i].orcpt = r->orcpt;
        } else if (r->orig[0]) {
            memcpy(orcpt[i], "rfc822;", 7);
            if (xtext_encode(r->orig, orcpt[i] + 7, sizeof(orcpt[i]) - 7) > 0)
                rcpts[i].orcpt = orcpt[i];
        }
    }
    struct smtp_envelope e = {.from = j->env->sender,
                              .ret = j->env->ret,
                              .envid = j->env->envid,
                              .rcpts = rcpts,
                              .nrcpt = j->n};
    remote_deliver(j->remote, j->dest, &e, j->msg, j->len, res, j->info, j->infosize);
    free(rcpts);
    free(orcpt);
}

const struct courier_ops courier_smtp = {.name = "smtp",
                                         .per_domain = true,
                                         .deliver = remote_courier,
                                         .thread_exit = remote_thread_cleanup};
