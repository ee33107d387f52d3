/*
 * test_line.c - unit tests for core/line.c: line splitting, the CRLF-inclusive
 * maximum at the boundary and one over, skipping of over-long lines and the
 * resynchronisation after them.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/line.h"

static void test_simple_crlf(void **state)
{
    (void)state;
    struct line_reader lr;
    size_t ll, used;
    const char *in = "HELO x\r\nNOOP\r\n";

    line_reader_init(&lr, SMTP_CMD_LINE_MAX);
    assert_int_equal(line_reader_next(&lr, in, strlen(in), &ll, &used), LINE_OK);
    assert_int_equal(ll, 6);
    assert_int_equal(used, 8);
    assert_memory_equal(in, "HELO x", 6);
    assert_int_equal(line_reader_next(&lr, in + 8, strlen(in) - 8, &ll, &used), LINE_OK);
    assert_int_equal(ll, 4);
    assert_int_equal(used, 6);
}

static void test_bare_lf_and_empty(void **state)
{
    (void)state;
    struct line_reader lr;
    size_t ll, used;

    line_reader_init(&lr, 100);
    assert_int_equal(line_reader_next(&lr, "abc\n", 4, &ll, &used), LINE_OK);
    assert_int_equal(ll, 3);
    assert_int_equal(used, 4);
    assert_int_equal(line_reader_next(&lr, "\r\n", 2, &ll, &used), LINE_OK);
    assert_int_equal(ll, 0);
    assert_int_equal(used, 2);
    assert_int_equal(line_reader_next(&lr, "\n", 1, &ll, &used), LINE_OK);
    assert_int_equal(ll, 0);
    assert_int_equal(used, 1);
}

static void test_bare_cr_is_not_an_end(void **state)
{
    (void)state;
    struct line_reader lr;
    size_t ll, used;

    line_reader_init(&lr, 100);
    assert_int_equal(line_reader_next(&lr, "ab\rcd", 5, &ll, &used), LINE_NEED_MORE);
    assert_int_equal(used, 0);
    assert_int_equal(line_reader_next(&lr, "ab\rcd\r\n", 7, &ll, &used), LINE_OK);
    assert_int_equal(ll, 5); /* the inner CR stays in the line */
    assert_int_equal(used, 7);
}

static void test_need_more(void **state)
{
    (void)state;
    struct line_reader lr;
    size_t ll = 99, used = 99;

    line_reader_init(&lr, 100);
    assert_int_equal(line_reader_next(&lr, "", 0, &ll, &used), LINE_NEED_MORE);
    assert_int_equal(used, 0);
    assert_int_equal(line_reader_next(&lr, "MAIL FROM:", 10, &ll, &used), LINE_NEED_MORE);
    assert_int_equal(used, 0);
    assert_int_equal(line_reader_next(&lr, "MAIL FROM:\r", 11, &ll, &used), LINE_NEED_MORE);
    assert_int_equal(used, 0);
}

/* A line of exactly max octets with CRLF is accepted; one more is too long. */
static void test_exact_boundary(void **state)
{
    (void)state;
    struct line_reader lr;
    char buf[SMTP_CMD_LINE_MAX + 8];
    size_t ll, used;

    memset(buf, 'a', sizeof(buf));
    buf[SMTP_CMD_LINE_MAX - 2] = '\r';
    buf[SMTP_CMD_LINE_MAX - 1] = '\n';
    line_reader_init(&lr, SMTP_CMD_LINE_MAX);
    assert_int_equal(line_reader_next(&lr, buf, sizeof(buf), &ll, &used), LINE_OK);
    assert_int_equal(ll, SMTP_CMD_LINE_MAX - 2);
    assert_int_equal(used, SMTP_CMD_LINE_MAX);

    /* one over: 511 text octets + CRLF = 513 */
    memset(buf, 'a', sizeof(buf));
    buf[SMTP_CMD_LINE_MAX - 1] = '\r';
    buf[SMTP_CMD_LINE_MAX] = '\n';
    memcpy(buf + SMTP_CMD_LINE_MAX + 1, "NOOP\r\n", 6);
    line_reader_init(&lr, SMTP_CMD_LINE_MAX);
    assert_int_equal(line_reader_next(&lr, buf, sizeof(buf) - 1, &ll, &used), LINE_TOO_LONG);
    assert_int_equal(used, SMTP_CMD_LINE_MAX);
    assert_int_equal(lr.skipping, 1);
    /* the remainder is only "\n" */
    assert_int_equal(line_reader_next(&lr, buf + used, 7, &ll, &used), LINE_NEED_MORE);
    assert_int_equal(used, 1);
    assert_int_equal(lr.skipping, 0);
    assert_int_equal(line_reader_next(&lr, buf + SMTP_CMD_LINE_MAX + 1, 6, &ll, &used), LINE_OK);
    assert_int_equal(ll, 4);
}

