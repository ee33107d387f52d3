/*
 * client.h - the SMTP client: lazy connect, reuse, reconnect with backoff,
 * DSN pass-through and one struct rcpt_result (core/result.h) a recipient.
 *
 * One client is one connection to one server, used from one thread, with
 * blocking calls and a deadline on every read and write (RFC 5321 4.5.3.2).
 * EOF, reset or a 421 reconnects (first retry at once, then reconnect_base
 * doubling to reconnect_max, +-20 % jitter) and resends until give_up_ms; a
 * message whose end-of-data got 250 is never resent; a session whose
 * set-up failed (greeting, EHLO, STARTTLS, AUTH) is closed, never reused.
 *
 * A server's reply gives cls from 2xx/4xx/5xx, its code, its enhanced code
 * as status (else "4.0.0" / "5.0.0"; "" when OK) and itself as text, on one
 * line.  A local or connection error has code 0, a status of ours (4.4.1 no
 * connection, 4.4.2 lost or timed out, 4.7.x TLS, 5.7.8 AUTH, 5.1.3 / 5.1.7
 * bad address ...) and an explanation as text.  Only towards a server whose
 * EHLO lists DSN do RET, ENVID, NOTIFY and ORCPT go along; an ENVID or
 * ORCPT that is not valid xtext is left out (logged), never sent.
 * dsn_passed: accepted at end of data in a transaction that carried any.
 * Addresses with CR, LF or bad syntax never reach the wire; the body goes
 * with CRLF only, dot-stuffed.  Nothing of the caller's is kept after a call.
 */
#ifndef TERN_SMTP_CLIENT_H
#define TERN_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/command.h" /* enum dsn_ret, enum dsn_notify, ENVID_MAX, ORCPT_MAX */
#include "core/result.h"

enum smtp_tls_policy {
    SMTP_TLS_NONE,          /* never STARTTLS */
    SMTP_TLS_OPPORTUNISTIC, /* STARTTLS when offered; a failed handshake retries in clear */
    SMTP_TLS_REQUIRED,      /* STARTTLS or fail (transient) */
    SMTP_TLS_IMPLICIT,      /* TLS from the first octet (port 465) */
};

struct smtp_client_conf {
    const char *host;      /* name or numeric address ([v6] allowed) */
    const char *port;      /* "25", "587", ... */
    const char *helo_name; /* default "localhost" */
    enum smtp_tls_policy tls;
    int tls_verify;          /* -1 default: on for REQUIRED/IMPLICIT, off otherwise */
    const char *tls_ca_file; /* NULL: the system store */
    const char *tls_name;    /* name to verify (default host) */
    const char *auth_user, *auth_pass;
    bool auth_plaintext; /* allow AUTH without TLS (tests only) */
    /* timeouts in ms (0: RFC 5321 defaults) */
    unsigned connect_ms, greeting_ms, command_ms, data_init_ms, data_block_ms, data_end_ms;
    uint64_t reconnect_base_ms; /* default 1000 */
    uint64_t reconnect_max_ms;  /* default 60000 */
    uint64_t give_up_ms;        /* default 600000 */
    unsigned max_connects;      /* connection attempts per message; 0 = until give_up */
    /* LMTP (RFC 2033): LHLO instead of EHLO (no HELO fall-back), and after the
     * end of data one reply per accepted recipient, in RCPT order, each that
     * recipient's alone.  A connection lost after the first of those replies is
     * not resent (the recipients answered keep their answer, the others get the
     * transient error): resending could deliver twice. */
    bool lmtp;
    const char *unix_path; /* connect to this unix socket instead of host:port (host: for logs) */
};

/* One recipient of a message. */
struct smtp_rcpt {
    const char *addr;  /* mailbox, without angle brackets */
    unsigned notify;   /* enum dsn_notify bits, 0 = not given (NEVER wins over others) */
    const char *orcpt; /* "addr-type;xtext" as it goes on the wire, NULL or "" = none */
};

/* The envelope of one message. */
struct smtp_envelope {
    const char *from;  /* mailbox without angle brackets, "" (or NULL) = the null sender <> */
    enum dsn_ret ret;  /* RET_NONE = not given */
    const char *envid; /* xtext as received, NULL or "" = none */
    const struct smtp_rcpt *rcpts;
    size_t nrcpt;
};

struct smtp_client_stats {
    uint64_t attempts;             /* transactions started */
    uint64_t successes;            /* messages with end-of-data 250 */
    uint64_t transient, permanent; /* recipients that failed so */
    uint64_t reconnects;
    uint64_t replies_421;
    uint64_t connects;
};

struct smtp_client;

struct smtp_client *smtp_client_new(const struct smtp_client_conf *conf);

/*
 * Send one message msg[0..len) to e->rcpts[0..e->nrcpt).  res must have
 * e->nrcpt entries; res[i] says what happened to e->rcpts[i].  Returns the
 * number of recipients delivered (class OK), 0..e->nrcpt.
 */
size_t smtp_client_send(struct smtp_client *c, const struct smtp_envelope *e, const char *msg,
                        size_t len, struct rcpt_result *res);

/* QUIT (if connected) and close; the client can be used again (it reconnects lazily). */
void smtp_client_close(struct smtp_client *c);
void smtp_client_free(struct smtp_client *c);
const struct smtp_client_stats *smtp_client_stats(const struct smtp_client *c);
/* The TLS state of the current / last connection, e.g. "TLSv1.3 verified", "none". */
const char *smtp_client_tls_info(const struct smtp_client *c);
/* The peer certificate of the current / last connection checked against the CA
 * file and the TLS name even when not enforced (MTA-STS testing mode): "valid",
 * "no TLS", or OpenSSL's reason ("hostname mismatch", ...). */
const char *smtp_client_tls_cert(const struct smtp_client *c);

#endif
