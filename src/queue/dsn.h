/*
 * dsn.h - delivery status notifications (bounces), RFC 3464 / RFC 3461.
 *
 * dsn_build() writes a complete message, to be queued from the null sender
 * <> to env->sender: a multipart/report with a human-readable part, a
 * message/delivery-status part (one group per reported recipient) and the
 * original message (or only its header section; always only the header
 * for a success report).  Three kinds: failed, delayed, and success
 * (Action: delivered, or relayed for a recipient handed to a next hop that
 * does not take the DSN request).  Final-Recipient is the address delivered
 * to (after alias expansion), Original-Recipient the ORCPT or the address
 * the client gave.  Which recipients are
 * reported follows their NOTIFY parameter: NEVER lists none; without NOTIFY
 * info->default_notify applies (FAILURE unless told otherwise).  A message
 * whose sender is <> never gets a DSN.  Every line ends in CRLF; error texts
 * are cleaned of control characters and folded.  When an address is not
 * ASCII the report is RFC 6533 (message/global-delivery-status, utf-8
 * address type) and must be sent with SMTPUTF8.  Nothing here does I/O.
 */
#ifndef TERN_QUEUE_DSN_H
#define TERN_QUEUE_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "queue/envelope.h"

#define DSN_MAX_FULL_DEFAULT (64u * 1024) /* larger originals: headers only */
#define DSN_ERROR_MAX 900                 /* octets of one error text in the report */

enum dsn_kind {
    DSN_FAILED,  /* recipients with status failed: Action: failed */
    DSN_DELAYED, /* recipients still pending (tried at least once): Action: delayed */
    DSN_SUCCESS, /* recipients just delivered (Action: delivered) or relayed to a next hop
                    without DSN (Action: relayed), that asked for NOTIFY=SUCCESS */
};

struct dsn_info {
    const char *hostname; /* Reporting-MTA, From: MAILER-DAEMON@hostname, Message-ID */
    enum dsn_kind kind;
    int64_t now;             /* Date: (Unix seconds); 0 = the current time */
    int64_t retry_until;     /* DSN_DELAYED: Will-Retry-Until, 0 = not stated */
    size_t max_full;         /* originals larger than this come back as headers; 0 = default */
    unsigned default_notify; /* enum dsn_notify bits for recipients without NOTIFY; 0 = FAILURE */
    const bool *pick; /* DSN_SUCCESS: pick[i] says env->rcpts[i] was delivered by this attempt */
};

/* Is r to be reported in a DSN of this kind? */
bool dsn_rcpt_listed(const struct dsn_info *info, const struct envelope *env,
                     const struct env_rcpt *r);

/* Is any DSN of this kind to be sent?  Never for the null sender, never a
 * second "delayed" one (env->delay_warned). */
bool dsn_wanted(const struct dsn_info *info, const struct envelope *env);

/*
 * Append the DSN for env (whose message is orig[0..len)) to out.  Returns the
 * number of recipients reported; 0 means no DSN is due and out is unchanged.
 */
size_t dsn_build(const struct dsn_info *info, const struct envelope *env, const char *orig,
                 size_t len, struct buf *out);

/* The enhanced status code ("5.1.1") of an error text such as "550 5.1.1 no
 * such user" or "4.2.2 full", into out (>= 12 octets); else the class from a
 * basic code ("550" -> "5.0.0"); else dflt.  Returns out. */
const char *dsn_status_code(const char *error, const char *dflt, char *out, size_t size);

#endif
