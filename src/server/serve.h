/*
 * serve.h - `tern serve`: the mail server, put together.
 *
 * The server only wires things together: listeners and sessions
 * (smtp/session.h) with their policy hooks (receive.c), the delivery
 * engine (deliver/engine.h) with its timer and worker threads, the
 * configuration snapshot (conf/snapshot.h), and signals.
 *
 * Threads: one event-loop thread owns the sessions, the engine and the
 * snapshot pointer.  Blocking work runs on two pools (workers.h): commits
 * (write + fsync before the 250) and delivery attempts (couriers); their
 * results come back on the loop thread.
 *
 *   receive.c  session hooks: AUTH, sender and recipient policy, Received:,
 *              the queue commit before the 250
 *   checks.c   inbound SPF, DKIM, DMARC and Authentication-Results ([checks])
 *   serve.c    options, start-up, the engine's timer and executor, the
 *              pickup watch, signals (HUP reload, USR1 retry, TERM stop)
 *   notify.c   sd_notify to systemd: READY, RELOADING, STOPPING, STATUS
 *   admin.c    [admin] listen: GET /metrics (Prometheus), the queue's gauges
 */
#ifndef TERN_SERVER_SERVE_H
#define TERN_SERVER_SERVE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct event;
struct event_base;
struct engine;
struct qstore;
struct smtp_hooks;
struct smtp_server;
struct receive_auth;
struct checks;
struct snapshot;
struct workers;
typedef struct ssl_ctx_st SSL_CTX;

#define SERVE_SELF_MAX 24 /* listening endpoints remembered for the loop check */

struct serve {
    struct event_base *base;
    char conf_path[1024];
    struct snapshot *snap; /* in force; sessions and attempts hold their own reference */
    struct snapshot *boot; /* the first one: what only a restart changes (listeners, paths,
                              host name) is read from it for the whole run */
    SSL_CTX *tls;          /* for new handshakes; replaced on SIGHUP (sessions hold the old one) */
    struct qstore *store, *pickup;
    struct workers *commit_pool, *deliver_pool;
    struct receive_auth *auth; /* password checks and failure counts (receive.c) */
    struct checks *checks;     /* inbound SPF, DKIM, DMARC (checks.c) */
    struct smtp_server *smtp, *submission;
    struct engine *engine;
    struct event *timer; /* the engine's next wake-up */
    bool stopping;
    uint64_t accepted, refused;
    struct sockaddr_storage self[SERVE_SELF_MAX]; /* our listening endpoints (loop check) */
    size_t nself;
};

/* receive.c */
extern const struct smtp_hooks receive_hooks;
void receive_init(struct serve *sv); /* after sv->base: the AUTH pool and failure tables */
void receive_free(struct serve *sv); /* finishes the checks in flight; before the servers */

int serve_main(int argc, char **argv);

#endif
