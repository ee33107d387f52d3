/*
 * lmtp.h - delivery to a mailbox server over LMTP (RFC 2033): the "lmtp"
 * courier, for Dovecot, Cyrus and the like.
 *
 * The endpoint (core/lmtpaddr.h) is written as Postfix writes it after
 * "lmtp:" in mailbox_transport: "unix:/run/dovecot/lmtp" or "host:port".
 * One call carries every pending LMTP recipient of a
 * message to the same endpoint, in one transaction: the SMTP client
 * (smtp/client.h) with .lmtp set speaks LHLO and reads one reply per
 * accepted recipient after the end of data, so a 5xx for one recipient is
 * permanent for that recipient only and a 4xx transient for it only.  A
 * connection that cannot be made (no socket, refused, timeout) defers
 * every recipient of the call.  The message goes as queued (Dovecot adds
 * Return-Path and Delivered-To itself), without DSN parameters: the LMTP
 * server is the final delivery, so tern reports "delivered" itself.  One
 * connection is kept per worker thread for LMTP_IDLE_S seconds.
 */
#ifndef TERN_DELIVER_LMTP_H
#define TERN_DELIVER_LMTP_H

#include <stdbool.h>
#include <stddef.h>

#include "core/lmtpaddr.h"
#include "core/result.h"
#include "deliver/courier.h"
#include "smtp/client.h"

#define LMTP_IDLE_S 30

/*
 * Deliver msg to e's recipients at ep, saying lhlo_name in LHLO, with
 * timeout_ms per command (0: RFC 5321's).  res has e->nrcpt entries, each
 * set.  info (may be NULL) receives the endpoint for the log.
 */
void lmtp_deliver(const struct lmtp_endpoint *ep, const char *lhlo_name, unsigned timeout_ms,
                  const struct smtp_envelope *e, const char *msg, size_t len,
                  struct rcpt_result *res, char *info, size_t infosize);

/* Close the connection this thread keeps open. */
void lmtp_thread_cleanup(void);

#endif
