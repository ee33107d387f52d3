/*
 * test_data.c - unit tests for core/data.c: dot-unstuffing, the end marker
 * split across feeds at every byte position (and one byte at a time),
 * pipelined bytes left unconsumed, bare CR / bare LF (never an end), NUL
 * (flagged in every position and chunking, never an end),
 * the size limit drained to the real end, the line limit, and data_stuff
 * round trips through data_reader_feed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/data.h"

struct sink {
    char *buf;
    size_t len, cap;
    size_t calls;
};

static void sink_emit(void *ctx, const char *p, size_t n)
{
    struct sink *s = ctx;
    assert_true(n > 0);
    if (s->len + n + 1 > s->cap) {
        s->cap = (s->len + n + 1) * 2;
        s->buf = realloc(s->buf, s->cap);
        assert_non_null(s->buf);
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    s->buf[s->len] = '\0';
    s->calls++;
}

static void sink_reset(struct sink *s)
{
    free(s->buf);
    memset(s, 0, sizeof(*s));
}

/* Feed in as one chunk; returns consumed. */
static size_t feed_all(struct data_reader *dr, const char *in, size_t len, int *done,
                       struct sink *s)
{
    return data_reader_feed(dr, in, len, done, sink_emit, s);
}

/* Feed in pieces of at most step octets until done; returns total consumed. */
static size_t feed_steps(struct data_reader *dr, const char *in, size_t len, size_t step, int *done,
                         struct sink *s)
{
    size_t off = 0;
    *done = 0;
    while (off < len && !*done) {
        size_t n = len - off < step ? len - off : step;
        size_t c = data_reader_feed(dr, in + off, n, done, sink_emit, s);
        assert_true(c <= n);
        if (!*done)
            assert_int_equal(c, n);
        off += c;
    }
    return off;
}

static void test_simple(void **state)
{
    (void)state;
    struct data_reader dr;
    struct sink s = {0};
    int done;
    const char *in = "Subject: hi\r\n\r\nbody\r\n.\r\n";

    data_reader_init(&dr, 0, 0);
    assert_int_equal(feed_all(&dr, in, strlen(in), &done, &s), strlen(in));
    assert_int_equal(done, 1);
    assert_string_equal(s.buf, "Subject: hi\r\n\r\nbody\r\n");
    assert_int_equal(dr.size, strlen(s.buf));
    assert_int_equal(dr.flags, 0);
    assert_int_equal(s.calls, 1);
    /* after the end nothing more is read */
    assert_int_equal(feed_all(&dr, "x", 1, &done, &s), 0);
    assert_int_equal(done, 1);
    sink_reset(&s);
}

static void test_empty_message(void **state)
{
    (void)state;
    struct data_reader dr;
    struct sink s = {0};
    int done;

    data_reader_init(&dr, 0, 0);
    assert_int_equal(feed_all(&dr, ".\r\nQUIT\r\n", 9, &done, &s), 3);
    assert_int_equal(done, 1);
    assert_int_equal(s.len, 0);
    assert_int_equal(dr.size, 0);
    sink_reset(&s);
}

static void test_unstuffing(void **state)
{
    (void)state;
    struct data_reader dr;
    struct sink s = {0};
    int done;
    const char *in = "..leading\r\n...\r\n.x\r\nmid.dle\r\n. \r\n..\r\n.\r\n";

    data_reader_init(&dr, 0, 0);
    assert_int_equal(feed_all(&dr, in, strlen(in), &done, &s), strlen(in));
    assert_int_equal(done, 1);
    assert_string_equal(s.buf, ".leading\r\n..\r\nx\r\nmid.dle\r\n \r\n.\r\n");
    assert_int_equal(dr.size, s.len);
    assert_int_equal(dr.flags, 0);
    sink_reset(&s);
}

