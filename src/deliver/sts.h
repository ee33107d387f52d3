/*
 * sts.h - MTA-STS (RFC 8461) for the smtp courier: the policy of the
 * destination domain decides which MX hosts may be tried and how TLS must
 * be (mailauth/mtasts.c fetches, parses and caches it).
 *
 *   enforce  only MX hosts matching the policy's mx patterns are tried, each
 *            with STARTTLS required and its certificate verified for the MX
 *            host name; otherwise the mail is deferred (4.7.5), never sent
 *            in clear.
 *   testing  delivery as before; what enforce would have refused is logged.
 *   none, or no policy: nothing changes.
 *
 * MTA-STS applies to delivery by MX only (not to a smarthost or a [remote]
 * routes next hop), and an explicit per-domain [remote] tls_policy wins
 * over it.  One policy cache for the process (shared by the delivery
 * threads, made on first use); the fetch runs on the calling delivery
 * thread and blocks it (DNS, HTTPS).
 */
#ifndef TERN_DELIVER_STS_H
#define TERN_DELIVER_STS_H

#include <stdbool.h>
#include <stddef.h>

#include "core/result.h"
#include "dns/dns.h"
#include "mailauth/mtasts.h"
#include "smtp/client.h"

struct sts_conf {
    bool enabled;
    const char *ca;          /* CA file for fetching policies; NULL: the system's store */
    unsigned port;           /* HTTPS port of mta-sts.DOMAIN; 0: 443 (tests only) */
    const char *cache_dir;   /* policy files; NULL: memory only */
    const char *dns_servers; /* NULL: the system's resolvers */
};

/* MTA-STS as it applies to one delivery. */
struct sts_state {
    enum mtasts_mode mode; /* MTASTS_MODE_NONE: nothing to do */
    char domain[DNS_NAME_MAX + 1];
    struct mtasts_policy pol;
};

/*
 * Find d's policy (domain: lower case) and apply it to route (the MX hosts,
 * in order): in enforce mode hosts that match no mx pattern are removed
 * (each logged); in testing mode they are logged.  Returns 0, or -1 when
 * enforce leaves no host (why: the reason, the caller defers with 4.7.5).
 * tls_explicit: the domain has its own [remote] tls_policy (MTA-STS is then
 * not looked up).
 */
int sts_prepare(const struct sts_conf *sc, const char *domain, bool tls_explicit,
                struct dns_route *route, struct sts_state *st, char *why, size_t whylen);

/* In enforce mode: STARTTLS required, certificate verified for host. */
void sts_client_conf(const struct sts_state *st, const char *host, struct smtp_client_conf *cc);

/*
 * After one try of host (c: its client): enforce mode names MTA-STS in the
 * reason of recipients deferred by a TLS failure (4.7.x from the client);
 * testing mode logs when enforce would have refused the host (no TLS, or a
 * certificate not valid for it).
 */
void sts_after(const struct sts_state *st, const char *host, const struct smtp_client *c,
               struct rcpt_result *rr, size_t n);

#endif
