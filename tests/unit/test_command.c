/*
 * test_command.c - unit tests for core/command.c: verb splitting, MAIL and
 * RCPT prefixes, every ESMTP parameter valid, invalid, unoffered and
 * repeated, the exact error replies, xtext decoding and verb names.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/command.h"

#define ALL_EXT (EXT_SIZE | EXT_8BITMIME | EXT_SMTPUTF8 | EXT_AUTH | EXT_DSN)

static struct cmd_error err;

static int parse(const char *s, struct smtp_command *c)
{
    memset(&err, 0, sizeof(err));
    return cmd_parse(s, strlen(s), c, &err);
}

static int mail(const char *arg, unsigned ext, uint64_t max, struct mail_params *m)
{
    memset(&err, 0, sizeof(err));
    return cmd_parse_mail(arg, strlen(arg), ext, max, m, &err);
}

static int rcpt(const char *arg, unsigned ext, bool utf8, struct rcpt_params *r)
{
    memset(&err, 0, sizeof(err));
    return cmd_parse_rcpt(arg, strlen(arg), ext, utf8, r, &err);
}

static void expect_err(int code, const char *enh)
{
    assert_int_equal(err.code, code);
    assert_string_equal(err.enh, enh);
    assert_non_null(err.text);
    assert_true(strlen(err.text) > 0);
}

static void check_arg(const struct smtp_command *c, const char *want)
{
    assert_int_equal(c->arglen, strlen(want));
    assert_memory_equal(c->arg, want, c->arglen);
}

static void test_verbs(void **state)
{
    (void)state;
    struct smtp_command c;
    static const struct {
        const char *line;
        enum smtp_verb verb;
        const char *arg;
    } ok[] = {
        {"HELO client.example", CMD_HELO, "client.example"},
        {"ehlo client.example", CMD_EHLO, "client.example"},
        {"EhLo [192.0.2.1]", CMD_EHLO, "[192.0.2.1]"},
        {"DATA", CMD_DATA, ""},
        {"data", CMD_DATA, ""},
        {"RSET", CMD_RSET, ""},
        {"NOOP anything at all", CMD_NOOP, "anything at all"},
        {"QUIT", CMD_QUIT, ""},
        {"VRFY postmaster", CMD_VRFY, "postmaster"},
        {"HELP", CMD_HELP, ""},
        {"STARTTLS", CMD_STARTTLS, ""},
        {"starttls", CMD_STARTTLS, ""},
        {"AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=", CMD_AUTH, "PLAIN dGVzdAB0ZXN0AHRlc3Q="},
        {"EXPN list", CMD_EXPN, "list"},
        {"HELO  two", CMD_HELO, " two"}, /* exactly one space is eaten */
        {"RSET ", CMD_RSET, ""},
        {"MAIL FROM:<a@b>", CMD_MAIL, "<a@b>"},
        {"mail from:<a@b> SIZE=1", CMD_MAIL, "<a@b> SIZE=1"},
        {"MAIL FROM: <a@b>", CMD_MAIL, "<a@b>"},
        {"MAIL FROM:  <a@b>", CMD_MAIL, " <a@b>"},
        {"MAIL FROM:", CMD_MAIL, ""},
        {"RCPT TO:<a@b>", CMD_RCPT, "<a@b>"},
        {"Rcpt To: <a@b>", CMD_RCPT, "<a@b>"},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(parse(ok[i].line, &c), 0);
        assert_int_equal(c.verb, ok[i].verb);
        check_arg(&c, ok[i].arg);
    }
}

static void test_bad_verbs(void **state)
{
    (void)state;
    struct smtp_command c;
    const char *bad[] = {"",        " HELO x",        "HELOx",     "HEL", "XYZZY",
                         "HELO\tx", "MAILFROM:<a@b>", "STARTTLSX", "DAT", "QUIT\r"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse(bad[i], &c), -1);
        assert_int_equal(c.verb, CMD_UNKNOWN);
        expect_err(500, "5.5.2");
        assert_string_equal(err.text, "Command unrecognized");
    }
    static const char nul[] = "NO\0P";
    assert_int_equal(cmd_parse(nul, 4, &c, &err), -1);
    expect_err(500, "5.5.2");
}

