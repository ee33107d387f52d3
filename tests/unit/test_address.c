/*
 * test_address.c - unit tests for core/address.c: paths, mailboxes, quoted
 * local parts, domains, address literals, the 64/255/256 limits at the
 * boundary and one over, control characters, source routes, UTF-8 with and
 * without ADDR_ALLOW_UTF8, formatting and utf8_valid().
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/address.h"

static int path(const char *s, int flags, struct mailaddr *a, size_t *used)
{
    return addr_parse_path(s, strlen(s), flags, a, used);
}

static int path_err(const char *s, int flags)
{
    struct mailaddr a;
    size_t used;
    int e = addr_parse_path(s, strlen(s), flags, &a, &used);
    if (e != ADDR_OK)
        assert_int_equal(used, 0);
    return e;
}

/* Parse a path built from a local part and a domain. */
static int path_of(const char *local, const char *domain, struct mailaddr *a)
{
    char buf[1024];
    size_t used;
    int n = snprintf(buf, sizeof(buf), "<%s@%s>", local, domain);
    return addr_parse_path(buf, (size_t)n, 0, a, &used);
}

static void fill(char *buf, char c, size_t n)
{
    memset(buf, c, n);
    buf[n] = '\0';
}

static void test_simple(void **state)
{
    (void)state;
    struct mailaddr a;
    size_t used;

    assert_int_equal(path("<user@example.com> SIZE=10", 0, &a, &used), ADDR_OK);
    assert_int_equal(used, 18);
    assert_string_equal(a.local, "user");
    assert_string_equal(a.domain, "example.com");
    assert_false(a.is_null);
    assert_false(a.is_literal);
    assert_false(a.is_quoted);
    assert_false(a.has_utf8);
    assert_false(a.had_route);

    assert_int_equal(path("<First.Last+tag@Sub.Example.ORG>", 0, &a, &used), ADDR_OK);
    assert_string_equal(a.local, "First.Last+tag");
    assert_string_equal(a.domain, "Sub.Example.ORG");
    assert_int_equal(path("<!#$%&'*+-/=?^_`{|}~@x>", 0, &a, &used), ADDR_OK);
    assert_string_equal(a.local, "!#$%&'*+-/=?^_`{|}~");
    assert_int_equal(path("<a@localhost>", 0, &a, &used), ADDR_OK);
    assert_int_equal(path("<a@a-b.c-d>", 0, &a, &used), ADDR_OK);
    assert_int_equal(path("<a@123.example>", 0, &a, &used), ADDR_OK);
}

static void test_null_path(void **state)
{
    (void)state;
    struct mailaddr a;
    size_t used;

    assert_int_equal(path("<>", ADDR_ALLOW_NULL, &a, &used), ADDR_OK);
    assert_true(a.is_null);
    assert_int_equal(used, 2);
    assert_int_equal(path("<> BODY=8BITMIME", ADDR_ALLOW_NULL, &a, &used), ADDR_OK);
    assert_int_equal(used, 2);
    assert_int_equal(path_err("<>", 0), ADDR_ENULL);
    assert_int_equal(path_err("<>", ADDR_ALLOW_UTF8), ADDR_ENULL);
    assert_int_equal(path_err("< >", ADDR_ALLOW_NULL), ADDR_ESYNTAX);
}

static void test_syntax_errors(void **state)
{
    (void)state;
    const char *bad[] = {
        "",        "<",        "user@example.com", "<user@example.com",
        "<user>",  "<@>",      "<user@>",          "<@example.com>",
        "<.a@b>",  "<a.@b>",   "<a..b@c>",         "<a b@c>",
        "<a@b@c>", "<a(b)@c>", "<a,b@c>",          "<\"a@b>",
        "<a@b >",  " <a@b>",   "<a\\b@c>",         "<a@[1.2.3.4>",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int e = path_err(bad[i], ADDR_ALLOW_NULL);
        assert_true(e != ADDR_OK);
    }
    assert_int_equal(path_err("<user@example.com", 0), ADDR_ESYNTAX);
    assert_int_equal(path_err("<user>", 0), ADDR_ESYNTAX);
    assert_int_equal(path_err("<a..b@c>", 0), ADDR_ESYNTAX);
    assert_int_equal(path_err("<user@>", 0), ADDR_EDOMAIN);
    /* mailbox: nothing allowed after */
    struct mailaddr a;
    assert_int_equal(addr_parse_mailbox("a@b", 3, 0, &a), ADDR_OK);
    assert_int_not_equal(addr_parse_mailbox("a@b ", 4, 0, &a), ADDR_OK);
    assert_int_not_equal(addr_parse_mailbox("<a@b>", 5, 0, &a), ADDR_OK);
    assert_int_not_equal(addr_parse_mailbox("", 0, 0, &a), ADDR_OK);
}

