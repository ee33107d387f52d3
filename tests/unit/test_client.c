/*
 * test_client.c - the SMTP client (src/smtp/client.c) against tern's own
 * server session running in a thread on 127.0.0.1, with hooks that
 * misbehave on cue: 421s, dropped connections, per-recipient refusals.
 * Also the backoff schedule (src/core/backoff.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/backoff.h"
#include "core/log.h"
#include "smtp/client.h"
#include "smtp/listen.h"
#include "smtp/session.h"
#include "smtp/tls.h"

static struct {
    atomic_int connects, mails, messages;
    atomic_int mail_421;  /* answer 421 to this many MAIL commands */
    atomic_int mail_drop; /* close at this many MAIL commands */
    atomic_int eod_code;  /* answer this at end of data (0 = 250) */
    char body[4096];
    size_t bodylen;
} srv;

static struct event_base *base;
static struct smtp_server *server;
static struct smtp_listener *listener;
static pthread_t loop_thread;
static char port[16];
static SSL_CTX *server_tls;

static void h_connect(void *ctx, struct smtp_session *s, struct smtp_verdict *v)
{
    (void)ctx, (void)s, (void)v;
    srv.connects++;
}

static void h_mail(void *ctx, struct smtp_session *s, const struct mail_params *p,
                   struct smtp_verdict *v)
{
    (void)ctx, (void)s, (void)p;
    srv.mails++;
    if (srv.mail_421 > 0) {
        srv.mail_421--;
        smtp_verdict_set(v, 421, "4.4.2", "test Error: timeout exceeded");
        v->action = SMTP_V_REPLY_CLOSE;
    } else if (srv.mail_drop > 0) {
        srv.mail_drop--;
        v->action = SMTP_V_CLOSE;
    }
}

static void h_rcpt(void *ctx, struct smtp_session *s, const struct rcpt_params *p,
                   struct smtp_verdict *v)
{
    (void)ctx, (void)s;
    if (strcmp(p->to.local, "bad") == 0)
        smtp_verdict_set(v, 550, "5.1.1", "no such user");
    else if (strcmp(p->to.local, "later") == 0)
        smtp_verdict_set(v, 451, "4.3.0", "try later");
}

static void h_message(void *ctx, struct smtp_session *s, struct smtp_txn *t, struct smtp_verdict *v)
{
    (void)ctx, (void)s;
    if (srv.eod_code) {
        smtp_verdict_set(v, srv.eod_code, srv.eod_code >= 500 ? "5.7.1" : "4.3.0", "refused");
        return;
    }
    srv.messages++;
    srv.bodylen = t->body.len < sizeof(srv.body) ? t->body.len : sizeof(srv.body);
    memcpy(srv.body, t->body.p, srv.bodylen);
}

static void h_auth(void *ctx, struct smtp_session *s, const char *user, const char *pass,
                   struct smtp_verdict *v)
{
    (void)ctx, (void)s;
    if (strcmp(user, "u") == 0 && strcmp(pass, "p") == 0)
        v->code = 235;
}

static const struct smtp_hooks hooks = {.on_connect = h_connect,
                                        .on_mail = h_mail,
                                        .on_rcpt = h_rcpt,
                                        .on_message = h_message,
                                        .on_auth = h_auth};

static atomic_int stop_loop;

/* The loop thread checks this flag on a timer: loopbreak from another thread
 * would need libevent's thread support. */
static void stop_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    if (stop_loop)
        event_base_loopbreak(base);
}

static void *loop_main(void *arg)
{
    (void)arg;
    struct timeval tv = {0, 20000};
    struct event *ev = event_new(base, -1, EV_PERSIST, stop_check, NULL);
    event_add(ev, &tv);
    event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
    event_free(ev);
    return NULL;
}

static int group_setup(void **state)
{
    (void)state;
    char why[256];
    log_set_level(LOG_ERROR);
    base = event_base_new();
    SSL_CTX *tls = server_tls = tls_server_ctx(NULL, NULL, "test.example", why, sizeof(why));
    struct smtp_server_conf c = {.hostname = "test.example",
                                 .max_size = 100000,
                                 .max_rcpts = 10,
                                 .max_errors = 10,
                                 .idle_timeout = 30,
                                 .max_line = 1000,
                                 .tls = tls,
                                 .auth = true,
                                 .ext = EXT_8BITMIME | EXT_SMTPUTF8,
                                 .hooks = &hooks};
    server = smtp_server_new(base, &c);
    listener = smtp_listen(base, "127.0.0.1:0", server, false, why, sizeof(why));
    if (!listener)
        return -1;
    snprintf(port, sizeof(port), "%s", strrchr(smtp_listener_addr(listener), ':') + 1);
    return pthread_create(&loop_thread, NULL, loop_main, NULL);
}