static void test_bad_prefix(void **state)
{
    (void)state;
    struct smtp_command c;
    const char *bad[] = {
        "MAIL", "MAIL ", "MAIL TO:<a@b>", "MAIL FROM <a@b>", "MAIL  FROM:<a@b>", "MAIL FRO:<a@b>"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse(bad[i], &c), -1);
        assert_int_equal(c.verb, CMD_MAIL);
        expect_err(501, "5.5.4");
    }
    assert_int_equal(parse("RCPT FROM:<a@b>", &c), -1);
    assert_int_equal(c.verb, CMD_RCPT);
    expect_err(501, "5.5.4");
    assert_int_equal(parse("RCPT", &c), -1);
    expect_err(501, "5.5.4");
}

static void test_mail_plain(void **state)
{
    (void)state;
    struct mail_params m;

    assert_int_equal(mail("<user@example.com>", 0, 0, &m), 0);
    assert_string_equal(m.from.local, "user");
    assert_string_equal(m.from.domain, "example.com");
    assert_false(m.size_given);
    assert_int_equal(m.body, BODY_NONE);
    assert_false(m.smtputf8);
    assert_false(m.auth_given);
    assert_int_equal(m.ret, RET_NONE);
    assert_string_equal(m.envid, "");

    assert_int_equal(mail("<>", 0, 0, &m), 0);
    assert_true(m.from.is_null);
    assert_int_equal(mail("<a@b>   ", 0, 0, &m), 0); /* trailing spaces tolerated */

    assert_int_equal(mail("a@b", 0, 0, &m), -1);
    expect_err(501, "5.5.4");
    assert_int_equal(mail("", 0, 0, &m), -1);
    expect_err(501, "5.5.4");
    assert_int_equal(mail("<a@b>x", 0, 0, &m), -1);
    expect_err(501, "5.5.4");
    assert_int_equal(mail("<a@b>\tSIZE=1", EXT_SIZE, 0, &m), -1);
    expect_err(501, "5.5.4");
}

static void test_mail_bad_address(void **state)
{
    (void)state;
    struct mail_params m;

    assert_int_equal(mail("<a..b@c>", ALL_EXT, 0, &m), -1);
    expect_err(553, "5.1.7");
    assert_string_equal(err.text, addr_strerror(ADDR_ESYNTAX));
    assert_int_equal(mail("<a@b\r>", ALL_EXT, 0, &m), -1);
    expect_err(553, "5.1.7");
    assert_string_equal(err.text, addr_strerror(ADDR_ECTRL));
    assert_int_equal(mail("<a@[1.2.3.999]>", ALL_EXT, 0, &m), -1);
    expect_err(553, "5.1.7");
    assert_string_equal(err.text, addr_strerror(ADDR_ELITERAL));
    assert_int_equal(mail("<a@b", ALL_EXT, 0, &m), -1);
    expect_err(553, "5.1.7");
}

static void test_mail_utf8(void **state)
{
    (void)state;
    struct mail_params m;
    const char *u = "<j\xc3\xb6rg@example.com>";
    char buf[100];

    /* not offered: 5.6.7 */
    assert_int_equal(mail(u, ALL_EXT & ~EXT_SMTPUTF8, 0, &m), -1);
    expect_err(553, "5.6.7");
    /* offered but not requested with SMTPUTF8: 5.6.7 */
    assert_int_equal(mail(u, ALL_EXT, 0, &m), -1);
    expect_err(553, "5.6.7");
    /* requested */
    snprintf(buf, sizeof(buf), "%s SMTPUTF8", u);
    assert_int_equal(mail(buf, ALL_EXT, 0, &m), 0);
    assert_true(m.smtputf8);
    assert_true(m.from.has_utf8);
    /* invalid UTF-8 with SMTPUTF8 is a bad address, not 5.6.7 */
    assert_int_equal(mail("<j\xc3@example.com> SMTPUTF8", ALL_EXT, 0, &m), -1);
    expect_err(553, "5.1.7");
    /* SMTPUTF8 unoffered */
    snprintf(buf, sizeof(buf), "<a@b> SMTPUTF8");
    assert_int_equal(mail(buf, 0, 0, &m), -1);
    expect_err(555, "5.5.4");
    assert_int_equal(mail("<a@b> SMTPUTF8=yes", ALL_EXT, 0, &m), -1);
    expect_err(501, "5.5.4");
    assert_int_equal(mail("<a@b> SMTPUTF8 SMTPUTF8", ALL_EXT, 0, &m), -1);
    expect_err(555, "5.5.4");
}

