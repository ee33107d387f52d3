/*
 * sts.c - MTA-STS enforcement for the smtp courier (see sts.h).
 *
 * The policy cache is one object for the process, made on first use under
 * sts_mu with the cache folder of that first call ([server] data_dir does
 * not change without a restart), and kept until the process exits.  Every
 * lookup makes its own resolver (c-ares channel) on the calling delivery
 * thread, as dns_route() does.  Log lines start with "mta-sts: DOMAIN:"
 * (testing mode: "mta-sts testing: DOMAIN:"); peer text in them is escaped
 * by the log functions.
 */
#include "deliver/sts.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/log.h"

static pthread_mutex_t sts_mu = PTHREAD_MUTEX_INITIALIZER;
static struct mtasts_cache *sts_cache;

static struct mtasts_cache *sts_cache_get(const char *dir)
{
    pthread_mutex_lock(&sts_mu);
    if (!sts_cache)
        sts_cache = mtasts_cache_new(dir);
    struct mtasts_cache *c = sts_cache;
    pthread_mutex_unlock(&sts_mu);
    return c;
}

/* The policy's mx patterns as one line for the log. */
static void sts_patterns(const struct mtasts_policy *p, char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < p->nmx && used + 1 < size; i++) {
        int w = snprintf(out + used, size - used, "%s%s", i ? " " : "", p->mx[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

int sts_prepare(const struct sts_conf *sc, const char *domain, bool tls_explicit,
                struct dns_route *route, struct sts_state *st, char *why, size_t whylen)
{
    char note[600], pats[300];
    memset(st, 0, sizeof(*st));
    st->mode = MTASTS_MODE_NONE;
    if (!sc || !sc->enabled || route->literal)
        return 0;
    if (tls_explicit) {
        log_debug("mta-sts: %s: the domain's own [remote] tls_policy applies, not MTA-STS", domain);
        return 0;
    }
    struct dns_conf dc = {.servers = sc->dns_servers};
    char rwhy[256];
    struct dns_resolver *r = dns_resolver_new(&dc, rwhy, sizeof(rwhy));
    if (!r) {
        log_warn("mta-sts: %s: no resolver (%s): no policy", domain, rwhy);
        return 0;
    }
    struct mtasts_fetch_conf fc = {.resolver = r, .ca_file = sc->ca, .port = sc->port};
    struct mtasts_source src = mtasts_net_source_ops;
    src.ctx = &fc;
    enum mtasts_outcome o = mtasts_cache_get(sts_cache_get(sc->cache_dir), &src, domain, time(NULL),
                                             &st->pol, note, sizeof(note));
    dns_resolver_free(r);
    switch (o) {
    case MTASTS_NO_POLICY:
        log_debug("mta-sts: %s: no policy (%s)", domain, note);
        return 0;
    case MTASTS_FAILED:
        log_warn("mta-sts: %s: no policy used: %s", domain, note);
        return 0;
    case MTASTS_FETCHED:
        log_info("mta-sts: %s: %s", domain, note);
        break;
    case MTASTS_STALE_KEPT:
        log_warn("mta-sts: %s: %s", domain, note);
        break;
    case MTASTS_CACHED:
        log_debug("mta-sts: %s: %s", domain, note);
        break;
    }
    snprintf(st->domain, sizeof(st->domain), "%s", domain);
    st->mode = st->pol.mode;
    if (st->mode == MTASTS_MODE_NONE)
        return 0;
    sts_patterns(&st->pol, pats, sizeof(pats));
    size_t kept = 0;
    for (size_t h = 0; h < route->nhosts; h++) {
        const char *name = route->hosts[h].name;
        if (mtasts_policy_match(&st->pol, name)) {
            if (kept != h)
                route->hosts[kept] = route->hosts[h];
            kept++;
        } else if (st->mode == MTASTS_MODE_ENFORCE) {
            log_warn("mta-sts: %s: MX host %s matches no mx pattern of the policy (%s): not tried",
                     domain, name, pats);
        } else {
            log_warn("mta-sts testing: %s: MX host %s matches no mx pattern (%s): enforce would "
                     "not try it",
                     domain, name, pats);
            kept++; /* testing: every host stays */
        }
    }
    if (st->mode == MTASTS_MODE_ENFORCE) {
        route->nhosts = kept;
        if (kept == 0) {
            snprintf(why, whylen,
                     "MTA-STS policy of %.100s (enforce, id=%s): no MX host matches %.150s", domain,
                     st->pol.id, pats);
            return -1;
        }
    }
    return 0;
}

void sts_client_conf(const struct sts_state *st, const char *host, struct smtp_client_conf *cc)
{
    if (st->mode != MTASTS_MODE_ENFORCE)
        return;
    cc->tls = SMTP_TLS_REQUIRED;
    cc->tls_verify = 1;
    cc->tls_name = host;
}

void sts_after(const struct sts_state *st, const char *host, const struct smtp_client *c,
               struct rcpt_result *rr, size_t n)
{
    if (st->mode == MTASTS_MODE_ENFORCE) {
        for (size_t i = 0; i < n; i++) {
            struct rcpt_result *x = &rr[i];
            if (x->cls != RESULT_TEMP || x->code != 0 || strncmp(x->status, "4.7.", 4) != 0)
                continue;
            char text[RESULT_TEXT_MAX];
            snprintf(text, sizeof(text), "%s", x->text);
            /* as remote.c's local verdicts: code and status first, as a reply would */
            result_fail(x, RESULT_TEMP, "4.7.5",
                        "451 4.7.5 MTA-STS policy of %.100s (enforce): %.500s", st->domain, text);
            x->code = 451;
        }
    } else if (st->mode == MTASTS_MODE_TESTING) {
        const char *cert = smtp_client_tls_cert(c);
        if (strcmp(cert, "valid") != 0)
            log_warn("mta-sts testing: %s: MX host %s: %s%s: enforce would defer this delivery",
                     st->domain, host,
                     strcmp(cert, "no TLS") == 0 ? "" : "TLS certificate: ", cert);
    }
}