static int group_teardown(void **state)
{
    (void)state;
    stop_loop = 1;
    pthread_join(loop_thread, NULL);
    smtp_listener_free(listener);
    smtp_server_free(server);
    event_base_free(base);
    SSL_CTX_free(server_tls);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    srv.connects = srv.mails = srv.messages = 0;
    srv.mail_421 = srv.mail_drop = srv.eod_code = 0;
    return 0;
}

static struct smtp_client_conf conf(void)
{
    struct smtp_client_conf c = {.host = "127.0.0.1",
                                 .port = port,
                                 .tls = SMTP_TLS_NONE,
                                 .tls_verify = -1,
                                 .reconnect_base_ms = 20,
                                 .reconnect_max_ms = 100,
                                 .give_up_ms = 5000,
                                 .command_ms = 5000};
    return c;
}

static void test_lazy_connect_and_reuse(void **state)
{
    (void)state;
    struct smtp_client_conf cc = conf();
    struct smtp_client *c = smtp_client_new(&cc);
    struct smtp_rcpt_result res;
    const char *to[] = {"a@example.net"};
    assert_int_equal(srv.connects, 0); /* nothing to send yet: no connection */
    for (int i = 0; i < 3; i++)
        assert_int_equal(
            smtp_client_send(c, "me@example.org", to, 1, "Subject: x\r\n\r\nhi\r\n", 19, &res), 1);
    assert_int_equal(res.outcome, SMTP_SENT);
    assert_int_equal(res.code, 250);
    assert_int_equal(srv.connects, 1);
    assert_int_equal(srv.messages, 3);
    assert_int_equal(smtp_client_stats(c)->successes, 3);
    smtp_client_free(c);
}

static void test_body_normalized_and_stuffed(void **state)
{
    (void)state;
    struct smtp_client_conf cc = conf();
    struct smtp_client *c = smtp_client_new(&cc);
    struct smtp_rcpt_result res;
    const char *to[] = {"a@example.net"};
    const char *body = "Subject: x\n\n.leading dot\nbare\rcr\r\n.\nend";
    smtp_client_send(c, "me@example.org", to, 1, body, strlen(body), &res);
    assert_int_equal(res.outcome, SMTP_SENT);
    const char *want = "Subject: x\r\n\r\n.leading dot\r\nbare\r\ncr\r\n.\r\nend\r\n";
    assert_int_equal(srv.bodylen, strlen(want));
    assert_memory_equal(srv.body, want, srv.bodylen);
    smtp_client_free(c);
}

static void test_per_recipient_results(void **state)
{
    (void)state;
    struct smtp_client_conf cc = conf();
    struct smtp_client *c = smtp_client_new(&cc);
    struct smtp_rcpt_result res[4];
    const char *to[] = {"ok@example.net", "bad@example.net", "later@example.net",
                        "evil\r\nRCPT TO:<x@y>@example.net"};
    assert_int_equal(smtp_client_send(c, "me@example.org", to, 4, "x\r\n", 3, res), 1);
    assert_int_equal(res[0].outcome, SMTP_SENT);
    assert_int_equal(res[1].outcome, SMTP_PERMANENT);
    assert_int_equal(res[1].code, 550);
    assert_non_null(strstr(res[1].text, "550 5.1.1 no such user"));
    assert_int_equal(res[2].outcome, SMTP_TRANSIENT);
    assert_int_equal(res[2].code, 451);
    assert_int_equal(res[3].outcome, SMTP_PERMANENT); /* refused locally */
    assert_int_equal(res[3].code, 0);
    assert_non_null(strstr(res[3].text, "501 5.1.3"));
    assert_int_equal(srv.messages, 1);
    smtp_client_free(c);
}

static void test_bad_sender_never_sent(void **state)
{
    (void)state;
    struct smtp_client_conf cc = conf();
    struct smtp_client *c = smtp_client_new(&cc);
    struct smtp_rcpt_result res;
    const char *to[] = {"a@example.net"};
    assert_int_equal(smtp_client_send(c, "me\r\n@example.org", to, 1, "x\r\n", 3, &res), 0);
    assert_int_equal(res.outcome, SMTP_PERMANENT);
    assert_int_equal(srv.connects, 0);
    smtp_client_free(c);
}

static void test_reconnect_after_421_and_drop(void **state)
{
    (void)state;
    struct smtp_client_conf cc = conf();
    struct smtp_client *c = smtp_client_new(&cc);
    struct smtp_rcpt_result res;
    const char *to[] = {"a@example.net"};
    srv.mail_421 = 2;
    srv.mail_drop = 1;
    assert_int_equal(smtp_client_send(c, "me@example.org", to, 1, "x\r\n", 3, &res), 1);
    assert_int_equal(res.outcome, SMTP_SENT);
    assert_int_equal(srv.messages, 1); /* resent once, delivered once */
    assert_int_equal(srv.connects, 4);
    assert_int_equal(smtp_client_stats(c)->reconnects, 3);
    assert_int_equal(smtp_client_stats(c)->replies_421, 2);
    smtp_client_free(c);
}

