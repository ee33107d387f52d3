/*
 * test_log.c - unit tests for core/log.c: log_escape on every class of
 * octet (C0 controls, DEL, C1 controls, backslash, valid UTF-8 of each
 * length, overlong forms, surrogates, code points above U+10FFFF, stray and
 * truncated sequences, separators and bidi overrides) and its output bound;
 * then log_msg itself with stderr captured in a temporary file: one record
 * per call whatever the text holds (the forged-record attack with an LF
 * and a fake "AUTH ok"), the level filter, and the 2 KiB cut.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "../support/testutil.h"

static void check_escape(const char *in, size_t n, const char *want)
{
    char out[256];
    size_t len = log_escape(in, n, out, sizeof(out));
    assert_string_equal(out, want);
    assert_int_equal(len, strlen(want));
}
#define ESC(lit, want) check_escape(lit, sizeof(lit) - 1, want)

static void test_escape_ascii(void **state)
{
    (void)state;
    ESC("plain text: <a@b.example> 250 ok", "plain text: <a@b.example> 250 ok");
    ESC("a\nb", "a\\x0ab");
    ESC("a\r\nb", "a\\x0d\\x0ab");
    ESC("\t\x1b[31mred\x7f", "\\x09\\x1b[31mred\\x7f");
    ESC("\x01\x1f ~", "\\x01\\x1f ~");
    ESC("back\\slash \\x0a", "back\\\\slash \\\\x0a"); /* a literal \x0a cannot pass for an LF */
    ESC("", "");
    char nul[] = {'a', '\0', 'b'};
    check_escape(nul, 3, "a\\x00b");
}