static void test_size(void **state)
{
    (void)state;
    struct mail_params m;

    assert_int_equal(mail("<a@b> SIZE=12345", EXT_SIZE, 0, &m), 0);
    assert_true(m.size_given);
    assert_int_equal(m.size, 12345);
    assert_int_equal(mail("<a@b> size=0", EXT_SIZE, 0, &m), 0);
    assert_true(m.size_given);
    assert_int_equal(m.size, 0);
    /* limit: equal is fine, one more is 552 */
    assert_int_equal(mail("<a@b> SIZE=1000", EXT_SIZE, 1000, &m), 0);
    assert_int_equal(mail("<a@b> SIZE=1001", EXT_SIZE, 1000, &m), -1);
    expect_err(552, "5.3.4");
    /* 20 digits, saturating */
    assert_int_equal(mail("<a@b> SIZE=18446744073709551615", EXT_SIZE, 0, &m), 0);
    assert_true(m.size == UINT64_MAX);
    assert_int_equal(mail("<a@b> SIZE=99999999999999999999", EXT_SIZE, 0, &m), 0);
    assert_true(m.size == UINT64_MAX);
    assert_int_equal(mail("<a@b> SIZE=99999999999999999999", EXT_SIZE, 10, &m), -1);
    expect_err(552, "5.3.4");
    /* 21 digits, empty, signs, letters */
    const char *bad[] = {"<a@b> SIZE=100000000000000000000",
                         "<a@b> SIZE=",
                         "<a@b> SIZE",
                         "<a@b> SIZE=-1",
                         "<a@b> SIZE=+1",
                         "<a@b> SIZE=1k",
                         "<a@b> SIZE=1=2"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(mail(bad[i], EXT_SIZE, 0, &m), -1);
        expect_err(501, "5.5.4");
    }
    assert_int_equal(mail("<a@b> SIZE=1", 0, 0, &m), -1);
    expect_err(555, "5.5.4");
    assert_int_equal(mail("<a@b> SIZE=1 SIZE=1", EXT_SIZE, 0, &m), -1);
    expect_err(555, "5.5.4");
    assert_int_equal(mail("<a@b> SIZE=1 size=2", EXT_SIZE, 0, &m), -1);
    expect_err(555, "5.5.4");
}

static void test_body(void **state)
{
    (void)state;
    struct mail_params m;

    assert_int_equal(mail("<a@b> BODY=7BIT", EXT_8BITMIME, 0, &m), 0);
    assert_int_equal(m.body, BODY_7BIT);
    assert_int_equal(mail("<a@b> body=8bitmime", EXT_8BITMIME, 0, &m), 0);
    assert_int_equal(m.body, BODY_8BITMIME);
    assert_int_equal(mail("<a@b> BODY=BINARYMIME", EXT_8BITMIME, 0, &m), -1);
    expect_err(501, "5.5.4");
    assert_int_equal(mail("<a@b> BODY", EXT_8BITMIME, 0, &m), -1);
    expect_err(501, "5.5.4");
    assert_int_equal(mail("<a@b> BODY=", EXT_8BITMIME, 0, &m), -1);
    expect_err(501, "5.5.4");
    assert_int_equal(mail("<a@b> BODY=8BITMIME", 0, 0, &m), -1);
    expect_err(555, "5.5.4");
    assert_int_equal(mail("<a@b> BODY=7BIT BODY=8BITMIME", EXT_8BITMIME, 0, &m), -1);
    expect_err(555, "5.5.4");
}

