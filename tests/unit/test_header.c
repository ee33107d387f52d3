/*
 * test_header.c - unit tests for core/header.c: field lookup (case,
 * white space before the colon), unfolding, trimming, control characters,
 * truncation, the end of the header section (CRLF and LF) and counting.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/header.h"

static const char msg[] = "Received: from a by b\r\n"
                          "\tfor <x@y>; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                          "Received: from c by d\r\n"
                          "Subject:   Hello\r\n"
                          "   world  \r\n"
                          "message-id: <1@example>\r\n"
                          "X-Empty:\r\n"
                          "X-Space :  spaced\r\n"
                          "X-Ctl: a\x01"
                          "b\x7f"
                          "c\r\n"
                          "\r\n"
                          "Subject: not a header\r\n";

static long get(const char *m, const char *name, char *out, size_t size)
{
    return header_get(m, strlen(m), name, out, size);
}

static void test_get(void **state)
{
    (void)state;
    char out[256];

    assert_int_equal(get(msg, "Subject", out, sizeof(out)), 13);
    assert_string_equal(out, "Hello   world");
    assert_int_equal(get(msg, "MESSAGE-ID", out, sizeof(out)), 11);
    assert_string_equal(out, "<1@example>");
    assert_int_equal(get(msg, "received", out, sizeof(out)),
                     (long)strlen("from a by b for <x@y>; Mon, 1 Jan 2024 00:00:00 +0000"));
    assert_string_equal(out, "from a by b for <x@y>; Mon, 1 Jan 2024 00:00:00 +0000");
    assert_int_equal(get(msg, "X-Empty", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(get(msg, "X-Space", out, sizeof(out)), 6);
    assert_string_equal(out, "spaced");
    assert_int_equal(get(msg, "X-Ctl", out, sizeof(out)), 5);
    assert_string_equal(out, "a b c");
}

static void test_absent(void **state)
{
    (void)state;
    char out[64] = "junk";

    assert_int_equal(get(msg, "From", out, sizeof(out)), -1);
    assert_string_equal(out, "");
    assert_int_equal(get(msg, "Subj", out, sizeof(out)), -1);
    assert_int_equal(get(msg, "Subjects", out, sizeof(out)), -1);
    assert_int_equal(get(msg, "", out, sizeof(out)), -1);
    assert_int_equal(get("", "Subject", out, sizeof(out)), -1);
    /* a continuation line alone is not a field */
    assert_int_equal(get(" Subject: x\r\n", "Subject", out, sizeof(out)), -1);
}

static void test_section_end(void **state)
{
    (void)state;
    char out[64];

    /* body fields are not headers, with CRLF or LF endings */
    assert_int_equal(get("A: 1\r\n\r\nB: 2\r\n", "B", out, sizeof(out)), -1);
    assert_int_equal(get("A: 1\n\nB: 2\n", "B", out, sizeof(out)), -1);
    assert_int_equal(get("A: 1\nB: 2\n", "B", out, sizeof(out)), 1);
    assert_string_equal(out, "2");
    /* no final line ending */
    assert_int_equal(get("A: 1\r\nB: last", "B", out, sizeof(out)), 4);
    assert_string_equal(out, "last");
    /* folding with LF only */
    assert_int_equal(get("S: a\n b\n", "S", out, sizeof(out)), 3);
    assert_string_equal(out, "a b");
    /* a whitespace-only line is a continuation, not the end */
    assert_int_equal(get("S: a\r\n \r\nT: t\r\n", "T", out, sizeof(out)), 1);
    assert_int_equal(get("S: a\r\n \r\nT: t\r\n", "S", out, sizeof(out)), 1);
    assert_string_equal(out, "a");
    /* bare CR inside a value becomes a space */
    assert_int_equal(get("S: a\rb\r\n", "S", out, sizeof(out)), 3);
    assert_string_equal(out, "a b");
}

static void test_never_past_len(void **state)
{
    (void)state;
    char out[64];
    const char *m = "Subject: abcdef\r\n";

    assert_int_equal(header_get(m, 12, "Subject", out, sizeof(out)), 3);
    assert_string_equal(out, "abc");
    assert_int_equal(header_get(m, 7, "Subject", out, sizeof(out)), -1);
    static const char nul[] = "A: x\0y\r\n";
    assert_int_equal(header_get(nul, sizeof(nul) - 1, "A", out, sizeof(out)), 3);
    assert_string_equal(out, "x y");
}

static void test_truncation(void **state)
{
    (void)state;
    char out[6];

    assert_int_equal(get("Subject: 0123456789\r\n", "Subject", out, sizeof(out)), 5);
    assert_string_equal(out, "01234");
    assert_int_equal(get("Subject: 0123 56789\r\n", "Subject", out, sizeof(out)), 4);
    assert_string_equal(out, "0123");
    assert_int_equal(get("Subject: x\r\n", "Subject", out, 1), 0);
    assert_string_equal(out, "");
    assert_int_equal(get("Subject: x\r\n", "Subject", NULL, 0), 0);
    assert_int_equal(get("Other: x\r\n", "Subject", NULL, 0), -1);
}

static void test_count(void **state)
{
    (void)state;
    assert_int_equal(header_count(msg, strlen(msg), "Received"), 2);
    assert_int_equal(header_count(msg, strlen(msg), "SUBJECT"), 1);
    assert_int_equal(header_count(msg, strlen(msg), "From"), 0);
    assert_int_equal(header_count(msg, strlen(msg), ""), 0);
    assert_int_equal(header_count("", 0, "A"), 0);
    assert_int_equal(header_count("A: 1\r\na: 2\r\nA : 3\r\n\r\nA: 4\r\n", 29, "A"), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get),         cmocka_unit_test(test_absent),
        cmocka_unit_test(test_section_end), cmocka_unit_test(test_never_past_len),
        cmocka_unit_test(test_truncation),  cmocka_unit_test(test_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
