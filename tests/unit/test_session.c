/*
 * test_session.c - dialogue tests for the server session state machine
 * (src/smtp/session.c), in the spirit of OpenSMTPD's regress scripts: each
 * test sends client bytes through a socketpair and checks the reply codes
 * that come back, in order, and what the hooks saw.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "../support/dialogue.h"
#include "core/base64.h"

struct seen {
    int messages;
    char body[8192];
    size_t bodylen;
    char user[64];
    enum smtp_action mail_action;
    int mail_code;
    bool pend_eod;
    uint64_t pending_id;
};

static struct seen seen;
static char out[65536];

static void h_auth(void *ctx, struct smtp_session *s, const char *user, const char *pass,
                   struct smtp_verdict *v)
{
    (void)ctx;
    (void)s;
    if (strcmp(user, "alice") == 0 && strcmp(pass, "secret") == 0) {
        v->code = 235;
        snprintf(seen.user, sizeof(seen.user), "%s", user);
    }
}

static void h_mail(void *ctx, struct smtp_session *s, const struct mail_params *p,
                   struct smtp_verdict *v)
{
    (void)ctx;
    (void)s;
    (void)p;
    if (seen.mail_code) {
        smtp_verdict_set(v, seen.mail_code, "4.4.2", "test says no");
        v->action = seen.mail_action;
    } else if (seen.mail_action == SMTP_V_CLOSE) {
        v->action = SMTP_V_CLOSE;
    }
}

static void h_message(void *ctx, struct smtp_session *s, struct smtp_txn *t, struct smtp_verdict *v)
{
    (void)ctx;
    seen.messages++;
    seen.bodylen = t->body.len < sizeof(seen.body) ? t->body.len : sizeof(seen.body);
    memcpy(seen.body, t->body.p, seen.bodylen);
    if (seen.pend_eod) {
        v->action = SMTP_V_PENDING;
        seen.pending_id = smtp_session_id(s);
    }
}

static const struct smtp_hooks hooks = {
    .on_auth = h_auth, .on_mail = h_mail, .on_message = h_message};

static struct smtp_server_conf conf(void)
{
    struct smtp_server_conf c = {
        .hostname = "test.example",
        .max_size = 1000,
        .max_rcpts = 3,
        .max_errors = 5,
        .idle_timeout = 60,
        .max_line = 1000,
        .ext = EXT_8BITMIME | EXT_SMTPUTF8 | EXT_DSN,
        .hooks = &hooks,
    };
    return c;
}

/* The code of every final reply line ("250 " not "250-"), space separated. */
static const char *codes(const char *o)
{
    static char buf[1024];
    size_t n = 0;
    buf[0] = '\0';
    for (const char *p = o; *p && n + 5 < sizeof(buf);) {
        const char *eol = strstr(p, "\r\n");
        if (!eol)
            break;
        if (eol - p >= 4 && p[3] == ' ') {
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%.3s", n ? " " : "", p);
        } else if (eol - p == 3) {
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%.3s", n ? " " : "", p);
        }
        p = eol + 2;
    }
    return buf;
}

static const char *say(struct dialogue *d, const char *in)
{
    dlg_exchange(d, in, strlen(in), out, sizeof(out));
    return codes(out);
}

static int setup(void **state)
{
    (void)state;
    memset(&seen, 0, sizeof(seen));
    return 0;
}

static void test_greeting_and_ehlo(void **state)
{
    (void)state;
    struct dialogue d;
    struct smtp_server_conf c = conf();
    dlg_start(&d, &c);
    assert_string_equal(say(&d, ""), "220");
    assert_non_null(strstr(out, "220 test.example ESMTP"));
    assert_string_equal(say(&d, "EHLO client.example\r\n"), "250");
    assert_non_null(strstr(out, "250-PIPELINING\r\n"));
    assert_non_null(strstr(out, "250-SIZE 1000\r\n"));
    assert_non_null(strstr(out, "250-8BITMIME\r\n"));
    assert_non_null(strstr(out, "ENHANCEDSTATUSCODES"));
    assert_null(strstr(out, "STARTTLS")); /* no TLS configured */
    assert_null(strstr(out, "AUTH"));     /* AUTH only over TLS */
    assert_string_equal(say(&d, "QUIT\r\n"), "221");
    assert_non_null(strstr(out, "221 2.0.0"));
    dlg_end(&d);
}

