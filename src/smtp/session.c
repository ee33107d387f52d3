/*
 * session.c - SMTP server sessions (see session.h).
 *
 * Each connection is a struct smtp_session with an explicit state (greeting,
 * commands, AUTH dialogue, DATA, TLS switch) and at most one transaction
 * (struct smtp_txn) that RSET, EHLO, STARTTLS and end-of-data free.  Input is
 * read by the line reader (commands, 512 octets; 1012 when DSN is offered) or the data reader
 * (DATA); each command goes through a table entry that checks the sequence (503), parses
 * (501/555/553), asks the hook, and applies the verdict in session_apply(), the only place where
 * accepted commands change state.
 *
 * Ordering: while a verdict is delayed or pending the session is "paused":
 * it neither reads nor parses, so pipelined input waits in the buffer and
 * replies leave in order.  Bounds: input buffer (read watermark), output
 * buffer (stop parsing while the client does not read), line length, errors,
 * recipients, message size, idle, command, DATA and total time (one deadline
 * timer besides the total one), body memory over all sessions (conf.limits,
 * charged as the body buffer grows).  Connections over the limits of
 * conf.limits get 421 and are closed before a session exists.  Closing waits
 * for the output to drain; the session is freed only at the end of a callback.
 */
#include "smtp/session.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/base64.h"
#include "core/clock.h"
#include "core/data.h"
#include "core/line.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/netaddr.h"
#include "core/reply.h"

#define AUTH_LINE_MAX 12288      /* RFC 4954 4: server SHOULD accept this much */
#define INPUT_HIGH (256 * 1024)  /* stop reading the socket above this */
#define OUTPUT_HIGH (128 * 1024) /* stop parsing while the client does not read */
#define HELO_MAX 255

enum smtp_state {
    ST_GREETING,
    ST_CMD,
    ST_AUTH_PLAIN,
    ST_AUTH_LOGIN_USER,
    ST_AUTH_LOGIN_PASS,
    ST_DATA,
    ST_TLS_SWITCH,
};

/* What an accepted verdict does, once it is applied. */
enum smtp_step {
    STEP_NONE,
    STEP_CONNECT,
    STEP_HELO,
    STEP_EHLO,
    STEP_AUTH,
    STEP_MAIL,
    STEP_RCPT,
    STEP_DATA,
    STEP_EOD,
};

struct smtp_server {
    struct event_base *base;
    struct smtp_server_conf conf;
    struct smtp_session *head;
    unsigned nsessions;
    uint64_t next_id;
    unsigned long connections;
    unsigned long refused;   /* connections over a limit */
    uint64_t refused_logged; /* when the last refusal was logged (monotonic ms) */
    bool shutting_down;
};

struct smtp_session {
    struct smtp_server *srv;
    struct smtp_session *prev, *next;
    uint64_t id;
    unsigned long index;
    int fd;
    bool bev_owns_fd;
    struct bufferevent *bev; /* TLS connections only */
    struct event *rev, *wev; /* plain connections only: read and write readiness */
    struct evbuffer *in;     /* plain connections only: input not yet parsed */
    struct evbuffer *out;    /* replies not yet written (plain) or handed to bev (TLS) */
    bool reading;            /* plain: rev is armed */
    struct event *delay_ev, *total_ev;
    struct event *deadline_ev; /* idle, command or DATA deadline (session_deadline) */
    uint64_t deadline;         /* when deadline_ev fires (monotonic ms), 0 = disarmed */
    uint64_t idle_since, line_since, data_since; /* monotonic ms, 0 = not in that phase */
    struct smtp_limits_hold hold;                /* counted in conf.limits */
    size_t body_charged;                         /* octets of body memory taken */
    bool over_budget;                            /* this DATA ran out of body memory */
    enum smtp_state state;
    enum smtp_step step; /* the step a paused verdict belongs to */
    struct smtp_verdict held;
    bool paused, closing, dead, tls, esmtp, authed;
    char peer[64];
    char helo[HELO_MAX + 1];
    char auth_user[256];
    char login_user[256];
    unsigned errors;
    struct smtp_txn *txn;
    struct mail_params pend_mail;
    struct rcpt_params pend_rcpt;
    char pend_helo[HELO_MAX + 1];
    struct line_reader lr;
    struct data_reader dr;
    void *data; /* the program's own (smtp_session_set_data) */
    /* listener label of its metrics */
    const char *mlabel;
};

/* The longest command line accepted: RFC 3461 adds room for ORCPT and ENVID. */
static size_t session_cmd_max(const struct smtp_session *s)
{
    return SMTP_CMD_LINE_MAX + ((s->srv->conf.ext & EXT_DSN) ? SMTP_CMD_LINE_DSN : 0);
}

static void session_process(struct smtp_session *s);
static bool session_reap(struct smtp_session *s);
static void session_drained(struct smtp_session *s);
static void session_start_tls(struct smtp_session *s);
static void session_flush(struct smtp_session *s);
static void session_deadline_update(struct smtp_session *s);

void smtp_verdict_set(struct smtp_verdict *v, int code, const char *enh, const char *fmt, ...)
{
    va_list ap;
    v->code = code;
    snprintf(v->enh, sizeof(v->enh), "%s", enh ? enh : "");
    va_start(ap, fmt);
    vsnprintf(v->text, sizeof(v->text), fmt, ap);
    va_end(ap);
}

/* ---- transport -------------------------------------------------------------
 *
 * Plain connections are read and written by hand on the descriptor (one
 * read() per readiness event, replies written at once when the socket
 * takes them); TLS connections go through a bufferevent_openssl.  The rest
 * of the session sees only session_input() and the replies queue s->out.
 */

static struct evbuffer *session_input(struct smtp_session *s)
{
    return s->bev ? bufferevent_get_input(s->bev) : s->in;
}

/* Octets of replies not yet on the wire. */
static size_t session_unsent(struct smtp_session *s)
{
    size_t n = evbuffer_get_length(s->out);
    if (s->bev)
        n += evbuffer_get_length(bufferevent_get_output(s->bev));
    return n;
}

/* Read from the socket exactly when the session can use more input. */
static void session_io_update(struct smtp_session *s)
{
    bool want = !s->paused && !s->closing && !s->dead && s->state != ST_TLS_SWITCH;
    if (s->bev) {
        if (want)
            bufferevent_enable(s->bev, EV_READ);
        else
            bufferevent_disable(s->bev, EV_READ);
        return;
    }
    if (!s->rev)
        return;
    want = want && evbuffer_get_length(s->in) < INPUT_HIGH &&
           evbuffer_get_length(s->out) <= OUTPUT_HIGH;
    if (want == s->reading)
        return;
    if (want) {
        if (event_add(s->rev, NULL) < 0)
            fatal("cannot watch a connection");
    } else {
        event_del(s->rev);
    }
    s->reading = want;
}

