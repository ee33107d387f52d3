/*
 * client.c - the SMTP client (see client.h).
 *
 * Structure: a connection layer (non-blocking socket or OpenSSL on it,
 * every wait a poll() against a deadline), a reply reader (line reader +
 * reply parser from core), the session set-up (greeting, EHLO/HELO,
 * STARTTLS, AUTH) and one transaction per message (MAIL, RCPT..., DATA,
 * body, end-of-data; pipelined when the server offers PIPELINING).  Lines over 998
 * octets are broken on the way out (core/linebreak.h), except over LMTP.
 *
 * Every failure is classified once: a connection-level failure (EOF,
 * reset, timeout, malformed reply, 421) is recorded in c->err, closes the
 * connection and sends the message again after a backoff; any other
 * 4xx/5xx, or a local refusal, is the recipients' struct rcpt_result (for
 * the whole message: c->fail).  What smtp_client_send() checks once per
 * message (addresses, 8-bit, UTF-8, which ENVID / ORCPT values may go on
 * the wire) is kept in a struct client_msg for all its attempts.  The only
 * state carried between messages is the open connection and whether it
 * needs an RSET.
 */
#include "smtp/client.h"

#include <errno.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/address.h"
#include "core/backoff.h"
#include "core/base64.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/data.h"
#include "core/line.h"
#include "core/linebreak.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/reply.h"

#define CLIENT_LINE_MAX 1024 /* replies: RFC 5321 says 512; tolerate a little more */
#define CLIENT_RBUF 16384
#define CLIENT_CMD_MAX 1024 /* MAIL / RCPT with every parameter (ORCPT: 500, RFC 3461 4) */

/* What the server's EHLO offered: enum esmtp_ext bits (core/command.h) and these. */
enum client_ext {
    CLIENT_EXT_PIPELINING = 1 << 8,
    CLIENT_EXT_STARTTLS = 1 << 9,
};

/* What a step of the dialogue came to. */
enum client_rc {
    RC_OK,
    RC_RETRY, /* connection-level failure (c->err): reconnect and resend */
    RC_FAIL,  /* every recipient still on the wire gets c->fail */
};

struct smtp_client {
    struct smtp_client_conf conf;
    int fd;
    SSL_CTX *ssl_ctx;
    SSL *ssl;
    bool connected, dirty, no_tls_next;
    unsigned ext; /* enum esmtp_ext | enum client_ext */
    uint64_t size_max;
    bool auth_plain, auth_login;
    char rbuf[CLIENT_RBUF];
    size_t rpos, rlen;
    struct line_reader lr;
    struct buf wbuf;
    struct rcpt_result err;  /* the last connection-level error (always TEMP) */
    struct rcpt_result fail; /* the result of a failed session or transaction */
    char tls_info[96];
    char tls_cert[96]; /* the certificate's check even when not enforced: "valid" or why not */
    struct smtp_client_stats stats;
    uint64_t rng;
};

/* One recipient that goes on the wire. */
struct client_rcpt {
    size_t i;   /* index into the envelope's rcpts and the results */
    bool orcpt; /* its ORCPT is valid and goes along when the server offers DSN */
};

/* One message, as smtp_client_send() checked it once for all its attempts. */
struct client_msg {
    const struct smtp_envelope *e;
    const char *body;
    size_t len;
    bool need8, needutf8;
    bool envid; /* e->envid is valid and goes along when the server offers DSN */
    struct client_rcpt *rcpts;
    size_t nrcpt;
    struct rcpt_result *res;
};

static void client_vset(struct rcpt_result *r, enum result_class cls, const char *status,
                        const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));
static void client_vset(struct rcpt_result *r, enum result_class cls, const char *status,
                        const char *fmt, va_list ap)
{
    char tmp[RESULT_TEXT_MAX * 2];
    if (vsnprintf(tmp, sizeof(tmp), fmt, ap) < 0)
        tmp[0] = '\0';
    result_fail(r, cls, status, "%s", tmp); /* cleans: remote text is never trusted */
}

/* Record a connection-level error (the reason to reconnect). */
static void client_errf(struct smtp_client *c, const char *status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void client_errf(struct smtp_client *c, const char *status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    client_vset(&c->err, RESULT_TEMP, status, fmt, ap);
    va_end(ap);
}

/* Record a local reason why the whole message fails (no reply code). */
static enum client_rc client_fail(struct smtp_client *c, enum result_class cls, const char *status,
                                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static enum client_rc client_fail(struct smtp_client *c, enum result_class cls, const char *status,
                                  const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    client_vset(&c->fail, cls, status, fmt, ap);
    va_end(ap);
    return RC_FAIL;
}

/*
 * res := the server's reply r: class OK for 2xx, PERM for 5xx, else TEMP;
 * code the reply code; status the enhanced code of the reply, else "4.0.0"
 * for 4xx, "5.0.0" for 5xx, "4.5.0" for anything else, "" when OK; text the
 * whole reply on one line, followed by " (context)" when context is given.
 */
static void client_reply_result(struct rcpt_result *res, const struct reply *r, const char *context)
{
    enum result_class cls = r->code < 300 ? RESULT_OK : r->code >= 500 ? RESULT_PERM : RESULT_TEMP;
    const char *status = cls == RESULT_OK ? ""
                         : r->enh[0]      ? r->enh
                         : r->code >= 500 ? "5.0.0"
                         : r->code >= 400 ? "4.0.0"
                                          : "4.5.0";
    result_fail(res, cls, status, "%d%s%s %s%s%s%s", r->code, r->enh[0] ? " " : "", r->enh, r->text,
                context ? " (" : "", context ? context : "", context ? ")" : "");
    res->code = r->code;
}

/* As client_reply_result() where only a refusal belongs: a positive reply there
 * is a protocol error (TEMP 4.5.0). */
static void client_refusal(struct rcpt_result *res, const struct reply *r, const char *context)
{
    client_reply_result(res, r, context);
    if (res->cls == RESULT_OK) {
        res->cls = RESULT_TEMP;
        snprintf(res->status, sizeof(res->status), "4.5.0");
    }
}

/* The session or the whole transaction failed on the reply r. */
static enum client_rc client_fail_reply(struct smtp_client *c, const struct reply *r,
                                        const char *context)
{
    client_refusal(&c->fail, r, context);
    return RC_FAIL;
}

/* ---- connection layer ------------------------------------------------------ */

static void conn_close(struct smtp_client *c)
{
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->connected = false;
    c->dirty = false;
    c->rpos = c->rlen = 0;
}

static int conn_wait(struct smtp_client *c, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t now = clock_mono_ms();
        if (now >= deadline) {
            client_errf(c, "4.4.2", "timeout");
            return -1;
        }
        struct pollfd p = {.fd = c->fd, .events = events};
        int r = poll(&p, 1, (int)(deadline - now));
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR) {
            client_errf(c, "4.4.2", "poll: %s", strerror(errno));
            return -1;
        }
    }
}

