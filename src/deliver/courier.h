/*
 * courier.h - the one interface every courier implements, and what the
 * couriers share.
 *
 * A courier takes one struct courier_job and fills one struct rcpt_result
 * (core/result.h) per recipient of the job: maildir, mda and pipe get one
 * recipient per call; smtp (per_domain) gets every pending recipient of one
 * destination domain; lmtp gets every pending recipient of the message for
 * one LMTP endpoint (arg).  The engine (deliver/attempt.c) picks the courier by
 * the recipient's typed target (enum courier_kind, deliver/route.h), from a
 * table of struct courier_ops that tests replace with fakes.  A courier
 * blocks (fsync, a program, a network dialogue): it runs on a delivery
 * worker thread, and only reads the job.  Nothing here allocates.
 */
#ifndef TERN_DELIVER_COURIER_H
#define TERN_DELIVER_COURIER_H

#include <stdbool.h>
#include <stddef.h>

#include "core/address.h"
#include "core/result.h"

enum courier_kind {
    COURIER_MAILDIR = 0, /* built-in Maildir writer */
    COURIER_MDA,         /* [local] mda_command */
    COURIER_PIPE,        /* "| command" alias */
    COURIER_SMTP,        /* another server: route, smarthost or MX */
    COURIER_LMTP,        /* [local] delivery = lmtp: a mailbox server (deliver/lmtp.h) */
    COURIER_KINDS
};

struct envelope;
struct env_rcpt;
struct remote_conf;
struct remote_dest;

/* One delivery call.  Everything is borrowed for the duration of the call. */
struct courier_job {
    const struct envelope *env;
    const struct env_rcpt *const *rcpts; /* the recipients of this call */
    size_t n;
    const char *arg; /* maildir: the Maildir path; pipe: the command; lmtp: the endpoint; else "" */
    const char *msg; /* the queued message, CRLF line ends */
    size_t len;
    /* settings from the configuration snapshot the attempt holds */
    const char *hostname;
    const char *mda_command;
    unsigned mda_timeout_ms;
    const struct remote_conf *remote; /* smtp; lmtp: its timeout */
    const struct remote_dest *dest;   /* smtp: the next hop for this domain */
    char *info;                       /* out (may be NULL): smtp host and TLS, for the log */
    size_t infosize;
};

struct courier_ops {
    const char *name; /* "maildir", "mda", "pipe", "smtp", "lmtp": logs and metrics */
    bool per_domain;  /* one call for all pending recipients of one domain */
    /* Deliver; res has job->n entries, each set. */
    void (*deliver)(const struct courier_job *job, struct rcpt_result *res);
    void (*thread_exit)(void); /* clean-up when a delivery thread stops, or NULL */
};

/* The real couriers, indexed by enum courier_kind. */
extern const struct courier_ops courier_maildir, courier_mda, courier_pipe, courier_smtp,
    courier_lmtp;
extern const struct courier_ops *const courier_table[COURIER_KINDS];

/* The thread_exit of every courier of courier_table (smtp and lmtp keep
 * connections per thread): for a delivery thread that stops. */
void courier_thread_exit(void);

/*
 * The envelope values a delivery may hand to a program (substitutions in a
 * command line, and its environment).  NULL members count as "".  from is
 * "" for the null sender <>.  to is the address being delivered to
 * (local@domain, after alias expansion); to_user and to_domain are its two
 * halves; orig_to is the address as the client gave it in RCPT TO.
 */
struct courier_vars {
    const char *from;
    const char *to;
    const char *to_user;
    const char *to_domain;
    const char *orig_to;
};

/*
 * What a local courier (maildir, mda, pipe) hands on for the one recipient
 * of job: the program-facing values (to_user and to_domain point into
 * user and domain) and the header fields it prepends, "Return-Path:
 * <sender>\r\nDelivered-To: addr\r\n".  courier_local_init() also clears
 * the result.
 */
struct courier_local {
    struct courier_vars vars;
    char user[ADDR_LOCAL_MAX + 1], domain[ADDR_DOMAIN_MAX + 1];
    char prefix[2 * ADDR_PATH_MAX + 64];
};
void courier_local_init(struct courier_local *cl, const struct courier_job *j,
                        struct rcpt_result *res);

/* True if s (NULL counts as "") has a control character (< 0x20 or DEL). */
bool courier_has_ctl(const char *s);

/*
 * A reader over a message given as two pieces (a prefix of header fields
 * the courier adds, then the queued message), optionally turning every CRLF
 * into LF, the line end that Maildir readers and Unix programs expect.  A
 * CR not followed by LF (within the same piece) is kept.  The pieces are
 * borrowed, not copied.
 */
struct courier_lf {
    const char *seg[2];
    size_t len[2];
    int idx;
    size_t pos;
    bool convert;
};

void courier_lf_init(struct courier_lf *r, const char *prefix, size_t prefix_len, const char *msg,
                     size_t len, bool convert);

/* Up to size octets into dst; 0 at the end. */
size_t courier_lf_read(struct courier_lf *r, char *dst, size_t size);

#endif
