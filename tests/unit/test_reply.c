/*
 * test_reply.c - unit tests for core/reply.c: formatting (separators,
 * enhanced codes, control cleaning, the 512-octet cut) and parsing (single
 * and multi-line replies, mismatched codes, enhanced codes, limits).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/line.h"
#include "core/reply.h"

static enum reply_status feed(struct reply_parser *p, const char *line)
{
    return reply_parser_line(p, line, strlen(line));
}

static void test_format_basic(void **state)
{
    (void)state;
    char buf[600];

    assert_int_equal(reply_format_line(buf, sizeof(buf), 250, "2.0.0", true, "OK"), 14);
    assert_string_equal(buf, "250 2.0.0 OK\r\n");
    assert_int_equal(reply_format_line(buf, sizeof(buf), 250, NULL, false, "PIPELINING"), 16);
    assert_string_equal(buf, "250-PIPELINING\r\n");
    reply_format_line(buf, sizeof(buf), 354, "", true, "Go ahead");
    assert_string_equal(buf, "354 Go ahead\r\n");
    reply_format_line(buf, sizeof(buf), 550, "5.1.1", true, "");
    assert_string_equal(buf, "550 5.1.1 \r\n");
    reply_format_line(buf, sizeof(buf), 221, NULL, true, NULL);
    assert_string_equal(buf, "221 \r\n");
}

static void test_format_cleans(void **state)
{
    (void)state;
    char buf[600];

    reply_format_line(buf, sizeof(buf), 501, "5.5.4", true, "bad\r\nRCPT TO:<x>\x7f\t\x01");
    assert_string_equal(buf, "501 5.5.4 bad??RCPT TO:<x>???\r\n");
}

static void test_format_truncates(void **state)
{
    (void)state;
    char text[700], buf[700];
    size_t n;

    memset(text, 'x', sizeof(text) - 1);
    text[sizeof(text) - 1] = '\0';
    n = reply_format_line(buf, sizeof(buf), 250, "2.0.0", true, text);
    assert_int_equal(n, SMTP_REPLY_LINE_MAX);
    assert_int_equal(strlen(buf), SMTP_REPLY_LINE_MAX);
    assert_memory_equal(buf + SMTP_REPLY_LINE_MAX - 2, "\r\n", 2);
    /* exactly fitting text is not cut */
    text[SMTP_REPLY_LINE_MAX - 2 - 4] = '\0';
    n = reply_format_line(buf, sizeof(buf), 250, NULL, true, text);
    assert_int_equal(n, SMTP_REPLY_LINE_MAX);
    assert_int_equal(buf[SMTP_REPLY_LINE_MAX - 3], 'x');
    /* a cut never splits a UTF-8 sequence */
    memset(text, 'x', sizeof(text));
    memcpy(text + 505, "\xe2\x82\xac", 3); /* straddles the 506-octet room */
    text[600] = '\0';
    n = reply_format_line(buf, sizeof(buf), 250, NULL, true, text);
    assert_int_equal(n, 4 + 505 + 2);
    assert_memory_equal(buf + 4 + 505, "\r\n", 2);
    /* small buffers behave like snprintf */
    n = reply_format_line(buf, 5, 250, "2.0.0", true, "OK");
    assert_int_equal(n, 14);
    assert_string_equal(buf, "250 ");
    n = reply_format_line(NULL, 0, 250, "2.0.0", true, "OK");
    assert_int_equal(n, 14);
}

static void test_enh_parse(void **state)
{
    (void)state;
    assert_int_equal(enh_parse("2.0.0", 5), 5);
    assert_int_equal(enh_parse("5.7.1 x", 7), 5);
    assert_int_equal(enh_parse("4.123.456", 9), 9);
    assert_int_equal(enh_parse("5.1.10 x", 8), 6);
    assert_int_equal(enh_parse("5.1234.1", 8), 0);
    assert_int_equal(enh_parse("5.1.1234", 8), 0);
    assert_int_equal(enh_parse("3.0.0", 5), 0);
    assert_int_equal(enh_parse("6.0.0", 5), 0);
    assert_int_equal(enh_parse("5.0", 3), 0);
    assert_int_equal(enh_parse("5..0", 4), 0);
    assert_int_equal(enh_parse("5.0.", 4), 0);
    assert_int_equal(enh_parse(" 5.0.0", 6), 0);
    assert_int_equal(enh_parse("5.a.0", 5), 0);
    assert_int_equal(enh_parse("2.0.0", 4), 0);
    assert_int_equal(enh_parse("", 0), 0);
}