static void test_pipelined_after_end(void **state)
{
    (void)state;
    struct data_reader dr;
    struct sink s = {0};
    int done;
    const char *in = "a\r\n.\r\nMAIL FROM:<x@y>\r\nRCPT TO:<z@y>\r\n";

    data_reader_init(&dr, 0, 0);
    size_t c = feed_all(&dr, in, strlen(in), &done, &s);
    assert_int_equal(done, 1);
    assert_int_equal(c, 6);
    assert_string_equal(in + c, "MAIL FROM:<x@y>\r\nRCPT TO:<z@y>\r\n");
    assert_string_equal(s.buf, "a\r\n");
    sink_reset(&s);
}

/* The same message, split at every position into two feeds. */
static void test_split_everywhere(void **state)
{
    (void)state;
    const char *in = "..a\r\n.\rb\r\nc\r\n..\r\n\r\n.\r\nNOOP\r\n";
    const char *want = ".a\r\n\rb\r\nc\r\n.\r\n\r\n";
    size_t len = strlen(in), end = strlen(in) - 6;

    for (size_t cut = 0; cut <= len; cut++) {
        struct data_reader dr;
        struct sink s = {0};
        int done = 0;
        size_t c1, c2 = 0;

        data_reader_init(&dr, 0, 0);
        c1 = feed_all(&dr, in, cut, &done, &s);
        if (!done) {
            assert_int_equal(c1, cut);
            c2 = feed_all(&dr, in + cut, len - cut, &done, &s);
        }
        assert_int_equal(done, 1);
        assert_int_equal(c1 + c2, end);
        assert_int_equal(s.len, strlen(want));
        assert_memory_equal(s.buf, want, s.len);
        assert_int_equal(dr.flags, DATA_BARE_CR);
        sink_reset(&s);
    }
}

/* One byte at a time, and every chunk size up to the length. */
static void test_byte_at_a_time(void **state)
{
    (void)state;
    const char *in = "From: a\r\n\r\n.hidden\r\n..\r\nend\r\n.\r\nQUIT\r\n";
    const char *want = "From: a\r\n\r\nhidden\r\n.\r\nend\r\n";
    size_t len = strlen(in);

    for (size_t step = 1; step <= len; step++) {
        struct data_reader dr;
        struct sink s = {0};
        int done;
        data_reader_init(&dr, 0, 0);
        assert_int_equal(feed_steps(&dr, in, len, step, &done, &s), len - 6);
        assert_int_equal(done, 1);
        assert_string_equal(s.buf, want);
        assert_int_equal(dr.flags, 0);
        sink_reset(&s);
    }
}

/* Only CRLF . CRLF ends; other look-alikes are message data with flags. */
static void test_false_ends(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        unsigned flags;
    } cases[] = {
        {"a\n.\nb", DATA_BARE_LF},   {"a\r\n.\nb", DATA_BARE_LF}, {"a\n.\r\nb", DATA_BARE_LF},
        {"a\r.\r\nb", DATA_BARE_CR}, {"a\r\n.\rb", DATA_BARE_CR}, {"a\r\n.\r\rb", DATA_BARE_CR},
        {"\n.\n", DATA_BARE_LF},     {"a\r\n \r\n.", 0},          {"a\r\n..\r", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct data_reader dr;
        struct sink s = {0};
        int done;
        size_t len = strlen(cases[i].in);
        data_reader_init(&dr, 0, 0);
        assert_int_equal(feed_all(&dr, cases[i].in, len, &done, &s), len);
        assert_int_equal(done, 0);
        assert_int_equal(dr.flags, cases[i].flags);
        sink_reset(&s);
    }
}

static void test_bare_flags_then_real_end(void **state)
{
    (void)state;
    struct data_reader dr;
    struct sink s = {0};
    int done;
    const char *in = "x\n.\ny\r.\r\nz\r\n.\r\n";

    data_reader_init(&dr, 0, 0);
    assert_int_equal(feed_all(&dr, in, strlen(in), &done, &s), strlen(in));
    assert_int_equal(done, 1);
    assert_int_equal(dr.flags, DATA_BARE_LF | DATA_BARE_CR);
    /* a bare LF is not a line end, so ".\n" there is not unstuffed */
    assert_string_equal(s.buf, "x\n.\ny\r.\r\nz\r\n");
    sink_reset(&s);

    /* ".\r" then not LF: the dot goes, the CR is data */
    data_reader_init(&dr, 0, 0);
    assert_int_equal(feed_all(&dr, "a\r\n.\rb\r\n.\r\n", 11, &done, &s), 11);
    assert_int_equal(done, 1);
    assert_string_equal(s.buf, "a\r\n\rb\r\n");
    assert_int_equal(dr.flags, DATA_BARE_CR);
    sink_reset(&s);
}

