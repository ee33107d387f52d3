/*
 * test_bounce.c - unit tests for send/bounce.c, the bounce parser.
 *
 * Real reports first: the DSNs tern serve itself builds (queue/dsn.c:
 * failed with a hard and a soft recipient, delayed, success, RFC 6533),
 * then samples written from the documented formats of Postfix (its RFC 3464
 * report and its older plain-text "<addr>: reason" form), Exim (the
 * "  addr" + indented error form with X-Failed-Recipients, and its delay
 * warning), qmail and Sendmail.  Then hostile input: no boundary, an
 * unterminated multipart, nesting past the depth limit, huge lines and
 * fields, more recipients than kept, and the status-code finder on IP
 * addresses and version numbers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/dsn.h"
#include "send/bounce.h"

#define VERP "bounces+k3j5x2mq4r7t2aaaaaaaaaaaaa@news.example.org"

static const char original[] = "Message-ID: <n1@news.example.org>\r\n"
                               "From: News <news@example.org>\r\n"
                               "To: bob@example.net\r\n"
                               "List-Unsubscribe: <https://example.org/u/x>\r\n"
                               "Subject: the newsletter\r\n"
                               "\r\n"
                               "<not@an.example>: 550 this line is in the original\r\n";

static struct bounce_report rep; /* large: not on the stack */

static const struct bounce_rcpt *find(const char *addr)
{
    for (size_t i = 0; i < rep.nrcpts; i++)
        if (strcmp(rep.rcpts[i].addr, addr) == 0)
            return &rep.rcpts[i];
    fail_msg("no recipient %s among %zu", addr, rep.nrcpts);
    return NULL;
}

static bool hint(const char *addr)
{
    for (size_t i = 0; i < rep.nhints; i++)
        if (strcmp(rep.hints[i], addr) == 0)
            return true;
    return false;
}

static void parse(const char *s)
{
    bounce_parse(s, strlen(s), &rep);
}

/* ---- tern's own DSNs ------------------------------------------------------------ */

static void tern_env(struct envelope *env)
{
    envelope_init(env);
    strcpy(env->id, "1712345678-0000002a-9f3a0c1d2e3b4a5f");
    envelope_set(&env->sender, VERP);
    env->created = 1712345678;
}

static struct env_rcpt *add(struct envelope *env, const char *addr, enum env_rcpt_status status,
                            const char *error)
{
    struct env_rcpt *r = envelope_add_rcpt(env, addr, addr, "smtp");
    envelope_rcpt_result(r, status, 1712399000, error);
    return r;
}

static void build(struct envelope *env, enum dsn_kind kind, struct buf *out)
{
    bool pick[8] = {true, true, true, true, true, true, true, true};
    struct dsn_info info = {
        .hostname = "mx.example.org", .kind = kind, .now = 1712400000, .pick = pick};
    out->len = 0;
    assert_true(dsn_build(&info, env, original, strlen(original), out) > 0);
}

static void test_tern_failed(void **state)
{
    (void)state;
    struct envelope env;
    struct buf out = {0};
    tern_env(&env);
    envelope_set(&env.envid, "campaign-7");
    add(&env, "bob@example.net", ENV_RCPT_FAILED,
        "550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown");
    add(&env, "carol@example.net", ENV_RCPT_FAILED, "452 4.2.2 mailbox full (gave up)");
    build(&env, DSN_FAILED, &out);
    bounce_parse(out.p, out.len, &rep);
    assert_true(rep.dsn);
    assert_string_equal(rep.envid, "campaign-7");
    assert_true(hint(VERP));
    assert_int_equal(rep.nrcpts, 2);
    const struct bounce_rcpt *b = find("bob@example.net");
    assert_string_equal(b->action, "failed");
    assert_string_equal(b->status, "5.1.1");
    assert_int_equal(b->kind, BOUNCE_HARD);
    assert_non_null(strstr(b->diag, "User unknown"));
    b = find("carol@example.net");
    assert_string_equal(b->status, "4.2.2");
    assert_int_equal(b->kind, BOUNCE_SOFT); /* 4.x.x is transient, even with Action: failed */
    buf_free(&out);
    envelope_free(&env);
}