static void test_parse_single(void **state)
{
    (void)state;
    struct reply_parser p;

    reply_parser_init(&p);
    assert_int_equal(feed(&p, "250 2.1.0 Sender OK"), REPLY_DONE);
    assert_int_equal(p.r.code, 250);
    assert_string_equal(p.r.enh, "2.1.0");
    assert_string_equal(p.r.text, "Sender OK");
    assert_int_equal(p.r.textlen, 9);
    assert_int_equal(p.r.nlines, 1);

    reply_parser_init(&p);
    assert_int_equal(feed(&p, "220 mx.example ESMTP ready"), REPLY_DONE);
    assert_string_equal(p.r.enh, "");
    assert_string_equal(p.r.text, "mx.example ESMTP ready");

    reply_parser_init(&p);
    assert_int_equal(feed(&p, "354"), REPLY_DONE);
    assert_int_equal(p.r.code, 354);
    assert_string_equal(p.r.text, "");

    reply_parser_init(&p);
    assert_int_equal(feed(&p, "550 5.1.1"), REPLY_DONE);
    assert_string_equal(p.r.enh, "5.1.1");
    assert_string_equal(p.r.text, "");

    /* not an enhanced code: followed by something other than a space */
    reply_parser_init(&p);
    assert_int_equal(feed(&p, "250 2.0.0.1 text"), REPLY_DONE);
    assert_string_equal(p.r.enh, "");
    assert_string_equal(p.r.text, "2.0.0.1 text");
}

static void test_parse_multi(void **state)
{
    (void)state;
    struct reply_parser p;

    reply_parser_init(&p);
    assert_int_equal(feed(&p, "250-mx.example"), REPLY_MORE);
    assert_int_equal(feed(&p, "250-PIPELINING"), REPLY_MORE);
    assert_int_equal(feed(&p, "250-SIZE 10240000"), REPLY_MORE);
    assert_int_equal(feed(&p, "250 8BITMIME"), REPLY_DONE);
    assert_int_equal(p.r.code, 250);
    assert_int_equal(p.r.nlines, 4);
    assert_string_equal(p.r.text, "mx.example\nPIPELINING\nSIZE 10240000\n8BITMIME");

    /* the repeated enhanced code is stripped from continuation lines */
    reply_parser_init(&p);
    assert_int_equal(feed(&p, "550-5.7.1 first"), REPLY_MORE);
    assert_int_equal(feed(&p, "550-5.7.1 second"), REPLY_MORE);
    assert_int_equal(feed(&p, "550 5.7.2 third"), REPLY_DONE);
    assert_string_equal(p.r.enh, "5.7.1");
    assert_string_equal(p.r.text, "first\nsecond\n5.7.2 third");

    reply_parser_init(&p);
    assert_int_equal(feed(&p, "250-"), REPLY_MORE);
    assert_int_equal(feed(&p, "250"), REPLY_DONE);
    assert_string_equal(p.r.text, "\n");
}

static void test_parse_errors(void **state)
{
    (void)state;
    struct reply_parser p;
    const char *bad[] = {"",
                         "25",
                         "2500 x",
                         "250x",
                         "199 x",
                         "600 x",
                         "260 x",
                         "2a0 x",
                         "a50 x",
                         " 250 x",
                         "250\tx",
                         "-250",
                         "550 2.0.0 mismatch"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        reply_parser_init(&p);
        assert_int_equal(feed(&p, bad[i]), REPLY_ERROR);
        assert_non_null(p.error);
        /* sticky */
        assert_int_equal(feed(&p, "250 ok"), REPLY_ERROR);
    }
    /* mismatched codes within a multi-line reply */
    reply_parser_init(&p);
    assert_int_equal(feed(&p, "250-a"), REPLY_MORE);
    assert_int_equal(feed(&p, "251 b"), REPLY_ERROR);
    assert_non_null(p.error);
    reply_parser_init(&p);
    assert_int_equal(feed(&p, "450-a"), REPLY_MORE);
    assert_int_equal(feed(&p, "550 b"), REPLY_ERROR);
    /* a line after DONE without init */
    reply_parser_init(&p);
    assert_int_equal(feed(&p, "250 ok"), REPLY_DONE);
    assert_int_equal(feed(&p, "250 ok"), REPLY_ERROR);
    /* enhanced class must match */
    reply_parser_init(&p);
    assert_int_equal(feed(&p, "250 5.0.0 no"), REPLY_ERROR);
    reply_parser_init(&p);
    assert_int_equal(feed(&p, "451 4.3.0 yes"), REPLY_DONE);
}

