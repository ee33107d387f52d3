/*
 * ledger.h - what `tern send` has done, in an SQLite file, so that a run
 * killed at any moment resumes without loss and without duplicates.
 *
 * One row per (campaign, recipient, window): the campaign is a name chosen by
 * the caller (by default the template's file name), the recipient is the
 * lower-cased address, the window is "" outside reminder mode or the
 * reminder window in seconds ("2592000" for 30d).  Status: sent,
 * transient (may be retried with --retry-failed) or permanent, with the last
 * SMTP reply or error text and the number of attempts.  Every outcome is
 * committed as soon as it is known, in WAL mode.  With power_safe false
 * (synchronous=NORMAL, the default of `tern send`) a commit is in the WAL
 * file when the call returns: it survives the process being killed at any
 * instant, and only a power failure or kernel crash can lose the last few
 * (whose recipients would then be sent again: a duplicate, never a loss).
 * With power_safe true (synchronous=FULL) every commit is also fsynced.
 *
 * Bulk-sender rules (schema version 2, added to a version-1 ledger when it
 * is opened: old ledgers keep working): bounces, one row per lower-cased
 * address whatever the campaign (hard or soft, the status code, the time;
 * a hard bounce is never downgraded by a later soft one); tokens, the
 * per-recipient token of the return path and unsubscribe URL -> (campaign,
 * recipient), written before anything is sent so that a bounce arriving at
 * once finds it; meta, the token secret made when none is given.
 */
#ifndef TERN_SEND_LEDGER_H
#define TERN_SEND_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ledger_status { LEDGER_NONE = 0, LEDGER_SENT, LEDGER_TRANSIENT, LEDGER_PERMANENT };

struct ledger;

struct ledger *ledger_open(const char *path, bool power_safe, char *why, size_t whysize);
void ledger_close(struct ledger *l);

/* Status of one key; LEDGER_NONE if absent.  -1 on a database error. */
int ledger_get(struct ledger *l, const char *campaign, const char *rcpt, const char *window,
               enum ledger_status *st);
/* Record an outcome (insert or update, attempts += 1), committed before returning. */
int ledger_put(struct ledger *l, const char *campaign, const char *rcpt, const char *window,
               enum ledger_status st, const char *detail);
/* The smallest window (in seconds) already sent for (campaign, rcpt) in reminder mode,
 * -1 if none, -2 on a database error (do not send then: it may be a duplicate). */
int64_t ledger_min_window_sent(struct ledger *l, const char *campaign, const char *rcpt);
/* Write every permanent failure of campaign as CSV (email,window,attempts,detail). */
int ledger_report(struct ledger *l, const char *campaign, const char *csv_path, char *why,
                  size_t whysize);

enum ledger_bounce { LEDGER_BOUNCE_NONE = 0, LEDGER_BOUNCE_SOFT, LEDGER_BOUNCE_HARD };

/* Record a bounce of rcpt (kind SOFT or HARD; a SOFT never replaces a HARD). */
int ledger_bounce_put(struct ledger *l, const char *rcpt, enum ledger_bounce kind,
                      const char *status, const char *detail, const char *campaign);
/* The bounce state of rcpt (any campaign); -1 on a database error. */
int ledger_bounce_get(struct ledger *l, const char *rcpt, enum ledger_bounce *kind);
/* Remember token -> (campaign, rcpt); inside ledger_begin()/ledger_commit() for many. */
int ledger_token_put(struct ledger *l, const char *token, const char *campaign, const char *rcpt);
/* 1 found (campaign and rcpt filled), 0 not found, -1 error. */
int ledger_token_find(struct ledger *l, const char *token, char *campaign, size_t csize, char *rcpt,
                      size_t rsize);
/* 1 if rcpt has a row in sends (any campaign), 0 if not, -1 on error. */
int ledger_rcpt_known(struct ledger *l, const char *rcpt);
int ledger_begin(struct ledger *l);
int ledger_commit(struct ledger *l);
/* The ledger's own 32-octet token secret (made at random and kept the first time). */
int ledger_secret(struct ledger *l, unsigned char out[32]);

struct ledger_counts {
    unsigned long sent, transient, permanent, bounced_hard, bounced_soft;
};
/* Counts of campaign (NULL: every campaign); bounces of its recipients. */
int ledger_counts(struct ledger *l, const char *campaign, struct ledger_counts *c);

#endif
