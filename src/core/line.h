/*
 * line.h - split a byte stream into protocol lines, with a hard maximum.
 *
 * The reader never owns memory: the caller shows it a window of buffered
 * input and drops *consumed bytes afterwards.  A line ends at LF; a CR right
 * before the LF is not part of the line.  A line longer than the maximum
 * (the maximum counts the CRLF, as RFC 5321 4.5.3.1 does) is reported once as
 * LINE_TOO_LONG and then skipped up to and including its LF, so the session
 * stays in step with the client after an over-long line.
 *
 * Caller loop: drop *consumed octets after every call, and call again while
 * the result is not LINE_NEED_MORE or *consumed was non-zero (the end of a
 * skipped line comes back as LINE_NEED_MORE with *consumed > 0, and a whole
 * line may already be buffered behind it).
 */
#ifndef TERN_CORE_LINE_H
#define TERN_CORE_LINE_H

#include <stddef.h>

#define SMTP_CMD_LINE_MAX 512 /* command line incl. CRLF, RFC 5321 4.5.3.1.4 */
#define SMTP_CMD_LINE_DSN                                                                          \
    500                         /* more for RCPT's ORCPT (MAIL's ENVID: 100) when DSN is offered,  \
                                   RFC 3461 5 */
#define SMTP_TEXT_LINE_MAX 1000 /* text line incl. CRLF, RFC 5321 4.5.3.1.6 */
#define SMTP_REPLY_LINE_MAX 512 /* reply line incl. CRLF, RFC 5321 4.5.3.1.5 */

enum line_status {
    LINE_NEED_MORE, /* no complete line yet; drop *consumed bytes (non-zero while skipping) */
    LINE_OK,        /* data[0..*linelen) is a line; drop *consumed bytes (incl. terminator) */
    LINE_TOO_LONG,  /* a line exceeded the maximum; drop *consumed; the rest is skipped */
};

struct line_reader {
    size_t max;   /* maximum line length including CRLF */
    int skipping; /* inside the remainder of an over-long line */
};

/* max is raised to 1 if 0. */
void line_reader_init(struct line_reader *lr, size_t max);

/*
 * Look at data[0..len).  Only the first max bytes are ever examined for a
 * terminator, so a caller may pass a window of exactly min(len, max) bytes.
 */
enum line_status line_reader_next(struct line_reader *lr, const char *data, size_t len,
                                  size_t *linelen, size_t *consumed);

#endif