static void test_nul(void **state)
{
    (void)state;
    struct data_reader dr;
    struct sink s = {0};
    int done;
    static const char in[] = "a\0b\r\n.\r\n";
    static const char after[] = "a\r\n.\r\n\0";

    data_reader_init(&dr, 0, 0);
    assert_int_equal(feed_all(&dr, in, sizeof(in) - 1, &done, &s), sizeof(in) - 1);
    assert_int_equal(done, 1);
    assert_int_equal(dr.flags, DATA_NUL);
    assert_int_equal(s.len, 5);
    assert_memory_equal(s.buf, "a\0b\r\n", 5);
    sink_reset(&s);
    /* a NUL after the end is not ours */
    data_reader_init(&dr, 0, 0);
    assert_int_equal(feed_all(&dr, after, sizeof(after) - 1, &done, &s), 6);
    assert_int_equal(dr.flags, 0);
    sink_reset(&s);
}

/* A NUL anywhere before the end, in any chunking, sets DATA_NUL (the session
 * refuses such a message like bare CR / LF) and never ends the data. */
static void test_nul_positions(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t len, consumed;
        unsigned flags;
    } cases[] = {
#define C(lit, consumed, flags) {lit, sizeof(lit) - 1, consumed, flags}
        C("\0\r\n.\r\n", 6, DATA_NUL),        /* first octet of the message */
        C("a\r\n\0\r\n.\r\n", 9, DATA_NUL),   /* a line of just NUL */
        C("a\r\n.\0\r\n.\r\n", 10, DATA_NUL), /* after a BOL dot: not an end */
        C("a\r\n.\r\0\n\r\n.\r\n", 12, DATA_NUL | DATA_BARE_CR | DATA_BARE_LF),
        C("a\r\0\n\r\n.\r\n", 9, DATA_NUL | DATA_BARE_CR | DATA_BARE_LF),
        C("a\0\r\n.\r\n\0", 7, DATA_NUL), /* the NUL after the end is not ours */
        C("a\r\n.\r\n\0", 6, 0),
#undef C
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        for (size_t step = 1; step <= cases[k].len; step++) {
            struct data_reader dr;
            struct sink s = {0};
            int done;
            data_reader_init(&dr, 0, 0);
            assert_int_equal(feed_steps(&dr, cases[k].in, cases[k].len, step, &done, &s),
                             cases[k].consumed);
            assert_int_equal(done, 1);
            assert_int_equal(dr.flags, cases[k].flags);
            sink_reset(&s);
        }
    }
    /* over the size limit: still seen (the message is refused for its size first) */
    struct data_reader dr;
    struct sink s = {0};
    int done;
    static const char big[] = "0123456789\r\nab\0\r\n.\r\n";
    data_reader_init(&dr, 8, 0);
    assert_int_equal(feed_all(&dr, big, sizeof(big) - 1, &done, &s), sizeof(big) - 1);
    assert_int_equal(dr.flags, DATA_TOO_BIG | DATA_NUL);
    assert_int_equal(s.len, 8);
    sink_reset(&s);
}

