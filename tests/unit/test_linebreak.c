/*
 * test_linebreak.c - unit tests for core/linebreak.c: lines at and around
 * the limit, cuts at white space (folding) and forced cuts (CRLF SP), UTF-8
 * sequences kept whole, every line-end form, long runs of breaks, and the
 * invariants on every output: only separators inserted, no line over the
 * limit, every continuation beginning with white space.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/data.h"
#include "core/linebreak.h"

struct out {
    const char *in; /* the input: emitted slices must point into it, in order */
    size_t in_len, next;
    char *buf;
    size_t len, cap;
    unsigned seps;
};

static void out_emit(void *ctx, const char *p, size_t n)
{
    struct out *o = ctx;
    assert_true(n > 0);
    if (p >= o->in && p < o->in + o->in_len) {
        assert_ptr_equal(p, o->in + o->next); /* the input, in order, nothing skipped */
        o->next += n;
    } else {
        assert_true((n == 2 && memcmp(p, "\r\n", 2) == 0) ||
                    (n == 3 && memcmp(p, "\r\n ", 3) == 0));
        o->seps++;
    }
    if (o->len + n + 1 > o->cap) {
        o->cap = (o->len + n + 1) * 2;
        o->buf = realloc(o->buf, o->cap);
        assert_non_null(o->buf);
    }
    memcpy(o->buf + o->len, p, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

/* Break in[0..len) and check the invariants; the caller frees o->buf. */
static void brk(struct out *o, const char *in, size_t len, size_t limit, size_t width)
{
    memset(o, 0, sizeof(*o));
    o->in = in;
    o->in_len = len;
    uint64_t n = linebreak(in, len, limit, width, out_emit, o); /* before o->len is read */
    assert_int_equal(n, o->len);
    assert_int_equal(o->next, len);
    assert_true(linebreak_longest(o->buf, o->len) <= limit);
    if (linebreak_longest(in, len) <= limit)
        assert_int_equal(o->seps, 0); /* short lines are never touched */
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void test_longest(void **state)
{
    (void)state;
    assert_int_equal(linebreak_longest("", 0), 0);
    assert_int_equal(linebreak_longest("abc", 3), 3);
    assert_int_equal(linebreak_longest("ab\r\nabcd\r\n", 10), 4);
    assert_int_equal(linebreak_longest("ab\rabcde\nx", 10), 5); /* bare CR and LF end lines */
}

static void test_at_limit_untouched(void **state)
{
    (void)state;
    struct out o;
    char *s = repeat('a', 998);
    brk(&o, s, 998, LINEBREAK_LIMIT, LINEBREAK_WIDTH);
    assert_int_equal(o.len, 998);
    free(o.buf);
    free(s);
}

static void test_forced_cut(void **state)
{
    (void)state;
    struct out o;
    char *s = repeat('a', 999);
    brk(&o, s, 999, LINEBREAK_LIMIT, LINEBREAK_WIDTH);
    /* 990 octets, CRLF SP, the other 9 */
    assert_int_equal(o.len, 999 + 3);
    assert_memory_equal(o.buf + 990, "\r\n aaaaaaaaa", 12);
    free(o.buf);
    free(s);

    /* 3000 octets: 990, then SP + 989 per piece, the last one shorter */
    s = repeat('b', 3000);
    brk(&o, s, 3000, LINEBREAK_LIMIT, LINEBREAK_WIDTH);
    assert_int_equal(o.seps, 3);
    assert_memory_equal(o.buf + 990, "\r\n b", 4);
    assert_memory_equal(o.buf + 990 + 3 + 989, "\r\n b", 4);
    free(o.buf);
    free(s);
}

static void test_fold_at_space(void **state)
{
    (void)state;
    struct out o;
    /* "Subject: " then words of 9 letters: the cut lands before a space */
    char in[2100];
    size_t n = 0;
    n += (size_t)snprintf(in, sizeof(in), "Subject:");
    while (n + 10 < 2000)
        n += (size_t)snprintf(in + n, sizeof(in) - n, " wordwordw");
    memcpy(in + n, "\r\n\r\nbody\r\n", 10);
    n += 10;
    brk(&o, in, n, LINEBREAK_LIMIT, LINEBREAK_WIDTH);
    assert_int_equal(o.seps, 2);
    assert_int_equal(o.len, n + 4); /* only CRLFs were added */
    /* every continuation begins with the space that was there */
    for (size_t i = 0; i + 2 < o.len; i++)
        if (o.buf[i] == '\n' && o.buf[i + 1] != '\r' && o.buf[i + 1] != 'b')
            assert_int_equal(o.buf[i + 1], ' ');
    free(o.buf);
}

static void test_space_runs_and_tabs(void **state)
{
    (void)state;
    struct out o;
    /* text, a run of spaces and a tab around the cut: the cut goes before the run */
    char *s = repeat('x', 1500);
    memcpy(s + 900, "  \t ", 4);
    brk(&o, s, 1500, LINEBREAK_LIMIT, LINEBREAK_WIDTH);
    assert_int_equal(o.seps, 1);
    assert_memory_equal(o.buf + 900, "\r\n  \t x", 7);
    free(o.buf);
    /* white space only at the start: no text before it, so a forced cut */
    memset(s, 'x', 1500);
    memcpy(s, "   ", 3);
    brk(&o, s, 1500, LINEBREAK_LIMIT, LINEBREAK_WIDTH);
    assert_memory_equal(o.buf + 990, "\r\n x", 4);
    free(o.buf);
    free(s);
}

static void test_utf8_kept_whole(void **state)
{
    (void)state;
    struct out o;
    /* "é" (2 octets) repeated: a cut at 990 falls between characters */
    char s[2001];
    for (size_t i = 0; i < 2000; i += 2)
        memcpy(s + i, "\xc3\xa9", 2);
    /* shift by one so the window ends inside a sequence */
    char t[2002];
    t[0] = 'a';
    memcpy(t + 1, s, 2000);
    brk(&o, t, 2001, LINEBREAK_LIMIT, LINEBREAK_WIDTH);
    for (size_t i = 0; i + 3 <= o.len; i++)
        if (memcmp(o.buf + i, "\r\n ", 3) == 0)
            assert_int_equal((unsigned char)o.buf[i + 3], 0xc3); /* a lead octet */
    /* a 4-octet sequence across the cut */
    char *u = repeat('a', 1200);
    memcpy(u + 988, "\xf0\x9f\x98\x80", 4);
    free(o.buf);
    brk(&o, u, 1200, LINEBREAK_LIMIT, LINEBREAK_WIDTH);
    assert_memory_equal(o.buf + 988, "\r\n \xf0\x9f\x98\x80", 7);
    free(o.buf);
    free(u);
}

static void test_line_ends(void **state)
{
    (void)state;
    struct out o;
    /* lines over the limit after CRLF, bare LF and bare CR; short lines between */
    char in[8000];
    size_t n = 0;
    const char *ends[] = {"\r\n", "\n", "\r"};
    for (int k = 0; k < 3; k++) {
        memset(in + n, 'a' + k, 1200);
        n += 1200;
        memcpy(in + n, "\r\nshort", 7);
        n += 7;
        memcpy(in + n, ends[k], strlen(ends[k]));
        n += strlen(ends[k]);
    }
    brk(&o, in, n, LINEBREAK_LIMIT, LINEBREAK_WIDTH);
    assert_int_equal(o.seps, 3);
    free(o.buf);
    /* the last line without an ending */
    char *s = repeat('z', 64 * 1024);
    brk(&o, s, 64 * 1024, LINEBREAK_LIMIT, LINEBREAK_WIDTH);
    assert_true(o.seps >= 66);
    free(o.buf);
    free(s);
}

static void test_no_dot_line_made(void **state)
{
    (void)state;
    struct out o;
    /* a "." right at a cut never starts a line: continuations begin with SP */
    char *s = repeat('.', 2000);
    brk(&o, s, 2000, LINEBREAK_LIMIT, LINEBREAK_WIDTH);
    for (size_t i = 0; i + 1 < o.len; i++)
        if (o.buf[i] == '\n')
            assert_int_equal(o.buf[i + 1], ' ');
    free(o.buf);
    free(s);
}

static void test_small_limits(void **state)
{
    (void)state;
    struct out o;
    const char *in = "hello world, this is a line\r\nand another one that goes on\r\n";
    for (size_t lim = 2; lim < 40; lim++) {
        for (size_t w = 0; w <= lim + 2; w++) {
            brk(&o, in, strlen(in), lim, w);
            free(o.buf);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_longest),
        cmocka_unit_test(test_at_limit_untouched),
        cmocka_unit_test(test_forced_cut),
        cmocka_unit_test(test_fold_at_space),
        cmocka_unit_test(test_space_runs_and_tabs),
        cmocka_unit_test(test_utf8_kept_whole),
        cmocka_unit_test(test_line_ends),
        cmocka_unit_test(test_no_dot_line_made),
        cmocka_unit_test(test_small_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