static void test_domains(void **state)
{
    (void)state;
    struct mailaddr a;
    char label[80];

    assert_int_equal(path_of("a", "-x.com", &a), ADDR_EDOMAIN);
    assert_int_equal(path_of("a", "x-.com", &a), ADDR_EDOMAIN);
    assert_int_equal(path_of("a", "x.com-", &a), ADDR_EDOMAIN);
    assert_int_equal(path_of("a", "x..com", &a), ADDR_EDOMAIN);
    assert_int_equal(path_of("a", ".x.com", &a), ADDR_EDOMAIN);
    assert_int_equal(path_of("a", "x.com.", &a), ADDR_EDOMAIN);
    assert_int_equal(path_of("a", "x_y.com", &a), ADDR_EDOMAIN);
    assert_int_equal(path_of("a", "x y", &a), ADDR_EDOMAIN);
    assert_int_equal(path_of("a", "xn--bcher-kva.example", &a), ADDR_OK);
    /* label of 63 is fine, 64 is not */
    fill(label, 'l', 63);
    assert_int_equal(path_of("a", label, &a), ADDR_OK);
    fill(label, 'l', 64);
    assert_int_equal(path_of("a", label, &a), ADDR_EDOMAIN);
}

static void test_local_limit(void **state)
{
    (void)state;
    struct mailaddr a;
    char local[80];

    fill(local, 'a', 64);
    assert_int_equal(path_of(local, "x.org", &a), ADDR_OK);
    assert_int_equal(strlen(a.local), 64);
    fill(local, 'a', 65);
    assert_int_equal(path_of(local, "x.org", &a), ADDR_ELOCAL_LONG);
    /* quoted: the quotes count */
    local[0] = '"';
    fill(local + 1, 'q', 62);
    strcat(local, "\"");
    assert_int_equal(strlen(local), 64);
    assert_int_equal(path_of(local, "x.org", &a), ADDR_OK);
    fill(local + 1, 'q', 63);
    strcat(local, "\"");
    assert_int_equal(path_of(local, "x.org", &a), ADDR_ELOCAL_LONG);
}

/* A domain of n octets made of 63-octet labels. */
static void make_domain(char *buf, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t lab = 0;
        while (i < n && lab < 63) {
            buf[i++] = 'd';
            lab++;
        }
        if (i < n) {
            buf[i++] = '.';
            if (i == n)
                buf[i - 2] = '.', buf[i - 1] = 'e'; /* never end with a dot */
        }
    }
    buf[n] = '\0';
}

static void test_domain_and_path_limits(void **state)
{
    (void)state;
    struct mailaddr a;
    char dom[300], buf[400];
    size_t used;

    /* bare mailbox: domain 255 fits the domain limit, but the path would be 259 */
    make_domain(dom, 255);
    snprintf(buf, sizeof(buf), "a@%s", dom);
    assert_int_equal(addr_parse_mailbox(buf, strlen(buf), 0, &a), ADDR_EPATH_LONG);
    make_domain(dom, 256);
    snprintf(buf, sizeof(buf), "a@%s", dom);
    assert_int_equal(addr_parse_mailbox(buf, strlen(buf), 0, &a), ADDR_EDOMAIN_LONG);
    assert_int_equal(path_of("a", dom, &a), ADDR_EDOMAIN_LONG);

    /* path exactly 256: "<" + 1 + "@" + 252 + ">" */
    make_domain(dom, 252);
    snprintf(buf, sizeof(buf), "<a@%s>", dom);
    assert_int_equal(strlen(buf), 256);
    assert_int_equal(addr_parse_path(buf, 256, 0, &a, &used), ADDR_OK);
    assert_int_equal(used, 256);
    assert_int_equal(addr_parse_mailbox(buf + 1, 254, 0, &a), ADDR_OK);
    /* 257 */
    snprintf(buf, sizeof(buf), "<ab@%s>", dom);
    assert_int_equal(addr_parse_path(buf, strlen(buf), 0, &a, &used), ADDR_EPATH_LONG);
    assert_int_equal(addr_parse_mailbox(buf + 1, 255, 0, &a), ADDR_EPATH_LONG);
    /* domain exactly 255 accepted in the domain check (path limit then bites) */
    make_domain(dom, 255);
    snprintf(buf, sizeof(buf), "<a@%s>", dom);
    assert_int_equal(addr_parse_path(buf, strlen(buf), 0, &a, &used), ADDR_EPATH_LONG);
}