/* ---- replies ----------------------------------------------------------- */

static void session_send_line(struct smtp_session *s, int code, const char *enh, bool last,
                              const char *text)
{
    char buf[SMTP_REPLY_LINE_MAX + 1];
    if (enh && *enh && enh[0] != '0' + code / 100) {
        log_warn("session %llu: enhanced code %s does not fit reply %d; dropped",
                 (unsigned long long)s->id, enh, code);
        enh = NULL;
    }
    size_t n = reply_format_line(buf, sizeof(buf), code, enh && *enh ? enh : NULL, last, text);
    if (n >= sizeof(buf))
        n = sizeof(buf) - 1;
    if (evbuffer_add(s->out, buf, n) < 0)
        log_warn("session %llu: cannot queue reply", (unsigned long long)s->id);
}

static void session_reply(struct smtp_session *s, int code, const char *enh, const char *text)
{
    session_send_line(s, code, enh, true, text);
}

static void session_close(struct smtp_session *s)
{
    if (s->closing)
        return;
    s->closing = true;
    s->paused = true;
    session_io_update(s);
}

/* A syntax or sequence error: counted, and too many end the session. */
static void session_error(struct smtp_session *s, int code, const char *enh, const char *text)
{
    s->errors++;
    if (s->srv->conf.max_errors && s->errors > s->srv->conf.max_errors) {
        char t[300];
        snprintf(t, sizeof(t), "%s Error: too many errors", s->srv->conf.hostname);
        session_reply(s, 421, "4.7.0", t);
        log_info("session %llu: too many errors, closing", (unsigned long long)s->id);
        session_close(s);
        return;
    }
    session_reply(s, code, enh, text);
}

/* ---- transaction ------------------------------------------------------- */

static void txn_free(struct smtp_txn *t)
{
    if (!t)
        return;
    free(t->rcpts);
    buf_free(&t->body);
    free(t);
}

/* Give back the body memory this session holds. */
static void session_body_release(struct smtp_session *s)
{
    if (s->body_charged && s->srv->conf.limits)
        smtp_limits_body_give(s->srv->conf.limits, s->body_charged);
    s->body_charged = 0;
}

static void session_txn_reset(struct smtp_session *s)
{
    txn_free(s->txn);
    s->txn = NULL;
    session_body_release(s);
}

/* data_emit_fn: append to the body, charging the growth to the memory
 * budget; over the budget the body is freed and the rest dropped. */
static void session_body_emit(void *ctx, const char *p, size_t n)
{
    struct smtp_session *s = ctx;
    struct buf *b = &s->txn->body;
    struct smtp_limits *lim = s->srv->conf.limits;
    if (s->over_budget || n == 0)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        if (lim && !smtp_limits_body_take(lim, cap - b->cap)) {
            log_info("session %llu: body memory budget exhausted, message dropped",
                     (unsigned long long)s->id);
            s->over_budget = true;
            buf_free(b);
            session_body_release(s);
            return;
        }
        if (lim)
            s->body_charged += cap - b->cap;
        buf_reserve(b, cap);
    }
    buf_append(b, p, n);
}

/* ---- verdicts ---------------------------------------------------------- */

static void session_ehlo_reply(struct smtp_session *s)
{
    const struct smtp_server_conf *c = &s->srv->conf;
    const char *lines[12];
    char first[320], size[40];
    size_t n = 0;

    snprintf(first, sizeof(first), "%s Hello %s", c->hostname, s->helo);
    lines[n++] = first;
    lines[n++] = "PIPELINING";
    if (c->max_size) {
        snprintf(size, sizeof(size), "SIZE %llu", (unsigned long long)c->max_size);
        lines[n++] = size;
    } else {
        lines[n++] = "SIZE";
    }
    if (c->ext & EXT_8BITMIME)
        lines[n++] = "8BITMIME";
    if (c->ext & EXT_SMTPUTF8)
        lines[n++] = "SMTPUTF8";
    lines[n++] = "ENHANCEDSTATUSCODES";
    if (c->ext & EXT_DSN)
        lines[n++] = "DSN";
    if (c->tls && !s->tls)
        lines[n++] = "STARTTLS";
    if (c->auth && (s->tls || c->auth_plaintext) && !s->authed)
        lines[n++] = "AUTH PLAIN LOGIN";
    for (size_t i = 0; i < n; i++)
        session_send_line(s, 250, NULL, i + 1 == n, lines[i]);
}

/* Extensions usable in this session (EHLO offered them; HELO offers none). */
static unsigned session_ext(const struct smtp_session *s)
{
    const struct smtp_server_conf *c = &s->srv->conf;
    unsigned ext;
    if (!s->esmtp)
        return 0;
    ext = c->ext | EXT_SIZE;
    if (c->auth && (s->tls || c->auth_plaintext))
        ext |= EXT_AUTH;
    return ext;
}

