/*
 * data.c - the DATA phase as a byte state machine: dot-unstuffing, the
 * CRLF "." CRLF end marker, size and line-length accounting, and the
 * client-side inverse (data_stuff).
 *
 * States: at the beginning of a line (BOL), after a BOL dot (DOT), after a
 * BOL dot and CR (DOT_CR), inside a line (TEXT), after a CR in a line (CR),
 * and DONE.  Only the BOL dot and the CR after it are ever withheld; every
 * other octet is emitted as received, in runs found with memchr so that the
 * common case costs two memchr calls per line.  The next CR and LF positions
 * are cached per call, so input without one of them is never rescanned
 * (linear in the input whatever its shape).
 *
 * Invariants: total emitted == min(size, max_size); the consumed count never
 * exceeds len; after the end marker nothing more is read.  Bare CR / bare LF
 * never end a line; they only set flags.
 *
 * Never: allocates, buffers input, or reads past len.
 */
#include "core/data.h"

#include <stdbool.h>
#include <string.h>

enum data_state { DS_BOL = 0, DS_DOT, DS_DOT_CR, DS_TEXT, DS_CR, DS_DONE };

void data_reader_init(struct data_reader *dr, uint64_t max_size, size_t max_line)
{
    memset(dr, 0, sizeof(*dr));
    dr->state = DS_BOL;
    dr->max_size = max_size;
    dr->max_line = max_line;
}

/* Account and emit message octets, stopping emission once over max_size. */
static void data_out(struct data_reader *dr, const char *p, size_t n, data_emit_fn emit, void *ctx)
{
    if (n == 0)
        return;
    dr->size += n;
    if (dr->flags & DATA_TOO_BIG)
        return;
    if (dr->max_size != 0 && dr->size > dr->max_size) {
        n -= (size_t)(dr->size - dr->max_size);
        dr->flags |= DATA_TOO_BIG;
    }
    if (n > 0)
        emit(ctx, p, n);
}

static void data_line_add(struct data_reader *dr, size_t n)
{
    dr->line_len += n;
    if (dr->max_line != 0 && dr->line_len > dr->max_line)
        dr->flags |= DATA_LINE_TOO_LONG;
}

size_t data_reader_feed(struct data_reader *dr, const char *in, size_t len, int *done,
                        data_emit_fn emit, void *ctx)
{
    size_t i = 0, start = 0; /* in[start..i) is pending emission */
    size_t ncr = 0, nlf = 0; /* cached positions of the next CR / LF (len if none) */
    bool have_cr = false, have_lf = false;

    *done = 0;
    if (dr->state == DS_DONE) {
        *done = 1;
        return 0;
    }
    while (i < len) {
        unsigned char c = (unsigned char)in[i];
        switch (dr->state) {
        case DS_BOL:
            if (c == '.') {
                data_out(dr, in + start, i - start, emit, ctx);
                start = i + 1; /* the dot is withheld: stuffing or end marker */
                data_line_add(dr, 1);
                dr->state = DS_DOT;
                i++;
            } else {
                dr->state = DS_TEXT;
            }
            break;
        case DS_DOT:
            if (c == '\r') {
                start = i + 1; /* withheld until we know it is not the end */
                data_line_add(dr, 1);
                dr->state = DS_DOT_CR;
                i++;
            } else {
                dr->state = DS_TEXT; /* the dot was stuffing (or deleted, 4.5.2) */
            }
            break;
        case DS_DOT_CR:
            if (c == '\n') {
                i++;
                dr->line_len = 0;
                dr->state = DS_DONE;
                *done = 1;
                goto out;
            }
            data_out(dr, "\r", 1, emit, ctx); /* ".\r" then not LF: a bare CR */
            dr->flags |= DATA_BARE_CR;
            dr->state = DS_TEXT;
            break;
        case DS_CR:
            if (c == '\n') {
                i++;
                data_line_add(dr, 1);
                dr->line_len = 0;
                dr->state = DS_BOL;
            } else {
                dr->flags |= DATA_BARE_CR;
                dr->state = DS_TEXT;
            }
            break;
        case DS_TEXT: {
            size_t stop;
            if (!have_cr || ncr < i) {
                const char *q = memchr(in + i, '\r', len - i);
                ncr = q != NULL ? (size_t)(q - in) : len;
                have_cr = true;
            }
            if (!have_lf || nlf < i) {
                const char *q = memchr(in + i, '\n', len - i);
                nlf = q != NULL ? (size_t)(q - in) : len;
                have_lf = true;
            }
            stop = ncr < nlf ? ncr : nlf;
            if (stop >= len) {
                data_line_add(dr, len - i);
                i = len;
                break;
            }
            data_line_add(dr, stop - i + 1);
            i = stop + 1;
            if (in[stop] == '\r')
                dr->state = DS_CR;
            else
                dr->flags |= DATA_BARE_LF; /* the line goes on */
            break;
        }
        default:
            goto out;
        }
    }
out:
    /* Everything in [start, i) is message text, up to the withheld dot at most. */
    if (dr->state == DS_DONE) {
        /* start points past the withheld ".\r"; nothing of the marker is emitted */
    } else {
        data_out(dr, in + start, i - start, emit, ctx);
    }
    if (!(dr->flags & DATA_NUL) && i > 0 && memchr(in, '\0', i) != NULL)
        dr->flags |= DATA_NUL;
    return i;
}

/* Emit and count. */
static void data_put(const char *p, size_t n, data_emit_fn emit, void *ctx, uint64_t *total)
{
    if (n == 0)
        return;
    emit(ctx, p, n);
    *total += n;
}

uint64_t data_stuff(const char *body, size_t len, data_emit_fn emit, void *ctx)
{
    uint64_t total = 0;
    size_t i = 0, start = 0, ncr = 0, nlf = 0;
    bool have_cr = false, have_lf = false;

    while (i < len) {
        size_t eol;
        /* at the beginning of a line */
        if (body[i] == '.') {
            data_put(body + start, i - start, emit, ctx, &total);
            data_put(".", 1, emit, ctx, &total);
            start = i; /* the original dot follows in the run */
        }
        if (!have_cr || ncr < i) {
            const char *q = memchr(body + i, '\r', len - i);
            ncr = q != NULL ? (size_t)(q - body) : len;
            have_cr = true;
        }
        if (!have_lf || nlf < i) {
            const char *q = memchr(body + i, '\n', len - i);
            nlf = q != NULL ? (size_t)(q - body) : len;
            have_lf = true;
        }
        eol = ncr < nlf ? ncr : nlf;
        if (eol >= len) {
            /* last line without an ending: add CRLF */
            data_put(body + start, len - start, emit, ctx, &total);
            data_put("\r\n", 2, emit, ctx, &total);
            return total;
        }
        if (body[eol] == '\r' && eol + 1 < len && body[eol + 1] == '\n') {
            i = eol + 2; /* CRLF: stays in the run */
            continue;
        }
        /* a bare CR or LF becomes CRLF */
        data_put(body + start, eol - start, emit, ctx, &total);
        data_put("\r\n", 2, emit, ctx, &total);
        i = eol + 1;
        start = i;
    }
    data_put(body + start, len - start, emit, ctx, &total);
    return total;
}
