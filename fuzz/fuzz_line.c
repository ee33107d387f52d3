/*
 * fuzz_line.c - libFuzzer harness for core/line.c.
 *
 * The first byte picks the maximum; the rest is split into lines twice: all
 * at once (windows of min(len, max)) and one byte at a time through a small
 * buffer, as a session would.  Both must yield the same lines and the same
 * number of LINE_TOO_LONG reports; every line fits the maximum, contains no
 * LF, and each call makes progress or asks for more.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/line.h"

#define MAXMAX 600

struct events {
    uint64_t hash;
    size_t lines, too_long;
};

static void line_event(struct events *ev, const char *p, size_t n)
{
    uint64_t h = ev->hash ^ (n + 0x9e3779b97f4a7c15ull);
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
    ev->hash = h * 31 + 7;
    ev->lines++;
}

static void check_line(const struct line_reader *lr, const char *p, size_t ll, size_t used)
{
    if (used > lr->max || ll + 1 > used || used - ll > 2)
        abort();
    if (p[used - 1] != '\n' || memchr(p, '\n', ll) != NULL)
        abort();
    if (used - ll == 2 && p[ll] != '\r')
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct line_reader lr;
    struct events a = {0}, b = {0};
    size_t max, off = 0, ll, used;
    static char buf[MAXMAX];
    size_t blen = 0;

    if (size < 1)
        return 0;
    max = 1 + data[0] % MAXMAX;
    const char *in = (const char *)data + 1;
    size_t len = size - 1;

    /* all at once */
    line_reader_init(&lr, max);
    for (;;) {
        size_t win = len - off < max ? len - off : max;
        enum line_status st = line_reader_next(&lr, in + off, win, &ll, &used);
        if (used > win)
            abort();
        if (st == LINE_OK) {
            check_line(&lr, in + off, ll, used);
            line_event(&a, in + off, ll);
        } else if (st == LINE_TOO_LONG) {
            if (used != max || lr.skipping != 1)
                abort();
            a.too_long++;
        }
        off += used;
        if (st == LINE_NEED_MORE && used == 0)
            break;
    }
    /* only an incomplete line (shorter than max) may remain */
    if (!lr.skipping && (len - off >= max || memchr(in + off, '\n', len - off) != NULL))
        abort();

    /* one byte at a time through a bounded buffer */
    line_reader_init(&lr, max);
    for (size_t i = 0; i < len; i++) {
        if (blen >= max)
            abort(); /* the reader must have let us drop something */
        buf[blen++] = in[i];
        for (;;) {
            enum line_status st = line_reader_next(&lr, buf, blen, &ll, &used);
            if (used > blen)
                abort();
            if (st == LINE_OK) {
                check_line(&lr, buf, ll, used);
                line_event(&b, buf, ll);
            } else if (st == LINE_TOO_LONG) {
                b.too_long++;
            }
            memmove(buf, buf + used, blen - used);
            blen -= used;
            if (st == LINE_NEED_MORE && used == 0)
                break;
        }
    }
    if (a.hash != b.hash || a.lines != b.lines || a.too_long != b.too_long)
        abort();
    return 0;
}