static void test_tern_delayed_and_success(void **state)
{
    (void)state;
    struct envelope env;
    struct buf out = {0};
    tern_env(&env);
    struct env_rcpt *r = add(&env, "dan@example.net", ENV_RCPT_PENDING, "421 4.4.2 timeout");
    r->notify = NOTIFY_DELAY;
    build(&env, DSN_DELAYED, &out);
    bounce_parse(out.p, out.len, &rep);
    assert_true(rep.dsn);
    assert_int_equal(rep.nrcpts, 1);
    assert_string_equal(rep.rcpts[0].action, "delayed");
    assert_int_equal(rep.rcpts[0].kind, BOUNCE_SOFT);
    envelope_free(&env);

    tern_env(&env);
    r = add(&env, "erin@example.net", ENV_RCPT_SENT, "");
    r->notify = NOTIFY_SUCCESS;
    build(&env, DSN_SUCCESS, &out);
    bounce_parse(out.p, out.len, &rep);
    assert_true(rep.dsn);
    assert_int_equal(rep.nrcpts, 1);
    assert_string_equal(rep.rcpts[0].action, "relayed");
    assert_int_equal(rep.rcpts[0].kind, BOUNCE_NONE);
    buf_free(&out);
    envelope_free(&env);
}

static void test_tern_global(void **state)
{
    (void)state;
    struct envelope env;
    struct buf out = {0};
    tern_env(&env);
    env.smtputf8 = true;
    add(&env, "jürgen@example.net", ENV_RCPT_FAILED, "550 5.1.1 unknown");
    build(&env, DSN_FAILED, &out);
    bounce_parse(out.p, out.len, &rep);
    assert_true(rep.dsn);
    assert_int_equal(rep.nrcpts, 1);
    assert_string_equal(rep.rcpts[0].addr, "jürgen@example.net");
    assert_int_equal(rep.rcpts[0].kind, BOUNCE_HARD);
    buf_free(&out);
    envelope_free(&env);
}

/* ---- Postfix ------------------------------------------------------------------------ */

/* Postfix's bounce(8) RFC 3464 report (LF line ends, as in a Maildir) */
static const char postfix_dsn[] =
    "Return-Path: <>\n"
    "Delivered-To: " VERP "\n"
    "Received: by mail.example.org (Postfix) id 3F2A1C0; Mon,  8 Apr 2024 10:00:01 +0000 (UTC)\n"
    "Date: Mon,  8 Apr 2024 10:00:01 +0000 (UTC)\n"
    "From: MAILER-DAEMON@mail.example.org (Mail Delivery System)\n"
    "Subject: Undelivered Mail Returned to Sender\n"
    "To: " VERP "\n"
    "Auto-Submitted: auto-replied\n"
    "MIME-Version: 1.0\n"
    "Content-Type: multipart/report; report-type=delivery-status;\n"
    "\tboundary=\"3F2A1C0.1712570401/mail.example.org\"\n"
    "Content-Transfer-Encoding: 8bit\n"
    "Message-Id: <20240408100001.3F2A1C0@mail.example.org>\n"
    "\n"
    "This is a MIME-encapsulated message.\n"
    "\n"
    "--3F2A1C0.1712570401/mail.example.org\n"
    "Content-Description: Notification\n"
    "Content-Type: text/plain; charset=us-ascii\n"
    "\n"
    "This is the mail system at host mail.example.org.\n"
    "\n"
    "I'm sorry to have to inform you that your message could not\n"
    "be delivered to one or more recipients. It's attached below.\n"
    "\n"
    "<zed@example.com>: host mx.example.com[192.0.2.25] said: 550 5.1.1\n"
    "    <zed@example.com>: Recipient address rejected: User unknown (in reply to RCPT\n"
    "    TO command)\n"
    "\n"
    "--3F2A1C0.1712570401/mail.example.org\n"
    "Content-Description: Delivery report\n"
    "Content-Type: message/delivery-status\n"
    "\n"
    "Reporting-MTA: dns; mail.example.org\n"
    "X-Postfix-Queue-ID: 3F2A1C0\n"
    "X-Postfix-Sender: rfc822; " VERP "\n"
    "Arrival-Date: Mon,  8 Apr 2024 10:00:00 +0000 (UTC)\n"
    "\n"
    "Final-Recipient: rfc822; zed@example.com\n"
    "Original-Recipient: rfc822;zed@example.com\n"
    "Action: failed\n"
    "Status: 5.1.1\n"
    "Remote-MTA: dns; mx.example.com\n"
    "Diagnostic-Code: smtp; 550 5.1.1 <zed@example.com>: Recipient address rejected:\n"
    "    User unknown\n"
    "\n"
    "--3F2A1C0.1712570401/mail.example.org\n"
    "Content-Description: Undelivered Message Headers\n"
    "Content-Type: text/rfc822-headers\n"
    "\n"
    "From: news@example.org\n"
    "To: zed@example.com\n"
    "\n"
    "--3F2A1C0.1712570401/mail.example.org--\n";

