/*
 * client.h - the SMTP client: connect / send / close, with lazy connect,
 * reconnect with backoff, and per-recipient results.
 *
 * A client is one connection to one server, used from one thread, with
 * blocking calls and a deadline on every read and write (RFC 5321
 * 4.5.3.2 timeouts, configurable).  smtp_client_send() connects only when
 * it has a message; it reuses the connection for the next message (RSET
 * after a failed transaction).  When the server closes the connection
 * (EOF, reset, broken pipe) or answers 421 to any command, the client
 * reconnects with exponential backoff (first retry immediate, then
 * reconnect_base doubling to reconnect_max, +-20 % jitter) and resends the
 * interrupted message, until give_up_ms has passed.  A message whose
 * end-of-data got 250 is never resent.
 *
 * Results are per recipient: 2xx sent, 4xx transient, 5xx permanent.
 * Envelope addresses with CR, LF, NUL or bad syntax are refused locally
 * (permanent, 501 5.1.3) and never reach the wire; the body is sent with
 * CRLF line endings only and dot-stuffed, whatever the input had.
 */
#ifndef TERN_SMTP_CLIENT_H
#define TERN_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
};

enum smtp_outcome { SMTP_SENT = 2, SMTP_TRANSIENT = 4, SMTP_PERMANENT = 5 };

struct smtp_rcpt_result {
    enum smtp_outcome outcome;
    int code;       /* the reply code (0 for a local or connection error) */
    char text[300]; /* "451 4.3.0 text" or a local explanation, cleaned of control chars */
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
 * Send one message.  res must have nrcpt entries.  Returns the number of
 * recipients sent (0..nrcpt); res[i] says what happened to each.
 */
size_t smtp_client_send(struct smtp_client *c, const char *from, const char *const *rcpts,
                        size_t nrcpt, const char *msg, size_t len, struct smtp_rcpt_result *res);

/* QUIT (if connected) and close; the client can be used again (it reconnects lazily). */
void smtp_client_close(struct smtp_client *c);
void smtp_client_free(struct smtp_client *c);
const struct smtp_client_stats *smtp_client_stats(const struct smtp_client *c);
/* The TLS state of the current / last connection, e.g. "TLSv1.3 verified", "none". */
const char *smtp_client_tls_info(const struct smtp_client *c);

#endif