static void test_quoted(void **state)
{
    (void)state;
    struct mailaddr a;
    size_t used;

    assert_int_equal(path("<\"john doe\"@example.com>", 0, &a, &used), ADDR_OK);
    assert_true(a.is_quoted);
    assert_string_equal(a.local, "\"john doe\"");
    assert_int_equal(path("<\"a@b>c\"@example.com> X", 0, &a, &used), ADDR_OK);
    assert_string_equal(a.local, "\"a@b>c\"");
    assert_string_equal(a.domain, "example.com");
    assert_int_equal(used, 21);
    assert_int_equal(path("<\"q\\\"uote\\\\\"@x>", 0, &a, &used), ADDR_OK);
    assert_string_equal(a.local, "\"q\\\"uote\\\\\"");
    assert_int_equal(path("<\"\"@x>", 0, &a, &used), ADDR_OK);
    assert_string_equal(a.local, "\"\"");
    assert_int_equal(path_err("<\"abc@x>", 0), ADDR_ESYNTAX);
    assert_int_equal(path_err("<\"a\"b@x>", 0), ADDR_ESYNTAX);
    assert_int_equal(path_err("<a\"b\"@x>", 0), ADDR_ESYNTAX);
    /* controls are refused even quoted or escaped */
    assert_int_equal(path_err("<\"a\rb\"@x>", 0), ADDR_ECTRL);
    assert_int_equal(path_err("<\"a\nb\"@x>", 0), ADDR_ECTRL);
    assert_int_equal(path_err("<\"a\tb\"@x>", 0), ADDR_ECTRL);
    assert_int_equal(path_err("<\"a\x7f"
                              "b\"@x>",
                              0),
                     ADDR_ECTRL);
    assert_int_equal(path_err("<\"a\\\rb\"@x>", 0), ADDR_ECTRL);
    assert_int_equal(path_err("<\"a\\\x01"
                              "b\"@x>",
                              0),
                     ADDR_ECTRL);
    static const char nul[] = "<\"a\0b\"@x>";
    assert_int_equal(addr_parse_path(nul, sizeof(nul) - 1, 0, &a, &used), ADDR_ECTRL);
}