static void test_auth(void **state)
{
    (void)state;
    struct mail_params m;

    assert_int_equal(mail("<a@b> AUTH=<>", EXT_AUTH, 0, &m), 0);
    assert_true(m.auth_given);
    assert_string_equal(m.auth, "");
    assert_int_equal(mail("<a@b> AUTH=e+3Dmc2@example.com", EXT_AUTH, 0, &m), 0);
    assert_string_equal(m.auth, "e=mc2@example.com");
    assert_int_equal(mail("<a@b> AUTH=x+2", EXT_AUTH, 0, &m), -1);
    expect_err(501, "5.5.4");
    assert_int_equal(mail("<a@b> AUTH=x+0D+0A", EXT_AUTH, 0, &m), -1);
    expect_err(501, "5.5.4");
    assert_int_equal(mail("<a@b> AUTH=x+00", EXT_AUTH, 0, &m), -1);
    expect_err(501, "5.5.4");
    assert_int_equal(mail("<a@b> AUTH", EXT_AUTH, 0, &m), -1);
    expect_err(501, "5.5.4");
    assert_int_equal(mail("<a@b> AUTH=<>", 0, 0, &m), -1);
    expect_err(555, "5.5.4");
    assert_int_equal(mail("<a@b> AUTH=<> AUTH=<>", EXT_AUTH, 0, &m), -1);
    expect_err(555, "5.5.4");
    /* longest decoded value that fits, and one over */
    char buf[600];
    strcpy(buf, "<a@b> AUTH=");
    size_t n = strlen(buf);
    memset(buf + n, 'x', ADDR_PATH_MAX);
    buf[n + ADDR_PATH_MAX] = '\0';
    assert_int_equal(mail(buf, EXT_AUTH, 0, &m), 0);
    assert_int_equal(strlen(m.auth), ADDR_PATH_MAX);
    strcat(buf, "x");
    assert_int_equal(mail(buf, EXT_AUTH, 0, &m), -1);
    expect_err(501, "5.5.4");
}

static void test_dsn_mail(void **state)
{
    (void)state;
    struct mail_params m;
    char buf[300];

    assert_int_equal(mail("<a@b> RET=FULL ENVID=QQ314159", EXT_DSN, 0, &m), 0);
    assert_int_equal(m.ret, RET_FULL);
    assert_string_equal(m.envid, "QQ314159");
    assert_int_equal(mail("<a@b> ret=hdrs", EXT_DSN, 0, &m), 0);
    assert_int_equal(m.ret, RET_HDRS);
    assert_int_equal(mail("<a@b> ENVID=a+2Bb", EXT_DSN, 0, &m), 0);
    assert_string_equal(m.envid, "a+2Bb"); /* kept as written */
    assert_int_equal(mail("<a@b> RET=ALL", EXT_DSN, 0, &m), -1);
    expect_err(501, "5.5.4");
    assert_int_equal(mail("<a@b> RET", EXT_DSN, 0, &m), -1);
    expect_err(501, "5.5.4");
    assert_int_equal(mail("<a@b> ENVID=a+2b", EXT_DSN, 0, &m), -1); /* lower-case hex */
    expect_err(501, "5.5.4");
    assert_int_equal(mail("<a@b> ENVID=a+", EXT_DSN, 0, &m), -1);
    expect_err(501, "5.5.4");
    assert_int_equal(mail("<a@b> ENVID=\xc3\xa9", EXT_DSN | EXT_SMTPUTF8, 0, &m), -1);
    expect_err(501, "5.5.4");
    assert_int_equal(mail("<a@b> RET=FULL", ALL_EXT & ~EXT_DSN, 0, &m), -1);
    expect_err(555, "5.5.4");
    assert_int_equal(mail("<a@b> ENVID=x", ALL_EXT & ~EXT_DSN, 0, &m), -1);
    expect_err(555, "5.5.4");
    assert_int_equal(mail("<a@b> RET=FULL RET=HDRS", EXT_DSN, 0, &m), -1);
    expect_err(555, "5.5.4");
    assert_int_equal(mail("<a@b> ENVID=x ENVID=y", EXT_DSN, 0, &m), -1);
    expect_err(555, "5.5.4");
    /* ENVID 100 fits, 101 does not */
    strcpy(buf, "<a@b> ENVID=");
    size_t n = strlen(buf);
    memset(buf + n, 'e', ENVID_MAX);
    buf[n + ENVID_MAX] = '\0';
    assert_int_equal(mail(buf, EXT_DSN, 0, &m), 0);
    assert_int_equal(strlen(m.envid), ENVID_MAX);
    strcat(buf, "e");
    assert_int_equal(mail(buf, EXT_DSN, 0, &m), -1);
    expect_err(501, "5.5.4");
    /* NOTIFY is a RCPT parameter */
    assert_int_equal(mail("<a@b> NOTIFY=NEVER", ALL_EXT, 0, &m), -1);
    expect_err(555, "5.5.4");
}

