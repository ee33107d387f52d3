/*
 * serve.h - `tern serve`: the mail server, put together.
 *
 * One event loop thread owns the SMTP sessions, the schedule of queued
 * items and the configuration; blocking work (queue commits with fsync,
 * local deliveries) runs on two worker pools and reports back on the loop.
 *
 *   receive.c  session hooks: AUTH, sender and recipient policy, Received:,
 *              the queue commit before the 250
 *   sched.c    the schedule: recovery, attempts, retry table, give-up, DSN
 *   serve.c    options, start-up, listeners, signals (HUP reload, TERM stop)
 *
 * The policy (users, aliases) is shared read-only with the workers through
 * a reference count, so SIGHUP swaps it without stopping deliveries.
 */
#ifndef TERN_SERVER_SERVE_H
#define TERN_SERVER_SERVE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "queue/envelope.h"
#include "queue/store.h"
#include "server/config.h"
#include "server/policy.h"

struct event_base;
struct smtp_server;
struct smtp_hooks;
struct workers;
struct sched;
typedef struct ssl_ctx_st SSL_CTX;

struct policy_ref {
    struct policy p;
    atomic_int refs;
};

struct serve {
    struct event_base *base;
    char conf_path[CONF_STR_MAX];
    struct conf conf;
    struct policy_ref *policy;
    SSL_CTX *tls;
    struct qstore *store;
    struct workers *commit_pool, *deliver_pool;
    struct smtp_server *smtp, *submission;
    struct sched *sched;
    bool stopping;
    uint64_t accepted, refused;
    /* remote delivery */
    char *smarthost_pass;             /* read from smarthost_password_file at start */
    struct sockaddr_storage self[24]; /* our listening endpoints (loop check) */
    size_t nself;
};

struct policy_ref *serve_policy_get(struct serve *sv);
void serve_policy_put(struct policy_ref *pr);

/* receive.c */
extern const struct smtp_hooks receive_hooks;
/* The delivery target of one resolved recipient: "maildir:PATH", "mda", "pipe:CMD", "smtp".
 * Returns 0 or -1 (bad maildir path). */
int receive_target(const struct conf *c, int kind, const char *user, const char *domain,
                   const char *value, char *out, size_t size);
/* Expand rcpt (an address) through the aliases into env's recipients. */
int receive_expand(struct serve *sv, const struct policy *p, struct envelope *env, const char *rcpt,
                   const char *orig, unsigned notify, const char *orcpt);

/* sched.c */
struct sched *sched_new(struct serve *sv);
void sched_add(struct sched *s, struct envelope *env); /* takes env */
void sched_recover(struct sched *s);
void sched_retry_all(struct sched *s); /* SIGUSR1: try everything now */
size_t sched_busy(const struct sched *s);
void sched_free(struct sched *s);

int serve_main(int argc, char **argv);

#endif
