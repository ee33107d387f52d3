/*
 * test_client.c - the SMTP client (src/smtp/client.c) against two kinds of
 * server on 127.0.0.1, each in its own thread:
 *
 * - tern's own server session (twice: without and with DSN offered), with
 *   hooks that misbehave on cue (421s, dropped connections, per-recipient
 *   refusals) and record the MAIL / RCPT parameters they parsed;
 * - a scripted "raw" server that answers from a fixed table (its EHLO
 *   reply set per test) and records every command line exactly as it came,
 *   for what goes on the wire: DSN parameters only when offered, xtext,
 *   the null sender, nothing injected.
 *
 * Also the backoff schedule (src/core/backoff.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/backoff.h"
#include "core/log.h"
#include "smtp/client.h"
#include "smtp/listen.h"
#include "smtp/session.h"
#include "smtp/tls.h"

#define MAX_SEEN 8 /* recipients whose RCPT parameters the hooks record */

static struct {
    atomic_int connects, mails, messages;
    atomic_int mail_421;  /* answer 421 to this many MAIL commands */
    atomic_int mail_drop; /* close at this many MAIL commands */
    atomic_int eod_code;  /* answer this at end of data (0 = 250) */
    char body[4096];
    size_t bodylen;
    /* what the last transaction's MAIL and RCPTs carried, as parsed */
    pthread_mutex_t mu;
    bool null_from;
    enum dsn_ret ret;
    char envid[ENVID_MAX + 1];
    size_t nrcpt;
    unsigned notify[MAX_SEEN];
    char orcpt[MAX_SEEN][ORCPT_MAX + 1];
} srv = {.mu = PTHREAD_MUTEX_INITIALIZER};

static struct event_base *base;
static struct smtp_server *server, *server_dsn;
static struct smtp_listener *listener, *listener_dsn;
static pthread_t loop_thread;
static char port[16], port_dsn[16];
static SSL_CTX *server_tls;
static atomic_int stop_loop;

static void h_connect(void *ctx, struct smtp_session *s, struct smtp_verdict *v)
{
    (void)ctx, (void)s, (void)v;
    srv.connects++;
}