static void test_controls(void **state)
{
    (void)state;
    struct mailaddr a;
    size_t used;
    const char *bad[] = {"<a\r@b>",  "<a@b\r>",   "<a@b\n>",        "<a\n@b>",
                         "<a@b\r\n", "<a\x7f@b>", "<a@b\x7f>",      "<a@b.c\x1b>",
                         "<\t@b>",   "\r<a@b>",   "<a@[1.2.3.4\r]>"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(path_err(bad[i], ADDR_ALLOW_UTF8 | ADDR_ALLOW_NULL), ADDR_ECTRL);
    static const char nul1[] = "<a\0b@c>";
    static const char nul2[] = "<ab@c\0>";
    assert_int_equal(addr_parse_path(nul1, sizeof(nul1) - 1, 0, &a, &used), ADDR_ECTRL);
    assert_int_equal(addr_parse_path(nul2, sizeof(nul2) - 1, 0, &a, &used), ADDR_ECTRL);
    assert_int_equal(addr_parse_mailbox("a@b\r", 4, 0, &a), ADDR_ECTRL);
}

static void test_literals(void **state)
{
    (void)state;
    struct mailaddr a;

    assert_int_equal(path_of("a", "[192.0.2.1]", &a), ADDR_OK);
    assert_true(a.is_literal);
    assert_string_equal(a.domain, "[192.0.2.1]");
    assert_int_equal(path_of("a", "[IPv6:2001:db8::1]", &a), ADDR_OK);
    assert_true(a.is_literal);
    assert_int_equal(path_of("a", "[ipv6:::1]", &a), ADDR_OK);
    assert_int_equal(path_of("a", "[IPv6:::ffff:192.0.2.1]", &a), ADDR_OK);
    assert_int_equal(path_of("a", "[IPv6:2001:0db8:0000:0000:0000:ff00:0042:8329]", &a), ADDR_OK);
    assert_int_equal(path_of("a", "[256.0.0.1]", &a), ADDR_ELITERAL);
    assert_int_equal(path_of("a", "[1.2.3]", &a), ADDR_ELITERAL);
    assert_int_equal(path_of("a", "[1.2.3.4.5]", &a), ADDR_ELITERAL);
    assert_int_equal(path_of("a", "[2001:db8::1]", &a), ADDR_ELITERAL);
    assert_int_equal(path_of("a", "[IPv6:1.2.3.4]", &a), ADDR_ELITERAL);
    assert_int_equal(path_of("a", "[IPv6:2001:db8::1::2]", &a), ADDR_ELITERAL);
    assert_int_equal(path_of("a", "[IPv6:fe80::1%eth0]", &a), ADDR_ELITERAL);
    assert_int_equal(path_of("a", "[x-tag:stuff]", &a), ADDR_ELITERAL);
    assert_int_equal(path_of("a", "[]", &a), ADDR_ELITERAL);
    assert_int_equal(path_of("a", "[IPv6:]", &a), ADDR_ELITERAL);
    assert_int_equal(path_of("a", "[1.2.3.4", &a), ADDR_ELITERAL);
    assert_int_equal(path_of("a", "[1.2.3.4]x", &a), ADDR_ELITERAL);
    assert_int_equal(path_of("a", "[ 1.2.3.4]", &a), ADDR_ELITERAL);
}

static void test_source_route(void **state)
{
    (void)state;
    struct mailaddr a;
    size_t used;

    assert_int_equal(path("<@a.example,@b.example:user@c.example>", 0, &a, &used), ADDR_OK);
    assert_true(a.had_route);
    assert_string_equal(a.local, "user");
    assert_string_equal(a.domain, "c.example");
    assert_int_equal(used, 38);
    assert_int_equal(path("<@relay:u@d>", 0, &a, &used), ADDR_OK);
    assert_true(a.had_route);
    assert_int_equal(path_err("<@relay,u@d>", 0), ADDR_ESYNTAX);
    assert_int_equal(path_err("<@:u@d>", 0), ADDR_EDOMAIN);
    assert_int_equal(path_err("<@a,:u@d>", 0), ADDR_ESYNTAX);
    assert_int_equal(path_err("<@a,b:u@d>", 0), ADDR_ESYNTAX);
    assert_int_equal(path_err("<@bad_dom:u@d>", 0), ADDR_EDOMAIN);
    assert_int_equal(path_err("<@a>", 0), ADDR_ESYNTAX);
    assert_int_equal(path_err("<@a:>", 0), ADDR_ESYNTAX);
    assert_int_equal(path_err("<@a\r:u@d>", 0), ADDR_ECTRL);
}

static void test_utf8(void **state)
{
    (void)state;
    struct mailaddr a;
    size_t used;
    const char *u = "<J\xc3\xb6rg@b\xc3\xbc"
                    "cher.example>";

    assert_int_equal(path_err(u, 0), ADDR_EUTF8);
    assert_int_equal(path(u, ADDR_ALLOW_UTF8, &a, &used), ADDR_OK);
    assert_true(a.has_utf8);
    assert_string_equal(a.local, "J\xc3\xb6rg");
    assert_string_equal(a.domain, "b\xc3\xbc"
                                  "cher.example");
    /* UTF-8 in the domain only, and in a quoted local part */
    assert_int_equal(path_err("<a@\xe4\xbe\x8b.example>", 0), ADDR_EUTF8);
    assert_int_equal(path("<a@\xe4\xbe\x8b.example>", ADDR_ALLOW_UTF8, &a, &used), ADDR_OK);
    assert_int_equal(path("<\"\xf0\x9f\x98\x80 x\"@d>", ADDR_ALLOW_UTF8, &a, &used), ADDR_OK);
    assert_true(a.is_quoted && a.has_utf8);
    assert_int_equal(path_err("<\"\xf0\x9f\x98\x80 x\"@d>", 0), ADDR_EUTF8);
    /* invalid sequences are refused even with the flag */
    assert_int_equal(path_err("<a\xc3@d>", ADDR_ALLOW_UTF8), ADDR_EUTF8);
    assert_int_equal(path_err("<a\xc0\xaf@d>", ADDR_ALLOW_UTF8), ADDR_EUTF8);     /* overlong */
    assert_int_equal(path_err("<a\xed\xa0\x80@d>", ADDR_ALLOW_UTF8), ADDR_EUTF8); /* surrogate */
    assert_int_equal(path_err("<a\xf4\x90\x80\x80@d>", ADDR_ALLOW_UTF8), ADDR_EUTF8);
    assert_int_equal(path_err("<a@d\xff>", ADDR_ALLOW_UTF8), ADDR_EUTF8);
    assert_int_equal(path_err("<a\x80@d>", ADDR_ALLOW_UTF8), ADDR_EUTF8);
    /* a UTF-8 label is counted in octets: 21 x 3 = 63 fits, 22 x 3 does not */
    char dom[100] = "";
    for (int i = 0; i < 21; i++)
        strcat(dom, "\xe4\xbe\x8b");
    char buf[200];
    snprintf(buf, sizeof(buf), "<a@%s>", dom);
    assert_int_equal(path(buf, ADDR_ALLOW_UTF8, &a, &used), ADDR_OK);
    strcat(dom, "\xe4\xbe\x8b");
    snprintf(buf, sizeof(buf), "<a@%s>", dom);
    assert_int_equal(path_err(buf, ADDR_ALLOW_UTF8), ADDR_EDOMAIN);
}

static void test_utf8_valid(void **state)
{
    (void)state;
    assert_true(utf8_valid("", 0));
    assert_true(utf8_valid("plain", 5));
    assert_true(utf8_valid("\xc2\x80", 2));
    assert_true(utf8_valid("\xdf\xbf", 2));
    assert_true(utf8_valid("\xe0\xa0\x80", 3));
    assert_true(utf8_valid("\xef\xbf\xbf", 3));
    assert_true(utf8_valid("\xf0\x90\x80\x80", 4));
    assert_true(utf8_valid("\xf4\x8f\xbf\xbf", 4));
    assert_true(utf8_valid("a\0b", 3));
    assert_false(utf8_valid("\xc1\xbf", 2));         /* overlong */
    assert_false(utf8_valid("\xe0\x9f\xbf", 3));     /* overlong */
    assert_false(utf8_valid("\xf0\x8f\xbf\xbf", 4)); /* overlong */
    assert_false(utf8_valid("\xed\xa0\x80", 3));     /* surrogate D800 */
    assert_false(utf8_valid("\xed\xbf\xbf", 3));     /* surrogate DFFF */
    assert_true(utf8_valid("\xed\x9f\xbf", 3));      /* D7FF */
    assert_false(utf8_valid("\xf4\x90\x80\x80", 4)); /* > 10FFFF */
    assert_false(utf8_valid("\xf5\x80\x80\x80", 4));
    assert_false(utf8_valid("\x80", 1));
    assert_false(utf8_valid("\xc3", 1));
    assert_false(utf8_valid("\xe2\x82", 2));
    assert_false(utf8_valid("\xc3\x28", 2));
    assert_false(utf8_valid("\xff", 1));
}

static void test_format(void **state)
{
    (void)state;
    struct mailaddr a, b;
    size_t used;
    char buf[300];

    assert_int_equal(path("<@r:\"x y\"@[IPv6:::1]>", 0, &a, &used), ADDR_OK);
    assert_int_equal(addr_format(&a, buf, sizeof(buf)), strlen("\"x y\"@[IPv6:::1]"));
    assert_string_equal(buf, "\"x y\"@[IPv6:::1]");
    assert_int_equal(addr_parse_mailbox(buf, strlen(buf), 0, &b), ADDR_OK);
    assert_string_equal(b.local, a.local);
    assert_string_equal(b.domain, a.domain);
    /* truncation like snprintf */
    assert_int_equal(addr_format(&a, buf, 4), 16);
    assert_string_equal(buf, "\"x ");
    assert_int_equal(addr_format(&a, NULL, 0), 16);
    /* null */
    assert_int_equal(path("<>", ADDR_ALLOW_NULL, &a, &used), ADDR_OK);
    buf[0] = 'x';
    assert_int_equal(addr_format(&a, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "");
}

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(addr_strerror(ADDR_ELOCAL_LONG), "local part longer than 64 octets");
    for (int e = ADDR_OK; e <= ADDR_ELITERAL; e++)
        assert_true(strlen(addr_strerror(e)) > 0);
    assert_non_null(addr_strerror(-1));
    assert_non_null(addr_strerror(1000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple),        cmocka_unit_test(test_null_path),
        cmocka_unit_test(test_syntax_errors), cmocka_unit_test(test_domains),
        cmocka_unit_test(test_local_limit),   cmocka_unit_test(test_domain_and_path_limits),
        cmocka_unit_test(test_quoted),        cmocka_unit_test(test_controls),
        cmocka_unit_test(test_literals),      cmocka_unit_test(test_source_route),
        cmocka_unit_test(test_utf8),          cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_format),        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
