/*
 * result.h - the one per-recipient result of a delivery, from the SMTP
 * client through the couriers to the queue's envelope.
 *
 * A delivery attempt for one recipient ends in exactly one class.  OK:
 * delivered (or relayed), the queue marks the recipient sent.  TEMP: try
 * again later on the delay table (disk full, quota, a program's exit 75, a
 * timeout, a 4xx reply, a problem the administrator can fix).  PERM: never
 * retry; the queue sends a DSN with the status code and text.
 *
 * code is the SMTP reply code when a server gave one (250, 451, 550), else
 * 0.  status is an RFC 3463 enhanced status code ("4.2.0", "5.1.1"), "" for
 * OK.  text is one line of printable ASCII, bounded and cleaned of control
 * characters, safe in a log line, in the envelope file and in a DSN's
 * Diagnostic-Code; for a server's reply it is the reply itself ("550 5.1.1
 * no such user").  Texts of PERM results may reach the sender, so they never
 * name file system paths.  relayed: the next hop took the message and
 * offered DSN, so it (not us) answers for NOTIFY=SUCCESS (RFC 3461 4.1).
 * Nothing here allocates.
 */
#ifndef TERN_CORE_RESULT_H
#define TERN_CORE_RESULT_H

#include <stdbool.h>
#include <stddef.h>

enum result_class {
    RESULT_OK = 0, /* delivered */
    RESULT_TEMP,   /* transient: retry later */
    RESULT_PERM,   /* permanent: bounce */
};

#define RESULT_STATUS_MAX 16 /* "X.YYY.ZZZ" fits with room */
#define RESULT_TEXT_MAX 640  /* a program's first 512 octets of output plus our words */

struct rcpt_result {
    enum result_class cls;
    int code;                       /* SMTP reply code, 0 when no server said it */
    bool dsn_passed;                /* relayed to a next hop that offered DSN */
    char status[RESULT_STATUS_MAX]; /* enhanced status code, "" when OK */
    char text[RESULT_TEXT_MAX];     /* one line, printable ASCII, "" when OK */
};

/* OK, no code, empty status and text. */
void result_clear(struct rcpt_result *r);

/*
 * Set r (if not NULL) to class cls with status and the formatted text
 * (cleaned with result_clean()), code 0; returns cls, so that a courier can
 * write "return result_fail(r, RESULT_TEMP, "4.3.1", "disk full");".
 */
__attribute__((format(printf, 4, 5))) enum result_class
result_fail(struct rcpt_result *r, enum result_class cls, const char *status, const char *fmt, ...);

/*
 * Copy src[0..len) into dst (size >= 1) as one line of printable ASCII:
 * every control character (CR, LF, TAB, NUL, DEL, ...) becomes a space,
 * runs of spaces collapse to one, octets >= 0x80 become '?', leading and
 * trailing spaces go.  A text that does not fit ends in "...".  Returns the
 * length written (always < size).
 */
size_t result_clean(char *dst, size_t size, const char *src, size_t len);

/* "ok", "temporary", "permanent". */
const char *result_class_name(enum result_class c);

#endif