/* For an SSL_ call that returned r <= 0: wait as OpenSSL asks, or fail. */
static int conn_ssl_wait(struct smtp_client *c, int r, uint64_t deadline, const char *what)
{
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return conn_wait(c, POLLIN, deadline);
    if (e == SSL_ERROR_WANT_WRITE)
        return conn_wait(c, POLLOUT, deadline);
    if (e == SSL_ERROR_ZERO_RETURN)
        client_errf(c, "4.4.2", "%s: connection closed by the server", what);
    else if (e == SSL_ERROR_SYSCALL)
        client_errf(c, "4.4.2", "%s: %s", what,
                    errno ? strerror(errno) : "connection closed by the server");
    else
        client_errf(c, "4.4.2", "%s: TLS error: %s", what,
                    ERR_reason_error_string(ERR_peek_last_error())
                        ? ERR_reason_error_string(ERR_peek_last_error())
                        : "unknown");
    ERR_clear_error();
    return -1;
}

static int conn_write(struct smtp_client *c, const char *p, size_t n, unsigned timeout_ms)
{
    uint64_t deadline = clock_mono_ms() + timeout_ms;
    metrics_add(M_CLIENT_SENT_BYTES, n, NULL, NULL);
    while (n > 0) {
        if (c->ssl) {
            int w = SSL_write(c->ssl, p, n > 1 << 30 ? 1 << 30 : (int)n);
            if (w > 0) {
                p += w;
                n -= (size_t)w;
            } else if (conn_ssl_wait(c, w, deadline, "write") < 0) {
                return -1;
            }
            continue;
        }
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (conn_wait(c, POLLOUT, deadline) < 0)
                return -1;
        } else if (w < 0 && errno != EINTR) {
            client_errf(c, "4.4.2", "write: %s", strerror(errno));
            return -1;
        }
    }
    return 0;
}

static int conn_fill(struct smtp_client *c, uint64_t deadline)
{
    if (c->rpos > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    for (;;) {
        size_t room = sizeof(c->rbuf) - c->rlen;
        if (c->ssl) {
            int r = SSL_read(c->ssl, c->rbuf + c->rlen, (int)room);
            if (r > 0) {
                c->rlen += (size_t)r;
                return 0;
            }
            if (conn_ssl_wait(c, r, deadline, "read") < 0)
                return -1;
            continue;
        }
        ssize_t r = recv(c->fd, c->rbuf + c->rlen, room, 0);
        if (r > 0) {
            c->rlen += (size_t)r;
            return 0;
        }
        if (r == 0) {
            client_errf(c, "4.4.2", "connection closed by the server");
            return -1;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (conn_wait(c, POLLIN, deadline) < 0)
                return -1;
        } else if (errno != EINTR) {
            client_errf(c, "4.4.2", "read: %s", strerror(errno));
            return -1;
        }
    }
}

/* Read one whole reply.  -1: connection-level failure (c->err says why). */
static int conn_reply(struct smtp_client *c, struct reply *out, unsigned timeout_ms)
{
    uint64_t deadline = clock_mono_ms() + timeout_ms;
    struct reply_parser rp;
    reply_parser_init(&rp);
    for (;;) {
        size_t linelen, consumed;
        enum line_status st =
            line_reader_next(&c->lr, c->rbuf + c->rpos, c->rlen - c->rpos, &linelen, &consumed);
        if (st == LINE_TOO_LONG) {
            client_errf(c, "4.5.0", "reply line longer than %d octets", CLIENT_LINE_MAX);
            return -1;
        }
        if (st == LINE_OK) {
            enum reply_status rs = reply_parser_line(&rp, c->rbuf + c->rpos, linelen);
            c->rpos += consumed;
            if (rs == REPLY_ERROR) {
                client_errf(c, "4.5.0", "malformed reply: %s", rp.error ? rp.error : "?");
                return -1;
            }
            if (rs == REPLY_DONE) {
                *out = rp.r;
                if (out->code == 421) {
                    c->stats.replies_421++;
                    client_reply_result(&c->err, out, NULL);
                }
                return 0;
            }
            continue;
        }
        c->rpos += consumed;
        if (conn_fill(c, deadline) < 0)
            return -1;
    }
}

/* Connect to the unix socket conf.unix_path (LMTP to a local server). */
static int conn_unix(struct smtp_client *c)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(c->conf.unix_path);
    if (n == 0 || n >= sizeof(sa.sun_path)) {
        client_errf(c, "4.3.5", "unix socket path of %zu octets: not usable", n);
        return -1;
    }
    memcpy(sa.sun_path, c->conf.unix_path, n + 1);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        client_errf(c, "4.3.0", "socket: %s", strerror(errno));
        return -1;
    }
    /* a unix connect completes at once or fails (EAGAIN: the backlog is full) */
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        /* no path: a text that may reach a sender names none (core/result.h) */
        client_errf(c, "4.4.1", "connect to the unix socket: %s", strerror(errno));
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    c->stats.connects++;
    return 0;
}