static void test_escape_utf8(void **state)
{
    (void)state;
    ESC("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\xa6 \xf4\x8f\xbf\xbf",
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\xa6 \xf4\x8f\xbf\xbf");
    ESC("\xc3", "\\xc3");                   /* truncated at the end */
    ESC("\xc3x", "\\xc3x");                 /* truncated, then ASCII */
    ESC("\xe2\x82", "\\xe2\\x82");          /* truncated 3-octet */
    ESC("\x80\xbf", "\\x80\\xbf");          /* stray continuation octets */
    ESC("\xc0\xaf", "\\xc0\\xaf");          /* overlong '/' */
    ESC("\xc1\x81", "\\xc1\\x81");          /* overlong 'A' */
    ESC("\xe0\x80\xaf", "\\xe0\\x80\\xaf"); /* overlong 3-octet */
    ESC("\xf0\x80\x80\xaf", "\\xf0\\x80\\x80\\xaf");
    ESC("\xed\xa0\x80", "\\xed\\xa0\\x80");          /* surrogate U+D800 */
    ESC("\xed\x9f\xbf", "\xed\x9f\xbf");             /* U+D7FF is fine */
    ESC("\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"); /* above U+10FFFF */
    ESC("\xf5\x80\x80\x80", "\\xf5\\x80\\x80\\x80");
    ESC("\xfe\xff", "\\xfe\\xff");
    ESC("\xc3\xa9\xc3", "\xc3\xa9\\xc3");
    /* an invalid lead does not swallow the valid text after it */
    ESC("\xe2\x28\xa1", "\\xe2(\\xa1");
}

static void test_escape_hidden(void **state)
{
    (void)state;
    ESC("\xc2\x85", "\\xc2\\x85"); /* NEL, a C1 control */
    ESC("\xc2\x9b"
        "31m",
        "\\xc2\\x9b31m");        /* CSI */
    ESC("\xc2\xa0", "\xc2\xa0"); /* no-break space is text */
    ESC("a\xe2\x80\xa8"
        "b",
        "a\\xe2\\x80\\xa8b");               /* LINE SEPARATOR */
    ESC("\xe2\x80\xa9", "\\xe2\\x80\\xa9"); /* PARAGRAPH SEPARATOR */
    ESC("\xe2\x80\xae", "\\xe2\\x80\\xae"); /* RIGHT-TO-LEFT OVERRIDE */
    ESC("\xe2\x81\xa6", "\\xe2\\x81\\xa6"); /* LEFT-TO-RIGHT ISOLATE */
    ESC("\xe2\x80\x94", "\xe2\x80\x94");    /* an em dash is text */
}

static void test_escape_bound(void **state)
{
    (void)state;
    char out[8];
    assert_int_equal(log_escape("ab\ncd", 5, out, sizeof(out)), 7);
    assert_string_equal(out, "ab\\x0ac");
    /* never half an escape */
    assert_int_equal(log_escape("abcdef\n", 7, out, sizeof(out)), 6);
    assert_string_equal(out, "abcdef");
    /* never half a character */
    assert_int_equal(log_escape("abcde\xe2\x82\xac", 8, out, sizeof(out)), 5);
    assert_string_equal(out, "abcde");
    assert_int_equal(log_escape("x", 1, out, 1), 0);
    assert_string_equal(out, "");
    assert_int_equal(log_escape("x", 1, out, 0), 0);
}

/* ---- log_msg with stderr captured --------------------------------------- */

struct capture {
    int saved;
    char path[64];
};

static void capture_start(struct capture *c)
{
    snprintf(c->path, sizeof(c->path), "/tmp/tern-test-log-XXXXXX");
    int fd = mkstemp(c->path);
    assert_true(fd >= 0);
    c->saved = dup(STDERR_FILENO);
    assert_true(c->saved >= 0);
    assert_true(dup2(fd, STDERR_FILENO) == STDERR_FILENO);
    close(fd);
}

/* The captured output (free it); stderr restored. */
static char *capture_end(struct capture *c, size_t *len)
{
    assert_true(dup2(c->saved, STDERR_FILENO) == STDERR_FILENO);
    close(c->saved);
    char *text = tu_slurp(c->path, len);
    unlink(c->path);
    return text;
}

static size_t count_lines(const char *p, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += p[i] == '\n';
    return k;
}

static void test_msg_forged_record(void **state)
{
    (void)state;
    struct capture c;
    size_t n;
    /* the reproduced attack: an AUTH PLAIN user name with an LF and a fake record */
    const char *user = "mallory\n2026-01-01T00:00:00.000Z serve info: session 1: AUTH ok for admin";
    log_set_prefix("test");
    capture_start(&c);
    log_info("auth failed: ip=%s user=%s session=%d", "192.0.2.7", user, 7);
    log_warn("helo %s", "evil\x1b]0;title\x07");
    char *out = capture_end(&c, &n);
    assert_int_equal(count_lines(out, n), 2);
    assert_non_null(strstr(out,
                           "Z test info: auth failed: ip=192.0.2.7 user=mallory\\x0a2026-01-01T"
                           "00:00:00.000Z serve info: session 1: AUTH ok for admin session=7\n"));
    assert_non_null(strstr(out, " test warning: helo evil\\x1b]0;title\\x07\n"));
    assert_null(strchr(out, '\x1b'));
    free(out);
}

static void test_msg_level_and_cut(void **state)
{
    (void)state;
    struct capture c;
    size_t n;
    char big[5000];
    memset(big, '\n', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    log_set_level(LOG_WARN);
    capture_start(&c);
    log_info("not shown");
    log_error("%s", big);
    log_error("after");
    char *out = capture_end(&c, &n);
    log_set_level(LOG_INFO);
    assert_int_equal(count_lines(out, n), 2);
    assert_null(strstr(out, "not shown"));
    assert_non_null(strstr(out, " error: after\n"));
    /* the text is cut at 2 KiB before escaping: at most 2047 escapes */
    const char *first = strstr(out, "error: ");
    assert_non_null(first);
    const char *eol = strchr(first, '\n');
    size_t esc = (size_t)(eol - first - 7);
    assert_true(esc % 4 == 0);
    assert_true(esc / 4 >= 2000 && esc / 4 <= 2047);
    free(out);
}

static void test_msg_utf8_readable(void **state)
{
    (void)state;
    struct capture c;
    size_t n;
    capture_start(&c);
    log_info("rcpt <j\xc3\xbcrgen@b\xc3\xbc"
             "cher.example> bad <\xff\xfe@x>");
    char *out = capture_end(&c, &n);
    assert_non_null(strstr(out, "rcpt <j\xc3\xbcrgen@b\xc3\xbc"
                                "cher.example> bad <\\xff\\xfe@x>\n"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_ascii),      cmocka_unit_test(test_escape_utf8),
        cmocka_unit_test(test_escape_hidden),     cmocka_unit_test(test_escape_bound),
        cmocka_unit_test(test_msg_forged_record), cmocka_unit_test(test_msg_level_and_cut),
        cmocka_unit_test(test_msg_utf8_readable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