/* With a bare LF the limit counts text + LF. */
static void test_bare_lf_boundary(void **state)
{
    (void)state;
    struct line_reader lr;
    char buf[16];
    size_t ll, used;

    memset(buf, 'x', sizeof(buf));
    buf[9] = '\n';
    line_reader_init(&lr, 10);
    assert_int_equal(line_reader_next(&lr, buf, 10, &ll, &used), LINE_OK);
    assert_int_equal(ll, 9);
    memset(buf, 'x', sizeof(buf));
    buf[10] = '\n';
    line_reader_init(&lr, 10);
    assert_int_equal(line_reader_next(&lr, buf, 11, &ll, &used), LINE_TOO_LONG);
    assert_int_equal(used, 10);
}

/* An over-long line fed in pieces is reported once and skipped fully. */
static void test_skip_in_pieces(void **state)
{
    (void)state;
    struct line_reader lr;
    size_t ll, used;
    char big[40];
    int too_long = 0;

    memset(big, 'z', sizeof(big));
    line_reader_init(&lr, 8);
    assert_int_equal(line_reader_next(&lr, big, 5, &ll, &used), LINE_NEED_MORE);
    assert_int_equal(used, 0);
    for (int round = 0; round < 4; round++) {
        enum line_status st = line_reader_next(&lr, big, sizeof(big), &ll, &used);
        if (st == LINE_TOO_LONG)
            too_long++;
        else
            assert_int_equal(st, LINE_NEED_MORE);
        assert_true(used > 0 && used <= 8);
    }
    assert_int_equal(too_long, 1);
    assert_int_equal(line_reader_next(&lr, "zz\r\nQUIT\r\n", 10, &ll, &used), LINE_NEED_MORE);
    assert_int_equal(used, 4);
    assert_int_equal(line_reader_next(&lr, "QUIT\r\n", 6, &ll, &used), LINE_OK);
    assert_int_equal(ll, 4);
}

/* Only max octets are examined: an LF beyond them is not seen. */
static void test_window(void **state)
{
    (void)state;
    struct line_reader lr;
    size_t ll, used;

    line_reader_init(&lr, 4);
    assert_int_equal(line_reader_next(&lr, "abcd\n", 5, &ll, &used), LINE_TOO_LONG);
    assert_int_equal(used, 4);
    assert_int_equal(line_reader_next(&lr, "\n", 1, &ll, &used), LINE_NEED_MORE);
    assert_int_equal(used, 1);
    assert_int_equal(line_reader_next(&lr, "ab\r\n", 4, &ll, &used), LINE_OK);
    assert_int_equal(ll, 2);
}

static void test_nul_inside(void **state)
{
    (void)state;
    struct line_reader lr;
    size_t ll, used;

    line_reader_init(&lr, 100);
    assert_int_equal(line_reader_next(&lr, "a\0b\r\n", 5, &ll, &used), LINE_OK);
    assert_int_equal(ll, 3);
}

static void test_zero_max(void **state)
{
    (void)state;
    struct line_reader lr;
    size_t ll, used;

    line_reader_init(&lr, 0);
    assert_int_equal(lr.max, 1);
    assert_int_equal(line_reader_next(&lr, "\n", 1, &ll, &used), LINE_OK);
    assert_int_equal(line_reader_next(&lr, "a\n", 2, &ll, &used), LINE_TOO_LONG);
    assert_int_equal(used, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_crlf),
        cmocka_unit_test(test_bare_lf_and_empty),
        cmocka_unit_test(test_bare_cr_is_not_an_end),
        cmocka_unit_test(test_need_more),
        cmocka_unit_test(test_exact_boundary),
        cmocka_unit_test(test_bare_lf_boundary),
        cmocka_unit_test(test_skip_in_pieces),
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_nul_inside),
        cmocka_unit_test(test_zero_max),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
