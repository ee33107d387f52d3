/*
 * bounce.h - reading the bounces that come back to `tern send`'s return path.
 *
 * bounce_parse() reads one message (as delivered: headers, empty line,
 * body; CRLF or LF) and says which recipients failed and how:
 *  - an RFC 3464 report: a message/delivery-status (or RFC 6533
 *    message/global-delivery-status) part anywhere in the MIME tree (at most
 *    BOUNCE_DEPTH levels): Original-Envelope-Id, and per recipient
 *    Final-Recipient, Action, Status, Diagnostic-Code;
 *  - otherwise the common plain-text bounces: Postfix's and qmail's
 *    "<addr>: reason" paragraphs, Exim's indented "  addr" followed by the
 *    indented error lines, Sendmail's "<addr>" lines, and Exim's
 *    X-Failed-Recipients header;
 *  - always the addresses the bounce was sent to (To, Delivered-To,
 *    X-Original-To, Envelope-To), where a VERP token is looked for.
 * Each recipient is classed: Status 5.x.x (or a 5xx reply) hard, 4.x.x (or
 * 4xx, or Action: delayed) soft; Action delivered/relayed/expanded: not a
 * bounce.  A text bounce without any code is hard only when it says the
 * error is permanent, else soft (an address is never suppressed without
 * evidence).
 *
 * Pure and bounded: no I/O, no allocation; at most BOUNCE_SCAN_MAX octets of
 * the message are read, at most BOUNCE_MAX_RCPTS recipients and
 * BOUNCE_MAX_HINTS addresses kept, every text truncated to its field.
 * Everything copied out has control characters replaced by spaces.
 */
#ifndef TERN_SEND_BOUNCE_H
#define TERN_SEND_BOUNCE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/address.h"

#define BOUNCE_SCAN_MAX (1024 * 1024)
#define BOUNCE_MAX_RCPTS 32
#define BOUNCE_MAX_HINTS 8
#define BOUNCE_DEPTH 4
#define BOUNCE_DIAG_MAX 300

enum bounce_kind { BOUNCE_NONE = 0, BOUNCE_SOFT, BOUNCE_HARD };

struct bounce_rcpt {
    char addr[ADDR_PATH_MAX + 1]; /* as reported, without <> and type */
    char action[16];              /* "failed", "delayed", ... or "" (text bounce) */
    char status[16];              /* "5.1.1", or "" when none was found */
    char diag[BOUNCE_DIAG_MAX];   /* Diagnostic-Code or the text's reason */
    enum bounce_kind kind;
};

struct bounce_report {
    bool dsn; /* an RFC 3464 delivery-status part was found */
    char envid[101];
    char hints[BOUNCE_MAX_HINTS][ADDR_PATH_MAX + 1]; /* where the bounce was sent */
    size_t nhints;
    struct bounce_rcpt rcpts[BOUNCE_MAX_RCPTS];
    size_t nrcpts;
};

void bounce_parse(const char *msg, size_t len, struct bounce_report *out);

/* The class of one recipient from its Action, Status and diagnostic text (each may be ""). */
enum bounce_kind bounce_classify(const char *action, const char *status, const char *diag);

/* "hard", "soft" or "none". */
const char *bounce_kind_name(enum bounce_kind k);

/* The enhanced status code (or "4.0.0"/"5.0.0" from a basic reply code) found in text,
 * into out; "" when none.  Returns out. */
const char *bounce_find_status(const char *text, char *out, size_t size);

#endif
