/*
 * lmtpaddr.h - where an LMTP server listens, written as Postfix writes it
 * after "lmtp:" (mailbox_transport = lmtp:unix:private/dovecot-lmtp):
 * "unix:/run/dovecot/lmtp" (a unix socket; the path must be absolute),
 * "inet:host:port" or "host:port" ("[::1]:24" for IPv6; without a port:
 * 24).  [local] lmtp and queued "lmtp:ENDPOINT" targets use it; the lmtp
 * courier (deliver/lmtp.h) connects to it.
 */
#ifndef TERN_CORE_LMTPADDR_H
#define TERN_CORE_LMTPADDR_H

#include <stdbool.h>
#include <stddef.h>

#define LMTP_PATH_MAX 107 /* sizeof(sockaddr_un.sun_path) - 1 */
#define LMTP_HOST_MAX 257 /* a host name (255) or "[address]" */

struct lmtp_endpoint {
    bool is_unix;
    char path[LMTP_PATH_MAX + 1]; /* is_unix */
    char host[LMTP_HOST_MAX + 1]; /* else: name or [address] */
    char addr[LMTP_HOST_MAX + 1]; /* what to connect to: host without brackets */
    char port[8];
};

/*
 * Parse an endpoint text (see above) into *ep.  Returns 0, or -1 with a
 * reason in why (which may be NULL).  Nothing else is accepted: no relative
 * path, no control character, no unbracketed IPv6 address, port 1..65535.
 */
int lmtp_endpoint_parse(const char *s, struct lmtp_endpoint *ep, char *why, size_t whysize);

/* "unix:/path" or "host:port" (with "inet:" when the host is named "unix" or
 * "inet"): a text lmtp_endpoint_parse() reads back as ep. */
void lmtp_endpoint_format(const struct lmtp_endpoint *ep, char *out, size_t size);

#endif