static void test_mail_all(void **state)
{
    (void)state;
    struct mail_params m;

    assert_int_equal(mail("<u@example.com>  SIZE=100 BODY=8BITMIME SMTPUTF8 AUTH=<> RET=HDRS "
                          "ENVID=id1 ",
                          ALL_EXT, 1000, &m),
                     0);
    assert_int_equal(m.size, 100);
    assert_int_equal(m.body, BODY_8BITMIME);
    assert_true(m.smtputf8);
    assert_true(m.auth_given);
    assert_int_equal(m.ret, RET_HDRS);
    assert_string_equal(m.envid, "id1");
}

static void test_unknown_params(void **state)
{
    (void)state;
    struct mail_params m;
    struct rcpt_params r;

    assert_int_equal(mail("<a@b> FOO=bar", ALL_EXT, 0, &m), -1);
    expect_err(555, "5.5.4");
    assert_int_equal(mail("<a@b> XFOO", ALL_EXT, 0, &m), -1);
    expect_err(555, "5.5.4");
    assert_int_equal(mail("<a@b> =x", ALL_EXT, 0, &m), -1);
    expect_err(501, "5.5.4");
    assert_int_equal(mail("<a@b> -X=1", ALL_EXT, 0, &m), -1);
    expect_err(501, "5.5.4");
    assert_int_equal(mail("<a@b> SI_ZE=1", ALL_EXT, 0, &m), -1);
    expect_err(501, "5.5.4");
    assert_int_equal(mail("<a@b> SIZE=1\r", ALL_EXT, 0, &m), -1);
    expect_err(501, "5.5.4");
    assert_int_equal(mail("<a@b> SIZE=1\x7f", ALL_EXT, 0, &m), -1);
    expect_err(501, "5.5.4");
    assert_int_equal(rcpt("<a@b> SIZE=1", ALL_EXT, false, &r), -1);
    expect_err(555, "5.5.4");
    assert_int_equal(rcpt("<a@b> X-Y-Z", ALL_EXT, false, &r), -1);
    expect_err(555, "5.5.4");
}

static void test_rcpt(void **state)
{
    (void)state;
    struct rcpt_params r;

    assert_int_equal(rcpt("<bob@example.org>", 0, false, &r), 0);
    assert_string_equal(r.to.local, "bob");
    assert_int_equal(r.notify, 0);
    assert_string_equal(r.orcpt, "");
    assert_int_equal(rcpt("<>", ALL_EXT, false, &r), -1);
    expect_err(553, "5.1.3");
    assert_string_equal(err.text, addr_strerror(ADDR_ENULL));
    assert_int_equal(rcpt("bob@example.org", 0, false, &r), -1);
    expect_err(501, "5.5.4");
    assert_int_equal(rcpt("<bob@-x>", 0, false, &r), -1);
    expect_err(553, "5.1.3");
    assert_int_equal(rcpt("<b\x01ob@x>", 0, false, &r), -1);
    expect_err(553, "5.1.3");
    assert_int_equal(rcpt("<@relay:bob@x>", 0, false, &r), 0);
    assert_true(r.to.had_route);
    assert_int_equal(rcpt("<bob@x>junk", 0, false, &r), -1);
    expect_err(501, "5.5.4");
    /* UTF-8 */
    assert_int_equal(rcpt("<\xc3\xa9@x>", ALL_EXT, false, &r), -1);
    expect_err(553, "5.6.7");
    assert_int_equal(rcpt("<\xc3\xa9@x>", ALL_EXT, true, &r), 0);
    assert_true(r.to.has_utf8);
    assert_int_equal(rcpt("<\xc3@x>", ALL_EXT, true, &r), -1);
    expect_err(553, "5.1.3");
    /* domain-less postmaster */
    assert_int_equal(rcpt("<Postmaster>", 0, false, &r), 0);
    assert_string_equal(r.to.local, "Postmaster");
    assert_string_equal(r.to.domain, "");
    assert_int_equal(rcpt("<postmaster> NOTIFY=NEVER", EXT_DSN, false, &r), 0);
    assert_int_equal(rcpt("<postmaster>x", EXT_DSN, false, &r), -1);
    expect_err(501, "5.5.4");
    assert_int_equal(rcpt("<postmistress>", 0, false, &r), -1);
    expect_err(553, "5.1.3");
}

