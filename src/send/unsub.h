/*
 * unsub.h - the bulk-sender rules of `tern send`, per recipient: the token,
 * the VERP return path, the List-Unsubscribe header, the suppression list,
 * and the decision to skip an address (suppressed, hard bounce).
 *
 * The token ({{token}}): the list's own "token" column when it has one,
 * else the first 130 bits of HMAC-SHA256(secret, campaign NUL lower(rcpt))
 * in lower-case base32 (26 characters, safe in a local part and a URL).
 * The secret is --token-secret FILE (its first line, at least 16 octets) or
 * the ledger's own random one.  Tokens are not reversible: every token used
 * is written to the ledger before anything is sent, so a bounce that comes
 * back maps to (campaign, recipient) by a lookup, and a forged bounce must
 * know a recipient's token to mark that recipient.
 *
 * Patterns (--return-path, --unsubscribe-url, --unsubscribe-mailto) hold
 * {{name}} placeholders: token, rcpt_verp (local=domain of the recipient),
 * campaign, email, or any column of the list (a column wins over a built-in
 * name).  In a URL every value is percent-encoded; in an address a value
 * must hold only letters, digits and . _ = + - (else the row fails).  The
 * results are checked: an address must parse, a URL must be https:// (RFC
 * 8058's one-click needs it), printable ASCII without <>" or white space, at
 * most UNSUB_URL_MAX octets.  When a token is in use it also goes as the
 * ENVID of the MAIL command (to a server that offers DSN), so a DSN names it
 * in Original-Envelope-Id even when the return path was rewritten.
 */
#ifndef TERN_SEND_UNSUB_H
#define TERN_SEND_UNSUB_H

#include <stdbool.h>
#include <stddef.h>

#include "core/address.h"
#include "send/csv.h"
#include "send/ledger.h"

#define UNSUB_TOKEN_LEN 26
#define UNSUB_URL_MAX 900
#define UNSUB_HEADER_MAX (2 * UNSUB_URL_MAX + 64)
#define SUPPRESS_MAX_LINES 10000000
#define SUPPRESS_LINE_MAX 1000

struct bulk_opts {
    const char *return_path;  /* pattern, NULL = the --from address */
    const char *unsub_url;    /* pattern, NULL = none */
    const char *unsub_mailto; /* pattern (an address), NULL = none */
    const char *token_secret; /* file, NULL = the ledger's */
    const char *suppress;     /* file, NULL = none */
};

struct bulk;

/* Check the patterns against the list's columns and load the secret and the suppression
 * list.  NULL with why ("--return-path ...: ..." or "FILE:LINE: ...") on error. */
struct bulk *bulk_new(const struct bulk_opts *o, const struct csv_table *t, struct ledger *l,
                      char *why, size_t whysize);
void bulk_free(struct bulk *b);

/* Does the run need tokens written to the ledger (a pattern uses {{token}})? */
bool bulk_uses_token(const struct bulk *b);
/* Is there a List-Unsubscribe to add? */
bool bulk_has_unsub(const struct bulk *b);

enum bulk_skip { BULK_SEND = 0, BULK_SUPPRESSED, BULK_HARD_BOUNCE };

/* Plan one row (key: the lower-cased recipient): skip it, or record its token. -1 on a
 * ledger error. */
int bulk_plan(struct bulk *b, struct ledger *l, const char *campaign, const struct csv_table *t,
              const struct csv_row *row, const char *key, enum bulk_skip *skip);

/* The values of one message.  -1 with why naming the list's line on a bad value. */
struct bulk_msg {
    char return_path[ADDR_PATH_MAX + 1];     /* "" = --from */
    char list_unsubscribe[UNSUB_HEADER_MAX]; /* the header's value, "" = none */
    bool one_click;                          /* List-Unsubscribe-Post too */
    char envid[80];                          /* the token as the DSN ENVID (RFC 3461), "" = none */
};
int bulk_message(const struct bulk *b, const char *campaign, const struct csv_table *t,
                 const struct csv_row *row, const char *rcpt, struct bulk_msg *m, char *why,
                 size_t whysize);

/* The token of (campaign, rcpt) under secret (lower-case base32, NUL-terminated). */
void unsub_token(const unsigned char *secret, size_t slen, const char *campaign, const char *rcpt,
                 char out[UNSUB_TOKEN_LEN + 1]);

/* The suppression list alone (for tests): load, look up (case-insensitive). */
struct suppress;
struct suppress *suppress_load(const char *path, char *why, size_t whysize);
struct suppress *suppress_parse(const char *name, const char *text, size_t len, char *why,
                                size_t whysize);
bool suppress_has(const struct suppress *s, const char *addr);
size_t suppress_count(const struct suppress *s);
void suppress_free(struct suppress *s);

#endif