static void test_transaction_and_unstuffing(void **state)
{
    (void)state;
    struct dialogue d;
    struct smtp_server_conf c = conf();
    dlg_start(&d, &c);
    say(&d, "");
    assert_string_equal(say(&d, "EHLO c\r\n"), "250");
    assert_string_equal(say(&d, "MAIL FROM:<a@example.org> SIZE=100\r\n"), "250");
    assert_non_null(strstr(out, "250 2.1.0"));
    assert_string_equal(say(&d, "RCPT TO:<b@example.net>\r\n"), "250");
    assert_non_null(strstr(out, "250 2.1.5"));
    assert_string_equal(say(&d, "DATA\r\n"), "354");
    assert_string_equal(say(&d, "Subject: x\r\n\r\n..dot\r\nline\r\n.\r\n"), "250");
    assert_non_null(strstr(out, "250 2.0.0"));
    assert_int_equal(seen.messages, 1);
    assert_int_equal(seen.bodylen, strlen("Subject: x\r\n\r\n.dot\r\nline\r\n"));
    assert_memory_equal(seen.body, "Subject: x\r\n\r\n.dot\r\nline\r\n", seen.bodylen);
    /* the transaction is over: RCPT needs a new MAIL */
    assert_string_equal(say(&d, "RCPT TO:<b@example.net>\r\n"), "503");
    dlg_end(&d);
}

static void test_pipelining_in_order(void **state)
{
    (void)state;
    struct dialogue d;
    struct smtp_server_conf c = conf();
    dlg_start(&d, &c);
    assert_string_equal(say(&d, "EHLO c\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\n"
                                "RCPT TO:<bad@@y>\r\nRCPT TO:<c@y.org>\r\nDATA\r\n"),
                        "220 250 250 250 553 250 354");
    assert_string_equal(say(&d, "hi\r\n.\r\nNOOP\r\nRSET\r\nQUIT\r\n"), "250 250 250 221");
    assert_int_equal(seen.messages, 1);
    dlg_end(&d);
}

static void test_sequence_errors(void **state)
{
    (void)state;
    struct dialogue d;
    struct smtp_server_conf c = conf();
    c.max_errors = 20;
    dlg_start(&d, &c);
    say(&d, "");
    assert_string_equal(say(&d, "MAIL FROM:<a@x.org>\r\n"), "503");
    assert_non_null(strstr(out, "503 5.5.1"));
    assert_string_equal(say(&d, "HELO c\r\nRCPT TO:<a@x.org>\r\nDATA\r\n"), "250 503 503");
    assert_string_equal(say(&d, "MAIL FROM:<a@x.org>\r\nMAIL FROM:<a@x.org>\r\nDATA\r\n"),
                        "250 503 554");
    assert_string_equal(say(&d, "RSET\r\nRCPT TO:<a@x.org>\r\n"), "250 503");
    dlg_end(&d);
}

static void test_syntax_and_params(void **state)
{
    (void)state;
    struct dialogue d;
    struct smtp_server_conf c = conf();
    dlg_start(&d, &c);
    say(&d, "EHLO c\r\n");
    assert_string_equal(say(&d, "FOO\r\n"), "500");
    assert_string_equal(say(&d, "MAIL FROM:<a@x.org> FOO=1\r\n"), "555");
    assert_string_equal(say(&d, "MAIL FROM:<a@x.org> SIZE=5000\r\n"), "552");
    assert_string_equal(say(&d, "MAIL FROM:<a\r@x.org>\r\n"), "553");
    /* HELO offers no extensions: parameters are refused */
    assert_string_equal(say(&d, "HELO c\r\nMAIL FROM:<a@x.org> BODY=8BITMIME\r\n"), "250 555");
    dlg_end(&d);
}

static void test_long_line_resync(void **state)
{
    (void)state;
    struct dialogue d;
    struct smtp_server_conf c = conf();
    char big[1100]; /* over 512 + 500 (RFC 3461 room for ORCPT where DSN is offered) */
    memset(big, 'A', sizeof(big));
    memcpy(big, "NOOP ", 5);
    memcpy(big + sizeof(big) - 8, "\r\nNOOP\r\n", 8);
    dlg_start(&d, &c);
    say(&d, "");
    dlg_exchange(&d, big, sizeof(big), out, sizeof(out));
    assert_string_equal(codes(out), "500 250");
    assert_non_null(strstr(out, "500 5.5.2"));
    dlg_end(&d);
    /* without DSN the RFC 5321 limit of 512 applies */
    c.ext &= ~(unsigned)EXT_DSN;
    dlg_start(&d, &c);
    say(&d, "");
    dlg_exchange(&d, big, 700, out, sizeof(out));
    assert_string_equal(codes(out), "500");
    dlg_end(&d);
}