static void test_parse_limits(void **state)
{
    (void)state;
    struct reply_parser p;
    char line[600];

    /* longest allowed line: 510 octets without CRLF */
    memset(line, 'x', sizeof(line));
    memcpy(line, "250 ", 4);
    reply_parser_init(&p);
    assert_int_equal(reply_parser_line(&p, line, SMTP_REPLY_LINE_MAX - 2), REPLY_DONE);
    assert_int_equal(p.r.textlen, SMTP_REPLY_LINE_MAX - 6);
    reply_parser_init(&p);
    assert_int_equal(reply_parser_line(&p, line, SMTP_REPLY_LINE_MAX - 1), REPLY_ERROR);

    /* 100 lines fine, 101 not */
    reply_parser_init(&p);
    for (int i = 0; i < REPLY_LINES_MAX - 1; i++)
        assert_int_equal(feed(&p, "250-line"), REPLY_MORE);
    assert_int_equal(feed(&p, "250 last"), REPLY_DONE);
    assert_int_equal(p.r.nlines, REPLY_LINES_MAX);
    reply_parser_init(&p);
    for (int i = 0; i < REPLY_LINES_MAX; i++)
        assert_int_equal(feed(&p, "250-line"), REPLY_MORE);
    assert_int_equal(feed(&p, "250 last"), REPLY_ERROR);

    /* text is truncated, not an error */
    memcpy(line, "250-", 4);
    reply_parser_init(&p);
    for (int i = 0; i < 20; i++)
        assert_int_equal(reply_parser_line(&p, line, 500), REPLY_MORE);
    assert_int_equal(feed(&p, "250 end"), REPLY_DONE);
    assert_int_equal(p.r.textlen, REPLY_TEXT_MAX - 1);
    assert_int_equal(strlen(p.r.text), REPLY_TEXT_MAX - 1);
}

static void test_parse_controls(void **state)
{
    (void)state;
    struct reply_parser p;
    static const char line[] = "250 a\0b\rc\x1b";

    reply_parser_init(&p);
    assert_int_equal(reply_parser_line(&p, line, sizeof(line) - 1), REPLY_DONE);
    assert_string_equal(p.r.text, "a?b?c?");
    assert_int_equal(p.r.textlen, 6);
}

/* What the formatter writes, the parser reads back. */
static void test_round_trip(void **state)
{
    (void)state;
    struct reply_parser p;
    char buf[600];
    size_t n;

    reply_parser_init(&p);
    n = reply_format_line(buf, sizeof(buf), 452, "4.5.3", false, "Too many recipients");
    assert_int_equal(reply_parser_line(&p, buf, n - 2), REPLY_MORE);
    n = reply_format_line(buf, sizeof(buf), 452, "4.5.3", true, "try later");
    assert_int_equal(reply_parser_line(&p, buf, n - 2), REPLY_DONE);
    assert_int_equal(p.r.code, 452);
    assert_string_equal(p.r.enh, "4.5.3");
    assert_string_equal(p.r.text, "Too many recipients\ntry later");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_basic),     cmocka_unit_test(test_format_cleans),
        cmocka_unit_test(test_format_truncates), cmocka_unit_test(test_enh_parse),
        cmocka_unit_test(test_parse_single),     cmocka_unit_test(test_parse_multi),
        cmocka_unit_test(test_parse_errors),     cmocka_unit_test(test_parse_limits),
        cmocka_unit_test(test_parse_controls),   cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
