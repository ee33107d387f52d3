/*
 * line.c - split buffered input into protocol lines under a hard maximum.
 *
 * The reader is a two-state machine: reading a line, or skipping the rest of
 * an over-long one.  It never owns, copies or allocates memory: it only looks
 * at the caller's window and says how many octets to drop.
 *
 * Invariants: *linelen + terminator == *consumed <= max for LINE_OK; at most
 * max octets are examined per call; LINE_TOO_LONG is reported exactly once
 * per over-long line, at the moment max octets without an LF have been seen,
 * and the remainder (up to and including its LF) is then consumed silently
 * as LINE_NEED_MORE with *consumed > 0.  A caller therefore loops while
 * *consumed is non-zero.
 *
 * Never: reads past len, treats a CR alone as a line end, or grows anything.
 */
#include "core/line.h"

#include <string.h>

void line_reader_init(struct line_reader *lr, size_t max)
{
    lr->max = max > 0 ? max : 1; /* a zero maximum could never make progress */
    lr->skipping = 0;
}

enum line_status line_reader_next(struct line_reader *lr, const char *data, size_t len,
                                  size_t *linelen, size_t *consumed)
{
    size_t window = len < lr->max ? len : lr->max;
    const char *lf = window > 0 ? memchr(data, '\n', window) : NULL;

    *linelen = 0;
    *consumed = 0;
    if (lr->skipping) {
        if (lf != NULL) {
            *consumed = (size_t)(lf - data) + 1;
            lr->skipping = 0;
        } else {
            *consumed = window;
        }
        return LINE_NEED_MORE;
    }
    if (lf != NULL) {
        size_t n = (size_t)(lf - data);
        *consumed = n + 1;
        if (n > 0 && data[n - 1] == '\r')
            n--;
        *linelen = n;
        return LINE_OK;
    }
    if (len >= lr->max) {
        /* max octets and still no LF: the line cannot fit. */
        *consumed = window;
        lr->skipping = 1;
        return LINE_TOO_LONG;
    }
    return LINE_NEED_MORE;
}