static void test_too_many_errors(void **state)
{
    (void)state;
    struct dialogue d;
    struct smtp_server_conf c = conf();
    dlg_start(&d, &c);
    say(&d, "");
    assert_string_equal(say(&d, "X\r\nX\r\nX\r\nX\r\nX\r\nX\r\nNOOP\r\n"),
                        "500 500 500 500 500 421");
    assert_non_null(strstr(out, "421 4.7.0"));
    assert_int_equal(smtp_server_sessions(d.srv), 0);
    dlg_end(&d);
}

static void test_limits_rcpt_and_size(void **state)
{
    (void)state;
    struct dialogue d;
    struct smtp_server_conf c = conf();
    char body[1500];
    dlg_start(&d, &c);
    say(&d, "EHLO c\r\nMAIL FROM:<a@x.org>\r\n");
    assert_string_equal(
        say(&d,
            "RCPT TO:<1@y.org>\r\nRCPT TO:<2@y.org>\r\nRCPT TO:<3@y.org>\r\nRCPT TO:<4@y.org>\r\n"),
        "250 250 250 452");
    assert_non_null(strstr(out, "452 4.5.3"));
    assert_string_equal(say(&d, "DATA\r\n"), "354");
    for (size_t i = 0; i < sizeof(body); i += 50)
        memcpy(body + i, "012345678901234567890123456789012345678901234567\r\n", 50);
    dlg_exchange(&d, body, sizeof(body), out, sizeof(out));
    assert_string_equal(out, ""); /* still draining */
    assert_string_equal(say(&d, ".\r\n"), "552");
    assert_non_null(strstr(out, "552 5.3.4"));
    assert_int_equal(seen.messages, 0);
    /* the session is usable after the refusal */
    assert_string_equal(say(&d, "MAIL FROM:<a@x.org>\r\nRCPT TO:<1@y.org>\r\nDATA\r\nok\r\n.\r\n"),
                        "250 250 354 250");
    assert_int_equal(seen.messages, 1);
    dlg_end(&d);
}

static void test_bare_lf_and_smuggling(void **state)
{
    (void)state;
    struct dialogue d;
    struct smtp_server_conf c = conf();
    dlg_start(&d, &c);
    say(&d, "EHLO c\r\n");
    /* "\n.\n" and "\r\n.\n" are not the end; the smuggled MAIL stays inside the data */
    assert_string_equal(say(&d, "MAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nDATA\r\n"
                                "x\n.\nMAIL FROM:<evil@x.org>\r\nRCPT TO:<v@y.org>\r\nDATA\r\n"
                                "y\r\n.\nz\r\n.\r\n"),
                        "250 250 354 550");
    assert_non_null(strstr(out, "550 5.6.0"));
    assert_int_equal(seen.messages, 0);
    dlg_end(&d);
}