static int conn_tcp(struct smtp_client *c)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *ai;
    char host[256];
    const char *h = c->conf.host;
    size_t hl = strlen(h);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']' && hl - 2 < sizeof(host)) {
        memcpy(host, h + 1, hl - 2);
        host[hl - 2] = '\0';
        h = host;
    }
    int gai = getaddrinfo(h, c->conf.port, &hints, &res);
    if (gai != 0) {
        client_errf(c, "4.4.3", "cannot resolve %s: %s", c->conf.host, gai_strerror(gai));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        c->fd =
            socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (c->fd < 0) {
            client_errf(c, "4.3.0", "socket: %s", strerror(errno));
            continue;
        }
        int soerr = 0;
        if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            socklen_t sl = sizeof(soerr);
            if (errno != EINPROGRESS)
                soerr = errno;
            else if (conn_wait(c, POLLOUT, clock_mono_ms() + c->conf.connect_ms) < 0)
                soerr = ETIMEDOUT;
            else if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
                soerr = errno;
        }
        if (soerr == 0) {
            freeaddrinfo(res);
            c->stats.connects++;
            return 0;
        }
        client_errf(c, "4.4.1", "connect to %s:%s: %s", c->conf.host, c->conf.port,
                    strerror(soerr));
        close(c->fd);
        c->fd = -1;
    }
    freeaddrinfo(res);
    return -1;
}

static int conn_tls(struct smtp_client *c, bool verify)
{
    uint64_t deadline = clock_mono_ms() + c->conf.command_ms;
    const char *name = c->conf.tls_name ? c->conf.tls_name : c->conf.host;
    c->ssl = SSL_new(c->ssl_ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
        client_errf(c, "4.7.5", "cannot set up TLS");
        return -1;
    }
    if (name[0] != '[' && SSL_set_tlsext_host_name(c->ssl, name) != 1) {
        client_errf(c, "4.7.5", "cannot set the TLS server name");
        return -1;
    }
    if (verify) {
        SSL_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
        if (SSL_set1_host(c->ssl, name) != 1) {
            client_errf(c, "4.7.5", "cannot set the TLS name to verify");
            return -1;
        }
    } else {
        SSL_set_verify(c->ssl, SSL_VERIFY_NONE, NULL);
        if (name[0] != '[')
            (void)SSL_set1_host(c->ssl, name); /* checked, not enforced: tls_cert */
    }
    for (;;) {
        int r = SSL_connect(c->ssl);
        if (r == 1)
            break;
        long vr = SSL_get_verify_result(c->ssl);
        if (verify && vr != X509_V_OK) {
            client_errf(c, "4.7.5", "TLS certificate of %s not verified: %s", name,
                        X509_verify_cert_error_string(vr));
            ERR_clear_error();
            return -1;
        }
        if (conn_ssl_wait(c, r, deadline, "TLS handshake") < 0) {
            snprintf(c->err.status, sizeof(c->err.status), "4.7.5");
            return -1;
        }
    }
    snprintf(c->tls_info, sizeof(c->tls_info), "%s %s", SSL_get_version(c->ssl),
             verify ? "verified" : "not verified");
    long cv = SSL_get_verify_result(c->ssl);
    snprintf(c->tls_cert, sizeof(c->tls_cert), "%s",
             cv == X509_V_OK ? "valid" : X509_verify_cert_error_string(cv));
    return 0;
}

/* ---- session set-up ---------------------------------------------------------- */

static int client_cmd(struct smtp_client *c, const char *cmd, struct reply *r, unsigned timeout)
{
    size_t n = strlen(cmd);
    if (conn_write(c, cmd, n, c->conf.command_ms) < 0 || conn_reply(c, r, timeout) < 0)
        return -1;
    return 0;
}

