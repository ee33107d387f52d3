/*
 * client.c - the SMTP client (see client.h).
 *
 * Structure: a connection layer (non-blocking socket or OpenSSL on it,
 * every wait a poll() against a deadline), a reply reader (line reader +
 * reply parser from core), the session set-up (greeting, EHLO/HELO,
 * STARTTLS, AUTH) and one transaction per message (MAIL, RCPT..., DATA,
 * body, end-of-data; pipelined when the server offers PIPELINING).
 *
 * Every failure is classified once: a connection-level failure (EOF,
 * reset, timeout, malformed reply, 421) closes the connection and sends
 * the message again after a backoff; any other 4xx/5xx is the recipients'
 * transient/permanent result.  The only state carried between messages is
 * the open connection and whether it needs an RSET.
 */
#include "smtp/client.h"

#include <errno.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/address.h"
#include "core/backoff.h"
#include "core/base64.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/data.h"
#include "core/line.h"
#include "core/log.h"
#include "core/reply.h"

#define CLIENT_LINE_MAX 1024 /* replies: RFC 5321 says 512; tolerate a little more */
#define CLIENT_RBUF 16384

enum {
    EXT_PIPELINING = 1,
    EXT_SIZE_ = 2,
    EXT_8BIT = 4,
    EXT_UTF8 = 8,
    EXT_TLS = 16,
    EXT_AUTH_ = 32
};

/* What a step of the dialogue came to. */
enum client_rc {
    RC_OK,
    RC_RETRY, /* connection-level failure: reconnect and resend */
    RC_FAIL,  /* every recipient gets c->fail_outcome / c->fail_text */
};

struct smtp_client {
    struct smtp_client_conf conf;
    int fd;
    SSL_CTX *ssl_ctx;
    SSL *ssl;
    bool connected, dirty, no_tls_next;
    unsigned ext;
    uint64_t size_max;
    bool auth_plain, auth_login;
    char rbuf[CLIENT_RBUF];
    size_t rpos, rlen;
    struct line_reader lr;
    struct buf wbuf;
    char err[300]; /* the last connection-level error */
    enum smtp_outcome fail_outcome;
    char fail_text[300];
    char tls_info[96];
    struct smtp_client_stats stats;
    uint64_t rng;
};

/* Copy text into dst, control characters replaced: remote text is never trusted. */
static void clean_copy(char *dst, size_t size, const char *src)
{
    size_t i = 0;
    for (; src[i] && i + 1 < size; i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[i] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
    }
    dst[i] = '\0';
}