static void session_apply(struct smtp_session *s, enum smtp_step step, const struct smtp_verdict *v)
{
    bool ok = v->code >= 200 && v->code < 400;

    if (v->action == SMTP_V_CLOSE) {
        log_info("session %llu: closed by policy", (unsigned long long)s->id);
        session_close(s);
        return;
    }
    switch (step) {
    case STEP_CONNECT:
        if (ok)
            s->state = ST_CMD;
        break;
    case STEP_HELO:
    case STEP_EHLO:
        if (ok) {
            session_txn_reset(s);
            memcpy(s->helo, s->pend_helo, sizeof(s->helo));
            s->esmtp = step == STEP_EHLO;
            if (s->esmtp && v->code == 250 && v->action == SMTP_V_REPLY) {
                session_ehlo_reply(s);
                return;
            }
        }
        break;
    case STEP_AUTH:
        metrics_inc(M_SMTP_AUTH, s->mlabel, v->code == 235 ? "success" : "failure");
        if (v->code == 235) {
            s->authed = true;
            memcpy(s->auth_user, s->login_user, sizeof(s->auth_user));
        }
        explicit_bzero(s->login_user, sizeof(s->login_user));
        if (v->code != 235 && v->action == SMTP_V_REPLY) {
            /* a failed AUTH counts like a bad command: guessing is bounded */
            session_error(s, v->code, v->enh, v->text);
            return;
        }
        break;
    case STEP_MAIL:
        if (ok) {
            struct smtp_txn *t = calloc(1, sizeof(*t));
            if (!t)
                fatal("out of memory");
            t->mail = s->pend_mail;
            s->txn = t;
        }
        break;
    case STEP_RCPT:
        if (ok && s->txn) {
            struct smtp_txn *t = s->txn;
            if (t->nrcpt == t->rcpt_cap) {
                size_t cap = t->rcpt_cap ? t->rcpt_cap * 2 : 4;
                struct rcpt_params *r = realloc(t->rcpts, cap * sizeof(*r));
                if (!r)
                    fatal("out of memory");
                t->rcpts = r;
                t->rcpt_cap = cap;
            }
            t->rcpts[t->nrcpt++] = s->pend_rcpt;
        }
        break;
    case STEP_DATA:
        if (v->code == 354 && s->txn) {
            uint64_t hint = s->txn->mail.size_given ? s->txn->mail.size : 0;
            struct smtp_limits *lim = s->srv->conf.limits;
            s->state = ST_DATA;
            s->data_since = clock_mono_ms();
            s->over_budget = false;
            data_reader_init(&s->dr, s->srv->conf.max_size, s->srv->conf.max_line);
            if (hint && (!s->srv->conf.max_size || hint <= s->srv->conf.max_size) &&
                hint < 64 * 1024 * 1024 && (!lim || smtp_limits_body_take(lim, hint + 1024))) {
                if (lim)
                    s->body_charged += hint + 1024;
                buf_reserve(&s->txn->body, hint + 1024);
            }
            session_reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
            if (v->action == SMTP_V_REPLY_CLOSE)
                session_close(s);
            return;
        }
        break;
    case STEP_EOD:
        metrics_inc(M_SMTP_MESSAGES, s->mlabel, metrics_reply_class(v->code));
        session_txn_reset(s);
        break;
    case STEP_NONE:
        break;
    }
    session_reply(s, v->code, v->enh, v->text);
    if (v->action == SMTP_V_REPLY_CLOSE || (step == STEP_CONNECT && !ok))
        session_close(s);
}

static void session_delay_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smtp_session *s = arg;
    (void)fd;
    (void)what;
    struct smtp_verdict v = s->held;
    v.delay_ms = 0;
    if (s->closing) {
        session_reap(s);
        return;
    }
    s->paused = false;
    session_apply(s, s->step, &v);
    if (!s->closing)
        session_process(s);
    session_reap(s);
}

/* Take a hook's verdict: now, after a delay, or later (pending). */
static void session_verdict(struct smtp_session *s, enum smtp_step step,
                            const struct smtp_verdict *v)
{
    if (v->action == SMTP_V_PENDING || v->delay_ms) {
        s->paused = true;
        s->step = step;
        s->held = *v;
        session_io_update(s);
        if (v->action != SMTP_V_PENDING) {
            struct timeval tv = {v->delay_ms / 1000, (v->delay_ms % 1000) * 1000};
            if (!s->delay_ev)
                s->delay_ev = evtimer_new(s->srv->base, session_delay_cb, s);
            if (!s->delay_ev || evtimer_add(s->delay_ev, &tv) < 0)
                fatal("cannot arm a timer");
        }
        return;
    }
    session_apply(s, step, v);
}

static void verdict_init(struct smtp_verdict *v, int code, const char *enh, const char *text)
{
    memset(v, 0, sizeof(*v));
    v->action = SMTP_V_REPLY;
    smtp_verdict_set(v, code, enh, "%s", text);
}

#define HOOK(s, name) ((s)->srv->conf.hooks ? (s)->srv->conf.hooks->name : NULL)

/* ---- commands ------------------------------------------------------------ */

static bool printable_token(const char *p, size_t n)
{
    if (n == 0 || n > HELO_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= ' ' || c == 0x7f)
            return false;
    }
    return true;
}

static void cmd_helo(struct smtp_session *s, const struct smtp_command *c)
{
    struct smtp_verdict v;
    if (!printable_token(c->arg, c->arglen)) {
        session_error(s, 501, "5.5.4", "Syntax: HELO/EHLO domain");
        return;
    }
    memcpy(s->pend_helo, c->arg, c->arglen);
    s->pend_helo[c->arglen] = '\0';
    char text[320];
    snprintf(text, sizeof(text), "%s", s->srv->conf.hostname);
    verdict_init(&v, 250, c->verb == CMD_EHLO ? NULL : "2.0.0", text);
    if (HOOK(s, on_helo))
        HOOK(s, on_helo)(s->srv->conf.ctx, s, s->pend_helo, &v);
    session_verdict(s, c->verb == CMD_EHLO ? STEP_EHLO : STEP_HELO, &v);
}

static void cmd_mail(struct smtp_session *s, const struct smtp_command *c)
{
    struct cmd_error err;
    struct smtp_verdict v;
    if (!s->helo[0]) {
        session_error(s, 503, "5.5.1", "Error: send HELO/EHLO first");
        return;
    }
    if (s->txn) {
        session_error(s, 503, "5.5.1", "Error: nested MAIL command");
        return;
    }
    if (s->srv->conf.auth_required && !s->authed) {
        session_error(s, 530, "5.7.0", "Authentication required");
        return;
    }
    if (cmd_parse_mail(c->arg, c->arglen, session_ext(s), s->srv->conf.max_size, &s->pend_mail,
                       &err) < 0) {
        session_error(s, err.code, err.enh, err.text);
        return;
    }
    verdict_init(&v, 250, "2.1.0", "Ok");
    if (HOOK(s, on_mail))
        HOOK(s, on_mail)(s->srv->conf.ctx, s, &s->pend_mail, &v);
    session_verdict(s, STEP_MAIL, &v);
}

static void cmd_rcpt(struct smtp_session *s, const struct smtp_command *c)
{
    struct cmd_error err;
    struct smtp_verdict v;
    if (!s->txn) {
        session_error(s, 503, "5.5.1", "Error: need MAIL command");
        return;
    }
    if (s->srv->conf.max_rcpts && s->txn->nrcpt >= s->srv->conf.max_rcpts) {
        session_reply(s, 452, "4.5.3", "Error: too many recipients");
        return;
    }
    if (cmd_parse_rcpt(c->arg, c->arglen, session_ext(s), s->txn->mail.smtputf8, &s->pend_rcpt,
                       &err) < 0) {
        session_error(s, err.code, err.enh, err.text);
        return;
    }
    verdict_init(&v, 250, "2.1.5", "Ok");
    if (HOOK(s, on_rcpt))
        HOOK(s, on_rcpt)(s->srv->conf.ctx, s, &s->pend_rcpt, &v);
    session_verdict(s, STEP_RCPT, &v);
}