static void client_parse_ehlo(struct smtp_client *c, const struct reply *r)
{
    const char *p = r->text;
    c->ext = 0;
    c->size_max = 0;
    c->auth_plain = c->auth_login = false;
    p = strchr(p, '\n'); /* the first line is the greeting */
    while (p) {
        p++;
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        char kw[128];
        if (n >= sizeof(kw))
            n = sizeof(kw) - 1;
        memcpy(kw, p, n);
        kw[n] = '\0';
        if (strcasecmp(kw, "PIPELINING") == 0)
            c->ext |= CLIENT_EXT_PIPELINING;
        else if (strncasecmp(kw, "SIZE", 4) == 0 && (kw[4] == ' ' || kw[4] == '\0')) {
            c->ext |= EXT_SIZE;
            c->size_max = strtoull(kw + 4, NULL, 10);
        } else if (strcasecmp(kw, "8BITMIME") == 0)
            c->ext |= EXT_8BITMIME;
        else if (strcasecmp(kw, "SMTPUTF8") == 0)
            c->ext |= EXT_SMTPUTF8;
        else if (strcasecmp(kw, "DSN") == 0)
            c->ext |= EXT_DSN;
        else if (strcasecmp(kw, "STARTTLS") == 0)
            c->ext |= CLIENT_EXT_STARTTLS;
        else if (strncasecmp(kw, "AUTH ", 5) == 0) {
            c->ext |= EXT_AUTH;
            char *save = NULL;
            for (char *t = strtok_r(kw + 5, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
                if (strcasecmp(t, "PLAIN") == 0)
                    c->auth_plain = true;
                else if (strcasecmp(t, "LOGIN") == 0)
                    c->auth_login = true;
            }
        }
        p = eol;
    }
}

/* EHLO, or HELO when EHLO is refused; LMTP: LHLO. */
static enum client_rc client_hello(struct smtp_client *c)
{
    char cmd[300];
    struct reply r;
    snprintf(cmd, sizeof(cmd), "%s %s\r\n", c->conf.lmtp ? "LHLO" : "EHLO", c->conf.helo_name);
    if (client_cmd(c, cmd, &r, c->conf.command_ms) < 0 || r.code == 421)
        return RC_RETRY;
    if (r.code == 250) {
        client_parse_ehlo(c, &r);
        return RC_OK;
    }
    if (c->conf.lmtp) /* RFC 2033 4.1: no HELO / EHLO in LMTP */
        return client_fail_reply(c, &r, "in reply to LHLO");
    snprintf(cmd, sizeof(cmd), "HELO %s\r\n", c->conf.helo_name);
    if (client_cmd(c, cmd, &r, c->conf.command_ms) < 0 || r.code == 421)
        return RC_RETRY;
    if (r.code != 250)
        return client_fail_reply(c, &r, "in reply to HELO");
    c->ext = 0;
    return RC_OK;
}

static enum client_rc client_auth(struct smtp_client *c)
{
    const char *u = c->conf.auth_user, *pw = c->conf.auth_pass ? c->conf.auth_pass : "";
    char raw[600], b64[900], cmd[1000];
    struct reply r;
    size_t ul = strlen(u), pl = strlen(pw);

    if (!c->ssl && !c->conf.auth_plaintext)
        return client_fail(c, RESULT_PERM, "5.7.8",
                           "refusing to send a password over an unencrypted connection");
    if (!(c->ext & EXT_AUTH) || (!c->auth_plain && !c->auth_login))
        return client_fail(c, RESULT_PERM, "5.7.8", "server offers no AUTH PLAIN or LOGIN");
    if (ul + pl + 2 > sizeof(raw))
        return client_fail(c, RESULT_PERM, "5.7.8", "user name or password too long");
    if (c->auth_plain) {
        raw[0] = '\0';
        memcpy(raw + 1, u, ul);
        raw[1 + ul] = '\0';
        memcpy(raw + 2 + ul, pw, pl);
        base64_encode(raw, ul + pl + 2, b64, sizeof(b64));
        snprintf(cmd, sizeof(cmd), "AUTH PLAIN %s\r\n", b64);
        if (client_cmd(c, cmd, &r, c->conf.command_ms) < 0)
            return RC_RETRY;
    } else {
        base64_encode(u, ul, b64, sizeof(b64));
        if (client_cmd(c, "AUTH LOGIN\r\n", &r, c->conf.command_ms) < 0)
            return RC_RETRY;
        if (r.code == 334) {
            snprintf(cmd, sizeof(cmd), "%s\r\n", b64);
            if (client_cmd(c, cmd, &r, c->conf.command_ms) < 0)
                return RC_RETRY;
        }
        if (r.code == 334) {
            base64_encode(pw, pl, b64, sizeof(b64));
            snprintf(cmd, sizeof(cmd), "%s\r\n", b64);
            if (client_cmd(c, cmd, &r, c->conf.command_ms) < 0)
                return RC_RETRY;
        }
    }
    explicit_bzero(raw, sizeof(raw));
    explicit_bzero(b64, sizeof(b64));
    explicit_bzero(cmd, sizeof(cmd));
    if (r.code == 235)
        return RC_OK;
    if (r.code == 421)
        return RC_RETRY;
    return client_fail_reply(c, &r, "in reply to AUTH");
}

static enum client_rc client_connect(struct smtp_client *c)
{
    struct reply r;
    enum client_rc rc;
    bool verify = c->conf.tls_verify;

    snprintf(c->tls_info, sizeof(c->tls_info), "none");
    snprintf(c->tls_cert, sizeof(c->tls_cert), "no TLS");
    line_reader_init(&c->lr, CLIENT_LINE_MAX);
    if ((c->conf.unix_path ? conn_unix(c) : conn_tcp(c)) < 0) {
        metrics_inc(M_CLIENT_CONNECT_FAILS, NULL, NULL);
        return RC_RETRY;
    }
    c->connected = true;
    if (c->conf.tls == SMTP_TLS_IMPLICIT && conn_tls(c, verify) < 0)
        return RC_RETRY;
    if (conn_reply(c, &r, c->conf.greeting_ms) < 0 || r.code == 421)
        return RC_RETRY; /* conn_reply() recorded the 421 */
    if (r.code != 220)
        return client_fail_reply(c, &r, "greeting");
    if ((rc = client_hello(c)) != RC_OK)
        return rc;
    bool want_tls = !c->ssl && (c->conf.tls == SMTP_TLS_REQUIRED ||
                                (c->conf.tls == SMTP_TLS_OPPORTUNISTIC && !c->no_tls_next));
    if (want_tls && !(c->ext & CLIENT_EXT_STARTTLS)) {
        if (c->conf.tls == SMTP_TLS_REQUIRED)
            return client_fail(c, RESULT_TEMP, "4.7.4",
                               "TLS required but the server has no STARTTLS");
        want_tls = false;
    }
    if (want_tls) {
        if (client_cmd(c, "STARTTLS\r\n", &r, c->conf.command_ms) < 0 || r.code == 421)
            return RC_RETRY;
        if (r.code != 220) {
            if (c->conf.tls == SMTP_TLS_REQUIRED) {
                client_fail_reply(c, &r, "in reply to STARTTLS");
                return client_fail(c, RESULT_TEMP, "4.7.0", "TLS required: %s", c->fail.text);
            }
        } else {
            if (c->rpos != c->rlen) {
                client_errf(c, "4.7.0", "server sent data after its STARTTLS reply");
                return RC_RETRY;
            }
            if (conn_tls(c, verify) < 0) {
                if (c->conf.tls == SMTP_TLS_OPPORTUNISTIC) {
                    log_warn("TLS with %s failed (%s); next attempt in clear", c->conf.host,
                             c->err.text);
                    c->no_tls_next = true;
                }
                return RC_RETRY;
            }
            if ((rc = client_hello(c)) != RC_OK)
                return rc;
        }
    }
    if (c->conf.auth_user && (rc = client_auth(c)) != RC_OK)
        return rc;
    metrics_inc(M_CLIENT_CONNECTIONS, c->ssl ? "yes" : "no", NULL);
    return RC_OK;
}

/* ---- one transaction -------------------------------------------------------------- */

static bool has_8bit(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] >= 0x80)
            return true;
    return false;
}

