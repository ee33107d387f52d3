/*
 * fuzz_linebreak.c - libFuzzer harness for core/linebreak.c.
 *
 * The first two bytes choose the limit (small ones, so that breaks are
 * common, or 998) and the width; the rest is the message.  Checked: the
 * octets emitted from the input are the whole input, in order, nothing
 * skipped or repeated; everything else is a separator "\r\n" or "\r\n ";
 * a bare "\r\n" separator is followed by white space from the input (a
 * fold); no output line is longer than the limit; input whose lines are all
 * within the limit comes out unchanged; and breaking the output again
 * changes nothing.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/linebreak.h"

struct out {
    const char *in;
    size_t in_len, next;
    char *p;
    size_t len, cap;
    int after_fold; /* the last emit was a "\r\n" separator */
    unsigned seps;
};

static void out_emit(void *ctx, const char *p, size_t n)
{
    struct out *o = ctx;
    if (n == 0)
        abort();
    if (o->in != NULL && p >= o->in && p < o->in + o->in_len) {
        if (p != o->in + o->next || n > o->in_len - o->next)
            abort(); /* input out of order, skipped or repeated */
        if (o->after_fold && p[0] != ' ' && p[0] != '\t')
            abort(); /* a fold must be followed by the white space that was there */
        o->next += n;
        o->after_fold = 0;
    } else {
        if (o->after_fold)
            abort(); /* two separators in a row */
        if (n == 2 && memcmp(p, "\r\n", 2) == 0)
            o->after_fold = 1;
        else if (!(n == 3 && memcmp(p, "\r\n ", 3) == 0))
            abort();
        o->seps++;
    }
    if (o->len + n > o->cap) {
        o->cap = (o->len + n) * 2 + 64;
        o->p = realloc(o->p, o->cap);
        if (o->p == NULL)
            abort();
    }
    memcpy(o->p + o->len, p, n);
    o->len += n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t limit = data[0] == 255 ? LINEBREAK_LIMIT : 2 + data[0] % 64;
    size_t width = data[0] == 255 ? LINEBREAK_WIDTH : 2 + data[1] % (limit - 1);
    const char *in = (const char *)data + 2;
    size_t len = size - 2;
    struct out o = {.in = in, .in_len = len};

    uint64_t n = linebreak(in, len, limit, width, out_emit, &o); /* before o.len is read */
    if (n != o.len || o.next != len || o.after_fold)
        abort();
    if (linebreak_longest(o.p, o.len) > limit)
        abort();
    if (linebreak_longest(in, len) <= limit && o.len != len)
        abort();
    struct out again = {.in = o.p, .in_len = o.len};
    if (linebreak(o.p, o.len, limit, width, out_emit, &again) != o.len || again.seps != 0 ||
        again.len != o.len || (o.len > 0 && memcmp(again.p, o.p, o.len) != 0))
        abort();
    free(again.p);
    free(o.p);
    return 0;
}