static void cmd_data(struct smtp_session *s, const struct smtp_command *c)
{
    struct smtp_verdict v;
    if (c->arglen) {
        session_error(s, 501, "5.5.4", "Syntax: DATA");
        return;
    }
    if (!s->txn) {
        session_error(s, 503, "5.5.1", "Error: need MAIL command");
        return;
    }
    if (s->txn->nrcpt == 0) {
        /* not counted as an error: a pipelining client sends DATA before it
         * knows that every RCPT was refused (RFC 2920) */
        session_reply(s, 554, "5.5.1", "Error: no valid recipients");
        return;
    }
    verdict_init(&v, 354, NULL, "End data with <CR><LF>.<CR><LF>");
    if (HOOK(s, on_data))
        HOOK(s, on_data)(s->srv->conf.ctx, s, &v);
    session_verdict(s, STEP_DATA, &v);
}

static void cmd_rset(struct smtp_session *s, const struct smtp_command *c)
{
    if (c->arglen) {
        session_error(s, 501, "5.5.4", "Syntax: RSET");
        return;
    }
    session_txn_reset(s);
    session_reply(s, 250, "2.0.0", "Ok");
}

static void cmd_noop(struct smtp_session *s, const struct smtp_command *c)
{
    (void)c;
    session_reply(s, 250, "2.0.0", "Ok");
}

static void cmd_quit(struct smtp_session *s, const struct smtp_command *c)
{
    (void)c;
    session_reply(s, 221, "2.0.0", "Bye");
    session_close(s);
}

static void cmd_vrfy(struct smtp_session *s, const struct smtp_command *c)
{
    (void)c;
    session_reply(s, 252, "2.5.0",
                  "Cannot VRFY user, but will accept message and attempt delivery");
}

static void cmd_expn(struct smtp_session *s, const struct smtp_command *c)
{
    (void)c;
    session_reply(s, 502, "5.5.1", "EXPN not available");
}

static void cmd_help(struct smtp_session *s, const struct smtp_command *c)
{
    (void)c;
    session_reply(s, 214, "2.0.0",
                  "Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY "
                  "STARTTLS AUTH; see RFC 5321");
}

static void cmd_starttls(struct smtp_session *s, const struct smtp_command *c)
{
    if (!s->srv->conf.tls) {
        session_error(s, 502, "5.5.1", "STARTTLS not available");
        return;
    }
    if (s->tls) {
        session_error(s, 503, "5.5.1", "Error: TLS already active");
        return;
    }
    if (c->arglen) {
        session_error(s, 501, "5.5.4", "Syntax: STARTTLS");
        return;
    }
    session_reply(s, 220, "2.0.0", "Ready to start TLS");
    /* RFC 3207 5: nothing sent before the handshake may be acted on. */
    struct evbuffer *in = session_input(s);
    size_t junk = evbuffer_get_length(in);
    if (junk) {
        log_warn("session %llu: discarding %zu octets pipelined after STARTTLS",
                 (unsigned long long)s->id, junk);
        evbuffer_drain(in, junk);
    }
    session_txn_reset(s);
    s->helo[0] = '\0';
    s->esmtp = false;
    s->authed = false;
    s->auth_user[0] = '\0';
    s->state = ST_TLS_SWITCH;
    s->paused = true;
    session_io_update(s);
}

static void auth_finish(struct smtp_session *s, const char *user, const char *pass)
{
    struct smtp_verdict v;
    verdict_init(&v, 535, "5.7.8", "Authentication credentials invalid");
    snprintf(s->login_user, sizeof(s->login_user), "%s", user);
    if (HOOK(s, on_auth))
        HOOK(s, on_auth)(s->srv->conf.ctx, s, user, pass, &v);
    if (v.code == 235 && v.enh[0] != '2')
        snprintf(v.enh, sizeof(v.enh), "2.7.0");
    s->state = ST_CMD;
    line_reader_init(&s->lr, session_cmd_max(s));
    session_verdict(s, STEP_AUTH, &v);
}

/* SASL PLAIN message: [authzid] NUL authcid NUL passwd (RFC 4616). */
static void auth_plain(struct smtp_session *s, const char *b64, size_t len)
{
    unsigned char buf[1024];
    long n = base64_decode(b64, len, buf, sizeof(buf));
    if (n < 0) {
        s->state = ST_CMD;
        line_reader_init(&s->lr, session_cmd_max(s));
        session_error(s, 501, "5.5.2", "Cannot decode AUTH response");
        return;
    }
    const char *authz = (const char *)buf;
    size_t zl = strnlen(authz, (size_t)n);
    if (zl + 1 >= (size_t)n) {
        s->state = ST_CMD;
        line_reader_init(&s->lr, session_cmd_max(s));
        explicit_bzero(buf, sizeof(buf));
        session_error(s, 501, "5.5.2", "Malformed AUTH PLAIN response");
        return;
    }
    const char *user = authz + zl + 1;
    size_t ul = strnlen(user, (size_t)n - zl - 1);
    const char *pass = user + ul + 1;
    if (zl + 1 + ul + 1 > (size_t)n || ul == 0 || (zl && strcmp(authz, user) != 0) ||
        strlen(pass) != (size_t)n - zl - ul - 2) {
        s->state = ST_CMD;
        line_reader_init(&s->lr, session_cmd_max(s));
        explicit_bzero(buf, sizeof(buf));
        metrics_inc(M_SMTP_AUTH, s->mlabel, "failure");
        session_error(s, 535, "5.7.8", "Authentication credentials invalid");
        return;
    }
    auth_finish(s, user, pass);
    explicit_bzero(buf, sizeof(buf));
}