static void test_notify(void **state)
{
    (void)state;
    struct rcpt_params r;

    assert_int_equal(rcpt("<a@b> NOTIFY=NEVER", EXT_DSN, false, &r), 0);
    assert_int_equal(r.notify, NOTIFY_NEVER);
    assert_int_equal(rcpt("<a@b> NOTIFY=SUCCESS", EXT_DSN, false, &r), 0);
    assert_int_equal(r.notify, NOTIFY_SUCCESS);
    assert_int_equal(rcpt("<a@b> notify=failure,delay,Success", EXT_DSN, false, &r), 0);
    assert_int_equal(r.notify, NOTIFY_SUCCESS | NOTIFY_FAILURE | NOTIFY_DELAY);
    const char *bad[] = {"<a@b> NOTIFY=",
                         "<a@b> NOTIFY",
                         "<a@b> NOTIFY=NEVER,SUCCESS",
                         "<a@b> NOTIFY=SUCCESS,NEVER",
                         "<a@b> NOTIFY=SUCCESS,",
                         "<a@b> NOTIFY=,SUCCESS",
                         "<a@b> NOTIFY=SUCCESS,,DELAY",
                         "<a@b> NOTIFY=DELAY,DELAY",
                         "<a@b> NOTIFY=SOMETIMES"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(rcpt(bad[i], EXT_DSN, false, &r), -1);
        expect_err(501, "5.5.4");
    }
    assert_int_equal(rcpt("<a@b> NOTIFY=NEVER", ALL_EXT & ~EXT_DSN, false, &r), -1);
    expect_err(555, "5.5.4");
    assert_int_equal(rcpt("<a@b> NOTIFY=NEVER NOTIFY=DELAY", EXT_DSN, false, &r), -1);
    expect_err(555, "5.5.4");
}

static void test_orcpt(void **state)
{
    (void)state;
    struct rcpt_params r;
    char buf[700];

    assert_int_equal(rcpt("<a@b> ORCPT=rfc822;a+2Bb@example.com NOTIFY=DELAY", EXT_DSN, false, &r),
                     0);
    assert_string_equal(r.orcpt, "rfc822;a+2Bb@example.com");
    assert_int_equal(r.notify, NOTIFY_DELAY);
    assert_int_equal(rcpt("<a@b> ORCPT=utf-8;\xc3\xa9@x", EXT_DSN, true, &r), 0);
    assert_int_equal(rcpt("<a@b> ORCPT=utf-8;\xc3\xa9@x", EXT_DSN, false, &r), -1);
    expect_err(501, "5.5.4");
    const char *bad[] = {"<a@b> ORCPT=rfc822",      "<a@b> ORCPT=;a@b", "<a@b> ORCPT=rfc822;",
                         "<a@b> ORCPT=rfc822;a+zz", "<a@b> ORCPT",      "<a@b> ORCPT=rfc_822;a"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(rcpt(bad[i], EXT_DSN, false, &r), -1);
        expect_err(501, "5.5.4");
    }
    assert_int_equal(rcpt("<a@b> ORCPT=rfc822;a", 0, false, &r), -1);
    expect_err(555, "5.5.4");
    assert_int_equal(rcpt("<a@b> ORCPT=rfc822;a ORCPT=rfc822;b", EXT_DSN, false, &r), -1);
    expect_err(555, "5.5.4");
    /* 500 octets fit, 501 do not */
    strcpy(buf, "<a@b> ORCPT=rfc822;");
    size_t n = strlen(buf);
    memset(buf + n, 'o', ORCPT_MAX - 7);
    buf[n + ORCPT_MAX - 7] = '\0';
    assert_int_equal(rcpt(buf, EXT_DSN, false, &r), 0);
    assert_int_equal(strlen(r.orcpt), ORCPT_MAX);
    strcat(buf, "o");
    assert_int_equal(rcpt(buf, EXT_DSN, false, &r), -1);
    expect_err(501, "5.5.4");
}