static void test_postfix_dsn(void **state)
{
    (void)state;
    parse(postfix_dsn);
    assert_true(rep.dsn);
    assert_true(hint(VERP));
    assert_int_equal(rep.nrcpts, 1);
    assert_string_equal(rep.rcpts[0].addr, "zed@example.com");
    assert_string_equal(rep.rcpts[0].status, "5.1.1");
    assert_int_equal(rep.rcpts[0].kind, BOUNCE_HARD);
    assert_non_null(strstr(rep.rcpts[0].diag, "User unknown")); /* the folded line joined */
}

/* Postfix without DSN (plain text, as older versions and some relays send) */
static const char postfix_text[] =
    "From: MAILER-DAEMON@mail.example.org (Mail Delivery System)\r\n"
    "Subject: Undelivered Mail Returned to Sender\r\n"
    "To: " VERP "\r\n"
    "\r\n"
    "This is the mail system at host mail.example.org.\r\n"
    "\r\n"
    "I'm sorry to have to inform you that your message could not\r\n"
    "be delivered to one or more recipients.\r\n"
    "\r\n"
    "<amy@example.com>: host mx.example.com[192.0.2.25] said: 550 5.1.1\r\n"
    "    <amy@example.com>: Recipient address rejected: User unknown\r\n"
    "\r\n"
    "<ben@example.com> (expanded from <team@example.com>): host\r\n"
    "    mx2.example.com[198.51.100.7] said: 452 4.2.2 Mailbox full (in reply to RCPT\r\n"
    "    TO command)\r\n"
    "\r\n"
    "<cat@example.com>: unknown user: \"cat\"\r\n"
    "\r\n"
    "--- Below this line is a copy of the message.\r\n"
    "\r\n"
    "<dog@example.com>: 550 5.1.1 in the copy, not a recipient\r\n";

static void test_postfix_text(void **state)
{
    (void)state;
    parse(postfix_text);
    assert_false(rep.dsn);
    assert_true(hint(VERP));
    assert_int_equal(rep.nrcpts, 3);
    assert_int_equal(find("amy@example.com")->kind, BOUNCE_HARD);
    assert_string_equal(find("amy@example.com")->status, "5.1.1");
    assert_int_equal(find("ben@example.com")->kind, BOUNCE_SOFT);
    assert_string_equal(find("ben@example.com")->status, "4.2.2");
    /* no code and no "permanent": never a hard bounce without evidence */
    assert_int_equal(find("cat@example.com")->kind, BOUNCE_SOFT);
}

/* ---- Exim ------------------------------------------------------------------------------ */

static const char exim_bounce[] =
    "Return-path: <>\n"
    "Envelope-to: " VERP "\n"
    "From: Mail Delivery System <Mailer-Daemon@mx.example.com>\n"
    "To: " VERP "\n"
    "Subject: Mail delivery failed: returning message to sender\n"
    "Auto-Submitted: auto-replied\n"
    "X-Failed-Recipients: gus@example.com, hal@example.com\n"
    "\n"
    "This message was created automatically by mail delivery software.\n"
    "\n"
    "A message that you sent could not be delivered to one or more of its\n"
    "recipients. This is a permanent error. The following address(es) failed:\n"
    "\n"
    "  gus@example.com\n"
    "    host mx.example.com [192.0.2.30]\n"
    "    SMTP error from remote mail server after RCPT TO:<gus@example.com>:\n"
    "    550 5.1.1 <gus@example.com>: Recipient address rejected: User unknown\n"
    "  hal@example.com\n"
    "    Unrouteable address\n"
    "\n"
    "------ This is a copy of the message, including all the headers. ------\n"
    "\n"
    "Return-path: <" VERP ">\n"
    "  ivy@example.com\n";

static void test_exim(void **state)
{
    (void)state;
    parse(exim_bounce);
    assert_false(rep.dsn);
    assert_true(hint(VERP));
    assert_int_equal(rep.nrcpts, 2);
    assert_int_equal(find("gus@example.com")->kind, BOUNCE_HARD);
    assert_string_equal(find("gus@example.com")->status, "5.1.1");
    /* no code, but the report says the error is permanent (and X-Failed-Recipients) */
    assert_int_equal(find("hal@example.com")->kind, BOUNCE_HARD);
}