static void cmd_auth(struct smtp_session *s, const struct smtp_command *c)
{
    const struct smtp_server_conf *conf = &s->srv->conf;
    if (!conf->auth) {
        session_error(s, 503, "5.5.1", "Error: authentication not enabled");
        return;
    }
    if (!s->tls && !conf->auth_plaintext) {
        session_error(s, 538, "5.7.11", "Encryption required for requested authentication");
        return;
    }
    if (!s->helo[0] || !s->esmtp) {
        session_error(s, 503, "5.5.1", "Error: send EHLO first");
        return;
    }
    if (s->authed) {
        session_error(s, 503, "5.5.1", "Error: already authenticated");
        return;
    }
    if (s->txn) {
        session_error(s, 503, "5.5.1", "Error: AUTH not allowed during a mail transaction");
        return;
    }
    const char *mech = c->arg, *sp = memchr(c->arg, ' ', c->arglen);
    size_t ml = sp ? (size_t)(sp - mech) : c->arglen;
    const char *init = sp ? sp + 1 : NULL;
    size_t il = sp ? c->arglen - ml - 1 : 0;

    if (ml == 5 && strncasecmp(mech, "PLAIN", 5) == 0) {
        line_reader_init(&s->lr, AUTH_LINE_MAX);
        if (!init) {
            s->state = ST_AUTH_PLAIN;
            session_reply(s, 334, NULL, "");
        } else if (il == 1 && init[0] == '=') {
            auth_plain(s, "", 0);
        } else {
            auth_plain(s, init, il);
        }
    } else if (ml == 5 && strncasecmp(mech, "LOGIN", 5) == 0) {
        line_reader_init(&s->lr, AUTH_LINE_MAX);
        if (!init) {
            s->state = ST_AUTH_LOGIN_USER;
            session_reply(s, 334, NULL, "VXNlcm5hbWU6");
        } else {
            unsigned char u[256];
            long n = base64_decode(init, il, u, sizeof(u));
            if (n <= 0 || strlen((char *)u) != (size_t)n) {
                line_reader_init(&s->lr, session_cmd_max(s));
                session_error(s, 501, "5.5.2", "Cannot decode AUTH response");
                return;
            }
            memcpy(s->login_user, u, (size_t)n + 1);
            s->state = ST_AUTH_LOGIN_PASS;
            session_reply(s, 334, NULL, "UGFzc3dvcmQ6");
        }
    } else {
        session_error(s, 504, "5.5.4", "Unrecognized authentication type");
    }
}

/* A line of the AUTH dialogue (after a 334). */
static void session_auth_line(struct smtp_session *s, const char *line, size_t len)
{
    if (len == 1 && line[0] == '*') {
        s->state = ST_CMD;
        line_reader_init(&s->lr, session_cmd_max(s));
        explicit_bzero(s->login_user, sizeof(s->login_user));
        session_error(s, 501, "5.0.0", "Authentication cancelled");
        return;
    }
    if (s->state == ST_AUTH_PLAIN) {
        auth_plain(s, line, len);
        return;
    }
    unsigned char buf[1024];
    long n = base64_decode(line, len, buf, sizeof(buf));
    if (n < 0 || strlen((char *)buf) != (size_t)n ||
        (s->state == ST_AUTH_LOGIN_USER && (n == 0 || (size_t)n >= sizeof(s->login_user)))) {
        s->state = ST_CMD;
        line_reader_init(&s->lr, session_cmd_max(s));
        explicit_bzero(buf, sizeof(buf));
        session_error(s, 501, "5.5.2", "Cannot decode AUTH response");
        return;
    }
    if (s->state == ST_AUTH_LOGIN_USER) {
        memcpy(s->login_user, buf, (size_t)n + 1);
        s->state = ST_AUTH_LOGIN_PASS;
        session_reply(s, 334, NULL, "UGFzc3dvcmQ6");
        return;
    }
    char user[256];
    memcpy(user, s->login_user, sizeof(user));
    auth_finish(s, user, (const char *)buf);
    explicit_bzero(buf, sizeof(buf));
}

typedef void (*cmd_fn)(struct smtp_session *, const struct smtp_command *);

static const cmd_fn cmd_table[CMD__COUNT] = {
    [CMD_HELO] = cmd_helo, [CMD_EHLO] = cmd_helo, [CMD_MAIL] = cmd_mail,
    [CMD_RCPT] = cmd_rcpt, [CMD_DATA] = cmd_data, [CMD_RSET] = cmd_rset,
    [CMD_NOOP] = cmd_noop, [CMD_QUIT] = cmd_quit, [CMD_VRFY] = cmd_vrfy,
    [CMD_HELP] = cmd_help, [CMD_EXPN] = cmd_expn, [CMD_STARTTLS] = cmd_starttls,
    [CMD_AUTH] = cmd_auth,
};

static void session_line(struct smtp_session *s, const char *line, size_t len)
{
    struct smtp_command c;
    struct cmd_error err;

    if (s->state != ST_CMD) {
        session_auth_line(s, line, len);
        return;
    }
    if (cmd_parse(line, len, &c, &err) < 0) {
        session_error(s, err.code, err.enh, err.text);
        return;
    }
    if (c.verb <= CMD_UNKNOWN || c.verb >= CMD__COUNT || !cmd_table[c.verb]) {
        session_error(s, 500, "5.5.2", "Error: command not recognized");
        return;
    }
    cmd_table[c.verb](s, &c);
}

/* End of DATA: refuse what breaks the limits or the line-ending policy. */
static void session_eod(struct smtp_session *s)
{
    struct smtp_verdict v;
    struct smtp_txn *t = s->txn;
    unsigned f = s->dr.flags;

    s->state = ST_CMD;
    t->data_flags = f;
    metrics_add(M_SMTP_RECEIVED_BYTES, s->dr.size, s->mlabel, NULL);
    if (f & DATA_TOO_BIG) {
        verdict_init(&v, 552, "5.3.4", "Error: message exceeds fixed maximum message size");
    } else if (s->over_budget) {
        verdict_init(&v, 452, "4.3.1", "Insufficient system storage");
    } else if (f & (DATA_BARE_CR | DATA_BARE_LF)) {
        verdict_init(&v, 550, "5.6.0",
                     "Error: bare CR or LF in message; only CRLF line endings are accepted");
    } else if (f & DATA_NUL) {
        verdict_init(&v, 550, "5.6.0", "Error: NUL octet in message");
    } else if (f & DATA_LINE_TOO_LONG) {
        /* conf.max_line counts the CRLF; the reply names the octets before it */
        size_t max = s->srv->conf.max_line > 2 ? s->srv->conf.max_line - 2 : 0;
        verdict_init(&v, 550, "5.6.0", "");
        smtp_verdict_set(&v, 550, "5.6.0", "Error: message has a line longer than %zu octets", max);
    } else {
        verdict_init(&v, 250, "2.0.0", "Ok: message accepted");
        if (HOOK(s, on_message))
            HOOK(s, on_message)(s->srv->conf.ctx, s, t, &v);
        session_verdict(s, STEP_EOD, &v);
        return;
    }
    log_info("session %llu: message refused: %s", (unsigned long long)s->id, v.text);
    if (HOOK(s, on_refused))
        HOOK(s, on_refused)(s->srv->conf.ctx, s, &v);
    session_apply(s, STEP_EOD, &v);
}