static void h_mail(void *ctx, struct smtp_session *s, const struct mail_params *p,
                   struct smtp_verdict *v)
{
    (void)ctx, (void)s;
    srv.mails++;
    pthread_mutex_lock(&srv.mu);
    srv.null_from = p->from.local[0] == '\0' && p->from.domain[0] == '\0';
    srv.ret = p->ret;
    snprintf(srv.envid, sizeof(srv.envid), "%s", p->envid);
    srv.nrcpt = 0;
    pthread_mutex_unlock(&srv.mu);
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
    pthread_mutex_lock(&srv.mu);
    if (srv.nrcpt < MAX_SEEN) {
        srv.notify[srv.nrcpt] = p->notify;
        snprintf(srv.orcpt[srv.nrcpt], sizeof(srv.orcpt[0]), "%s", p->orcpt);
        srv.nrcpt++;
    }
    pthread_mutex_unlock(&srv.mu);
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

/* ---- the raw server ---------------------------------------------------------- */

#define RAW_EHLO_PLAIN "250-raw.example\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
#define RAW_EHLO_DSN                                                                               \
    "250-raw.example\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-SIZE 1000\r\n"       \
    "250 DSN\r\n"

#define RAW_LOG_MAX 8192

static struct {
    int fd;
    char port[16];
    pthread_t thread;
    atomic_int connects;
    pthread_mutex_t mu;
    const char *ehlo;      /* the EHLO reply, CRLFs included */
    char log[RAW_LOG_MAX]; /* the command lines received, each ending in "\n" */
    size_t loglen;
} raw = {.fd = -1, .mu = PTHREAD_MUTEX_INITIALIZER};

static void raw_reset(const char *ehlo)
{
    pthread_mutex_lock(&raw.mu);
    raw.ehlo = ehlo;
    raw.log[0] = '\0';
    raw.loglen = 0;
    pthread_mutex_unlock(&raw.mu);
    raw.connects = 0;
}

/* The command lines the raw server received so far (a copy, NUL-terminated). */
static void raw_log(char *out, size_t size)
{
    pthread_mutex_lock(&raw.mu);
    snprintf(out, size, "%s", raw.log);
    pthread_mutex_unlock(&raw.mu);
}

/* One line without its CRLF into line (NUL-terminated); -1 at EOF or error.
 * A CR or LF anywhere else stays in the line: the log shows any injection. */
static int raw_getline(int fd, char *line, size_t size)
{
    size_t n = 0;
    for (;;) {
        char ch;
        ssize_t r = recv(fd, &ch, 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        if (ch == '\n' && n > 0 && line[n - 1] == '\r') {
            line[n - 1] = '\0';
            return 0;
        }
        if (n + 1 < size)
            line[n++] = ch;
    }
}

static int raw_put(int fd, const char *s)
{
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The reply to RCPT, chosen by the recipient's local part. */
static const char *raw_rcpt_reply(const char *line)
{
    static const struct {
        const char *to, *reply;
    } table[] = {
        {"RCPT TO:<bad@", "550 5.1.1 no such user\r\n"},
        {"RCPT TO:<noenh@", "550 mailbox unavailable\r\n"},
        {"RCPT TO:<later@", "451 4.3.0 try later\r\n"},
        {"RCPT TO:<busy@", "452 too many recipients\r\n"},
        {"RCPT TO:<multi@", "550-5.7.1 first line\r\n550 5.7.1 second\tline\r\n"},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (strncmp(line, table[i].to, strlen(table[i].to)) == 0)
            return table[i].reply;
    return "250 2.1.5 ok\r\n";
}

/* One connection, to QUIT or EOF. */
static void raw_session(int fd)
{
    char line[2048];
    struct timeval tv = {5, 0};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
        raw_put(fd, "220 raw.example ESMTP\r\n") < 0)
        return;
    while (raw_getline(fd, line, sizeof(line)) == 0) {
        const char *reply = "502 5.5.1 unknown command\r\n";
        pthread_mutex_lock(&raw.mu);
        int n = snprintf(raw.log + raw.loglen, sizeof(raw.log) - raw.loglen, "%s\n", line);
        if (n > 0 && (size_t)n < sizeof(raw.log) - raw.loglen)
            raw.loglen += (size_t)n;
        const char *ehlo = raw.ehlo;
        pthread_mutex_unlock(&raw.mu);
        if (strncmp(line, "EHLO ", 5) == 0)
            reply = ehlo;
        else if (strncmp(line, "MAIL FROM:", 10) == 0)
            reply = "250 2.1.0 ok\r\n";
        else if (strncmp(line, "RCPT TO:", 8) == 0)
            reply = raw_rcpt_reply(line);
        else if (strcmp(line, "RSET") == 0 || strcmp(line, "NOOP") == 0)
            reply = "250 2.0.0 ok\r\n";
        else if (strcmp(line, "QUIT") == 0) {
            (void)raw_put(fd, "221 2.0.0 bye\r\n");
            return;
        } else if (strcmp(line, "DATA") == 0) {
            if (raw_put(fd, "354 go ahead\r\n") < 0)
                return;
            while (raw_getline(fd, line, sizeof(line)) == 0 && strcmp(line, ".") != 0)
                ;
            reply = "250 2.0.0 queued as RAW1\r\n";
        }
        if (raw_put(fd, reply) < 0)
            return;
    }
}

static void *raw_main(void *arg)
{
    (void)arg;
    while (!stop_loop) {
        struct pollfd p = {.fd = raw.fd, .events = POLLIN};
        if (poll(&p, 1, 20) <= 0)
            continue;
        int fd = accept(raw.fd, NULL, NULL);
        if (fd < 0)
            continue;
        raw.connects++;
        raw_session(fd);
        close(fd);
    }
    return NULL;
}

static int raw_start(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    raw.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (raw.fd < 0 || bind(raw.fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(raw.fd, 8) < 0 || getsockname(raw.fd, (struct sockaddr *)&sa, &sl) < 0)
        return -1;
    snprintf(raw.port, sizeof(raw.port), "%u", (unsigned)ntohs(sa.sin_port));
    return pthread_create(&raw.thread, NULL, raw_main, NULL);
}

/* ---- set-up ------------------------------------------------------------------- */

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

/* A tern server session on 127.0.0.1 offering ext; its port into portbuf. */
static struct smtp_listener *serve_on(struct smtp_server **s, unsigned ext, char *portbuf,
                                      size_t size)
{
    char why[256];
    struct smtp_server_conf c = {.hostname = "test.example",
                                 .max_size = 100000,
                                 .max_rcpts = 10,
                                 .max_errors = 10,
                                 .idle_timeout = 30,
                                 .max_line = 1000,
                                 .tls = server_tls,
                                 .auth = true,
                                 .ext = ext,
                                 .hooks = &hooks};
    *s = smtp_server_new(base, &c);
    struct smtp_listener *l = smtp_listen(base, "127.0.0.1:0", *s, false, why, sizeof(why));
    if (l)
        snprintf(portbuf, size, "%s", strrchr(smtp_listener_addr(l), ':') + 1);
    return l;
}

static int group_setup(void **state)
{
    (void)state;
    char why[256];
    log_set_level(LOG_ERROR);
    base = event_base_new();
    server_tls = tls_server_ctx(NULL, NULL, "test.example", why, sizeof(why));
    listener = serve_on(&server, EXT_8BITMIME | EXT_SMTPUTF8, port, sizeof(port));
    listener_dsn =
        serve_on(&server_dsn, EXT_8BITMIME | EXT_SMTPUTF8 | EXT_DSN, port_dsn, sizeof(port_dsn));
    if (!listener || !listener_dsn || raw_start() != 0)
        return -1;
    return pthread_create(&loop_thread, NULL, loop_main, NULL);
}

static int group_teardown(void **state)
{
    (void)state;
    stop_loop = 1;
    pthread_join(loop_thread, NULL);
    pthread_join(raw.thread, NULL);
    close(raw.fd);
    smtp_listener_free(listener);
    smtp_listener_free(listener_dsn);
    smtp_server_free(server);
    smtp_server_free(server_dsn);
    event_base_free(base);
    SSL_CTX_free(server_tls);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    srv.connects = srv.mails = srv.messages = 0;
    srv.mail_421 = srv.mail_drop = srv.eod_code = 0;
    raw_reset(RAW_EHLO_PLAIN);
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

/* Send msg from from to the n addresses in to, without DSN parameters. */
static size_t send_to(struct smtp_client *c, const char *from, const char *const *to, size_t n,
                      const char *msg, struct rcpt_result *res)
{
    struct smtp_rcpt rcpts[8];
    memset(rcpts, 0, sizeof(rcpts));
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++)
        rcpts[i].addr = to[i];
    struct smtp_envelope e = {.from = from, .rcpts = rcpts, .nrcpt = n};
    return smtp_client_send(c, &e, msg, strlen(msg), res);
}

static size_t send1(struct smtp_client *c, const char *from, const char *to, const char *msg,
                    struct rcpt_result *res)
{
    return send_to(c, from, &to, 1, msg, res);
}

/* ---- tests against tern's server -------------------------------------------------- */

static void test_lazy_connect_and_reuse(void **state)
{
    (void)state;
    struct smtp_client_conf cc = conf();
    struct smtp_client *c = smtp_client_new(&cc);
    struct rcpt_result res;
    assert_int_equal(srv.connects, 0); /* nothing to send yet: no connection */
    for (int i = 0; i < 3; i++)
        assert_int_equal(
            send1(c, "me@example.org", "a@example.net", "Subject: x\r\n\r\nhi\r\n", &res), 1);
    assert_int_equal(res.cls, RESULT_OK);
    assert_int_equal(res.code, 250);
    assert_string_equal(res.status, "");
    assert_true(strncmp(res.text, "250 ", 4) == 0);
    assert_false(res.dsn_passed); /* this server offers no DSN */
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
    struct rcpt_result res;
    send1(c, "me@example.org", "a@example.net", "Subject: x\n\n.leading dot\nbare\rcr\r\n.\nend",
          &res);
    assert_int_equal(res.cls, RESULT_OK);
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
    struct rcpt_result res[4];
    const char *to[] = {"ok@example.net", "bad@example.net", "later@example.net",
                        "evil\r\nRCPT TO:<x@y>@example.net"};
    assert_int_equal(send_to(c, "me@example.org", to, 4, "x\r\n", res), 1);
    assert_int_equal(res[0].cls, RESULT_OK);
    assert_int_equal(res[1].cls, RESULT_PERM);
    assert_int_equal(res[1].code, 550);
    assert_string_equal(res[1].status, "5.1.1");
    assert_string_equal(res[1].text, "550 5.1.1 no such user");
    assert_int_equal(res[2].cls, RESULT_TEMP);
    assert_int_equal(res[2].code, 451);
    assert_string_equal(res[2].status, "4.3.0");
    assert_int_equal(res[3].cls, RESULT_PERM); /* refused locally */
    assert_int_equal(res[3].code, 0);
    assert_string_equal(res[3].status, "5.1.3");
    assert_non_null(strstr(res[3].text, "bad recipient address"));
    assert_null(strpbrk(res[3].text, "\r\n"));
    assert_int_equal(srv.messages, 1);
    assert_int_equal(srv.nrcpt, 3); /* the bad address never reached the server */
    smtp_client_free(c);
}

static void test_bad_sender_never_sent(void **state)
{
    (void)state;
    struct smtp_client_conf cc = conf();
    struct smtp_client *c = smtp_client_new(&cc);
    struct rcpt_result res;
    assert_int_equal(send1(c, "me\r\n@example.org", "a@example.net", "x\r\n", &res), 0);
    assert_int_equal(res.cls, RESULT_PERM);
    assert_int_equal(res.code, 0);
    assert_string_equal(res.status, "5.1.7");
    assert_non_null(strstr(res.text, "bad sender address"));
    assert_int_equal(srv.connects, 0);
    smtp_client_free(c);
}

/* Regression: the null sender's address was never parsed, but its has_utf8 was
 * read (uninitialised); gcc -O2 then refused every recipient "501 5.1.3 bad
 * recipient address: ok". */
static void test_null_sender(void **state)
{
    (void)state;
    struct smtp_client_conf cc = conf();
    struct smtp_client *c = smtp_client_new(&cc);
    struct rcpt_result res[2];
    const char *to[] = {"a@example.net", "b@example.net"};
    assert_int_equal(send_to(c, "", to, 2, "Subject: bounce\r\n\r\nx\r\n", res), 2);
    assert_int_equal(res[0].cls, RESULT_OK);
    assert_int_equal(res[0].code, 250);
    assert_int_equal(res[1].cls, RESULT_OK);
    assert_int_equal(srv.messages, 1);
    assert_true(srv.null_from);
    /* a NULL sender is the null sender too */
    assert_int_equal(send_to(c, NULL, to, 1, "x\r\n", res), 1);
    assert_int_equal(srv.messages, 2);
    smtp_client_free(c);
}

static void test_reconnect_after_421_and_drop(void **state)
{
    (void)state;
    struct smtp_client_conf cc = conf();
    struct smtp_client *c = smtp_client_new(&cc);
    struct rcpt_result res;
    srv.mail_421 = 2;
    srv.mail_drop = 1;
    assert_int_equal(send1(c, "me@example.org", "a@example.net", "x\r\n", &res), 1);
    assert_int_equal(res.cls, RESULT_OK);
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
    struct rcpt_result res;
    srv.mail_421 = 1000000;
    assert_int_equal(send1(c, "me@example.org", "a@example.net", "x\r\n", &res), 0);
    assert_int_equal(res.cls, RESULT_TEMP);
    assert_int_equal(res.code, 0);            /* our decision, not a reply */
    assert_string_equal(res.status, "4.4.2"); /* from the last 421 4.4.2 */
    assert_non_null(strstr(res.text, "gave up"));
    assert_non_null(strstr(res.text, "421 4.4.2"));
    assert_int_equal(srv.messages, 0);
    assert_true(srv.connects >= 3);
    smtp_client_free(c);
}

static void test_connection_refused(void **state)
{
    (void)state;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    char closed[16];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    snprintf(closed, sizeof(closed), "%u", (unsigned)ntohs(sa.sin_port));
    close(fd); /* nothing listens there now */
    struct smtp_client_conf cc = conf();
    cc.port = closed;
    cc.max_connects = 2;
    struct smtp_client *c = smtp_client_new(&cc);
    struct rcpt_result res;
    assert_int_equal(send1(c, "me@example.org", "a@example.net", "x\r\n", &res), 0);
    assert_int_equal(res.cls, RESULT_TEMP);
    assert_int_equal(res.code, 0);
    assert_string_equal(res.status, "4.4.1");
    assert_non_null(strstr(res.text, "connect to 127.0.0.1"));
    smtp_client_free(c);
}

static void test_end_of_data_refusal(void **state)
{
    (void)state;
    struct smtp_client_conf cc = conf();
    struct smtp_client *c = smtp_client_new(&cc);
    struct rcpt_result res;
    srv.eod_code = 554;
    send1(c, "me@example.org", "a@example.net", "x\r\n", &res);
    assert_int_equal(res.cls, RESULT_PERM);
    assert_int_equal(res.code, 554);
    assert_string_equal(res.status, "5.7.1");
    assert_string_equal(res.text, "554 5.7.1 refused");
    srv.eod_code = 0;
    send1(c, "me@example.org", "a@example.net", "x\r\n", &res);
    assert_int_equal(res.cls, RESULT_OK);
    assert_int_equal(srv.connects, 1);
    smtp_client_free(c);
}

static void test_tls_and_auth(void **state)
{
    (void)state;
    struct smtp_client_conf cc = conf();
    struct rcpt_result res;
    /* AUTH is never sent in clear unless allowed */
    cc.auth_user = "u";
    cc.auth_pass = "p";
    struct smtp_client *c = smtp_client_new(&cc);
    send1(c, "me@example.org", "a@example.net", "x\r\n", &res);
    assert_int_equal(res.cls, RESULT_PERM);
    assert_string_equal(res.status, "5.7.8");
    assert_non_null(strstr(res.text, "unencrypted"));
    assert_int_equal(srv.mails, 0);
    smtp_client_free(c);
    /* STARTTLS required, self-signed certificate accepted only without verification */
    cc.tls = SMTP_TLS_REQUIRED;
    cc.tls_verify = 0;
    c = smtp_client_new(&cc);
    send1(c, "me@example.org", "a@example.net", "x\r\n", &res);
    assert_int_equal(res.cls, RESULT_OK);
    assert_non_null(strstr(smtp_client_tls_info(c), "TLS"));
    assert_non_null(strstr(smtp_client_tls_info(c), "not verified"));
    smtp_client_free(c);
    cc.tls_verify = 1;
    cc.give_up_ms = 200;
    c = smtp_client_new(&cc);
    send1(c, "me@example.org", "a@example.net", "x\r\n", &res);
    assert_int_equal(res.cls, RESULT_TEMP);
    assert_string_equal(res.status, "4.7.5");
    assert_non_null(strstr(res.text, "not verified"));
    smtp_client_free(c);
}

/* The DSN parameters pass tern's own strict parser on a server that offers DSN. */
static void test_dsn_to_tern_server(void **state)
{
    (void)state;
    struct smtp_client_conf cc = conf();
    cc.port = port_dsn;
    struct smtp_client *c = smtp_client_new(&cc);
    struct rcpt_result res[2];
    const struct smtp_rcpt to[] = {
        {.addr = "a@example.net",
         .notify = NOTIFY_SUCCESS | NOTIFY_DELAY,
         .orcpt = "rfc822;A+2Bx@example.net"},
        {.addr = "bad@example.net", .notify = NOTIFY_NEVER},
    };
    struct smtp_envelope e = {
        .from = "me@example.org", .ret = RET_FULL, .envid = "QQ+2B314", .rcpts = to, .nrcpt = 2};
    assert_int_equal(smtp_client_send(c, &e, "x\r\n", 3, res), 1);
    assert_int_equal(res[0].cls, RESULT_OK);
    assert_true(res[0].dsn_passed);
    assert_int_equal(res[1].cls, RESULT_PERM);
    assert_false(res[1].dsn_passed);
    assert_int_equal(srv.messages, 1);
    pthread_mutex_lock(&srv.mu);
    assert_int_equal(srv.ret, RET_FULL);
    assert_string_equal(srv.envid, "QQ+2B314");
    assert_int_equal(srv.nrcpt, 2);
    assert_int_equal(srv.notify[0], NOTIFY_SUCCESS | NOTIFY_DELAY);
    assert_string_equal(srv.orcpt[0], "rfc822;A+2Bx@example.net");
    assert_int_equal(srv.notify[1], NOTIFY_NEVER);
    assert_string_equal(srv.orcpt[1], "");
    pthread_mutex_unlock(&srv.mu);
    /* to a server without DSN the same envelope goes without them */
    smtp_client_free(c);
    cc.port = port;
    c = smtp_client_new(&cc);
    assert_int_equal(smtp_client_send(c, &e, "x\r\n", 3, res), 1);
    assert_int_equal(res[0].cls, RESULT_OK);
    assert_false(res[0].dsn_passed);
    pthread_mutex_lock(&srv.mu);
    assert_int_equal(srv.ret, RET_NONE);
    assert_string_equal(srv.envid, "");
    assert_int_equal(srv.notify[0], 0);
    assert_string_equal(srv.orcpt[0], "");
    pthread_mutex_unlock(&srv.mu);
    smtp_client_free(c);
}

/* ---- tests against the raw server: the exact lines ------------------------------ */

/* Send e (body "x\r\n") with a new client to the raw server, which offers ehlo;
 * the command lines it received into log.  Returns what smtp_client_send() did. */
static size_t raw_send(const char *ehlo, const struct smtp_envelope *e, struct rcpt_result *res,
                       char *log, size_t size)
{
    struct smtp_client_conf cc = conf();
    cc.port = raw.port;
    raw_reset(ehlo);
    struct smtp_client *c = smtp_client_new(&cc);
    size_t n = smtp_client_send(c, e, "x\r\n", 3, res);
    raw_log(log, size);
    smtp_client_free(c);
    return n;
}

static void test_raw_null_sender(void **state)
{
    (void)state;
    struct rcpt_result res;
    char log[RAW_LOG_MAX];
    const struct smtp_rcpt to = {.addr = "a@example.net"};
    struct smtp_envelope e = {.from = "", .rcpts = &to, .nrcpt = 1};
    assert_int_equal(raw_send(RAW_EHLO_PLAIN, &e, &res, log, sizeof(log)), 1);
    assert_int_equal(res.cls, RESULT_OK);
    assert_string_equal(res.text, "250 2.0.0 queued as RAW1");
    /* no SMTPUTF8 although the server offers it: nothing in the envelope needs it */
    assert_string_equal(log, "EHLO localhost\n"
                             "MAIL FROM:<>\n"
                             "RCPT TO:<a@example.net>\n"
                             "DATA\n");
}

static void test_raw_reply_parsing(void **state)
{
    (void)state;
    struct rcpt_result res[6];
    char log[RAW_LOG_MAX];
    const struct smtp_rcpt to[] = {
        {.addr = "ok@example.net"},    {.addr = "bad@example.net"},  {.addr = "noenh@example.net"},
        {.addr = "later@example.net"}, {.addr = "busy@example.net"}, {.addr = "multi@example.net"},
    };
    struct smtp_envelope e = {.from = "me@example.org", .rcpts = to, .nrcpt = 6};
    assert_int_equal(raw_send(RAW_EHLO_PLAIN, &e, res, log, sizeof(log)), 1);
    assert_int_equal(res[0].cls, RESULT_OK);
    assert_int_equal(res[0].code, 250);
    assert_string_equal(res[0].status, "");
    assert_int_equal(res[1].cls, RESULT_PERM);
    assert_int_equal(res[1].code, 550);
    assert_string_equal(res[1].status, "5.1.1");
    assert_string_equal(res[1].text, "550 5.1.1 no such user");
    assert_int_equal(res[2].cls, RESULT_PERM); /* no enhanced code: from the class */
    assert_string_equal(res[2].status, "5.0.0");
    assert_string_equal(res[2].text, "550 mailbox unavailable");
    assert_int_equal(res[3].cls, RESULT_TEMP);
    assert_int_equal(res[3].code, 451);
    assert_string_equal(res[3].status, "4.3.0");
    assert_int_equal(res[4].cls, RESULT_TEMP);
    assert_int_equal(res[4].code, 452);
    assert_string_equal(res[4].status, "4.0.0");
    assert_int_equal(res[5].cls, RESULT_PERM); /* a multi-line reply, on one line */
    assert_string_equal(res[5].status, "5.7.1");
    assert_string_equal(res[5].text, "550 5.7.1 first line second?line");
    for (size_t i = 0; i < 6; i++)
        assert_false(res[i].dsn_passed);
}

static void test_raw_dsn_not_offered(void **state)
{
    (void)state;
    struct rcpt_result res;
    char log[RAW_LOG_MAX];
    const struct smtp_rcpt to = {
        .addr = "a@example.net", .notify = NOTIFY_FAILURE, .orcpt = "rfc822;a@example.net"};
    struct smtp_envelope e = {
        .from = "me@example.org", .ret = RET_HDRS, .envid = "E1", .rcpts = &to, .nrcpt = 1};
    assert_int_equal(raw_send(RAW_EHLO_PLAIN, &e, &res, log, sizeof(log)), 1);
    assert_false(res.dsn_passed);
    assert_string_equal(log, "EHLO localhost\n"
                             "MAIL FROM:<me@example.org>\n"
                             "RCPT TO:<a@example.net>\n"
                             "DATA\n");
}

static void test_raw_dsn_passed_through(void **state)
{
    (void)state;
    struct rcpt_result res[5];
    char log[RAW_LOG_MAX];
    const struct smtp_rcpt to[] = {
        {.addr = "a@example.net", .notify = NOTIFY_NEVER, .orcpt = "rfc822;a+2Bb@example.net"},
        {.addr = "b@example.net", .notify = NOTIFY_DELAY | NOTIFY_FAILURE | NOTIFY_SUCCESS},
        {.addr = "c@example.net", .notify = NOTIFY_DELAY, .orcpt = ""},
        {.addr = "d@example.net", .orcpt = NULL},
        {.addr = "bad@example.net", .notify = NOTIFY_FAILURE},
    };
    struct smtp_envelope e = {
        .from = "me@example.org", .ret = RET_HDRS, .envid = "id+2Bx+3D1", .rcpts = to, .nrcpt = 5};
    assert_int_equal(raw_send(RAW_EHLO_DSN, &e, res, log, sizeof(log)), 4);
    assert_string_equal(log, "EHLO localhost\n"
                             "MAIL FROM:<me@example.org> SIZE=3 RET=HDRS ENVID=id+2Bx+3D1\n"
                             "RCPT TO:<a@example.net> NOTIFY=NEVER ORCPT=rfc822;a+2Bb@example.net\n"
                             "RCPT TO:<b@example.net> NOTIFY=SUCCESS,FAILURE,DELAY\n"
                             "RCPT TO:<c@example.net> NOTIFY=DELAY\n"
                             "RCPT TO:<d@example.net>\n"
                             "RCPT TO:<bad@example.net> NOTIFY=FAILURE\n"
                             "DATA\n");
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(res[i].cls, RESULT_OK);
        assert_true(res[i].dsn_passed); /* the next hop answers for NOTIFY now */
    }
    assert_int_equal(res[4].cls, RESULT_PERM);
    assert_false(res[4].dsn_passed);
    /* no DSN parameter at all: nothing was passed; RET alone is one */
    e.ret = RET_NONE;
    e.envid = NULL;
    e.rcpts = &to[3];
    e.nrcpt = 1;
    assert_int_equal(raw_send(RAW_EHLO_DSN, &e, res, log, sizeof(log)), 1);
    assert_false(res[0].dsn_passed);
    assert_non_null(strstr(log, "MAIL FROM:<me@example.org> SIZE=3\nRCPT TO:<d@example.net>\n"));
    e.ret = RET_FULL;
    assert_int_equal(raw_send(RAW_EHLO_DSN, &e, res, log, sizeof(log)), 1);
    assert_true(res[0].dsn_passed);
    assert_non_null(strstr(log, "MAIL FROM:<me@example.org> SIZE=3 RET=FULL\n"));
}

/* ENVID and ORCPT values that are not valid xtext are left out, never sent. */
static void test_raw_dsn_bad_values_left_out(void **state)
{
    (void)state;
    struct rcpt_result res[7];
    char log[RAW_LOG_MAX], longid[ENVID_MAX + 2];
    const struct smtp_rcpt to[] = {
        {.addr = "a@example.net", .orcpt = "rfc822;a@example.net\r\nRSET"},
        {.addr = "b@example.net", .orcpt = "rfc822;b c@example.net"},
        {.addr = "c@example.net", .orcpt = "rfc822;c=d@example.net"},
        {.addr = "d@example.net", .orcpt = "rfc822;d+zz@example.net"},
        {.addr = "e@example.net", .orcpt = "no-semicolon"},
        {.addr = "f@example.net", .orcpt = "rfc822;"},
        {.addr = "g@example.net", .orcpt = "rfc822;\xc3\xbc@example.net"}, /* no SMTPUTF8 */
    };
    memset(longid, 'x', sizeof(longid) - 1); /* one octet over ENVID_MAX */
    longid[sizeof(longid) - 1] = '\0';
    const char *envids[] = {"id\r\nRSET", longid, "a b", "a=b", "+2b"};
    for (size_t i = 0; i < sizeof(envids) / sizeof(envids[0]); i++) {
        struct smtp_envelope e = {
            .from = "me@example.org", .envid = envids[i], .rcpts = to, .nrcpt = 7};
        assert_int_equal(raw_send(RAW_EHLO_DSN, &e, res, log, sizeof(log)), 7);
        assert_false(res[0].dsn_passed); /* nothing DSN went along */
        assert_null(strstr(log, "ENVID"));
        assert_null(strstr(log, "ORCPT"));
        assert_null(strchr(log, '\r'));
        assert_null(strstr(log, "\nRSET\n"));
    }
}

/* UTF-8 in ORCPT goes along when the message goes with SMTPUTF8 (RFC 6533). */
static void test_raw_dsn_utf8_orcpt(void **state)
{
    (void)state;
    struct rcpt_result res;
    char log[RAW_LOG_MAX];
    const struct smtp_rcpt to = {.addr = "\xc3\xbc@example.net",
                                 .notify = NOTIFY_FAILURE,
                                 .orcpt = "utf-8;\xc3\xbc@example.net"};
    struct smtp_envelope e = {.from = "me@example.org", .rcpts = &to, .nrcpt = 1};
    assert_int_equal(raw_send(RAW_EHLO_DSN, &e, &res, log, sizeof(log)), 1);
    assert_non_null(strstr(log, "MAIL FROM:<me@example.org> SIZE=3 SMTPUTF8\n"
                                "RCPT TO:<\xc3\xbc@example.net> NOTIFY=FAILURE "
                                "ORCPT=utf-8;\xc3\xbc@example.net\n"));
}

/* A session whose set-up failed is closed: TLS required is never skipped by
 * reusing the clear connection for the next message. */
static void test_raw_tls_required_not_offered(void **state)
{
    (void)state;
    struct smtp_client_conf cc = conf();
    cc.port = raw.port;
    cc.tls = SMTP_TLS_REQUIRED;
    cc.tls_verify = 0;
    struct smtp_client *c = smtp_client_new(&cc);
    struct rcpt_result res;
    char log[RAW_LOG_MAX];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(send1(c, "me@example.org", "a@example.net", "x\r\n", &res), 0);
        assert_int_equal(res.cls, RESULT_TEMP);
        assert_int_equal(res.code, 0);
        assert_string_equal(res.status, "4.7.4");
    }
    smtp_client_free(c);
    raw_log(log, sizeof(log));
    assert_null(strstr(log, "MAIL"));
    assert_int_equal(raw.connects, 2);
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
        cmocka_unit_test_setup(test_null_sender, setup),
        cmocka_unit_test_setup(test_reconnect_after_421_and_drop, setup),
        cmocka_unit_test_setup(test_give_up, setup),
        cmocka_unit_test_setup(test_connection_refused, setup),
        cmocka_unit_test_setup(test_end_of_data_refusal, setup),
        cmocka_unit_test_setup(test_tls_and_auth, setup),
        cmocka_unit_test_setup(test_dsn_to_tern_server, setup),
        cmocka_unit_test_setup(test_raw_null_sender, setup),
        cmocka_unit_test_setup(test_raw_reply_parsing, setup),
        cmocka_unit_test_setup(test_raw_dsn_not_offered, setup),
        cmocka_unit_test_setup(test_raw_dsn_passed_through, setup),
        cmocka_unit_test_setup(test_raw_dsn_bad_values_left_out, setup),
        cmocka_unit_test_setup(test_raw_dsn_utf8_orcpt, setup),
        cmocka_unit_test_setup(test_raw_tls_required_not_offered, setup),
        cmocka_unit_test(test_backoff_schedule),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