static void client_errf(struct smtp_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void client_errf(struct smtp_client *c, const char *fmt, ...)
{
    char tmp[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    clean_copy(c->err, sizeof(c->err), tmp);
}

static enum client_rc client_fail(struct smtp_client *c, enum smtp_outcome o, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum client_rc client_fail(struct smtp_client *c, enum smtp_outcome o, const char *fmt, ...)
{
    char tmp[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    clean_copy(c->fail_text, sizeof(c->fail_text), tmp);
    c->fail_outcome = o;
    return RC_FAIL;
}

/* "451 4.3.0 first line of text" */
static void reply_summary(const struct reply *r, char *buf, size_t size)
{
    char first[256];
    size_t n = strcspn(r->text, "\n");
    if (n >= sizeof(first))
        n = sizeof(first) - 1;
    memcpy(first, r->text, n);
    first[n] = '\0';
    char tmp[300];
    snprintf(tmp, sizeof(tmp), "%d%s%s %s", r->code, r->enh[0] ? " " : "", r->enh, first);
    clean_copy(buf, size, tmp);
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
            client_errf(c, "timeout");
            return -1;
        }
        struct pollfd p = {.fd = c->fd, .events = events};
        int r = poll(&p, 1, (int)(deadline - now));
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR) {
            client_errf(c, "poll: %s", strerror(errno));
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
        client_errf(c, "%s: connection closed by the server", what);
    else if (e == SSL_ERROR_SYSCALL)
        client_errf(c, "%s: %s", what, errno ? strerror(errno) : "connection closed by the server");
    else
        client_errf(c, "%s: TLS error: %s", what,
                    ERR_reason_error_string(ERR_peek_last_error())
                        ? ERR_reason_error_string(ERR_peek_last_error())
                        : "unknown");
    ERR_clear_error();
    return -1;
}

static int conn_write(struct smtp_client *c, const char *p, size_t n, unsigned timeout_ms)
{
    uint64_t deadline = clock_mono_ms() + timeout_ms;
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
            client_errf(c, "write: %s", strerror(errno));
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
            client_errf(c, "connection closed by the server");
            return -1;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (conn_wait(c, POLLIN, deadline) < 0)
                return -1;
        } else if (errno != EINTR) {
            client_errf(c, "read: %s", strerror(errno));
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
            client_errf(c, "reply line longer than %d octets", CLIENT_LINE_MAX);
            return -1;
        }
        if (st == LINE_OK) {
            enum reply_status rs = reply_parser_line(&rp, c->rbuf + c->rpos, linelen);
            c->rpos += consumed;
            if (rs == REPLY_ERROR) {
                client_errf(c, "malformed reply: %s", rp.error ? rp.error : "?");
                return -1;
            }
            if (rs == REPLY_DONE) {
                *out = rp.r;
                if (out->code == 421) {
                    c->stats.replies_421++;
                    reply_summary(out, c->err, sizeof(c->err));
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
        client_errf(c, "cannot resolve %s: %s", c->conf.host, gai_strerror(gai));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        c->fd =
            socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (c->fd < 0) {
            client_errf(c, "socket: %s", strerror(errno));
            continue;
        }
        if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) == 0 ||
            (errno == EINPROGRESS &&
             conn_wait(c, POLLOUT, clock_mono_ms() + c->conf.connect_ms) == 0)) {
            int soerr = 0;
            socklen_t sl = sizeof(soerr);
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0) {
                freeaddrinfo(res);
                c->stats.connects++;
                return 0;
            }
            client_errf(c, "connect to %s:%s: %s", c->conf.host, c->conf.port,
                        strerror(soerr ? soerr : errno));
        } else if (errno != EINPROGRESS) {
            client_errf(c, "connect to %s:%s: %s", c->conf.host, c->conf.port, strerror(errno));
        }
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
        client_errf(c, "cannot set up TLS");
        return -1;
    }
    if (name[0] != '[')
        SSL_set_tlsext_host_name(c->ssl, name);
    if (verify) {
        SSL_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
        if (SSL_set1_host(c->ssl, name) != 1) {
            client_errf(c, "cannot set the TLS name to verify");
            return -1;
        }
    } else {
        SSL_set_verify(c->ssl, SSL_VERIFY_NONE, NULL);
    }
    for (;;) {
        int r = SSL_connect(c->ssl);
        if (r == 1)
            break;
        long vr = SSL_get_verify_result(c->ssl);
        if (verify && vr != X509_V_OK) {
            client_errf(c, "TLS certificate of %s not verified: %s", name,
                        X509_verify_cert_error_string(vr));
            ERR_clear_error();
            return -1;
        }
        if (conn_ssl_wait(c, r, deadline, "TLS handshake") < 0)
            return -1;
    }
    snprintf(c->tls_info, sizeof(c->tls_info), "%s %s", SSL_get_version(c->ssl),
             verify ? "verified" : "not verified");
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
            c->ext |= EXT_PIPELINING;
        else if (strncasecmp(kw, "SIZE", 4) == 0 && (kw[4] == ' ' || kw[4] == '\0')) {
            c->ext |= EXT_SIZE_;
            c->size_max = strtoull(kw + 4, NULL, 10);
        } else if (strcasecmp(kw, "8BITMIME") == 0)
            c->ext |= EXT_8BIT;
        else if (strcasecmp(kw, "SMTPUTF8") == 0)
            c->ext |= EXT_UTF8;
        else if (strcasecmp(kw, "STARTTLS") == 0)
            c->ext |= EXT_TLS;
        else if (strncasecmp(kw, "AUTH ", 5) == 0) {
            c->ext |= EXT_AUTH_;
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

/* EHLO, or HELO when EHLO is refused. */
static enum client_rc client_hello(struct smtp_client *c)
{
    char cmd[300];
    struct reply r;
    snprintf(cmd, sizeof(cmd), "EHLO %s\r\n", c->conf.helo_name);
    if (client_cmd(c, cmd, &r, c->conf.command_ms) < 0 || r.code == 421)
        return RC_RETRY;
    if (r.code == 250) {
        client_parse_ehlo(c, &r);
        return RC_OK;
    }
    snprintf(cmd, sizeof(cmd), "HELO %s\r\n", c->conf.helo_name);
    if (client_cmd(c, cmd, &r, c->conf.command_ms) < 0 || r.code == 421)
        return RC_RETRY;
    if (r.code != 250) {
        char s[300];
        reply_summary(&r, s, sizeof(s));
        return client_fail(c, r.code >= 500 ? SMTP_PERMANENT : SMTP_TRANSIENT, "HELO: %s", s);
    }
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
        return client_fail(c, SMTP_PERMANENT,
                           "refusing to send a password over an unencrypted connection");
    if (!(c->ext & EXT_AUTH_) || (!c->auth_plain && !c->auth_login))
        return client_fail(c, SMTP_PERMANENT, "server offers no AUTH PLAIN or LOGIN");
    if (ul + pl + 2 > sizeof(raw))
        return client_fail(c, SMTP_PERMANENT, "user name or password too long");
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
    char s[300];
    reply_summary(&r, s, sizeof(s));
    return client_fail(c, r.code >= 500 ? SMTP_PERMANENT : SMTP_TRANSIENT, "AUTH: %s", s);
}

static enum client_rc client_connect(struct smtp_client *c)
{
    struct reply r;
    enum client_rc rc;
    bool verify = c->conf.tls_verify;

    snprintf(c->tls_info, sizeof(c->tls_info), "none");
    line_reader_init(&c->lr, CLIENT_LINE_MAX);
    if (conn_tcp(c) < 0)
        return RC_RETRY;
    c->connected = true;
    if (c->conf.tls == SMTP_TLS_IMPLICIT && conn_tls(c, verify) < 0)
        return RC_RETRY;
    if (conn_reply(c, &r, c->conf.greeting_ms) < 0 || r.code == 421) {
        if (r.code == 421)
            client_errf(c, "greeting: 421 %s", r.text);
        return RC_RETRY;
    }
    if (r.code != 220) {
        char s[300];
        reply_summary(&r, s, sizeof(s));
        return client_fail(c, r.code >= 500 ? SMTP_PERMANENT : SMTP_TRANSIENT, "greeting: %s", s);
    }
    if ((rc = client_hello(c)) != RC_OK)
        return rc;
    bool want_tls = !c->ssl && (c->conf.tls == SMTP_TLS_REQUIRED ||
                                (c->conf.tls == SMTP_TLS_OPPORTUNISTIC && !c->no_tls_next));
    if (want_tls && !(c->ext & EXT_TLS)) {
        if (c->conf.tls == SMTP_TLS_REQUIRED)
            return client_fail(c, SMTP_TRANSIENT, "TLS required but the server has no STARTTLS");
        want_tls = false;
    }
    if (want_tls) {
        if (client_cmd(c, "STARTTLS\r\n", &r, c->conf.command_ms) < 0 || r.code == 421)
            return RC_RETRY;
        if (r.code != 220) {
            if (c->conf.tls == SMTP_TLS_REQUIRED)
                return client_fail(c, SMTP_TRANSIENT, "STARTTLS refused: %d", r.code);
        } else {
            if (c->rpos != c->rlen) {
                client_errf(c, "server sent data after its STARTTLS reply");
                return RC_RETRY;
            }
            if (conn_tls(c, verify) < 0) {
                if (c->conf.tls == SMTP_TLS_OPPORTUNISTIC) {
                    log_warn("TLS with %s failed (%s); next attempt in clear", c->conf.host,
                             c->err);
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
    return RC_OK;
}

/* ---- one transaction -------------------------------------------------------------- */

static void rcpt_set(struct smtp_rcpt_result *res, const struct reply *r)
{
    res->outcome = r->code < 300 ? SMTP_SENT : r->code < 500 ? SMTP_TRANSIENT : SMTP_PERMANENT;
    res->code = r->code;
    reply_summary(r, res->text, sizeof(res->text));
}

static bool has_8bit(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] >= 0x80)
            return true;
    return false;
}

/* rcpt indexes in ok[0..nok) are valid addresses; others were already refused. */
static enum client_rc client_txn(struct smtp_client *c, const char *from, const char *const *rcpts,
                                 const size_t *ok, size_t nok, const char *msg, size_t len,
                                 bool need8, bool needutf8, struct smtp_rcpt_result *res)
{
    struct reply r;
    char cmd[700];
    size_t accepted = 0;
    bool pipe = c->ext & EXT_PIPELINING;

    if (c->dirty) {
        if (client_cmd(c, "RSET\r\n", &r, c->conf.command_ms) < 0 || r.code == 421)
            return RC_RETRY;
        c->dirty = false;
    }
    if (c->size_max && len > c->size_max)
        return client_fail(c, SMTP_PERMANENT,
                           "552 5.3.4 message of %zu octets exceeds the server's limit of %llu",
                           len, (unsigned long long)c->size_max);
    if (need8 && !(c->ext & EXT_8BIT))
        return client_fail(c, SMTP_PERMANENT, "554 5.6.3 server does not accept 8-bit data");
    if (needutf8 && !(c->ext & EXT_UTF8))
        return client_fail(c, SMTP_PERMANENT, "553 5.6.7 server does not accept UTF-8 addresses");

    c->stats.attempts++;
    c->wbuf.len = 0;
    int n = snprintf(cmd, sizeof(cmd), "MAIL FROM:<%s>", from);
    if (c->ext & EXT_SIZE_)
        n += snprintf(cmd + n, sizeof(cmd) - (size_t)n, " SIZE=%zu", len);
    if (need8)
        n += snprintf(cmd + n, sizeof(cmd) - (size_t)n, " BODY=8BITMIME");
    if (needutf8)
        n += snprintf(cmd + n, sizeof(cmd) - (size_t)n, " SMTPUTF8");
    n += snprintf(cmd + n, sizeof(cmd) - (size_t)n, "\r\n");
    buf_append(&c->wbuf, cmd, (size_t)n);
    c->dirty = true;

    if (!pipe) {
        if (conn_write(c, c->wbuf.p, c->wbuf.len, c->conf.command_ms) < 0 ||
            conn_reply(c, &r, c->conf.command_ms) < 0 || r.code == 421)
            return RC_RETRY;
        if (r.code >= 300) {
            char s[300];
            reply_summary(&r, s, sizeof(s));
            return client_fail(c, r.code >= 500 ? SMTP_PERMANENT : SMTP_TRANSIENT, "MAIL: %s", s);
        }
        for (size_t i = 0; i < nok; i++) {
            n = snprintf(cmd, sizeof(cmd), "RCPT TO:<%s>\r\n", rcpts[ok[i]]);
            if (client_cmd(c, cmd, &r, c->conf.command_ms) < 0 || r.code == 421)
                return RC_RETRY;
            rcpt_set(&res[ok[i]], &r);
            accepted += r.code < 300;
        }
        if (accepted == 0)
            return RC_OK;
        if (client_cmd(c, "DATA\r\n", &r, c->conf.data_init_ms) < 0 || r.code == 421)
            return RC_RETRY;
    } else {
        for (size_t i = 0; i < nok; i++) {
            n = snprintf(cmd, sizeof(cmd), "RCPT TO:<%s>\r\n", rcpts[ok[i]]);
            buf_append(&c->wbuf, cmd, (size_t)n);
        }
        buf_append(&c->wbuf, "DATA\r\n", 6);
        if (conn_write(c, c->wbuf.p, c->wbuf.len, c->conf.command_ms) < 0)
            return RC_RETRY;
        struct reply mail;
        if (conn_reply(c, &mail, c->conf.command_ms) < 0 || mail.code == 421)
            return RC_RETRY;
        for (size_t i = 0; i < nok; i++) {
            if (conn_reply(c, &r, c->conf.command_ms) < 0 || r.code == 421)
                return RC_RETRY;
            rcpt_set(&res[ok[i]], &r);
            accepted += r.code < 300 && mail.code < 300;
        }
        if (conn_reply(c, &r, c->conf.data_init_ms) < 0 || r.code == 421)
            return RC_RETRY;
        if (r.code == 354 && accepted == 0) {
            /* cannot happen with a correct server; end the empty message to stay in step */
            struct reply end;
            if (conn_write(c, ".\r\n", 3, c->conf.data_block_ms) < 0 ||
                conn_reply(c, &end, c->conf.data_end_ms) < 0)
                return RC_RETRY;
        }
        if (mail.code >= 300) {
            char s[300];
            reply_summary(&mail, s, sizeof(s));
            return client_fail(c, mail.code >= 500 ? SMTP_PERMANENT : SMTP_TRANSIENT, "MAIL: %s",
                               s);
        }
        if (accepted == 0)
            return RC_OK;
    }
    if (r.code != 354) {
        for (size_t i = 0; i < nok; i++)
            if (res[ok[i]].outcome == SMTP_SENT)
                rcpt_set(&res[ok[i]], &r);
        return RC_OK;
    }
    c->wbuf.len = 0;
    data_stuff(msg, len, buf_emit, &c->wbuf);
    buf_append(&c->wbuf, ".\r\n", 3);
    if (conn_write(c, c->wbuf.p, c->wbuf.len, c->conf.data_block_ms) < 0 ||
        conn_reply(c, &r, c->conf.data_end_ms) < 0 || r.code == 421)
        return RC_RETRY;
    c->dirty = false;
    for (size_t i = 0; i < nok; i++)
        if (res[ok[i]].outcome == SMTP_SENT)
            rcpt_set(&res[ok[i]], &r);
    if (r.code < 300)
        c->stats.successes++;
    return RC_OK;
}

/* ---- public ------------------------------------------------------------------------- */

struct smtp_client *smtp_client_new(const struct smtp_client_conf *conf)
{
    struct smtp_client *c = calloc(1, sizeof(*c));
    if (!c)
        fatal("out of memory");
    c->conf = *conf;
    c->fd = -1;
    if (!c->conf.helo_name)
        c->conf.helo_name = "localhost";
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
    if (c->conf.tls != SMTP_TLS_NONE) {
        c->ssl_ctx = SSL_CTX_new(TLS_client_method());
        if (!c->ssl_ctx)
            fatal("cannot create a TLS context");
        SSL_CTX_set_min_proto_version(c->ssl_ctx, TLS1_2_VERSION);
        if (c->conf.tls_ca_file) {
            if (SSL_CTX_load_verify_locations(c->ssl_ctx, c->conf.tls_ca_file, NULL) != 1)
                log_warn("cannot load CA file %s", c->conf.tls_ca_file);
        } else if (SSL_CTX_set_default_verify_paths(c->ssl_ctx) != 1) {
            log_warn("cannot load the system's CA certificates");
        }
    }
    return c;
}

size_t smtp_client_send(struct smtp_client *c, const char *from, const char *const *rcpts,
                        size_t nrcpt, const char *msg, size_t len, struct smtp_rcpt_result *res)
{
    struct mailaddr a;
    size_t *ok = calloc(nrcpt ? nrcpt : 1, sizeof(size_t)), nok = 0, sent = 0;
    bool needutf8 = false, need8 = has_8bit(msg, len);
    uint64_t start = clock_mono_ms();
    unsigned failures = 0;

    if (!ok)
        fatal("out of memory");
    for (size_t i = 0; i < nrcpt; i++)
        memset(&res[i], 0, sizeof(res[i]));
    bool from_ok =
        from[0] == '\0' || addr_parse_mailbox(from, strlen(from), ADDR_ALLOW_UTF8, &a) == ADDR_OK;
    needutf8 = from_ok && a.has_utf8 && from[0];
    for (size_t i = 0; i < nrcpt; i++) {
        int e = addr_parse_mailbox(rcpts[i], strlen(rcpts[i]), ADDR_ALLOW_UTF8, &a);
        if (!from_ok || e != ADDR_OK) {
            res[i].outcome = SMTP_PERMANENT;
            snprintf(res[i].text, sizeof(res[i].text), "501 5.1.3 bad %s address: %s",
                     from_ok ? "recipient" : "sender", addr_strerror(from_ok ? e : ADDR_ESYNTAX));
            continue;
        }
        needutf8 |= a.has_utf8;
        ok[nok++] = i;
    }
    while (nok > 0) {
        enum client_rc rc = RC_OK;
        if (!c->connected) {
            if (failures > 0 && c->conf.max_connects && failures >= c->conf.max_connects) {
                rc = client_fail(c, SMTP_TRANSIENT, "%s", c->err);
                goto failed;
            }
            if (failures > 0) {
                uint64_t d = backoff_delay_ms(failures - 1, c->conf.reconnect_base_ms,
                                              c->conf.reconnect_max_ms, rand_u01(&c->rng));
                if (clock_mono_ms() + d - start > c->conf.give_up_ms) {
                    rc = client_fail(c, SMTP_TRANSIENT, "gave up after %u attempts: %s", failures,
                                     c->err);
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
        }
        if (rc == RC_OK)
            rc = client_txn(c, from, rcpts, ok, nok, msg, len, need8, needutf8, res);
        if (rc == RC_OK)
            break;
        if (rc == RC_RETRY) {
            log_info("connection to %s:%s lost (%s); %s", c->conf.host, c->conf.port, c->err,
                     "will reconnect and resend");
            conn_close(c);
            failures++;
            continue;
        }
    failed:
        for (size_t i = 0; i < nok; i++) {
            res[ok[i]].outcome = c->fail_outcome;
            res[ok[i]].code = 0;
            snprintf(res[ok[i]].text, sizeof(res[ok[i]].text), "%s", c->fail_text);
        }
        break;
    }
    for (size_t i = 0; i < nrcpt; i++) {
        if (res[i].outcome == SMTP_SENT)
            sent++;
        else if (res[i].outcome == SMTP_TRANSIENT)
            c->stats.transient++;
        else
            c->stats.permanent++;
    }
    free(ok);
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