static void test_auth(void **state)
{
    (void)state;
    struct dialogue d;
    struct smtp_server_conf c = conf();
    char line[256], b64[128];
    c.auth = true;
    dlg_start(&d, &c);
    say(&d, "EHLO c\r\n");
    assert_null(strstr(out, "AUTH"));
    assert_string_equal(say(&d, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"), "538");
    dlg_end(&d);

    c.auth_plaintext = true;
    c.auth_required = true;
    dlg_start(&d, &c);
    say(&d, "EHLO c\r\n");
    assert_non_null(strstr(out, "250 AUTH PLAIN LOGIN"));
    assert_string_equal(say(&d, "MAIL FROM:<a@x.org>\r\n"), "530");
    base64_encode("\0alice\0wrong", 12, b64, sizeof(b64));
    snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", b64);
    assert_string_equal(say(&d, line), "535");
    assert_non_null(strstr(out, "535 5.7.8"));
    assert_string_equal(say(&d, "AUTH PLAIN\r\n"), "334");
    assert_string_equal(say(&d, "*\r\n"), "501");
    assert_string_equal(say(&d, "AUTH LOGIN\r\n"), "334");
    assert_non_null(strstr(out, "334 VXNlcm5hbWU6"));
    assert_string_equal(say(&d, "YWxpY2U=\r\n"), "334");
    assert_string_equal(say(&d, "c2VjcmV0\r\n"), "235");
    assert_non_null(strstr(out, "235 2.7.0"));
    assert_string_equal(seen.user, "alice");
    assert_string_equal(say(&d, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"), "503");
    assert_string_equal(say(&d, "MAIL FROM:<a@x.org>\r\n"), "250");
    dlg_end(&d);
}

static void test_hook_close_and_421(void **state)
{
    (void)state;
    struct dialogue d;
    struct smtp_server_conf c = conf();
    seen.mail_action = SMTP_V_CLOSE;
    dlg_start(&d, &c);
    say(&d, "EHLO c\r\n");
    assert_string_equal(say(&d, "MAIL FROM:<a@x.org>\r\nNOOP\r\n"), "");
    assert_int_equal(smtp_server_sessions(d.srv), 0);
    dlg_end(&d);

    seen.mail_action = SMTP_V_REPLY_CLOSE;
    seen.mail_code = 421;
    dlg_start(&d, &c);
    say(&d, "EHLO c\r\n");
    assert_string_equal(say(&d, "MAIL FROM:<a@x.org>\r\nNOOP\r\n"), "421");
    assert_non_null(strstr(out, "421 4.4.2 test says no"));
    assert_int_equal(smtp_server_sessions(d.srv), 0);
    dlg_end(&d);
}

static void test_pending_keeps_order(void **state)
{
    (void)state;
    struct dialogue d;
    struct smtp_server_conf c = conf();
    struct smtp_verdict v;
    seen.pend_eod = true;
    dlg_start(&d, &c);
    say(&d, "EHLO c\r\n");
    assert_string_equal(
        say(&d, "MAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nDATA\r\nhi\r\n.\r\nNOOP\r\n"),
        "250 250 354");
    /* nothing after the pending end-of-data is answered before it */
    memset(&v, 0, sizeof(v));
    smtp_verdict_set(&v, 250, "2.0.0", "queued later");
    assert_int_equal(smtp_server_resume(d.srv, seen.pending_id, &v), 0);
    assert_string_equal(say(&d, ""), "250 250");
    assert_non_null(strstr(out, "250 2.0.0 queued later\r\n250 2.0.0 Ok"));
    assert_int_equal(smtp_server_resume(d.srv, 9999, &v), -1);
    dlg_end(&d);
}

static void test_shutdown_421(void **state)
{
    (void)state;
    struct dialogue d;
    struct smtp_server_conf c = conf();
    dlg_start(&d, &c);
    say(&d, "EHLO c\r\nMAIL FROM:<a@x.org>\r\n");
    smtp_server_shutdown(d.srv);
    assert_string_equal(say(&d, ""), "421");
    assert_non_null(strstr(out, "421 4.3.2"));
    dlg_end(&d);
}

/* Run the server's loop for ms milliseconds (timers fire). */
static void run_for(struct dialogue *d, unsigned ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(d->base, &tv);
    event_base_dispatch(d->base);
}

static void test_command_deadline(void **state)
{
    (void)state;
    struct dialogue d;
    struct smtp_server_conf c = conf();
    c.command_timeout = 1;
    dlg_start(&d, &c);
    assert_string_equal(say(&d, "EHLO c\r\n"), "220 250");
    /* a command trickling in: its first octets start a deadline that more octets do not move */
    say(&d, "NO");
    run_for(&d, 600);
    say(&d, "O");
    run_for(&d, 600);
    assert_string_equal(say(&d, "P"), "421");
    assert_non_null(strstr(out, "421 4.4.2 test.example Error: timeout exceeded"));
    assert_int_equal(smtp_server_sessions(d.srv), 0);
    dlg_end(&d);
    /* whole commands in time are fine */
    dlg_start(&d, &c);
    for (int i = 0; i < 3; i++) {
        run_for(&d, 500);
        assert_string_equal(say(&d, "NOOP\r\n"), i ? "250" : "220 250");
    }
    dlg_end(&d);
}

static void test_data_and_session_deadline(void **state)
{
    (void)state;
    struct dialogue d;
    struct smtp_server_conf c = conf();
    c.data_timeout = 1;
    dlg_start(&d, &c);
    say(&d, "EHLO c\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<b@x.org>\r\nDATA\r\n");
    for (int i = 0; i < 3; i++) {
        say(&d, "line\r\n");
        run_for(&d, 400);
    }
    assert_string_equal(say(&d, ""), "421");
    assert_non_null(strstr(out, "421 4.4.2"));
    assert_int_equal(seen.messages, 0);
    dlg_end(&d);
    c = conf();
    c.total_timeout = 1;
    dlg_start(&d, &c);
    say(&d, "EHLO c\r\n");
    run_for(&d, 600);
    assert_string_equal(say(&d, "NOOP\r\n"), "250");
    run_for(&d, 600);
    assert_string_equal(say(&d, ""), "421");
    dlg_end(&d);
}

static void test_body_memory_budget(void **state)
{
    (void)state;
    struct dialogue d;
    struct smtp_server_conf c = conf();
    struct smtp_limits_conf lc = {.max_sessions = 10, .body_memory = 8192};
    char big[20000];
    c.limits = smtp_limits_new(&lc);
    c.max_size = 100000;
    dlg_start(&d, &c);
    memset(big, 'x', sizeof(big));
    for (size_t i = 78; i < sizeof(big); i += 80)
        memcpy(big + i, "\r\n", 2);
    say(&d, "EHLO c\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<b@x.org>\r\nDATA\r\n");
    dlg_exchange(&d, big, sizeof(big) - 2, out, sizeof(out));
    assert_string_equal(say(&d, "\r\n.\r\n"), "452");
    assert_non_null(strstr(out, "452 4.3.1 Insufficient system storage"));
    assert_int_equal(seen.messages, 0);
    assert_int_equal(smtp_limits_body_used(c.limits), 0); /* freed at once */
    /* the session goes on; a message within the budget passes, and its memory comes back */
    assert_string_equal(say(&d, "MAIL FROM:<a@x.org>\r\nRCPT TO:<b@x.org>\r\nDATA\r\n"
                                "small\r\n.\r\n"),
                        "250 250 354 250");
    assert_int_equal(seen.messages, 1);
    assert_int_equal(smtp_limits_body_used(c.limits), 0);
    /* SIZE= reserves memory only within the budget */
    assert_string_equal(say(&d, "MAIL FROM:<a@x.org> SIZE=90000\r\nRCPT TO:<b@x.org>\r\nDATA\r\n"
                                "small\r\n.\r\n"),
                        "250 250 354 250");
    assert_int_equal(seen.messages, 2);
    dlg_end(&d);
    smtp_limits_free(c.limits);
}

static void test_max_sessions_421(void **state)
{
    (void)state;
    struct dialogue d;
    struct smtp_server_conf c = conf();
    struct smtp_limits_conf lc = {.max_sessions = 1};
    int sv[2];
    struct sockaddr_storage peer;
    char buf[512];
    c.limits = smtp_limits_new(&lc);
    dlg_start(&d, &c);
    assert_string_equal(say(&d, ""), "220");
    memset(&peer, 0, sizeof(peer));
    peer.ss_family = AF_UNIX;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    smtp_server_accept(d.srv, sv[1], (struct sockaddr *)&peer, false);
    ssize_t n = read(sv[0], buf, sizeof(buf) - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_string_equal(buf, "421 4.7.0 test.example Too many connections, try again later\r\n");
    assert_int_equal(read(sv[0], buf, sizeof(buf)), 0); /* closed */
    close(sv[0]);
    assert_int_equal(smtp_server_sessions(d.srv), 1);
    assert_string_equal(say(&d, "NOOP\r\n"), "250"); /* the first one is untouched */
    dlg_end(&d);
    assert_int_equal(smtp_limits_sessions(c.limits), 0);
    smtp_limits_free(c.limits);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_greeting_and_ehlo, setup),
        cmocka_unit_test_setup(test_transaction_and_unstuffing, setup),
        cmocka_unit_test_setup(test_pipelining_in_order, setup),
        cmocka_unit_test_setup(test_sequence_errors, setup),
        cmocka_unit_test_setup(test_syntax_and_params, setup),
        cmocka_unit_test_setup(test_long_line_resync, setup),
        cmocka_unit_test_setup(test_too_many_errors, setup),
        cmocka_unit_test_setup(test_limits_rcpt_and_size, setup),
        cmocka_unit_test_setup(test_bare_lf_and_smuggling, setup),
        cmocka_unit_test_setup(test_auth, setup),
        cmocka_unit_test_setup(test_hook_close_and_421, setup),
        cmocka_unit_test_setup(test_pending_keeps_order, setup),
        cmocka_unit_test_setup(test_shutdown_421, setup),
        cmocka_unit_test_setup(test_command_deadline, setup),
        cmocka_unit_test_setup(test_data_and_session_deadline, setup),
        cmocka_unit_test_setup(test_body_memory_budget, setup),
        cmocka_unit_test_setup(test_max_sessions_421, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