static void test_give_up(void **state)
{
    (void)state;
    struct smtp_client_conf cc = conf();
    cc.give_up_ms = 300;
    struct smtp_client *c = smtp_client_new(&cc);
    struct smtp_rcpt_result res;
    const char *to[] = {"a@example.net"};
    srv.mail_421 = 1000000;
    assert_int_equal(smtp_client_send(c, "me@example.org", to, 1, "x\r\n", 3, &res), 0);
    assert_int_equal(res.outcome, SMTP_TRANSIENT);
    assert_non_null(strstr(res.text, "gave up"));
    assert_int_equal(srv.messages, 0);
    assert_true(srv.connects >= 3);
    smtp_client_free(c);
}

static void test_end_of_data_refusal(void **state)
{
    (void)state;
    struct smtp_client_conf cc = conf();
    struct smtp_client *c = smtp_client_new(&cc);
    struct smtp_rcpt_result res;
    const char *to[] = {"a@example.net"};
    srv.eod_code = 554;
    smtp_client_send(c, "me@example.org", to, 1, "x\r\n", 3, &res);
    assert_int_equal(res.outcome, SMTP_PERMANENT);
    assert_int_equal(res.code, 554);
    srv.eod_code = 0;
    smtp_client_send(c, "me@example.org", to, 1, "x\r\n", 3, &res);
    assert_int_equal(res.outcome, SMTP_SENT);
    assert_int_equal(srv.connects, 1);
    smtp_client_free(c);
}

static void test_tls_and_auth(void **state)
{
    (void)state;
    struct smtp_client_conf cc = conf();
    struct smtp_rcpt_result res;
    const char *to[] = {"a@example.net"};
    /* AUTH is never sent in clear unless allowed */
    cc.auth_user = "u";
    cc.auth_pass = "p";
    struct smtp_client *c = smtp_client_new(&cc);
    smtp_client_send(c, "me@example.org", to, 1, "x\r\n", 3, &res);
    assert_int_equal(res.outcome, SMTP_PERMANENT);
    assert_non_null(strstr(res.text, "unencrypted"));
    smtp_client_free(c);
    /* STARTTLS required, self-signed certificate accepted only without verification */
    cc.tls = SMTP_TLS_REQUIRED;
    cc.tls_verify = 0;
    c = smtp_client_new(&cc);
    smtp_client_send(c, "me@example.org", to, 1, "x\r\n", 3, &res);
    assert_int_equal(res.outcome, SMTP_SENT);
    assert_non_null(strstr(smtp_client_tls_info(c), "TLS"));
    assert_non_null(strstr(smtp_client_tls_info(c), "not verified"));
    smtp_client_free(c);
    cc.tls_verify = 1;
    cc.give_up_ms = 200;
    c = smtp_client_new(&cc);
    smtp_client_send(c, "me@example.org", to, 1, "x\r\n", 3, &res);
    assert_int_equal(res.outcome, SMTP_TRANSIENT);
    assert_non_null(strstr(res.text, "not verified"));
    smtp_client_free(c);
}

static void test_backoff_schedule(void **state)
{
    (void)state;
    assert_int_equal(backoff_delay_ms(0, 1000, 60000, 0.5), 0); /* first retry: at once */
    assert_int_equal(backoff_delay_ms(1, 1000, 60000, 0.5), 1000);
    assert_int_equal(backoff_delay_ms(2, 1000, 60000, 0.5), 2000);
    assert_int_equal(backoff_delay_ms(3, 1000, 60000, 0.5), 4000);
    assert_int_equal(backoff_delay_ms(7, 1000, 60000, 0.5), 60000); /* capped */
    assert_int_equal(backoff_delay_ms(40, 1000, 60000, 0.5), 60000);
    assert_int_equal(backoff_delay_ms(1, 1000, 60000, 0.0), 800); /* -20 % */
    assert_int_equal(backoff_delay_ms(1, 1000, 60000, 0.999999), 1199);
    assert_int_equal(backoff_delay_ms(9, 1000, 60000, 0.999999), 60000); /* never over max */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_lazy_connect_and_reuse, setup),
        cmocka_unit_test_setup(test_body_normalized_and_stuffed, setup),
        cmocka_unit_test_setup(test_per_recipient_results, setup),
        cmocka_unit_test_setup(test_bad_sender_never_sent, setup),
        cmocka_unit_test_setup(test_reconnect_after_421_and_drop, setup),
        cmocka_unit_test_setup(test_give_up, setup),
        cmocka_unit_test_setup(test_end_of_data_refusal, setup),
        cmocka_unit_test_setup(test_tls_and_auth, setup),
        cmocka_unit_test(test_backoff_schedule),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
