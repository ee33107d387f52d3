/*
 * linebreak.c - break over-long lines for the next hop (see linebreak.h).
 *
 * One pass: lines are found with memchr (next CR and next LF cached, as in
 * data_stuff, so the input is scanned once); a line over the limit is cut
 * piece by piece, each cut searched backwards within one window of at most
 * `width` octets, so the work is linear in the input.  Untouched text is
 * emitted in runs as long as possible.
 *
 * Invariants: the output is the input with separators inserted ("\r\n" or
 * "\r\n "), only inside lines longer than limit; every output line is at
 * most limit octets; a separator never lands inside a line end or between
 * the octets of a UTF-8 sequence.
 *
 * Never: allocates, reads past len.
 */
#include "core/linebreak.h"

#include <stdbool.h>
#include <string.h>

static bool lb_space(char c)
{
    return c == ' ' || c == '\t';
}

/* Next line end (CR or LF) at or after i; len if none.  The caches hold the
 * next CR / LF positions found so far. */
static size_t lb_eol(const char *msg, size_t len, size_t i, size_t *ncr, size_t *nlf, bool *have)
{
    if (!have[0] || *ncr < i) {
        const char *q = memchr(msg + i, '\r', len - i);
        *ncr = q != NULL ? (size_t)(q - msg) : len;
        have[0] = true;
    }
    if (!have[1] || *nlf < i) {
        const char *q = memchr(msg + i, '\n', len - i);
        *nlf = q != NULL ? (size_t)(q - msg) : len;
        have[1] = true;
    }
    return *ncr < *nlf ? *ncr : *nlf;
}

size_t linebreak_longest(const char *msg, size_t len)
{
    size_t i = 0, longest = 0, ncr = 0, nlf = 0;
    bool have[2] = {false, false};

    while (i < len) {
        size_t eol = lb_eol(msg, len, i, &ncr, &nlf, have);
        if (eol - i > longest)
            longest = eol - i;
        i = eol + 1; /* CRLF: the LF is an empty line of its own here, which is harmless */
    }
    return longest;
}

/*
 * Where to cut s[0..m) (m > w): the start of the last white-space run that
 * begins at 1..w and follows text (*pad = false: the continuation begins with
 * that run), else w octets backed off to a UTF-8 boundary (*pad = true: a
 * space goes before the continuation).  Returns a cut in 1..w.
 */
static size_t lb_cut(const char *s, size_t w, bool *pad)
{
    size_t q;

    for (q = w; q >= 1; q--) {
        if (lb_space(s[q]) && !lb_space(s[q - 1])) {
            *pad = false;
            return q;
        }
    }
    *pad = true;
    q = w;
    while (q > 1 && w - q < 3 && ((unsigned char)s[q] & 0xC0) == 0x80)
        q--; /* s[q] continues a UTF-8 sequence: cut before its lead octet */
    return q;
}

static void lb_put(const char *p, size_t n, data_emit_fn emit, void *ctx, uint64_t *total)
{
    if (n == 0)
        return;
    emit(ctx, p, n);
    *total += n;
}

uint64_t linebreak(const char *msg, size_t len, size_t limit, size_t width, data_emit_fn emit,
                   void *ctx)
{
    uint64_t total = 0;
    size_t i = 0, start = 0, ncr = 0, nlf = 0; /* msg[start..) not yet emitted */
    bool have[2] = {false, false};

    if (limit < 2)
        limit = 2;
    if (width > limit)
        width = limit;
    if (width < 2)
        width = 2; /* a piece after an inserted space holds at least one octet */
    while (i < len) {
        size_t eol = lb_eol(msg, len, i, &ncr, &nlf, have);
        size_t p = i;     /* start of the rest of the line */
        bool pad = false; /* the rest goes out after an inserted space */
        while (eol - p + pad > limit) {
            bool next_pad;
            size_t cut = lb_cut(msg + p, width - pad, &next_pad);
            lb_put(msg + start, p + cut - start, emit, ctx, &total);
            lb_put(next_pad ? "\r\n " : "\r\n", next_pad ? 3 : 2, emit, ctx, &total);
            p += cut;
            start = p;
            pad = next_pad;
        }
        i = eol + 1;
    }
    if (len > start) /* msg may be NULL when len is 0 */
        lb_put(msg + start, len - start, emit, ctx, &total);
    return total;
}