/* Append to b.  smtp_client_send() bounds every part of a command (addresses,
 * ENVID, ORCPT), so a command longer than CLIENT_CMD_MAX is a bug. */
static void client_put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void client_put(struct buf *b, const char *fmt, ...)
{
    char tmp[CLIENT_CMD_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        abort();
    buf_append(b, tmp, (size_t)n);
}

/* The NOTIFY= value for enum dsn_notify bits (NEVER wins over the others);
 * false when there is none. */
static bool client_notify(unsigned bits, char *out, size_t size)
{
    static const struct {
        unsigned bit;
        const char *name;
    } kw[] = {{NOTIFY_SUCCESS, "SUCCESS"}, {NOTIFY_FAILURE, "FAILURE"}, {NOTIFY_DELAY, "DELAY"}};
    size_t n = 0;

    out[0] = '\0';
    if (bits & NOTIFY_NEVER) {
        snprintf(out, size, "NEVER");
        return true;
    }
    for (size_t k = 0; k < sizeof(kw) / sizeof(kw[0]); k++) {
        if (!(bits & kw[k].bit))
            continue;
        int w = snprintf(out + n, size - n, "%s%s", n ? "," : "", kw[k].name);
        if (w < 0 || (size_t)w >= size - n)
            abort(); /* out is too small: a bug */
        n += (size_t)w;
    }
    return n > 0;
}

/* MAIL FROM with SIZE, BODY, SMTPUTF8 and, when the server offers DSN, RET
 * and ENVID.  Returns whether a DSN parameter went along. */
static bool client_mail_cmd(struct smtp_client *c, const struct client_msg *m)
{
    const struct smtp_envelope *e = m->e;
    bool dsn = false;

    client_put(&c->wbuf, "MAIL FROM:<%s>", e->from ? e->from : "");
    if (c->ext & EXT_SIZE)
        client_put(&c->wbuf, " SIZE=%zu", m->len);
    if (m->need8)
        client_put(&c->wbuf, " BODY=8BITMIME");
    if (m->needutf8)
        client_put(&c->wbuf, " SMTPUTF8");
    if (c->ext & EXT_DSN) {
        if (e->ret == RET_FULL || e->ret == RET_HDRS) {
            client_put(&c->wbuf, " RET=%s", e->ret == RET_FULL ? "FULL" : "HDRS");
            dsn = true;
        }
        if (m->envid) {
            client_put(&c->wbuf, " ENVID=%s", e->envid);
            dsn = true;
        }
    }
    client_put(&c->wbuf, "\r\n");
    return dsn;
}

/* RCPT TO for m->rcpts[k] with, when the server offers DSN, NOTIFY and ORCPT.
 * Returns whether a DSN parameter went along. */
static bool client_rcpt_cmd(struct smtp_client *c, const struct client_msg *m, size_t k)
{
    const struct smtp_rcpt *r = &m->e->rcpts[m->rcpts[k].i];
    char notify[32];
    bool dsn = false;

    client_put(&c->wbuf, "RCPT TO:<%s>", r->addr);
    if (c->ext & EXT_DSN) {
        if (client_notify(r->notify, notify, sizeof(notify))) {
            client_put(&c->wbuf, " NOTIFY=%s", notify);
            dsn = true;
        }
        if (m->rcpts[k].orcpt) {
            client_put(&c->wbuf, " ORCPT=%s", r->orcpt);
            dsn = true;
        }
    }
    client_put(&c->wbuf, "\r\n");
    return dsn;
}

/*
 * LMTP after the end of data (RFC 2033 4.2): one reply for each recipient
 * whose RCPT was accepted, in RCPT order, each that recipient's alone (a 5xx
 * fails it, a 4xx defers it, neither touches the others).  A connection lost
 * (or a 421) before the first reply resends, as SMTP does; after it, the
 * recipients already answered keep their answer and the rest get the error
 * (transient, for a later attempt), and the connection is closed: resending
 * now could deliver twice to those answered.
 */
static enum client_rc client_lmtp_replies(struct smtp_client *c, const struct client_msg *m,
                                          bool dsn)
{
    size_t got = 0, ok = 0;
    for (size_t k = 0; k < m->nrcpt; k++) {
        struct rcpt_result *x = &m->res[m->rcpts[k].i];
        struct reply r;
        if (x->cls != RESULT_OK)
            continue; /* refused at RCPT: no reply for it */
        if (conn_reply(c, &r, c->conf.data_end_ms) < 0 || r.code == 421) {
            if (got == 0)
                return RC_RETRY;
            log_info("connection to %s lost after %zu of the LMTP replies (%s); the rest is "
                     "deferred",
                     c->conf.host, got, c->err.text);
            for (; k < m->nrcpt; k++)
                if (m->res[m->rcpts[k].i].cls == RESULT_OK)
                    m->res[m->rcpts[k].i] = c->err;
            conn_close(c);
            return RC_OK;
        }
        got++;
        if (r.code >= 300) {
            client_refusal(x, &r, NULL);
            continue;
        }
        client_reply_result(x, &r, NULL);
        x->dsn_passed = dsn;
        ok++;
    }
    c->dirty = false;
    if (ok)
        c->stats.successes++;
    return RC_OK;
}

static enum client_rc client_txn(struct smtp_client *c, const struct client_msg *m)
{
    struct reply r, mail;
    size_t accepted = 0;
    bool pipe = c->ext & CLIENT_EXT_PIPELINING, dsn;
    struct rcpt_result *res = m->res;

    if (c->dirty) {
        if (client_cmd(c, "RSET\r\n", &r, c->conf.command_ms) < 0 || r.code == 421)
            return RC_RETRY;
        c->dirty = false;
    }
    if (c->size_max && m->len > c->size_max)
        return client_fail(c, RESULT_PERM, "5.3.4",
                           "message of %zu octets exceeds the server's limit of %llu", m->len,
                           (unsigned long long)c->size_max);
    if (m->need8 && !(c->ext & EXT_8BITMIME))
        return client_fail(c, RESULT_PERM, "5.6.3", "server does not accept 8-bit data");
    if (m->needutf8 && !(c->ext & EXT_SMTPUTF8))
        return client_fail(c, RESULT_PERM, "5.6.7", "server does not accept UTF-8 addresses");

    c->stats.attempts++;
    c->wbuf.len = 0;
    dsn = client_mail_cmd(c, m);
    c->dirty = true;

    if (!pipe) {
        if (conn_write(c, c->wbuf.p, c->wbuf.len, c->conf.command_ms) < 0 ||
            conn_reply(c, &mail, c->conf.command_ms) < 0 || mail.code == 421)
            return RC_RETRY;
        if (mail.code >= 300)
            return client_fail_reply(c, &mail, "in reply to MAIL");
        for (size_t k = 0; k < m->nrcpt; k++) {
            c->wbuf.len = 0;
            dsn |= client_rcpt_cmd(c, m, k);
            if (conn_write(c, c->wbuf.p, c->wbuf.len, c->conf.command_ms) < 0 ||
                conn_reply(c, &r, c->conf.command_ms) < 0 || r.code == 421)
                return RC_RETRY;
            client_reply_result(&res[m->rcpts[k].i], &r, NULL);
            accepted += r.code < 300;
        }
        if (accepted == 0)
            return RC_OK;
        if (client_cmd(c, "DATA\r\n", &r, c->conf.data_init_ms) < 0 || r.code == 421)
            return RC_RETRY;
    } else {
        for (size_t k = 0; k < m->nrcpt; k++)
            dsn |= client_rcpt_cmd(c, m, k);
        buf_append(&c->wbuf, "DATA\r\n", 6);
        if (conn_write(c, c->wbuf.p, c->wbuf.len, c->conf.command_ms) < 0)
            return RC_RETRY;
        if (conn_reply(c, &mail, c->conf.command_ms) < 0 || mail.code == 421)
            return RC_RETRY;
        for (size_t k = 0; k < m->nrcpt; k++) {
            if (conn_reply(c, &r, c->conf.command_ms) < 0 || r.code == 421)
                return RC_RETRY;
            client_reply_result(&res[m->rcpts[k].i], &r, NULL);
            accepted += r.code < 300 && mail.code < 300;
        }
        if (conn_reply(c, &r, c->conf.data_init_ms) < 0 || r.code == 421)
            return RC_RETRY;
        if (r.code == 354 && accepted == 0) {
            /* cannot happen with a correct server; end the empty message to stay in step */
            struct reply end; /* LMTP: one reply per accepted recipient, so none */
            if (conn_write(c, ".\r\n", 3, c->conf.data_block_ms) < 0 ||
                (!c->conf.lmtp && conn_reply(c, &end, c->conf.data_end_ms) < 0))
                return RC_RETRY;
        }
        if (mail.code >= 300)
            return client_fail_reply(c, &mail, "in reply to MAIL");
        if (accepted == 0)
            return RC_OK;
    }
    if (r.code != 354) {
        for (size_t k = 0; k < m->nrcpt; k++)
            if (res[m->rcpts[k].i].cls == RESULT_OK)
                client_refusal(&res[m->rcpts[k].i], &r, "in reply to DATA");
        return RC_OK;
    }
    c->wbuf.len = 0;
    data_stuff(m->body, m->len, buf_emit, &c->wbuf);
    buf_append(&c->wbuf, ".\r\n", 3);
    if (c->conf.lmtp) {
        if (conn_write(c, c->wbuf.p, c->wbuf.len, c->conf.data_block_ms) < 0)
            return RC_RETRY;
        return client_lmtp_replies(c, m, dsn);
    }
    if (conn_write(c, c->wbuf.p, c->wbuf.len, c->conf.data_block_ms) < 0 ||
        conn_reply(c, &r, c->conf.data_end_ms) < 0 || r.code == 421)
        return RC_RETRY;
    c->dirty = false;
    for (size_t k = 0; k < m->nrcpt; k++) {
        struct rcpt_result *x = &res[m->rcpts[k].i];
        if (x->cls != RESULT_OK)
            continue;
        if (r.code >= 300) {
            client_refusal(x, &r, NULL);
            continue;
        }
        client_reply_result(x, &r, NULL);
        x->dsn_passed = dsn; /* the next hop offers DSN and answers for NOTIFY now */
    }
    if (r.code < 300)
        c->stats.successes++;
    return RC_OK;
}

/* xtext (RFC 3461 4) of 1..max octets; with utf8, valid UTF-8 may stand
 * for xchars too (RFC 6533, when the message goes with SMTPUTF8). */
static bool client_xtext_ok(const char *s, size_t max, bool utf8)
{
    char plain[ORCPT_MAX + 1], dec[ORCPT_MAX + 1];
    size_t len = strlen(s);

    if (len == 0 || len > max || len >= sizeof(plain) || (utf8 && !utf8_valid(s, len)))
        return false;
    for (size_t i = 0; i < len; i++) /* a UTF-8 octet stands in as an xchar */
        plain[i] = utf8 && (unsigned char)s[i] >= 0x80 ? 'u' : s[i];
    return xtext_decode(plain, len, dec, sizeof(dec)) >= 0;
}

/* ORCPT's addr-type ";" xtext (RFC 3461 4.2), at most ORCPT_MAX octets. */
static bool client_orcpt_ok(const char *s, bool utf8)
{
    size_t t = 0;

    while ((s[t] >= 'a' && s[t] <= 'z') || (s[t] >= 'A' && s[t] <= 'Z') ||
           (s[t] >= '0' && s[t] <= '9') || s[t] == '-')
        t++;
    return t > 0 && t + 1 < ORCPT_MAX && s[t] == ';' &&
           client_xtext_ok(s + t + 1, ORCPT_MAX - t - 1, utf8);
}

/*
 * What goes on the wire: refuse bad addresses (all recipients when the
 * sender is bad), note 8-bit and UTF-8, and which ENVID / ORCPT values are
 * valid xtext (the others are left out and logged).  The null sender is not
 * parsed: it has no address (and no UTF-8).
 */
static void client_msg_check(struct client_msg *m)
{
    const struct smtp_envelope *e = m->e;
    const char *from = e->from ? e->from : "";
    struct mailaddr a;
    int from_err = ADDR_OK;

    if (from[0]) {
        memset(&a, 0, sizeof(a));
        from_err = addr_parse_mailbox(from, strlen(from), ADDR_ALLOW_UTF8, &a);
        m->needutf8 = from_err == ADDR_OK && a.has_utf8;
    }
    for (size_t i = 0; i < e->nrcpt; i++) {
        const char *to = e->rcpts[i].addr;
        if (from_err != ADDR_OK) {
            result_fail(&m->res[i], RESULT_PERM, "5.1.7", "bad sender address: %s",
                        addr_strerror(from_err));
            continue;
        }
        memset(&a, 0, sizeof(a));
        int err = to ? addr_parse_mailbox(to, strlen(to), ADDR_ALLOW_UTF8, &a) : ADDR_ESYNTAX;
        if (err != ADDR_OK) {
            result_fail(&m->res[i], RESULT_PERM, "5.1.3", "bad recipient address: %s",
                        addr_strerror(err));
            continue;
        }
        m->needutf8 |= a.has_utf8;
        m->rcpts[m->nrcpt++].i = i;
    }
    if (m->nrcpt == 0)
        return;
    if (e->envid && e->envid[0]) {
        m->envid = client_xtext_ok(e->envid, ENVID_MAX, false);
        if (!m->envid)
            log_warn("message from <%s>: ENVID is not valid xtext; not passed on", from);
    }
    for (size_t k = 0; k < m->nrcpt; k++) {
        const struct smtp_rcpt *r = &e->rcpts[m->rcpts[k].i];
        if (!r->orcpt || !r->orcpt[0])
            continue;
        m->rcpts[k].orcpt = client_orcpt_ok(r->orcpt, m->needutf8);
        if (!m->rcpts[k].orcpt)
            log_warn("message from <%s> to <%s>: ORCPT is not valid xtext; not passed on", from,
                     r->addr);
    }
}

/* ---- public ------------------------------------------------------------------------- */

/*
 * TLS contexts shared by every client of the process, one per CA file (NULL:
 * the system's store).  Loading a CA bundle costs ~20 ms of CPU: a context
 * per client made every new connection pay it (and a delivery worker's
 * connection cache thrash on it).  A context is only read once set up, so
 * threads may share it; the cache keeps one reference for the life of the
 * process, and each client holds its own (SSL_CTX_up_ref).  A CA file that
 * changes on disk is read again after a restart.
 */
#define CLIENT_CTX_MAX 8

static struct {
    char *ca; /* NULL: the system's store */
    SSL_CTX *ctx;
} client_ctxs[CLIENT_CTX_MAX];
static pthread_mutex_t client_ctx_mu = PTHREAD_MUTEX_INITIALIZER;

static SSL_CTX *client_ssl_ctx_new(const char *ca)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        fatal("cannot create a TLS context");
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
        fatal("cannot set the minimum TLS version");
    if (ca) {
        if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
            log_warn("cannot load CA file %s", ca);
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        log_warn("cannot load the system's CA certificates");
    }
    return ctx;
}