/* Feed buffered input to the data reader; returns false when it needs more input. */
static bool session_data(struct smtp_session *s, struct evbuffer *in)
{
    struct evbuffer_iovec vec[16];
    int nv = evbuffer_peek(in, -1, NULL, vec, 16);
    size_t total = 0;
    int done = 0;

    if (nv > 16)
        nv = 16;
    for (int i = 0; i < nv && !done; i++)
        total +=
            data_reader_feed(&s->dr, vec[i].iov_base, vec[i].iov_len, &done, session_body_emit, s);
    evbuffer_drain(in, total);
    if (done)
        session_eod(s);
    return done || total > 0;
}

static void session_process(struct smtp_session *s)
{
    struct evbuffer *in = session_input(s);
    char line[AUTH_LINE_MAX + 1];

    while (!s->paused && !s->closing && s->state != ST_TLS_SWITCH) {
        size_t n = evbuffer_get_length(in);
        if (evbuffer_get_length(s->out) > OUTPUT_HIGH / 2)
            session_flush(s);
        if (n == 0 || session_unsent(s) > OUTPUT_HIGH)
            break; /* resumed by session_drained() once the client reads */
        if (s->state == ST_DATA) {
            if (!session_data(s, in))
                break;
            continue;
        }
        size_t win = n < s->lr.max ? n : s->lr.max;
        const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)win);
        size_t linelen = 0, consumed = 0;
        enum line_status st = line_reader_next(&s->lr, p, win, &linelen, &consumed);
        if (st == LINE_OK) {
            s->line_since = 0; /* the next line has its own deadline */
            memcpy(line, p, linelen);
            line[linelen] = '\0';
            evbuffer_drain(in, consumed);
            session_line(s, line, linelen);
        } else if (st == LINE_TOO_LONG) {
            evbuffer_drain(in, consumed);
            if (s->state != ST_CMD) {
                s->state = ST_CMD;
                line_reader_init(&s->lr, session_cmd_max(s));
                s->lr.skipping = 1;
            }
            session_error(s, 500, "5.5.2", "Error: line too long");
        } else {
            evbuffer_drain(in, consumed);
            if (consumed == 0)
                break;
        }
    }
}

/* ---- life cycle ---------------------------------------------------------- */

static void session_free(struct smtp_session *s)
{
    struct smtp_server *srv = s->srv;
    if (HOOK(s, on_close))
        HOOK(s, on_close)(srv->conf.ctx, s);
    log_debug("session %llu: closed", (unsigned long long)s->id);
    metrics_inc(M_SMTP_SESSIONS, s->mlabel, s->tls ? "yes" : "no");
    metrics_gauge_add(M_SMTP_SESSIONS_ACTIVE, -1, s->mlabel, NULL);
    if (s->prev)
        s->prev->next = s->next;
    else
        srv->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    srv->nsessions--;
    if (s->delay_ev)
        event_free(s->delay_ev);
    if (s->total_ev)
        event_free(s->total_ev);
    if (s->deadline_ev)
        event_free(s->deadline_ev);
    if (srv->conf.limits)
        smtp_limits_disconnect(srv->conf.limits, &s->hold);
    if (s->rev)
        event_free(s->rev);
    if (s->wev)
        event_free(s->wev);
    if (s->in)
        evbuffer_free(s->in);
    if (s->bev)
        bufferevent_free(s->bev);
    evbuffer_free(s->out);
    if (!s->bev_owns_fd && s->fd >= 0)
        close(s->fd);
    txn_free(s->txn);
    session_body_release(s);
    explicit_bzero(s->login_user, sizeof(s->login_user));
    free(s);
}

/*
 * Hand queued replies to the connection.  Plain: written at once, as much
 * as the socket takes; the rest waits for write readiness (wev).  TLS: moved
 * into the bufferevent.
 */
static void session_flush(struct smtp_session *s)
{
    if (evbuffer_get_length(s->out) == 0 || s->dead)
        return;
    if (s->bev) {
        if (bufferevent_write_buffer(s->bev, s->out) < 0)
            log_warn("session %llu: cannot queue replies", (unsigned long long)s->id);
        return;
    }
    if (evbuffer_write(s->out, s->fd) < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
        errno != EINTR) {
        s->dead = true; /* the peer is gone: nothing more can be said */
        session_close(s);
        return;
    }
    if (evbuffer_get_length(s->out) > 0 && !event_pending(s->wev, EV_WRITE, NULL)) {
        const struct smtp_server_conf *c = &s->srv->conf;
        struct timeval tv = {c->idle_timeout ? c->idle_timeout : 300, 0};
        if (event_add(s->wev, &tv) < 0)
            fatal("cannot watch a connection");
    }
}

/* Every event callback ends here: flush, switch to TLS once the 220 is out,
 * free a closing session whose replies have left, and re-arm reading. */
static bool session_reap(struct smtp_session *s)
{
    session_flush(s);
    if (s->state == ST_TLS_SWITCH && !s->closing && session_unsent(s) == 0)
        session_start_tls(s);
    if (s->closing && (s->dead || session_unsent(s) == 0)) {
        session_free(s);
        return true;
    }
    session_deadline_update(s);
    session_io_update(s);
    return false;
}

/* All replies have left: go on with input that waited for the client to read. */
static void session_drained(struct smtp_session *s)
{
    if (!s->closing && !s->paused && s->state != ST_TLS_SWITCH &&
        evbuffer_get_length(session_input(s)) > 0)
        session_process(s);
    session_reap(s);
}

static void session_timeout(struct smtp_session *s, const char *what)
{
    char t[300];
    snprintf(t, sizeof(t), "%s Error: timeout exceeded", s->srv->conf.hostname);
    log_info("session %llu: %s timeout", (unsigned long long)s->id, what);
    if (s->state != ST_TLS_SWITCH)
        session_reply(s, 421, "4.4.2", t);
    session_close(s);
}

/*
 * Deadlines, kept by one timer: waiting for a command, idle_timeout; from
 * the first octet of a command line to its end, command_timeout (one octet
 * a second does not keep a session alive); the whole DATA phase,
 * data_timeout.  Time a hook takes (a paused session) does not count.
 */
static void session_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smtp_session *s = arg;
    (void)fd;
    (void)what;
    s->deadline = 0;
    if (!s->closing)
        session_timeout(s, s->state == ST_DATA ? "data" : s->line_since ? "command" : "idle");
    session_reap(s);
}