static void test_too_big(void **state)
{
    (void)state;
    struct data_reader dr;
    struct sink s = {0};
    int done;
    const char *in = "0123456789\r\n0123456789\r\n.\r\nQUIT\r\n";

    /* exactly at the limit: fine */
    data_reader_init(&dr, 24, 0);
    assert_int_equal(feed_all(&dr, in, strlen(in), &done, &s), 27);
    assert_int_equal(done, 1);
    assert_int_equal(dr.flags, 0);
    assert_int_equal(s.len, 24);
    sink_reset(&s);
    /* one under: drained to the real end, emission capped at max */
    for (size_t step = 1; step <= strlen(in); step++) {
        data_reader_init(&dr, 23, 0);
        assert_int_equal(feed_steps(&dr, in, strlen(in), step, &done, &s), 27);
        assert_int_equal(done, 1);
        assert_int_equal(dr.flags, DATA_TOO_BIG);
        assert_int_equal(dr.size, 24);
        assert_int_equal(s.len, 23);
        assert_memory_equal(s.buf, in, 23);
        sink_reset(&s);
    }
    /* stuffing dots do not count */
    data_reader_init(&dr, 3, 0);
    assert_int_equal(feed_all(&dr, "..\r\n.\r\n", 7, &done, &s), 7);
    assert_int_equal(dr.size, 3);
    assert_int_equal(dr.flags, 0);
    sink_reset(&s);
}

static void test_big_message_drained(void **state)
{
    (void)state;
    struct data_reader dr;
    struct sink s = {0};
    int done;
    size_t n = 80 * 13000;
    char *in = malloc(n + 16);

    for (size_t i = 0; i < n; i++)
        in[i] = (i % 80 == 78) ? '\r' : (i % 80 == 79) ? '\n' : 'a';
    memcpy(in + n, ".\r\n", 3);
    data_reader_init(&dr, 1000, 1000);
    assert_int_equal(feed_all(&dr, in, n + 3, &done, &s), n + 3);
    assert_int_equal(done, 1);
    assert_int_equal(dr.flags, DATA_TOO_BIG);
    assert_int_equal(dr.size, n);
    assert_int_equal(s.len, 1000);
    sink_reset(&s);
    free(in);
}

static void test_line_limit(void **state)
{
    (void)state;
    char in[2100];
    struct data_reader dr;
    struct sink s = {0};
    int done;

    /* 998 + CRLF = 1000: fine, whatever the feed size */
    memset(in, 'x', 998);
    memcpy(in + 998, "\r\n.\r\n", 5);
    for (size_t step = 1; step < 1003; step += 97) {
        data_reader_init(&dr, 0, 1000);
        assert_int_equal(feed_steps(&dr, in, 1003, step, &done, &s), 1003);
        assert_int_equal(done, 1);
        assert_int_equal(dr.flags, 0);
        sink_reset(&s);
    }
    /* 999 + CRLF = 1001: too long, but still read to the end */
    memset(in, 'x', 999);
    memcpy(in + 999, "\r\n.\r\n", 5);
    data_reader_init(&dr, 0, 1000);
    assert_int_equal(feed_all(&dr, in, 1004, &done, &s), 1004);
    assert_int_equal(done, 1);
    assert_int_equal(dr.flags, DATA_LINE_TOO_LONG);
    assert_int_equal(s.len, 1001);
    sink_reset(&s);
    /* a stuffed dot counts as received: "." + 997 + CRLF = 1000 is fine */
    in[0] = '.';
    memset(in + 1, '.', 1);
    memset(in + 2, 'x', 996);
    memcpy(in + 998, "\r\n.\r\n", 5);
    data_reader_init(&dr, 0, 1000);
    assert_int_equal(feed_all(&dr, in, 1003, &done, &s), 1003);
    assert_int_equal(dr.flags, 0);
    sink_reset(&s);
    /* the line length resets at each CRLF */
    size_t o = 0;
    for (int k = 0; k < 2; k++) {
        memset(in + o, 'y', 998);
        memcpy(in + o + 998, "\r\n", 2);
        o += 1000;
    }
    memcpy(in + o, ".\r\n", 3);
    data_reader_init(&dr, 0, 1000);
    assert_int_equal(feed_all(&dr, in, o + 3, &done, &s), o + 3);
    assert_int_equal(dr.flags, 0);
    sink_reset(&s);
}

static void test_few_emits(void **state)
{
    (void)state;
    struct data_reader dr;
    struct sink s = {0};
    int done;
    char in[10000];
    size_t n = 0;

    while (n + 50 < sizeof(in)) {
        memcpy(in + n, "The quick brown fox jumps over the lazy dog.\r\n", 46);
        n += 46;
    }
    memcpy(in + n, ".\r\n", 3);
    data_reader_init(&dr, 0, 1000);
    assert_int_equal(feed_all(&dr, in, n + 3, &done, &s), n + 3);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.len, n);
    sink_reset(&s);
}

