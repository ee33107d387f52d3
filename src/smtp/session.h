/*
 * session.h - the SMTP server side: one connection's state machine on a
 * libevent bufferevent, driven by a table of commands, with hooks through
 * which a program (sink, serve) decides what to accept.
 *
 * The session owns the connection, the current transaction and every reply;
 * hooks only fill in a verdict (a reply, a close, a delay).  A hook may also
 * answer SMTP_V_PENDING and later call smtp_session_resume(): the session
 * reads no further input until then, so replies always leave in order
 * (PIPELINING) and input is never discarded.
 */
#ifndef TERN_SMTP_SESSION_H
#define TERN_SMTP_SESSION_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/buf.h"
#include "core/command.h"
#include "smtp/limits.h"

struct event_base;
struct bufferevent;
typedef struct ssl_ctx_st SSL_CTX;

enum smtp_action {
    SMTP_V_REPLY = 0,   /* send the reply, go on */
    SMTP_V_REPLY_CLOSE, /* send the reply, then close the connection */
    SMTP_V_CLOSE,       /* close at once, no reply */
    SMTP_V_PENDING,     /* answer later through smtp_session_resume() */
};

/* What a hook decides.  The session pre-fills the normal reply; a hook changes what it must. */
struct smtp_verdict {
    enum smtp_action action;
    int code;
    char enh[16];
    char text[256];
    unsigned delay_ms; /* wait this long before replying (or closing) */
};

void smtp_verdict_set(struct smtp_verdict *v, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* One mail transaction: MAIL, its RCPTs and the message.  RSET frees it. */
struct smtp_txn {
    struct mail_params mail;
    struct rcpt_params *rcpts;
    size_t nrcpt, rcpt_cap;
    struct buf body;     /* message as received (dot-unstuffed); a hook may steal body.p */
    unsigned data_flags; /* enum data_flags of the finished DATA */
};

struct smtp_session;

struct smtp_hooks {
    void (*on_connect)(void *ctx, struct smtp_session *s, struct smtp_verdict *v);
    void (*on_helo)(void *ctx, struct smtp_session *s, const char *name, struct smtp_verdict *v);
    /* AUTH: credentials decoded; set v->code to 235 to accept, 535 to refuse. */
    void (*on_auth)(void *ctx, struct smtp_session *s, const char *user, const char *pass,
                    struct smtp_verdict *v);
    void (*on_mail)(void *ctx, struct smtp_session *s, const struct mail_params *p,
                    struct smtp_verdict *v);
    void (*on_rcpt)(void *ctx, struct smtp_session *s, const struct rcpt_params *p,
                    struct smtp_verdict *v);
    void (*on_data)(void *ctx, struct smtp_session *s, struct smtp_verdict *v);
    /* End of data with a message within limits: accept (250) or refuse. */
    void (*on_message)(void *ctx, struct smtp_session *s, struct smtp_txn *t,
                       struct smtp_verdict *v);
    /* The session itself refused a message at end of data (size, line endings). */
    void (*on_refused)(void *ctx, struct smtp_session *s, const struct smtp_verdict *v);
    void (*on_close)(void *ctx, struct smtp_session *s);
};

struct smtp_server_conf {
    const char *hostname;
    uint64_t max_size;        /* message size limit, advertised with SIZE (0 = none) */
    unsigned max_rcpts;       /* recipients per message */
    unsigned max_errors;      /* bad commands before 421 and close */
    unsigned idle_timeout;    /* seconds waiting for a command (default 300) */
    unsigned command_timeout; /* seconds from a command's first octet to its end (0 = idle) */
    unsigned data_timeout;    /* seconds for the whole DATA phase (0 = 600) */
    unsigned total_timeout;   /* seconds for the whole session (0 = none) */
    size_t max_line;          /* text line limit in DATA incl. CRLF (0 = none) */
    SSL_CTX *tls;             /* offer STARTTLS (and accept implicit TLS) when set */
    bool auth;                /* offer AUTH PLAIN LOGIN (hooks.on_auth decides) */
    bool auth_plaintext;      /* offer AUTH without TLS too */
    bool auth_required;       /* MAIL needs AUTH first (submission) */
    unsigned ext;             /* enum esmtp_ext offered besides SIZE/AUTH */
    /* Sessions per client, in all, and body memory; shared by every server of
     * the program (NULL = none).  Over a limit a connection is answered 421
     * and closed before any hook runs; a body over the memory budget gets 452. */
    struct smtp_limits *limits;
    const struct smtp_hooks *hooks;
    void *ctx;
    /* the listener label of this server's metrics (core/metrics.h; NULL = "smtp"),
     * and of its implicit-TLS connections (NULL = name) */
    const char *name, *name_tls;
};

struct smtp_server; /* the set of live sessions sharing one conf */

struct smtp_server *smtp_server_new(struct event_base *base, const struct smtp_server_conf *conf);
/* Take over an accepted socket; implicit_tls wraps it in TLS first (port 465). */
void smtp_server_accept(struct smtp_server *srv, int fd, const struct sockaddr *peer,
                        bool implicit_tls);
/* 421 to every session, then close them as their output drains. */
void smtp_server_shutdown(struct smtp_server *srv);
unsigned smtp_server_sessions(const struct smtp_server *srv);
/* New TLS handshakes use tls from now on (a certificate renewed, SIGHUP); a
 * session in TLS already keeps its own context (its SSL holds a reference).
 * The caller owns tls and keeps it until it has set another one or freed srv. */
void smtp_server_set_tls(struct smtp_server *srv, SSL_CTX *tls);
void smtp_server_free(struct smtp_server *srv);

/* Read-only facts about a session, for hooks. */
uint64_t smtp_session_id(const struct smtp_session *s);
const char *smtp_session_peer(const struct smtp_session *s);
const char *smtp_session_helo(const struct smtp_session *s);
const char *smtp_session_auth_user(const struct smtp_session *s); /* NULL if not authenticated */
bool smtp_session_tls(const struct smtp_session *s);
unsigned long smtp_session_index(const struct smtp_session *s); /* 1-based connection count */
const struct smtp_txn *smtp_session_txn(const struct smtp_session *s);
struct smtp_server *smtp_session_server(const struct smtp_session *s);
/* One pointer of the program's own per session, NULL at first (e.g. the
 * configuration the session started with); on_close releases what it holds. */
void smtp_session_set_data(struct smtp_session *s, void *data);
void *smtp_session_data(const struct smtp_session *s);

/* Answer a SMTP_V_PENDING verdict.  Looks the session up by id: a session that
 * went away meanwhile is ignored (returns -1). */
int smtp_server_resume(struct smtp_server *srv, uint64_t session_id, const struct smtp_verdict *v);

#endif