/* A reference to the shared context for ca (the caller frees it with SSL_CTX_free). */
static SSL_CTX *client_ssl_ctx(const char *ca)
{
    SSL_CTX *ctx = NULL;
    pthread_mutex_lock(&client_ctx_mu);
    for (size_t i = 0; i < CLIENT_CTX_MAX && !ctx; i++) {
        if (!client_ctxs[i].ctx) { /* a free slot: the first use of this CA file */
            client_ctxs[i].ctx = client_ssl_ctx_new(ca);
            if (ca && !(client_ctxs[i].ca = strdup(ca)))
                fatal("out of memory");
            ctx = client_ctxs[i].ctx;
        } else if (ca ? client_ctxs[i].ca && strcmp(client_ctxs[i].ca, ca) == 0
                      : !client_ctxs[i].ca) {
            ctx = client_ctxs[i].ctx;
        }
    }
    if (ctx && SSL_CTX_up_ref(ctx) != 1)
        fatal("cannot share a TLS context");
    pthread_mutex_unlock(&client_ctx_mu);
    return ctx ? ctx : client_ssl_ctx_new(ca); /* more CA files than slots: its own */
}

struct smtp_client *smtp_client_new(const struct smtp_client_conf *conf)
{
    struct smtp_client *c = calloc(1, sizeof(*c));
    if (!c)
        fatal("out of memory");
    c->conf = *conf;
    c->fd = -1;
    if (!c->conf.helo_name)
        c->conf.helo_name = "localhost";
    if (!c->conf.host)
        c->conf.host = c->conf.unix_path ? c->conf.unix_path : "localhost";
    if (!c->conf.port)
        c->conf.port = "25";
    if (c->conf.tls_verify < 0)
        c->conf.tls_verify = c->conf.tls == SMTP_TLS_REQUIRED || c->conf.tls == SMTP_TLS_IMPLICIT;
    /* RFC 5321 4.5.3.2 */
    if (!c->conf.connect_ms)
        c->conf.connect_ms = 30000;
    if (!c->conf.greeting_ms)
        c->conf.greeting_ms = 300000;
    if (!c->conf.command_ms)
        c->conf.command_ms = 300000;
    if (!c->conf.data_init_ms)
        c->conf.data_init_ms = 120000;
    if (!c->conf.data_block_ms)
        c->conf.data_block_ms = 180000;
    if (!c->conf.data_end_ms)
        c->conf.data_end_ms = 600000;
    if (!c->conf.reconnect_base_ms)
        c->conf.reconnect_base_ms = 1000;
    if (!c->conf.reconnect_max_ms)
        c->conf.reconnect_max_ms = 60000;
    if (!c->conf.give_up_ms)
        c->conf.give_up_ms = 600000;
    if (getrandom(&c->rng, sizeof(c->rng), 0) != sizeof(c->rng))
        c->rng = (uint64_t)clock_mono_ms() ^ (uint64_t)(uintptr_t)c;
    snprintf(c->tls_info, sizeof(c->tls_info), "none");
    if (c->conf.tls != SMTP_TLS_NONE)
        c->ssl_ctx = client_ssl_ctx(c->conf.tls_ca_file);
    return c;
}

