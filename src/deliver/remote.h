/*
 * remote.h - delivery to other servers over SMTP (the "smtp" courier).
 *
 * One call carries all recipients of one destination domain: the next hop
 * is the configured one (smarthost or a per-domain route) or the domain's
 * MX hosts (core of DNS in dns/dns.c); hosts are tried in order while
 * recipients remain with transient results; 5xx replies are permanent for
 * the recipients they concern.  Connections are kept per worker thread and
 * reused for the next message to the same host.
 */
#ifndef TERN_DELIVER_REMOTE_H
#define TERN_DELIVER_REMOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "deliver/courier.h"
#include "smtp/client.h"

struct sts_conf;

enum remote_tls { REMOTE_TLS_NONE = 0, REMOTE_TLS_MAY, REMOTE_TLS_VERIFY, REMOTE_TLS_IMPLICIT };

struct remote_conf {
    const char *helo;        /* our host name: EHLO, and the loop check against MX names */
    const char *mx_port;     /* port of MX hosts ("25") */
    const char *tls_ca;      /* CA file for verification, NULL = the system's store */
    const char *dns_servers; /* NULL = the system's resolvers */
    unsigned max_hosts;
    unsigned timeout_ms; /* per command; 0 = RFC 5321's */
    /* our own listening endpoints (port included): a next hop that is one of them is a loop */
    const struct sockaddr_storage *self;
    size_t nself;
    const struct sts_conf *sts; /* MTA-STS for delivery by MX (deliver/sts.h); NULL: off */
};

struct remote_dest {
    const char *domain;
    const char *host; /* next hop (name or [address]); NULL = by MX */
    const char *port;
    enum remote_tls tls;
    bool tls_explicit; /* tls comes from the domain's own tls_policy (MTA-STS does not apply) */
    const char *auth_user, *auth_pass; /* smarthost AUTH, NULL = none */
};

/* Deliver msg to e's recipients (all of d->domain).  res has e->nrcpt entries:
 * a server's reply as it came (code, status, "550 5.1.1 text"), or a local
 * verdict with a reply-like text ("451 4.4.3 ...").  info (may be NULL)
 * receives a short description of the last host and its TLS state for the log. */
void remote_deliver(const struct remote_conf *rc, const struct remote_dest *d,
                    const struct smtp_envelope *e, const char *msg, size_t len,
                    struct rcpt_result *res, char *info, size_t infosize);

/* Close the connections this thread keeps open. */
void remote_thread_cleanup(void);

#endif