/* ---- data_stuff ---- */

static void stuff_then_read_n(const char *body, size_t len, const char *want_norm, size_t want_len)
{
    struct sink st = {0}, rd = {0};
    struct data_reader dr;
    int done;
    uint64_t n = data_stuff(body, len, sink_emit, &st);

    assert_int_equal(n, st.len);
    sink_emit(&st, ".\r\n", 3);
    data_reader_init(&dr, 0, 0);
    assert_int_equal(feed_all(&dr, st.buf, st.len, &done, &rd), st.len);
    assert_int_equal(done, 1);
    assert_int_equal(dr.flags & (DATA_BARE_CR | DATA_BARE_LF), 0);
    assert_int_equal(rd.len, want_len);
    if (rd.len > 0)
        assert_memory_equal(rd.buf, want_norm, rd.len);
    sink_reset(&st);
    sink_reset(&rd);
}

static void stuff_then_read(const char *body, size_t len, const char *want_norm)
{
    stuff_then_read_n(body, len, want_norm, strlen(want_norm));
}

static void test_stuff(void **state)
{
    (void)state;
    struct sink s = {0};
    const char *body = ".a\nb\r.\r\n..\rc";

    uint64_t emitted = data_stuff(body, strlen(body), sink_emit, &s);
    assert_int_equal(emitted, s.len);
    assert_string_equal(s.buf, "..a\r\nb\r\n..\r\n...\r\nc\r\n");
    sink_reset(&s);
    assert_int_equal(data_stuff("", 0, sink_emit, &s), 0);
    assert_int_equal(s.len, 0);
    assert_int_equal(data_stuff("x\r\n", 3, sink_emit, &s), 3);
    assert_int_equal(s.calls, 1);
    sink_reset(&s);
    assert_int_equal(data_stuff(".", 1, sink_emit, &s), 4);
    assert_string_equal(s.buf, "..\r\n");
    sink_reset(&s);
    assert_int_equal(data_stuff("\r\r\n\n", 4, sink_emit, &s), 6);
    assert_string_equal(s.buf, "\r\n\r\n\r\n");
    sink_reset(&s);
}

static void test_stuff_round_trip(void **state)
{
    (void)state;
    stuff_then_read("", 0, "");
    stuff_then_read("hello", 5, "hello\r\n");
    stuff_then_read(".\r\n", 3, ".\r\n");
    stuff_then_read(".", 1, ".\r\n");
    stuff_then_read("a\n.\nb", 5, "a\r\n.\r\nb\r\n");
    stuff_then_read("a\r\n.\r\n.\r\n", 9, "a\r\n.\r\n.\r\n");
    stuff_then_read("..\r..\n..", 8, "..\r\n..\r\n..\r\n");
    stuff_then_read("x\r", 2, "x\r\n");
    stuff_then_read("\n\n\n", 3, "\r\n\r\n\r\n");
    static const char nul[] = "a\0.\n.\0";
    static const char nul_norm[] = "a\0.\r\n.\0\r\n";
    stuff_then_read_n(nul, sizeof(nul) - 1, nul_norm, sizeof(nul_norm) - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple),
        cmocka_unit_test(test_empty_message),
        cmocka_unit_test(test_unstuffing),
        cmocka_unit_test(test_pipelined_after_end),
        cmocka_unit_test(test_split_everywhere),
        cmocka_unit_test(test_byte_at_a_time),
        cmocka_unit_test(test_false_ends),
        cmocka_unit_test(test_bare_flags_then_real_end),
        cmocka_unit_test(test_nul),
        cmocka_unit_test(test_nul_positions),
        cmocka_unit_test(test_too_big),
        cmocka_unit_test(test_big_message_drained),
        cmocka_unit_test(test_line_limit),
        cmocka_unit_test(test_few_emits),
        cmocka_unit_test(test_stuff),
        cmocka_unit_test(test_stuff_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