static const char exim_delay[] =
    "From: Mail Delivery System <Mailer-Daemon@mx.example.com>\n"
    "To: " VERP "\n"
    "Subject: Warning: message 1rVxyz-0001Ab-2C delayed 24 hours\n"
    "\n"
    "This message was created automatically by mail delivery software.\n"
    "A message that you sent has not yet been delivered to one or more of its\n"
    "recipients after more than 24 hours on the queue on mx.example.com.\n"
    "\n"
    "The address to which the message has not yet been delivered is:\n"
    "\n"
    "  jo@example.com\n"
    "    host mx.example.com [192.0.2.30]: Connection timed out\n"
    "\n"
    "No action is required on your part.\n";

static void test_exim_delay(void **state)
{
    (void)state;
    parse(exim_delay);
    assert_int_equal(rep.nrcpts, 1);
    assert_int_equal(find("jo@example.com")->kind, BOUNCE_SOFT);
}

/* ---- qmail and Sendmail ------------------------------------------------------------------- */

static void test_qmail_sendmail(void **state)
{
    (void)state;
    parse("From: MAILER-DAEMON@q.example.com\n"
          "To: " VERP "\n"
          "Subject: failure notice\n"
          "\n"
          "Hi. This is the qmail-send program at q.example.com.\n"
          "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
          "This is a permanent error; I've given up. Sorry it didn't work out.\n"
          "\n"
          "<kim@example.com>:\n"
          "192.0.2.40 does not like recipient.\n"
          "Remote host said: 550 5.7.1 <kim@example.com>... Relaying denied\n"
          "Giving up on 192.0.2.40.\n"
          "\n"
          "--- Below this line is a copy of the message.\n");
    assert_int_equal(rep.nrcpts, 1);
    assert_string_equal(rep.rcpts[0].addr, "kim@example.com");
    assert_string_equal(rep.rcpts[0].status, "5.7.1");
    assert_int_equal(rep.rcpts[0].kind, BOUNCE_HARD);

    parse("From: Mail Delivery Subsystem <MAILER-DAEMON@s.example.com>\n"
          "To: <" VERP ">\n"
          "Subject: Returned mail: see transcript for details\n"
          "\n"
          "   ----- The following addresses had permanent fatal errors -----\n"
          "<lou@example.com>\n"
          "    (reason: 550 5.1.1 <lou@example.com>... User unknown)\n"
          "\n"
          "   ----- Transcript of session follows -----\n");
    assert_true(hint(VERP));
    assert_int_equal(rep.nrcpts, 1);
    assert_int_equal(find("lou@example.com")->kind, BOUNCE_HARD);
}

/* ---- only the VERP address ------------------------------------------------------------------ */

static void test_unparseable_keeps_hints(void **state)
{
    (void)state;
    parse("Delivered-To: " VERP "\r\n"
          "X-Original-To: Bounces+X@News.Example.Org\r\n"
          "To: \"Sender\" <other@example.org>, plain@example.org\r\n"
          "Subject: Out of office\r\n"
          "\r\n"
          "I am away until Monday.\r\n");
    assert_false(rep.dsn);
    assert_int_equal(rep.nrcpts, 0);
    assert_true(hint(VERP));
    assert_true(hint("Bounces+X@News.Example.Org"));
    assert_true(hint("other@example.org"));
    assert_false(hint("plain@example.org")); /* angle addresses given: the rest is a name */
}

/* ---- hostile input --------------------------------------------------------------------------- */

