/*
 * envelope.h - the envelope of one queued message and its text format.
 *
 * A struct envelope is what the queue knows about a message besides its
 * content: who sent it, when, the DSN parameters of MAIL and RCPT
 * (RFC 3461), the client it came from, and per recipient its delivery state
 * (pending / sent / failed, attempts, last error, the courier chosen).
 *
 * The on-disk form is one "key value" per line, versioned first line
 * ("tern-envelope 2"), an "end" line last so that a file cut short is
 * recognised.  Version 2 adds the size and CRC-32C of the message file
 * ("msg-size", "msg-crc32c", both required) so that the store can tell a
 * damaged .msg; version 1 (no checksum, written by older tern) is still
 * read, and an envelope without a checksum is written as version 1.  Values are escaped (%XX) so
 * that no control character and no '%' ever appears raw; octets >= 0x80 stay as they are (UTF-8
 * addresses remain readable).  Unknown keys, repeated keys, missing required keys and anything
 * after "end" are refused.
 *
 * Ownership: every string in a struct envelope is a heap copy owned by the
 * envelope (never NULL once envelope_init() has run; "" means absent);
 * envelope_free() releases them all.  Values longer than ENV_VALUE_MAX are
 * refused by envelope_format() rather than written and later unreadable.
 */
#ifndef TERN_QUEUE_ENVELOPE_H
#define TERN_QUEUE_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/command.h" /* enum dsn_ret, enum dsn_notify */

#define ENV_MAGIC "tern-envelope"
#define ENV_VERSION 2                 /* written when the message checksum is known */
#define ENV_VERSION_MIN 1             /* oldest version read */
#define ENV_MSG_SIZE_MAX (1ull << 40) /* largest msg-size accepted */
#define ENV_ID_MAX 64                 /* [A-Za-z0-9_-], not empty: safe as a file name */
#define ENV_VALUE_MAX 4096            /* decoded octets of one value */
#define ENV_RCPT_MAX 100000           /* recipients per envelope */
#define ENV_TIME_MAX 253402300799LL   /* 9999-12-31T23:59:59Z */
#define ENV_ATTEMPTS_MAX 1000000u

enum env_rcpt_status {
    ENV_RCPT_PENDING = 0,
    ENV_RCPT_SENT,
    ENV_RCPT_FAILED,
};

struct env_rcpt {
    char *addr;      /* where it is delivered: "local@domain" */
    char *orig;      /* the RCPT TO address before alias expansion, "" if unknown */
    char *orcpt;     /* RFC 3461 ORCPT "addr-type;xtext" as the client wrote it, "" */
    unsigned notify; /* enum dsn_notify bits; 0: NOTIFY not given */
    enum env_rcpt_status status;
    unsigned attempts;
    int64_t last_attempt; /* Unix seconds, 0: never tried */
    char *error;          /* last error, e.g. "550 5.1.1 no such user", "" if none */
    char *target;         /* courier chosen by the caller: "maildir:/path", "mda", "smtp" */
};

struct envelope {
    char id[ENV_ID_MAX + 1]; /* assigned by qstore_commit(); "" before */
    char *sender;            /* "" for the null sender <> */
    int64_t created;         /* Unix seconds: arrival */
    int64_t next_attempt;    /* Unix seconds: when the scheduler tries again */
    enum dsn_ret ret;        /* RET_NONE, RET_FULL, RET_HDRS */
    char *envid;             /* ENVID as the client wrote it (xtext), "" if absent */
    bool smtputf8;           /* MAIL had SMTPUTF8 */
    bool eightbitmime;       /* MAIL had BODY=8BITMIME */
    char *helo;              /* what the client said in HELO/EHLO */
    char *peer;              /* the client's address, e.g. "[192.0.2.1]:4567" */
    char *auth_user;         /* authenticated user, "" if none */
    bool delay_warned;       /* a "delayed" DSN has been sent */
    bool msg_sum;            /* msg_size and msg_crc are known (set by qstore_commit) */
    uint64_t msg_size;       /* octets of the message file */
    uint32_t msg_crc;        /* CRC-32C of the message file */
    int version;             /* as read by envelope_parse(): 1 or 2; 0: no version line */
    struct env_rcpt *rcpts;
    size_t nrcpt, rcpt_cap;
};

/* What envelope_parse() found. */
enum env_parse_result {
    ENV_OK = 0,
    ENV_INCOMPLETE, /* a valid beginning without the "end" line: cut short by a crash */
    ENV_CORRUPT,    /* anything else wrong: bad magic/version, syntax, key, value */
};

/* An empty envelope (all strings "").  Allocation failure is fatal. */
void envelope_init(struct envelope *env);
void envelope_free(struct envelope *env);

/* Replace *slot (a string of an envelope or recipient) with a copy of s
 * (NULL means ""). */
void envelope_set(char **slot, const char *s);

/* Append a recipient (status pending, no attempts); orig and target may be
 * NULL.  Returns it; the pointer is valid until the next envelope_add_rcpt(). */
struct env_rcpt *envelope_add_rcpt(struct envelope *env, const char *addr, const char *orig,
                                   const char *target);

/* Record the outcome of one attempt on r: attempts + 1, last_attempt = now,
 * status, error text (truncated to ENV_VALUE_MAX octets; NULL means ""). */
void envelope_rcpt_result(struct env_rcpt *r, enum env_rcpt_status status, int64_t now,
                          const char *error);

/* Number of recipients with the given status. */
size_t envelope_count(const struct envelope *env, enum env_rcpt_status status);

/* True if id is usable as an envelope id (and therefore as a file name). */
bool envelope_id_valid(const char *id);

/* Append the text form to out.  Returns 0, or -1 if the envelope cannot be
 * written faithfully (invalid id, value longer than ENV_VALUE_MAX, time out of
 * range, no recipient...): out is then left as it was. */
int envelope_format(const struct envelope *env, struct buf *out);

/*
 * Parse data[0..len) into *env (which is initialised here; on any result the
 * caller calls envelope_free()).  Returns an enum env_parse_result; for
 * ENV_INCOMPLETE and ENV_CORRUPT, why (if non-NULL) gets "line N: what".
 */
int envelope_parse(const char *data, size_t len, struct envelope *env, char *why, size_t whylen);

/* Field-by-field equality (tests and the fuzzer). */
bool envelope_equal(const struct envelope *a, const struct envelope *b);

const char *envelope_status_name(enum env_rcpt_status s);

#endif
