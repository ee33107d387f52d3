/*
 * courier.h - what every local courier (maildir, mda, pipe) returns, and the
 * envelope values they may use.
 *
 * A delivery attempt for one recipient ends in exactly one enum
 * courier_result.  OK: delivered, the queue marks the recipient sent.  TEMP:
 * try again later on the delay table (disk full, quota, a program's exit 75,
 * a timeout, a problem the administrator can fix).  PERM: never retry; the
 * queue sends a DSN with the error text and status code.
 *
 * struct courier_error is filled on TEMP and PERM: an RFC 3463 enhanced
 * status code ("4.2.0", "5.3.0", ...) and one line of printable ASCII text,
 * bounded and cleaned of control characters, safe to put in a log line, in
 * the queue's envelope file and in a DSN's Diagnostic-Code.  Texts of PERM
 * results may reach the sender, so they never contain file system paths.
 * Nothing here allocates.
 */
#ifndef TERN_DELIVER_COURIER_H
#define TERN_DELIVER_COURIER_H

#include <stdbool.h>
#include <stddef.h>

enum courier_result {
    COURIER_OK = 0, /* delivered */
    COURIER_TEMP,   /* transient: retry later */
    COURIER_PERM,   /* permanent: bounce */
};

#define COURIER_STATUS_MAX 16 /* "X.YYY.ZZZ" fits with room */
#define COURIER_TEXT_MAX 640  /* a program's first 512 octets of output plus our words */

struct courier_error {
    char status[COURIER_STATUS_MAX]; /* enhanced status code, "" when OK */
    char text[COURIER_TEXT_MAX];     /* one line, printable ASCII, "" when OK */
};

/*
 * The envelope values a delivery may hand to a program (substitutions in a
 * command line, and its environment).  NULL members count as "".  from is
 * "" for the null sender <>.  to is the address being delivered to
 * (local@domain, after alias expansion); to_user and to_domain are its two
 * halves; orig_to is the address as the client gave it in RCPT TO.
 */
struct courier_vars {
    const char *from;
    const char *to;
    const char *to_user;
    const char *to_domain;
    const char *orig_to;
};

/* Empty status and text. */
void courier_error_clear(struct courier_error *e);

/*
 * Fill e (if not NULL) with status and the formatted text (cleaned with
 * courier_clean()), and return r, so that a courier can write
 * "return courier_fail(e, COURIER_TEMP, "4.3.1", "disk full");".
 */
__attribute__((format(printf, 4, 5))) enum courier_result courier_fail(struct courier_error *e,
                                                                       enum courier_result r,
                                                                       const char *status,
                                                                       const char *fmt, ...);

/*
 * Copy src[0..len) into dst (size >= 1) as one line of printable ASCII:
 * every control character (CR, LF, TAB, NUL, DEL, ...) becomes a space,
 * runs of spaces collapse to one, octets >= 0x80 become '?', leading and
 * trailing spaces go.  A text that does not fit ends in "...".  Returns the
 * length written (always < size).
 */
size_t courier_clean(char *dst, size_t size, const char *src, size_t len);

/* "ok", "temporary", "permanent". */
const char *courier_result_name(enum courier_result r);

/* True if s (NULL counts as "") has a control character (< 0x20 or DEL). */
bool courier_has_ctl(const char *s);

/*
 * A reader over a message given as two pieces (a prefix of header fields
 * the courier adds, then the queued message), optionally turning every CRLF
 * into LF, the line end that Maildir readers and Unix programs expect.  A
 * CR not followed by LF (within the same piece) is kept.  The pieces are
 * borrowed, not copied.
 */
struct courier_lf {
    const char *seg[2];
    size_t len[2];
    int idx;
    size_t pos;
    bool convert;
};

void courier_lf_init(struct courier_lf *r, const char *prefix, size_t prefix_len, const char *msg,
                     size_t len, bool convert);

/* Up to size octets into dst; 0 at the end. */
size_t courier_lf_read(struct courier_lf *r, char *dst, size_t size);

#endif
