/*
 * test_lmtp.c - the LMTP courier (src/deliver/lmtp.c) and the SMTP
 * client's LMTP mode (src/smtp/client.c, .lmtp) against a scripted LMTP
 * server in a thread, on a unix socket and on 127.0.0.1:
 *
 * - the endpoint syntax (unix:/path, inet:host:port, host:port, [v6]:port);
 * - LHLO (never EHLO or HELO), and after the end of data one reply per
 *   accepted recipient, in RCPT order, each that recipient's alone: a 452
 *   defers only its recipient, a 550 fails only its recipient, a recipient
 *   refused at RCPT gets no data reply (the mapping skips it);
 * - with and without PIPELINING;
 * - a connection lost after the first data reply: answered recipients keep
 *   their answer, the others are deferred, nothing is sent twice; lost
 *   before it: the message is sent again;
 * - no socket: every recipient deferred (4.4.1), no path in the text;
 * - the courier: a bad endpoint defers (4.3.5), results per recipient.
 *
 * The server answers by the recipient's local part: "bad" 550 at RCPT;
 * after the data "quota" 452 4.2.2, "reject" 550 5.7.1, others 250.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"
#include "deliver/lmtp.h"
#include "deliver/remote.h"
#include "queue/envelope.h"
#include "smtp/client.h"

#define LHLO_PIPE "250-lmtp.test\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n"
#define LHLO_PLAIN "250-lmtp.test\r\n250 8BITMIME\r\n"
#define LOG_MAX 16384
#define MAX_ACC 16

static struct {
    int ufd, tfd;                     /* listening: unix, TCP */
    char dir[64], path[96], port[16]; /* path fits a sockaddr_un */
    pthread_t thread;
    atomic_int stop;
    atomic_int connects, messages;
    atomic_int drop_after; /* >= 0: close after this many data replies (once) */
    atomic_int data_354;   /* answer 354 to DATA even without recipients (a broken server) */
    pthread_mutex_t mu;
    const char *lhlo; /* the LHLO reply; NULL: 500 */
    char log[LOG_MAX];
    size_t loglen;
} srv = {.ufd = -1, .tfd = -1, .mu = PTHREAD_MUTEX_INITIALIZER};

static void srv_log(const char *line)
{
    pthread_mutex_lock(&srv.mu);
    int n = snprintf(srv.log + srv.loglen, sizeof(srv.log) - srv.loglen, "%s\n", line);
    if (n > 0 && (size_t)n < sizeof(srv.log) - srv.loglen)
        srv.loglen += (size_t)n;
    pthread_mutex_unlock(&srv.mu);
}

static void srv_logcopy(char *out, size_t size)
{
    pthread_mutex_lock(&srv.mu);
    snprintf(out, size, "%s", srv.log);
    pthread_mutex_unlock(&srv.mu);
}

static int getline_fd(int fd, char *line, size_t size)
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

static int put(int fd, const char *s)
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

/* The local part of "RCPT TO:<local@...>" into out. */
static void rcpt_local(const char *line, char *out, size_t size)
{
    const char *p = strchr(line, '<'), *at = p ? strchr(p, '@') : NULL;
    size_t n = p && at ? (size_t)(at - p - 1) : 0;
    if (n >= size)
        n = size - 1;
    memcpy(out, p ? p + 1 : "", n);
    out[n] = '\0';
}