static void test_xtext(void **state)
{
    (void)state;
    char out[16];

    assert_int_equal(xtext_decode("abc", 3, out, sizeof(out)), 3);
    assert_string_equal(out, "abc");
    assert_int_equal(xtext_decode("a+20b+2B", 8, out, sizeof(out)), 4);
    assert_string_equal(out, "a b+");
    assert_int_equal(xtext_decode("", 0, out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(xtext_decode("+", 1, out, sizeof(out)), -1);
    assert_int_equal(xtext_decode("+4", 2, out, sizeof(out)), -1);
    assert_int_equal(xtext_decode("+4g", 3, out, sizeof(out)), -1);
    assert_int_equal(xtext_decode("+4a", 3, out, sizeof(out)), -1);
    assert_int_equal(xtext_decode("a=b", 3, out, sizeof(out)), -1);
    assert_int_equal(xtext_decode("a b", 3, out, sizeof(out)), -1);
    assert_int_equal(xtext_decode("a\x7f", 2, out, sizeof(out)), -1);
    assert_int_equal(xtext_decode("\xc3\xa9", 2, out, sizeof(out)), -1);
    /* size: 3 octets need 4 */
    assert_int_equal(xtext_decode("abc", 3, out, 4), 3);
    assert_int_equal(xtext_decode("abcd", 4, out, 4), -1);
    assert_int_equal(xtext_decode("+41+42+43", 9, out, 4), 3);
    assert_string_equal(out, "ABC");
    assert_int_equal(xtext_decode("a", 1, out, 0), -1);
}

static void test_verb_names(void **state)
{
    (void)state;
    assert_string_equal(cmd_verb_name(CMD_HELO), "HELO");
    assert_string_equal(cmd_verb_name(CMD_STARTTLS), "STARTTLS");
    assert_string_equal(cmd_verb_name(CMD_EXPN), "EXPN");
    assert_string_equal(cmd_verb_name(CMD_UNKNOWN), "UNKNOWN");
    assert_string_equal(cmd_verb_name(CMD__COUNT), "UNKNOWN");
    for (int v = CMD_HELO; v < CMD__COUNT; v++) {
        struct smtp_command c;
        const char *name = cmd_verb_name((enum smtp_verb)v);
        if (v == CMD_MAIL || v == CMD_RCPT)
            continue;
        assert_int_equal(parse(name, &c), 0);
        assert_int_equal(c.verb, v);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verbs),
        cmocka_unit_test(test_bad_verbs),
        cmocka_unit_test(test_bad_prefix),
        cmocka_unit_test(test_mail_plain),
        cmocka_unit_test(test_mail_bad_address),
        cmocka_unit_test(test_mail_utf8),
        cmocka_unit_test(test_size),
        cmocka_unit_test(test_body),
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_dsn_mail),
        cmocka_unit_test(test_mail_all),
        cmocka_unit_test(test_unknown_params),
        cmocka_unit_test(test_rcpt),
        cmocka_unit_test(test_notify),
        cmocka_unit_test(test_orcpt),
        cmocka_unit_test(test_xtext),
        cmocka_unit_test(test_verb_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