size_t smtp_client_send(struct smtp_client *c, const struct smtp_envelope *e, const char *msg,
                        size_t len, struct rcpt_result *res)
{
    struct client_msg m = {
        .e = e, .body = msg, .len = len, .need8 = has_8bit(msg, len), .res = res};
    uint64_t start = clock_mono_ms();
    unsigned failures = 0;
    size_t sent = 0;
    struct buf broken = {0}; /* msg with its lines over 998 octets broken (core/linebreak.h) */

    /* a server may have taken longer lines ([server] max_line_length); the next hop never
     * sees them.  LMTP is final delivery into a mailbox: the message goes as it is. */
    if (!c->conf.lmtp && linebreak_longest(msg, len) > LINEBREAK_LIMIT) {
        linebreak(msg, len, LINEBREAK_LIMIT, LINEBREAK_WIDTH, buf_emit, &broken);
        m.body = broken.p;
        m.len = broken.len;
    }
    m.rcpts = calloc(e->nrcpt ? e->nrcpt : 1, sizeof(*m.rcpts));
    if (!m.rcpts)
        fatal("out of memory");
    for (size_t i = 0; i < e->nrcpt; i++)
        result_clear(&res[i]);
    client_msg_check(&m);
    while (m.nrcpt > 0) {
        enum client_rc rc = RC_OK;
        if (!c->connected) {
            if (failures > 0 && c->conf.max_connects && failures >= c->conf.max_connects) {
                rc = client_fail(c, RESULT_TEMP, c->err.status, "%s", c->err.text);
                goto failed;
            }
            if (failures > 0) {
                uint64_t d = backoff_delay_ms(failures - 1, c->conf.reconnect_base_ms,
                                              c->conf.reconnect_max_ms, rand_u01(&c->rng));
                if (clock_mono_ms() + d - start > c->conf.give_up_ms) {
                    rc = client_fail(c, RESULT_TEMP, c->err.status, "gave up after %u attempts: %s",
                                     failures, c->err.text);
                    goto failed;
                }
                if (d) {
                    struct timespec ts = {(time_t)(d / 1000), (long)(d % 1000) * 1000000};
                    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                        ;
                }
                c->stats.reconnects++;
            }
            rc = client_connect(c);
            if (rc == RC_FAIL) /* a session that failed to set up is never reused */
                smtp_client_close(c);
        }
        if (rc == RC_OK)
            rc = client_txn(c, &m);
        if (rc == RC_OK)
            break;
        if (rc == RC_RETRY) {
            log_info("connection to %s%s%s lost (%s); %s",
                     c->conf.unix_path ? c->conf.unix_path : c->conf.host,
                     c->conf.unix_path ? "" : ":", c->conf.unix_path ? "" : c->conf.port,
                     c->err.text, "will reconnect and resend");
            conn_close(c);
            failures++;
            continue;
        }
    failed:
        for (size_t k = 0; k < m.nrcpt; k++)
            res[m.rcpts[k].i] = c->fail;
        break;
    }
    for (size_t i = 0; i < e->nrcpt; i++) {
        if (res[i].cls == RESULT_OK)
            sent++;
        else if (res[i].cls == RESULT_TEMP)
            c->stats.transient++;
        else
            c->stats.permanent++;
    }
    free(m.rcpts);
    buf_free(&broken);
    return sent;
}

void smtp_client_close(struct smtp_client *c)
{
    if (c->connected) {
        struct reply r;
        if (conn_write(c, "QUIT\r\n", 6, 5000) == 0)
            (void)conn_reply(c, &r, 5000);
        if (c->ssl)
            SSL_shutdown(c->ssl);
    }
    conn_close(c);
}

void smtp_client_free(struct smtp_client *c)
{
    if (!c)
        return;
    smtp_client_close(c);
    SSL_CTX_free(c->ssl_ctx);
    buf_free(&c->wbuf);
    free(c);
}

const struct smtp_client_stats *smtp_client_stats(const struct smtp_client *c)
{
    return &c->stats;
}

const char *smtp_client_tls_info(const struct smtp_client *c)
{
    return c->tls_info;
}

const char *smtp_client_tls_cert(const struct smtp_client *c)
{
    return c->tls_cert[0] ? c->tls_cert : "no TLS";
}
