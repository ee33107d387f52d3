/*
 * fuzz_data.c - libFuzzer harness for core/data.c.
 *
 * The first bytes choose max_size, max_line and a chunking pattern.  The
 * input is fed in chunks and checked against a slow, obviously correct
 * reference reader written here: same end position, same emitted octets
 * (capped at max_size), same size and flags.  Then data_stuff() of the
 * input, plus ".\r\n", must read back as the input with normalised line
 * endings, with no bare CR/LF, ending exactly at the marker.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/data.h"

struct buf {
    char *p;
    size_t len, cap;
};

static void buf_add(void *ctx, const char *p, size_t n)
{
    struct buf *b = ctx;
    if (n == 0)
        abort(); /* the reader emits in non-empty runs */
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (b->p == NULL)
            abort();
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

struct ref {
    struct buf out;  /* unstuffed body (uncapped) */
    size_t consumed; /* through the final LF, or len */
    int done;
    unsigned flags;
};

/* The reference: a direct reading of RFC 5321 4.5.2 and data.h. */
static void ref_read(const char *in, size_t len, size_t max_line, struct ref *r)
{
    int bol = 1;
    size_t line = 0, end = len;

    memset(r, 0, sizeof(*r));
    for (size_t i = 0; i < len; i++) {
        if (bol && in[i] == '.' && i + 2 < len + 0 && in[i + 1] == '\r' && in[i + 2] == '\n') {
            end = i + 3;
            r->done = 1;
            break;
        }
        if (bol && in[i] == '.' && i + 2 == len && in[i + 1] == '\r')
            break; /* ".\r" at the very end: undecided */
        if (bol && in[i] == '.' && i + 1 == len)
            break; /* "." at the very end: undecided */
        line++;
        if (max_line && line > max_line)
            r->flags |= DATA_LINE_TOO_LONG;
        if (!(bol && in[i] == '.'))
            buf_add(&r->out, in + i, 1);
        bol = in[i] == '\n' && i > 0 && in[i - 1] == '\r';
        if (bol)
            line = 0;
    }
    /* the undecided tail still counts for the line length */
    if (!r->done)
        end = len;
    r->consumed = end;
    for (size_t i = 0; i < end; i++) {
        if (in[i] == '\r' && i + 1 < end && in[i + 1] != '\n')
            r->flags |= DATA_BARE_CR;
        if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
            r->flags |= DATA_BARE_LF;
        if (in[i] == '\0')
            r->flags |= DATA_NUL;
    }
}

static void check_stuff(const char *in, size_t len)
{
    struct buf st = {0}, norm = {0}, rd = {0};
    struct data_reader dr;
    int done;

    uint64_t n = data_stuff(in, len, buf_add, &st);
    if (n != st.len)
        abort();
    /* normalise: every CRLF, CR or LF becomes CRLF; a final CRLF if missing */
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '\r' || in[i] == '\n') {
            buf_add(&norm, "\r\n", 2);
            if (in[i] == '\r' && i + 1 < len && in[i + 1] == '\n')
                i++;
        } else {
            buf_add(&norm, in + i, 1);
        }
    }
    if (len > 0 && in[len - 1] != '\r' && in[len - 1] != '\n')
        buf_add(&norm, "\r\n", 2);
    buf_add(&st, ".\r\n", 3);
    data_reader_init(&dr, 0, 0);
    size_t c = data_reader_feed(&dr, st.p, st.len, &done, buf_add, &rd);
    if (!done || c != st.len || (dr.flags & (DATA_BARE_CR | DATA_BARE_LF)))
        abort();
    if (rd.len != norm.len || (rd.len && memcmp(rd.p, norm.p, rd.len) != 0))
        abort();
    free(st.p);
    free(norm.p);
    free(rd.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct data_reader dr;
    struct buf got = {0};
    struct ref ref;
    int done = 0;

    if (size < 3)
        return 0;
    uint64_t max_size = data[0] < 128 ? 0 : (uint64_t)(data[0] - 128) * 8;
    size_t max_line = data[1] < 3 ? 0 : data[1];
    unsigned pattern = data[2];
    const char *in = (const char *)data + 3;
    size_t len = size - 3;

    data_reader_init(&dr, max_size, max_line);
    size_t off = 0, k = 0;
    while (off < len && !done) {
        size_t step = pattern == 0 ? len : 1 + (pattern * (k + 1) * 7) % (pattern + 1);
        size_t n = len - off < step ? len - off : step;
        size_t c = data_reader_feed(&dr, in + off, n, &done, buf_add, &got);
        if (c > n || (!done && c != n))
            abort();
        off += c;
        k++;
    }
    if (done) {
        size_t c = data_reader_feed(&dr, in + off, len - off, &done, buf_add, &got);
        if (c != 0 || !done)
            abort();
    }

    ref_read(in, len, max_line, &ref);
    uint64_t want_emit = ref.out.len;
    unsigned want_flags = ref.flags;
    if (max_size && ref.out.len > max_size) {
        want_emit = max_size;
        want_flags |= DATA_TOO_BIG;
    }
    if (done != ref.done || off != ref.consumed || dr.size != ref.out.len)
        abort();
    if (got.len != want_emit || (got.len && memcmp(got.p, ref.out.p, got.len) != 0))
        abort();
    if (dr.flags != want_flags)
        abort();
    free(ref.out.p);
    free(got.p);

    check_stuff(in, len);
    return 0;
}