static void test_hostile(void **state)
{
    (void)state;
    bounce_parse(NULL, 0, &rep);
    assert_int_equal(rep.nrcpts, 0);
    parse("");
    parse("\r\n\r\n");
    parse("Content-Type: multipart/report\r\n\r\n--x\r\n"); /* no boundary parameter */
    assert_false(rep.dsn);
    /* unterminated multipart: the last part runs to the end */
    parse("Content-Type: multipart/report; boundary=b\r\n\r\n--b\r\n"
          "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\n"
          "Final-Recipient: rfc822; a@b.example\r\nAction: failed\r\nStatus: 5.2.1");
    assert_true(rep.dsn);
    assert_int_equal(rep.nrcpts, 1);
    assert_int_equal(rep.rcpts[0].kind, BOUNCE_HARD);
    /* garbage addresses are refused */
    parse("Content-Type: message/delivery-status\r\n\r\nX: y\r\n\r\n"
          "Final-Recipient: rfc822; <a b@c>\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
          "Final-Recipient: rfc822; \x01@x\r\nStatus: 5.1.1\r\n");
    assert_int_equal(rep.nrcpts, 0);

    /* nesting past the limit: parsed without recursion beyond BOUNCE_DEPTH */
    char *deep = malloc(64 * 1024);
    size_t n = 0;
    for (int i = 0; i < 50; i++)
        n += (size_t)snprintf(deep + n, 64 * 1024 - n,
                              "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i,
                              i);
    n += (size_t)snprintf(deep + n, 64 * 1024 - n,
                          "Content-Type: message/delivery-status\r\n\r\nA: b\r\n\r\n"
                          "Final-Recipient: rfc822;z@z.example\r\nStatus: 5.1.1\r\n");
    bounce_parse(deep, n, &rep);
    assert_false(rep.dsn);
    free(deep);

    /* many recipients: only BOUNCE_MAX_RCPTS kept; huge fields truncated */
    size_t cap = 4 * 1024 * 1024;
    char *big = malloc(cap);
    n = (size_t)snprintf(big, cap, "Content-Type: message/delivery-status\r\n\r\nA: b\r\n\r\n");
    for (int i = 0; i < 500; i++)
        n += (size_t)snprintf(big + n, cap - n,
                              "Final-Recipient: rfc822;u%d@example.com\r\nAction: failed\r\n"
                              "Status: 5.1.1\r\n\r\n",
                              i);
    n += (size_t)snprintf(big + n, cap - n,
                          "Final-Recipient: rfc822;long@example.com\r\n"
                          "Diagnostic-Code: smtp; 550 ");
    memset(big + n, 'x', 200000);
    n += 200000;
    bounce_parse(big, n, &rep);
    assert_int_equal(rep.nrcpts, BOUNCE_MAX_RCPTS);
    /* a message larger than BOUNCE_SCAN_MAX: read only so far */
    memset(big, 'a', cap);
    memcpy(big, "To: x@y.example\r\n\r\n", 19);
    bounce_parse(big, cap, &rep);
    assert_true(hint("x@y.example"));
    free(big);
}

static void test_find_status(void **state)
{
    (void)state;
    char s[16];
    assert_string_equal(bounce_find_status("said: 550 5.1.1 <a@b>: no", s, sizeof(s)), "5.1.1");
    assert_string_equal(bounce_find_status("host [192.0.2.1] said: 550 no", s, sizeof(s)), "5.0.0");
    assert_string_equal(bounce_find_status("host [5.6.7.8] refused", s, sizeof(s)), "");
    assert_string_equal(bounce_find_status("version 4.2.2.1 of x", s, sizeof(s)), "");
    assert_string_equal(bounce_find_status("421-4.7.0 try later", s, sizeof(s)), "4.7.0");
    assert_string_equal(bounce_find_status("", s, sizeof(s)), "");
    assert_int_equal(bounce_classify("failed", "5.1.1", ""), BOUNCE_HARD);
    assert_int_equal(bounce_classify("failed", "4.4.7", ""), BOUNCE_SOFT);
    assert_int_equal(bounce_classify("delayed", "5.0.0", ""), BOUNCE_SOFT);
    assert_int_equal(bounce_classify("delivered", "2.0.0", ""), BOUNCE_NONE);
    assert_int_equal(bounce_classify("failed", "", "550 no such user"), BOUNCE_HARD);
    assert_int_equal(bounce_classify("failed", "", "no code at all"), BOUNCE_SOFT);
    assert_string_equal(bounce_kind_name(BOUNCE_HARD), "hard");
    assert_string_equal(bounce_kind_name(BOUNCE_SOFT), "soft");
    assert_string_equal(bounce_kind_name(BOUNCE_NONE), "none");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tern_failed),
        cmocka_unit_test(test_tern_delayed_and_success),
        cmocka_unit_test(test_tern_global),
        cmocka_unit_test(test_postfix_dsn),
        cmocka_unit_test(test_postfix_text),
        cmocka_unit_test(test_exim),
        cmocka_unit_test(test_exim_delay),
        cmocka_unit_test(test_qmail_sendmail),
        cmocka_unit_test(test_unparseable_keeps_hints),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_find_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