static void session_deadline_update(struct smtp_session *s)
{
    const struct smtp_server_conf *c = &s->srv->conf;
    uint64_t now = clock_mono_ms(), target;
    unsigned idle = c->idle_timeout ? c->idle_timeout : 300;

    if (s->closing || s->paused || s->state == ST_TLS_SWITCH) {
        if (s->deadline && s->deadline_ev)
            evtimer_del(s->deadline_ev);
        s->deadline = 0;
        s->idle_since = s->line_since = 0;
        return;
    }
    if (s->state == ST_DATA) {
        if (!s->data_since)
            s->data_since = now;
        s->idle_since = s->line_since = 0;
        target = s->data_since + 1000ULL * (c->data_timeout ? c->data_timeout : 600);
    } else if (evbuffer_get_length(session_input(s)) > 0) {
        if (!s->line_since)
            s->line_since = now;
        s->idle_since = s->data_since = 0;
        target = s->line_since + 1000ULL * (c->command_timeout ? c->command_timeout : idle);
    } else {
        if (!s->idle_since)
            s->idle_since = now;
        s->line_since = s->data_since = 0;
        target = s->idle_since + 1000ULL * idle;
    }
    if (target == s->deadline)
        return;
    if (!s->deadline_ev && !(s->deadline_ev = evtimer_new(s->srv->base, session_deadline_cb, s)))
        fatal("cannot arm a timer");
    uint64_t left = target > now ? target - now : 0;
    struct timeval tv = {(time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000};
    if (evtimer_add(s->deadline_ev, &tv) < 0)
        fatal("cannot arm a timer");
    s->deadline = target;
}

/* ---- plain connections ------------------------------------------------------ */

static void session_plain_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smtp_session *s = arg;
    if (what & EV_TIMEOUT) {
        session_timeout(s, "idle");
        session_reap(s);
        return;
    }
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(s->in, 16384, &v, 1) < 1)
        fatal("out of memory");
    ssize_t n = read(fd, v.iov_base, v.iov_len);
    if (n > 0) {
        v.iov_len = (size_t)n;
        if (evbuffer_commit_space(s->in, &v, 1) < 0)
            fatal("cannot commit input");
        session_process(s);
    } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        s->dead = true;
        session_close(s);
    }
    session_reap(s);
}

static void session_plain_write_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smtp_session *s = arg;
    (void)fd;
    if (what & EV_TIMEOUT) {
        log_info("session %llu: write timeout", (unsigned long long)s->id);
        s->dead = true;
        session_close(s);
        session_reap(s);
        return;
    }
    if (evbuffer_write(s->out, s->fd) < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
        errno != EINTR) {
        s->dead = true;
        session_close(s);
        session_reap(s);
        return;
    }
    if (evbuffer_get_length(s->out) > 0)
        return; /* still waiting for the client to read */
    event_del(s->wev);
    session_drained(s);
}

/* ---- TLS connections (bufferevent_openssl) ------------------------------------ */

static void session_tls_read_cb(struct bufferevent *bev, void *arg)
{
    struct smtp_session *s = arg;
    (void)bev;
    session_process(s);
    session_reap(s);
}

static void session_tls_write_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    session_drained(arg);
}

static void session_tls_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct smtp_session *s = arg;
    (void)bev;
    if (what & BEV_EVENT_TIMEOUT) {
        if (s->closing) {
            s->dead = true;
        } else {
            session_timeout(s, "idle");
            bufferevent_enable(s->bev, EV_WRITE);
        }
    } else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        if (what & BEV_EVENT_ERROR) {
            unsigned long e = bufferevent_get_openssl_error(s->bev);
            if (e)
                log_info("session %llu: TLS error: %s", (unsigned long long)s->id,
                         ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "unknown");
        }
        s->dead = true;
        session_close(s);
    }
    session_reap(s);
}

/* Wrap fd in TLS (implicit TLS, or after STARTTLS).  Returns -1 on failure. */
static int session_tls_setup(struct smtp_session *s)
{
    const struct smtp_server_conf *c = &s->srv->conf;
    struct timeval idle = {c->idle_timeout ? c->idle_timeout : 300, 0};
    SSL *ssl = SSL_new(c->tls);
    if (!ssl)
        return -1;
    s->bev = bufferevent_openssl_socket_new(s->srv->base, s->fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                            BEV_OPT_CLOSE_ON_FREE);
    if (!s->bev) {
        SSL_free(ssl);
        return -1;
    }
    s->bev_owns_fd = true;
    s->tls = true;
    bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
    bufferevent_setcb(s->bev, session_tls_read_cb, session_tls_write_cb, session_tls_event_cb, s);
    bufferevent_setwatermark(s->bev, EV_READ, 0, INPUT_HIGH);
    bufferevent_set_timeouts(s->bev, &idle, &idle);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    return 0;
}

/* The 220 to STARTTLS has left: the rest of the connection is TLS. */
static void session_start_tls(struct smtp_session *s)
{
    event_free(s->rev);
    event_free(s->wev);
    s->rev = s->wev = NULL;
    s->reading = false;
    evbuffer_free(s->in); /* already drained: RFC 3207 */
    s->in = NULL;
    s->state = ST_CMD;
    s->paused = false;
    line_reader_init(&s->lr, session_cmd_max(s));
    if (session_tls_setup(s) < 0) {
        log_warn("session %llu: cannot set up TLS", (unsigned long long)s->id);
        s->dead = true;
        session_close(s);
        return;
    }
    log_debug("session %llu: TLS started", (unsigned long long)s->id);
}

static void session_total_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smtp_session *s = arg;
    (void)fd;
    (void)what;
    if (!s->closing)
        session_timeout(s, "session");
    else
        s->dead = true;
    session_reap(s);
}

/* Over a connection limit: one 421 line if the socket takes it, then close. */
static void session_refuse(struct smtp_server *srv, int fd, const struct sockaddr *peer,
                           enum smtp_limits_verdict why)
{
    char line[400], addr[64];
    const char *what = why == LIMITS_SESSIONS ? "Too many connections, try again later"
                       : why == LIMITS_RATE   ? "Too many connections per minute from your address"
                                              : "Too many connections from your address";
    int n = snprintf(line, sizeof(line), "421 4.7.0 %s %s\r\n", srv->conf.hostname, what);
    netaddr_format(peer, addr, sizeof(addr));
    uint64_t now = clock_mono_ms();
    metrics_inc(M_SMTP_CONNECTIONS_REFUSED, srv->conf.name ? srv->conf.name : "smtp", NULL);
    srv->refused++;
    if (now - srv->refused_logged >= 1000) { /* a flood writes one line a second */
        srv->refused_logged = now;
        log_info("refused a connection from %s: %s (%lu refused so far)", addr, what, srv->refused);
    }
    if (n > 0 && write(fd, line, (size_t)n) < 0) {
        /* a full or reset socket: the close says enough */
    }
    close(fd);
}