static void session(int fd)
{
    char line[2048], acc[MAX_ACC][64], reply[256];
    size_t nacc = 0;
    struct timeval tv = {5, 0};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
        put(fd, "220 lmtp.test LMTP ready\r\n") < 0)
        return;
    while (getline_fd(fd, line, sizeof(line)) == 0) {
        const char *r = "502 5.5.1 unknown command\r\n";
        srv_log(line);
        if (strncmp(line, "LHLO ", 5) == 0) {
            pthread_mutex_lock(&srv.mu);
            r = srv.lhlo ? srv.lhlo : "500 5.5.1 say LHLO properly\r\n";
            pthread_mutex_unlock(&srv.mu);
        } else if (strncmp(line, "MAIL FROM:", 10) == 0) {
            nacc = 0;
            r = "250 2.1.0 OK\r\n";
        } else if (strncmp(line, "RCPT TO:", 8) == 0) {
            char local[64];
            rcpt_local(line, local, sizeof(local));
            if (strcmp(local, "bad") == 0) {
                r = "550 5.1.1 User doesn't exist\r\n";
            } else {
                if (nacc < MAX_ACC)
                    snprintf(acc[nacc++], sizeof(acc[0]), "%s", local);
                r = "250 2.1.5 OK\r\n";
            }
        } else if (strcmp(line, "RSET") == 0) {
            nacc = 0;
            r = "250 2.0.0 OK\r\n";
        } else if (strcmp(line, "QUIT") == 0) {
            (void)put(fd, "221 2.0.0 Bye\r\n");
            return;
        } else if (strcmp(line, "DATA") == 0) {
            if (nacc == 0 && !srv.data_354) {
                r = "503 5.5.1 No valid recipients\r\n";
            } else {
                if (put(fd, "354 OK\r\n") < 0)
                    return;
                while (getline_fd(fd, line, sizeof(line)) == 0 && strcmp(line, ".") != 0)
                    ;
                srv.messages++;
                for (size_t k = 0; k < nacc; k++) {
                    int drop = srv.drop_after;
                    if (drop >= 0 && (size_t)drop == k) {
                        srv.drop_after = -1;
                        return;
                    }
                    if (strcmp(acc[k], "quota") == 0)
                        snprintf(reply, sizeof(reply),
                                 "452 4.2.2 <%s@x.test> Quota exceeded (mailbox for user is "
                                 "full)\r\n",
                                 acc[k]);
                    else if (strcmp(acc[k], "reject") == 0)
                        snprintf(reply, sizeof(reply), "550 5.7.1 <%s@x.test> refused\r\n", acc[k]);
                    else
                        snprintf(reply, sizeof(reply), "250 2.0.0 <%s@x.test> Saved\r\n", acc[k]);
                    if (put(fd, reply) < 0)
                        return;
                }
                nacc = 0;
                continue;
            }
        }
        if (put(fd, r) < 0)
            return;
    }
}

static void *srv_main(void *arg)
{
    (void)arg;
    while (!srv.stop) {
        struct pollfd p[2] = {{.fd = srv.ufd, .events = POLLIN}, {.fd = srv.tfd, .events = POLLIN}};
        if (poll(p, 2, 20) <= 0)
            continue;
        for (int i = 0; i < 2; i++) {
            if (!(p[i].revents & POLLIN))
                continue;
            int fd = accept(p[i].fd, NULL, NULL);
            if (fd < 0)
                continue;
            srv.connects++;
            session(fd);
            close(fd);
        }
    }
    return NULL;
}