void smtp_server_accept(struct smtp_server *srv, int fd, const struct sockaddr *peer,
                        bool implicit_tls)
{
    struct smtp_session *s;
    struct smtp_verdict v;
    struct smtp_limits_hold hold = {{0, 0}};
    char text[300];

    if (srv->conf.limits) {
        enum smtp_limits_verdict lv =
            smtp_limits_connect(srv->conf.limits, peer, clock_mono_ms(), &hold);
        if (lv != LIMITS_OK) {
            session_refuse(srv, fd, peer, lv);
            return;
        }
    }
    s = calloc(1, sizeof(*s));
    if (!s)
        fatal("out of memory");
    s->hold = hold;
    s->srv = srv;
    s->fd = fd;
    s->id = ++srv->next_id;
    s->index = ++srv->connections;
    s->mlabel = implicit_tls && srv->conf.name_tls ? srv->conf.name_tls
                : srv->conf.name                   ? srv->conf.name
                                                   : "smtp";
    s->out = evbuffer_new();
    if (!s->out)
        fatal("out of memory");
    netaddr_format(peer, s->peer, sizeof(s->peer));
    line_reader_init(&s->lr, session_cmd_max(s));
    if (implicit_tls && srv->conf.tls) {
        if (session_tls_setup(s) < 0) {
            close(fd);
            evbuffer_free(s->out);
            if (srv->conf.limits)
                smtp_limits_disconnect(srv->conf.limits, &s->hold);
            free(s);
            log_warn("cannot set up TLS for a new connection");
            return;
        }
    } else {
        s->in = evbuffer_new();
        s->rev = event_new(srv->base, fd, EV_READ | EV_PERSIST, session_plain_read_cb, s);
        s->wev = event_new(srv->base, fd, EV_WRITE | EV_PERSIST, session_plain_write_cb, s);
        if (!s->in || !s->rev || !s->wev)
            fatal("out of memory");
    }
    s->next = srv->head;
    if (srv->head)
        srv->head->prev = s;
    srv->head = s;
    srv->nsessions++;
    metrics_inc(M_SMTP_CONNECTIONS, s->mlabel, NULL);
    metrics_gauge_add(M_SMTP_SESSIONS_ACTIVE, 1, s->mlabel, NULL);
    if (srv->conf.total_timeout) {
        struct timeval tv = {srv->conf.total_timeout, 0};
        s->total_ev = evtimer_new(srv->base, session_total_cb, s);
        if (!s->total_ev || evtimer_add(s->total_ev, &tv) < 0)
            fatal("cannot arm a timer");
    }
    log_debug("session %llu: connect from %s%s", (unsigned long long)s->id, s->peer,
              s->tls ? " (TLS)" : "");

    s->state = ST_GREETING;
    snprintf(text, sizeof(text), "%s ESMTP tern", srv->conf.hostname);
    verdict_init(&v, 220, NULL, text);
    if (HOOK(s, on_connect))
        HOOK(s, on_connect)(srv->conf.ctx, s, &v);
    session_verdict(s, STEP_CONNECT, &v);
    session_reap(s);
}

/* ---- server ------------------------------------------------------------------ */

struct smtp_server *smtp_server_new(struct event_base *base, const struct smtp_server_conf *conf)
{
    struct smtp_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        fatal("out of memory");
    signal(SIGPIPE, SIG_IGN); /* a peer that went away is an error return, not a signal */
    srv->base = base;
    srv->conf = *conf;
    if (!srv->conf.hostname)
        srv->conf.hostname = "localhost";
    return srv;
}

void smtp_server_shutdown(struct smtp_server *srv)
{
    char t[300];
    srv->shutting_down = true;
    snprintf(t, sizeof(t), "%s Service shutting down", srv->conf.hostname);
    for (struct smtp_session *s = srv->head, *next; s; s = next) {
        next = s->next;
        if (s->closing)
            continue;
        if (s->state != ST_TLS_SWITCH)
            session_reply(s, 421, "4.3.2", t);
        session_close(s);
        session_reap(s);
    }
}

unsigned smtp_server_sessions(const struct smtp_server *srv)
{
    return srv->nsessions;
}

void smtp_server_set_tls(struct smtp_server *srv, SSL_CTX *tls)
{
    if (srv->conf.tls && tls)
        srv->conf.tls = tls; /* only SSL_new() reads it, at each handshake's start */
}

void smtp_server_free(struct smtp_server *srv)
{
    while (srv->head) {
        srv->head->dead = true;
        session_free(srv->head);
    }
    free(srv);
}

int smtp_server_resume(struct smtp_server *srv, uint64_t id, const struct smtp_verdict *v)
{
    struct smtp_session *s;
    for (s = srv->head; s; s = s->next)
        if (s->id == id)
            break;
    if (!s || !s->paused || s->closing || s->held.action != SMTP_V_PENDING)
        return -1;
    s->held = *v;
    s->held.action = v->action == SMTP_V_PENDING ? SMTP_V_REPLY : v->action;
    if (s->held.delay_ms) {
        session_verdict(s, s->step, &s->held);
        return 0;
    }
    session_delay_cb(-1, 0, s);
    return 0;
}

/* ---- accessors ------------------------------------------------------------------ */

uint64_t smtp_session_id(const struct smtp_session *s)
{
    return s->id;
}

const char *smtp_session_peer(const struct smtp_session *s)
{
    return s->peer;
}

const char *smtp_session_helo(const struct smtp_session *s)
{
    return s->helo[0] ? s->helo : s->pend_helo;
}

const char *smtp_session_auth_user(const struct smtp_session *s)
{
    return s->authed ? s->auth_user : NULL;
}

bool smtp_session_tls(const struct smtp_session *s)
{
    return s->tls;
}

unsigned long smtp_session_index(const struct smtp_session *s)
{
    return s->index;
}

const struct smtp_txn *smtp_session_txn(const struct smtp_session *s)
{
    return s->txn;
}

void smtp_session_set_data(struct smtp_session *s, void *data)
{
    s->data = data;
}

void *smtp_session_data(const struct smtp_session *s)
{
    return s->data;
}

struct smtp_server *smtp_session_server(const struct smtp_session *s)
{
    return s->srv;
}