static int group_setup(void **state)
{
    (void)state;
    log_set_level(LOG_ERROR);
    snprintf(srv.dir, sizeof(srv.dir), "/tmp/tern-lmtp-XXXXXX");
    if (!mkdtemp(srv.dir))
        return -1;
    snprintf(srv.path, sizeof(srv.path), "%s/lmtp", srv.dir);
    struct sockaddr_un su = {.sun_family = AF_UNIX};
    memcpy(su.sun_path, srv.path, strlen(srv.path) + 1);
    srv.ufd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (srv.ufd < 0 || bind(srv.ufd, (struct sockaddr *)&su, sizeof(su)) < 0 ||
        listen(srv.ufd, 8) < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    srv.tfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (srv.tfd < 0 || bind(srv.tfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(srv.tfd, 8) < 0 || getsockname(srv.tfd, (struct sockaddr *)&sa, &sl) < 0)
        return -1;
    snprintf(srv.port, sizeof(srv.port), "%u", (unsigned)ntohs(sa.sin_port));
    return pthread_create(&srv.thread, NULL, srv_main, NULL);
}

static int group_teardown(void **state)
{
    (void)state;
    lmtp_thread_cleanup();
    srv.stop = 1;
    pthread_join(srv.thread, NULL);
    close(srv.ufd);
    close(srv.tfd);
    unlink(srv.path);
    rmdir(srv.dir);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    lmtp_thread_cleanup(); /* every test starts with a new connection */
    pthread_mutex_lock(&srv.mu);
    srv.lhlo = LHLO_PIPE;
    srv.log[0] = '\0';
    srv.loglen = 0;
    pthread_mutex_unlock(&srv.mu);
    srv.connects = srv.messages = 0;
    srv.drop_after = -1;
    srv.data_354 = 0;
    return 0;
}

static void set_lhlo(const char *r)
{
    pthread_mutex_lock(&srv.mu);
    srv.lhlo = r;
    pthread_mutex_unlock(&srv.mu);
}

/* Deliver to the n addresses of to through the endpoint text ep. */
static void deliver(const char *ep_text, const char *const *to, size_t n, struct rcpt_result *res)
{
    struct lmtp_endpoint ep;
    struct smtp_rcpt rcpts[8];
    char info[300];
    memset(rcpts, 0, sizeof(rcpts));
    assert_true(n <= 8);
    assert_int_equal(lmtp_endpoint_parse(ep_text, &ep, NULL, 0), 0);
    for (size_t i = 0; i < n; i++)
        rcpts[i].addr = to[i];
    struct smtp_envelope e = {.from = "sender@a.test", .rcpts = rcpts, .nrcpt = n};
    const char *msg = "Subject: t\r\n\r\nhello\r\n.dot\r\n";
    lmtp_deliver(&ep, "mx.test", 5000, &e, msg, strlen(msg), res, info, sizeof(info));
}

static char *unix_ep(void)
{
    static char s[200];
    snprintf(s, sizeof(s), "unix:%s", srv.path);
    return s;
}

static char *tcp_ep(void)
{
    static char s[64];
    snprintf(s, sizeof(s), "127.0.0.1:%s", srv.port);
    return s;
}

/* ---- the endpoint syntax -------------------------------------------------------------- */

static void test_endpoint_parse(void **state)
{
    (void)state;
    struct lmtp_endpoint ep;
    char why[256], out[300];

    assert_int_equal(lmtp_endpoint_parse("unix:/run/dovecot/lmtp", &ep, why, sizeof(why)), 0);
    assert_true(ep.is_unix);
    assert_string_equal(ep.path, "/run/dovecot/lmtp");
    lmtp_endpoint_format(&ep, out, sizeof(out));
    assert_string_equal(out, "unix:/run/dovecot/lmtp");

    assert_int_equal(lmtp_endpoint_parse("inet:mail.example.org:2424", &ep, why, sizeof(why)), 0);
    assert_false(ep.is_unix);
    assert_string_equal(ep.host, "mail.example.org");
    assert_string_equal(ep.addr, "mail.example.org");
    assert_string_equal(ep.port, "2424");

    assert_int_equal(lmtp_endpoint_parse("127.0.0.1", &ep, why, sizeof(why)), 0);
    assert_string_equal(ep.port, "24"); /* LMTP's usual port */

    assert_int_equal(lmtp_endpoint_parse("[::1]:24", &ep, why, sizeof(why)), 0);
    assert_string_equal(ep.host, "[::1]");
    assert_string_equal(ep.addr, "::1");
    lmtp_endpoint_format(&ep, out, sizeof(out));
    assert_string_equal(out, "[::1]:24");

    static const char *const bad[] = {
        "",
        "unix:",
        "unix:relative/path",
        "unix:/x\n/y",
        "::1:24",
        "[::1",
        "[::1]x",
        "[zz]:24",
        "host:0",
        "host:65536",
        "host:",
        "host:24x",
        "-host:24",
        "ho st:24",
        "host;rm:24",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = '\0';
        assert_int_equal(lmtp_endpoint_parse(bad[i], &ep, why, sizeof(why)), -1);
        assert_true(why[0] != '\0');
    }
    assert_int_equal(lmtp_endpoint_parse(NULL, &ep, NULL, 0), -1);
    char longpath[200] = "unix:/"; /* longer than a unix socket address holds */
    memset(longpath + 6, 'a', 150);
    longpath[156] = '\0';
    assert_int_equal(lmtp_endpoint_parse(longpath, &ep, why, sizeof(why)), -1);
}

/* ---- the dialogue ------------------------------------------------------------------------ */

/* quota (452 after data), bad (550 at RCPT), ok (250), reject (550 after data), ok2 (250):
 * each gets its own reply, the one refused at RCPT is skipped in the mapping. */
static void check_mixed(const char *ep)
{
    static const char *const to[] = {"quota@x.test", "bad@x.test", "ok@x.test", "reject@x.test",
                                     "ok2@x.test"};
    struct rcpt_result res[5];
    char log[LOG_MAX];

    deliver(ep, to, 5, res);
    assert_int_equal(res[0].cls, RESULT_TEMP);
    assert_int_equal(res[0].code, 452);
    assert_string_equal(res[0].status, "4.2.2");
    assert_non_null(strstr(res[0].text, "Quota exceeded"));
    assert_int_equal(res[1].cls, RESULT_PERM);
    assert_int_equal(res[1].code, 550);
    assert_string_equal(res[1].status, "5.1.1");
    assert_int_equal(res[2].cls, RESULT_OK);
    assert_int_equal(res[3].cls, RESULT_PERM);
    assert_int_equal(res[3].code, 550);
    assert_string_equal(res[3].status, "5.7.1");
    assert_non_null(strstr(res[3].text, "reject@"));
    assert_int_equal(res[4].cls, RESULT_OK);
    assert_int_equal(srv.messages, 1);
    assert_int_equal(srv.connects, 1);

    srv_logcopy(log, sizeof(log));
    assert_non_null(strstr(log, "LHLO mx.test\n"));
    assert_null(strstr(log, "EHLO"));
    assert_null(strstr(log, "HELO"));
    assert_non_null(strstr(log, "MAIL FROM:<sender@a.test>\n"));
    assert_null(strstr(log, "NOTIFY=")); /* final delivery: no DSN parameters */
}

static void test_mixed_unix_pipelined(void **state)
{
    (void)state;
    check_mixed(unix_ep());
}

static void test_mixed_unix_not_pipelined(void **state)
{
    (void)state;
    set_lhlo(LHLO_PLAIN);
    check_mixed(unix_ep());
}

static void test_mixed_tcp(void **state)
{
    (void)state;
    check_mixed(tcp_ep());
}

/* The kept connection is used again for the next message (RSET not needed: the
 * transaction ended), and a second message gets its own replies. */
static void test_connection_reused(void **state)
{
    (void)state;
    static const char *const a[] = {"ok@x.test"}, *const b[] = {"reject@x.test", "ok@x.test"};
    struct rcpt_result res[2];
    deliver(unix_ep(), a, 1, res);
    assert_int_equal(res[0].cls, RESULT_OK);
    deliver(unix_ep(), b, 2, res);
    assert_int_equal(res[0].cls, RESULT_PERM);
    assert_int_equal(res[1].cls, RESULT_OK);
    assert_int_equal(srv.connects, 1);
    assert_int_equal(srv.messages, 2);
}

/* Lost after the first data reply: ok keeps its 250, the others are deferred,
 * and the message is not sent again. */
static void test_drop_after_first_reply(void **state)
{
    (void)state;
    static const char *const to[] = {"ok@x.test", "ok2@x.test", "ok3@x.test"};
    struct rcpt_result res[3];
    srv.drop_after = 1;
    deliver(unix_ep(), to, 3, res);
    assert_int_equal(res[0].cls, RESULT_OK);
    assert_int_equal(res[1].cls, RESULT_TEMP);
    assert_int_equal(res[2].cls, RESULT_TEMP);
    assert_string_equal(res[1].status, "4.4.2");
    assert_int_equal(srv.messages, 1);
    assert_int_equal(srv.connects, 1);
}

/* Lost before any data reply: sent again on a new connection (as SMTP would). */
static void test_drop_before_first_reply(void **state)
{
    (void)state;
    static const char *const to[] = {"ok@x.test", "quota@x.test"};
    struct rcpt_result res[2];
    srv.drop_after = 0;
    deliver(unix_ep(), to, 2, res);
    assert_int_equal(res[0].cls, RESULT_OK);
    assert_int_equal(res[1].cls, RESULT_TEMP);
    assert_int_equal(res[1].code, 452);
    assert_int_equal(srv.messages, 2);
    assert_int_equal(srv.connects, 2);
}

/* Every recipient refused at RCPT: no DATA. */
static void test_all_refused_no_data(void **state)
{
    (void)state;
    static const char *const to[] = {"bad@x.test", "bad@y.test"};
    struct rcpt_result res[2];
    char log[LOG_MAX];
    deliver(unix_ep(), to, 2, res);
    assert_int_equal(res[0].cls, RESULT_PERM);
    assert_int_equal(res[1].cls, RESULT_PERM);
    assert_int_equal(srv.messages, 0);
    srv_logcopy(log, sizeof(log));
    /* pipelined: DATA goes with the RCPTs and gets its 503; nothing is sent after it */
    assert_null(strstr(log, "\n.\n"));
}

/* A server that says 354 although it accepted no recipient: the client ends the
 * empty data and waits for no reply (LMTP: one per accepted recipient, so none);
 * the connection stays in step for the next message. */
static void test_354_without_recipients(void **state)
{
    (void)state;
    static const char *const bad[] = {"bad@x.test"}, *const ok[] = {"ok@x.test"};
    struct rcpt_result res[1];
    srv.data_354 = 1;
    deliver(unix_ep(), bad, 1, res);
    assert_int_equal(res[0].cls, RESULT_PERM);
    srv.data_354 = 0;
    deliver(unix_ep(), ok, 1, res);
    assert_int_equal(res[0].cls, RESULT_OK);
    assert_int_equal(srv.connects, 1);
}

/* LHLO refused: no HELO or EHLO fall-back; every recipient gets the refusal. */
static void test_lhlo_refused(void **state)
{
    (void)state;
    static const char *const to[] = {"ok@x.test"};
    struct rcpt_result res[1];
    char log[LOG_MAX];
    set_lhlo(NULL);
    deliver(unix_ep(), to, 1, res);
    assert_int_equal(res[0].cls, RESULT_PERM);
    assert_int_equal(res[0].code, 500);
    srv_logcopy(log, sizeof(log));
    assert_null(strstr(log, "HELO"));
    assert_null(strstr(log, "MAIL"));
}

/* No socket there: every recipient deferred with 4.4.1, and the text (which may
 * reach a sender once the message expires) does not name the path. */
static void test_no_socket(void **state)
{
    (void)state;
    static const char *const to[] = {"ok@x.test", "ok2@x.test"};
    struct rcpt_result res[2];
    char ep[200];
    snprintf(ep, sizeof(ep), "unix:%s/nothing-here", srv.dir);
    deliver(ep, to, 2, res);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(res[i].cls, RESULT_TEMP);
        assert_string_equal(res[i].status, "4.4.1");
        assert_null(strstr(res[i].text, srv.dir));
    }
    assert_int_equal(srv.connects, 0);
}

/* ---- the courier ------------------------------------------------------------------------ */

static void courier_run(const char *arg, struct rcpt_result *res, struct env_rcpt *r, size_t n,
                        char *info, size_t infosize)
{
    struct envelope env;
    const struct env_rcpt *list[4];
    struct remote_conf rc = {.timeout_ms = 5000};
    memset(&env, 0, sizeof(env));
    env.sender = (char *)"s@a.test";
    for (size_t i = 0; i < n; i++)
        list[i] = &r[i];
    const char *msg = "Subject: c\r\n\r\nbody\r\n";
    struct courier_job j = {.env = &env,
                            .rcpts = list,
                            .n = n,
                            .arg = arg,
                            .msg = msg,
                            .len = strlen(msg),
                            .hostname = "mx.test",
                            .remote = &rc,
                            .info = info,
                            .infosize = infosize};
    assert_string_equal(courier_table[COURIER_LMTP]->name, "lmtp");
    courier_table[COURIER_LMTP]->deliver(&j, res);
}

static void test_courier(void **state)
{
    (void)state;
    struct env_rcpt r[3];
    struct rcpt_result res[3];
    char info[300];
    memset(r, 0, sizeof(r));
    r[0].addr = (char *)"ok@x.test";
    r[1].addr = (char *)"bad@x.test";
    r[2].addr = (char *)"quota@x.test";
    courier_run(unix_ep(), res, r, 3, info, sizeof(info));
    assert_string_equal(info, unix_ep()); /* the endpoint, for the log line */
    assert_int_equal(res[0].cls, RESULT_OK);
    assert_int_equal(res[1].cls, RESULT_PERM);
    assert_int_equal(res[2].cls, RESULT_TEMP);

    courier_run("unix:relative", res, r, 3, info, sizeof(info));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(res[i].cls, RESULT_TEMP);
        assert_string_equal(res[i].status, "4.3.5");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoint_parse),
        cmocka_unit_test_setup(test_mixed_unix_pipelined, setup),
        cmocka_unit_test_setup(test_mixed_unix_not_pipelined, setup),
        cmocka_unit_test_setup(test_mixed_tcp, setup),
        cmocka_unit_test_setup(test_connection_reused, setup),
        cmocka_unit_test_setup(test_drop_after_first_reply, setup),
        cmocka_unit_test_setup(test_drop_before_first_reply, setup),
        cmocka_unit_test_setup(test_all_refused_no_data, setup),
        cmocka_unit_test_setup(test_354_without_recipients, setup),
        cmocka_unit_test_setup(test_lhlo_refused, setup),
        cmocka_unit_test_setup(test_no_socket, setup),
        cmocka_unit_test_setup(test_courier, setup),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
