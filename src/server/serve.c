/*
 * serve.c - `tern serve`: start-up, listeners, the engine's timer and
 * threads, the pickup watch, signals, shutdown.
 *
 * Start-up refuses a bad configuration with every problem listed as
 * FILE:LINE: what (the same text as `tern check-config`).  Then: the
 * snapshot (tern.conf, users, aliases), TLS (the configured certificate,
 * or a generated self-signed one so that STARTTLS and AUTH work out of the
 * box), the worker pools, the listeners:
 * smtp (25: local recipients, relay only after AUTH), submission (587:
 * AUTH required) and submissions (465: implicit TLS, AUTH required).
 * Started as root, it then becomes [server] user for good (privsep.h: it
 * refuses to start as root without one); the queue and the pickup spool
 * are opened as that user, the engine recovers the queue and takes in the
 * pickup folder.  Under systemd it then says READY=1 (notify.h).
 *
 * The engine is driven by events: a libevent timer armed at its next
 * wake-up, the delivery pool as its executor, an inotify watch on the
 * pickup folder (`tern sendmail` drops items there) and SIGUSR1.
 *
 * Signals: SIGHUP loads a new snapshot and swaps it in whole (a bad new
 * configuration is logged and the old one kept; listeners and paths need a
 * restart) and reads the TLS certificate and key again for new connections
 * (a bad one is logged and the old one kept); SIGUSR1 makes every queued
 * item due and takes in the pickup folder; SIGTERM and SIGINT stop
 * accepting, answer 421 to every session, let commits in flight finish
 * (their clients get their 250) and deliveries end, then exit.  Whatever
 * is still queued stays on disk.
 */
#include "server/serve.h"

#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/time.h>
#include <unistd.h>

#include "conf/snapshot.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/netaddr.h"
#include "deliver/engine.h"
#include "queue/store.h"
#include "server/notify.h"
#include "server/admin.h"
#include "server/privsep.h"
#include "server/workers.h"
#include "smtp/listen.h"
#include "smtp/session.h"
#include "smtp/tls.h"

#define SERVE_LISTENERS_MAX 24
#define SERVE_STOP_MS 10000

struct serve_run {
    struct serve *sv;
    struct smtp_listener *listeners[SERVE_LISTENERS_MAX];
    size_t nlisteners;
    struct event *stop_timer;
    uint64_t stop_deadline;
    int inotify_fd;
    struct event *pickup_ev;
    struct event *notify_timer; /* STATUS= for systemd (only under NOTIFY_SOCKET) */
    unsigned notify_ticks;
};

static void serve_print_errors(const struct conf_errors *e)
{
    for (size_t i = 0; i < e->n; i++)
        fprintf(stderr, "%s\n", e->v[i]);
    if (e->truncated)
        fprintf(stderr, "(more problems not shown)\n");
}

/* ---- the engine's clock, timer and executor -------------------------------------- */

static int64_t serve_now_ms(void *ctx)
{
    (void)ctx;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void serve_arm(void *ctx, int64_t at_ms)
{
    struct serve *sv = ctx;
    if (at_ms == INT64_MAX) {
        event_del(sv->timer);
        return;
    }
    int64_t d = at_ms - serve_now_ms(NULL);
    if (d < 0)
        d = 0;
    struct timeval tv = {(time_t)(d / 1000), (suseconds_t)(d % 1000) * 1000};
    if (event_add(sv->timer, &tv) < 0)
        fatal("cannot arm the delivery timer");
}

static void serve_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct serve *sv = arg;
    engine_tick(sv->engine);
}

static void serve_submit(void *ctx, engine_fn run, engine_fn done, void *arg)
{
    struct serve *sv = ctx;
    workers_submit(sv->deliver_pool, run, done, arg);
}

/* ---- the pickup folder ---------------------------------------------------------- */

static void serve_pickup_event(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct serve *sv = arg;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool any = false;
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        any = true;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        log_warn("pickup watch: %s", strerror(errno));
    if (any)
        engine_pickup(sv->engine);
}

/* Watch DIR/queue of the pickup spool; without inotify, SIGUSR1 still works. */
static void serve_watch_pickup(struct serve_run *r, const char *dir)
{
    char qdir[1100];
    snprintf(qdir, sizeof(qdir), "%s/queue", dir);
    r->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (r->inotify_fd < 0 ||
        inotify_add_watch(r->inotify_fd, qdir, IN_CLOSE_WRITE | IN_MOVED_TO) < 0) {
        log_warn("cannot watch %s (%s): `tern sendmail` mail waits for SIGUSR1", qdir,
                 strerror(errno));
        return;
    }
    r->pickup_ev =
        event_new(r->sv->base, r->inotify_fd, EV_READ | EV_PERSIST, serve_pickup_event, r->sv);
    if (!r->pickup_ev || event_add(r->pickup_ev, NULL) < 0)
        fatal("cannot watch the pickup folder");
}

/* ---- signals --------------------------------------------------------------------- */

static void serve_reload(struct serve *sv)
{
    struct conf_errors e = {0};
    struct snapshot *snap = snapshot_load(sv->conf_path, &e);
    if (!snap) {
        for (size_t i = 0; i < e.n; i++)
            log_error("reload: %s", e.v[i]);
        log_error("reload: configuration, users or aliases refused; the old ones stay in force");
        conf_errors_free(&e);
        return;
    }
    conf_errors_free(&e);
    snap->generation = sv->snap->generation + 1;
    struct snapshot *old = sv->snap;
    sv->snap = snap; /* new sessions and attempts take this one */
    engine_set_snapshot(sv->engine, snap);
    snapshot_put(old);
    log_info("reloaded %s (configuration %lu): %zu local domains, %zu DKIM keys", sv->conf_path,
             snap->generation, snap->policy.n, snap->dkim.n);
}

/* New TLS handshakes take the certificate and key named by the snapshot in
 * force, read again (a renewal by certbot needs no restart); sessions in TLS
 * keep theirs (their SSL holds a reference to the old context).  Read as the
 * server's user: the key must be readable by it (docs/CONFIG.md). */
static void serve_reload_tls(struct serve *sv)
{
    const struct conf *cf = &sv->snap->conf;
    char why[512];
    if (!cf->tls_cert[0] || !cf->tls_key[0])
        return; /* the generated certificate stays */
    if (access(cf->tls_key, R_OK) < 0) {
        log_error("reload: TLS: %s: %s: the server's user must be able to read the key "
                  "(docs/CONFIG.md); the old certificate stays in force",
                  cf->tls_key, strerror(errno));
        return;
    }
    SSL_CTX *tls = tls_server_ctx(cf->tls_cert, cf->tls_key, cf->hostname, why, sizeof(why));
    if (!tls) {
        log_error("reload: TLS: %s; the old certificate stays in force", why);
        return;
    }
    smtp_server_set_tls(sv->smtp, tls);
    smtp_server_set_tls(sv->submission, tls);
    SSL_CTX_free(sv->tls);
    sv->tls = tls;
    log_info("reload: TLS certificate %s loaded for new connections", cf->tls_cert);
}

static size_t serve_nsessions(const struct serve *sv)
{
    return (size_t)smtp_server_sessions(sv->smtp) + smtp_server_sessions(sv->submission);
}

/* systemd: STATUS= when it changed (looked at every second), at least every 10 s */
static void serve_notify_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct serve_run *r = arg;
    if (r->sv->stopping)
        return;
    notify_status(qstore_count(r->sv->store), (unsigned)serve_nsessions(r->sv),
                  ++r->notify_ticks % 10 == 0);
}

static void serve_stop_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct serve_run *r = arg;
    struct serve *sv = r->sv;
    bool idle = smtp_server_sessions(sv->smtp) == 0 && smtp_server_sessions(sv->submission) == 0 &&
                workers_pending(sv->commit_pool) == 0 && engine_busy(sv->engine) == 0;
    if (idle || clock_mono_ms() > r->stop_deadline)
        event_base_loopbreak(sv->base);
}

static void serve_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct serve_run *r = arg;
    struct serve *sv = r->sv;
    if (sig == SIGHUP) {
        notify_reloading();
        serve_reload(sv);
        serve_reload_tls(sv);
        notify_ready(qstore_count(sv->store), (unsigned)serve_nsessions(sv));
        return;
    }
    if (sig == SIGUSR1) {
        log_info("SIGUSR1: retrying every queued item now");
        engine_retry_all(sv->engine);
        return;
    }
    if (sv->stopping)
        return;
    log_info("signal %d: stopping", (int)sig);
    notify_stopping();
    sv->stopping = true;
    engine_stop(sv->engine);
    for (size_t i = 0; i < r->nlisteners; i++)
        smtp_listener_free(r->listeners[i]);
    r->nlisteners = 0;
    smtp_server_shutdown(sv->smtp);
    smtp_server_shutdown(sv->submission);
    r->stop_deadline = clock_mono_ms() + SERVE_STOP_MS;
    struct timeval tv = {0, 20000};
    r->stop_timer = event_new(sv->base, -1, EV_PERSIST, serve_stop_check, r);
    if (!r->stop_timer || event_add(r->stop_timer, &tv) < 0)
        event_base_loopbreak(sv->base);
}

static int serve_listen(struct serve_run *r, const struct conf_listeners *ls,
                        struct smtp_server *srv, bool implicit, const char *what)
{
    char why[256];
    for (size_t i = 0; i < ls->n; i++) {
        if (r->nlisteners == SERVE_LISTENERS_MAX)
            return 0;
        struct smtp_listener *l =
            smtp_listen(r->sv->base, ls->v[i].text, srv, implicit, why, sizeof(why));
        if (!l) {
            fprintf(stderr, "tern serve: cannot listen (%s): %s\n", what, why);
            return -1;
        }
        log_info("%s listening on %s", what, smtp_listener_addr(l));
        r->listeners[r->nlisteners++] = l;
        socklen_t sl;
        const char *reason;
        if (r->sv->nself < SERVE_SELF_MAX &&
            netaddr_parse(smtp_listener_addr(l), &r->sv->self[r->sv->nself], &sl, &reason) == 0)
            r->sv->nself++;
    }
    return 0;
}

static const char serve_usage[] =
    "usage: tern serve [--config FILE]\n"
    "\n"
    "The mail server: receives mail over SMTP (smtp, submission, submissions),\n"
    "queues it durably and delivers it to local mailboxes (Maildir, an MDA command,\n"
    "or | pipe aliases) or to other servers, retrying transient failures and\n"
    "returning a delivery status notification to the sender on permanent failure.\n"
    "\n"
    "  --config FILE   configuration (default $TERN_CONFIG or /etc/tern/tern.conf)\n"
    "\n"
    "Started as root it needs [server] user: it binds and reads its TLS key as root,\n"
    "then runs (and delivers) as that user only.\n"
    "\n"
    "Signals: HUP reloads the configuration, users, aliases and the TLS certificate;\n"
    "USR1 retries the queue now; TERM/INT stop (421 to open sessions; the queue is\n"
    "kept).  Under systemd (NOTIFY_SOCKET) it reports READY, RELOADING, STOPPING\n"
    "and STATUS (queue size, sessions).\n"
    "See docs/CONFIG.md.\n";

#define SERVE_QUEUE_SPARES 256

static struct qstore *serve_open_spool(const char *data_dir, const char *name)
{
    char dir[CONF_STR_MAX + 16], why[512];
    snprintf(dir, sizeof(dir), "%s/%s", data_dir, name);
    struct qstore *q = qstore_open(dir, why, sizeof(why));
    if (!q)
        fprintf(stderr, "tern serve: %s: %s\n", name, why);
    return q;
}

int serve_main(int argc, char **argv)
{
    static struct serve sv;
    static struct serve_run run = {.inotify_fd = -1};
    const char *config = NULL;
    struct conf_errors e = {0};
    char why[512];
    int c;
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (c == 'c') {
            config = optarg;
        } else if (c == 'h') {
            fputs(serve_usage, stdout);
            return 0;
        } else {
            fputs("see tern serve --help\n", stderr);
            return 2;
        }
    }
    snprintf(sv.conf_path, sizeof(sv.conf_path), "%s", conf_default_path(config));
    if (!(sv.snap = snapshot_load(sv.conf_path, &e))) {
        serve_print_errors(&e);
        fprintf(stderr, "tern serve: refusing to start with a bad configuration\n");
        conf_errors_free(&e);
        return 2;
    }
    sv.boot = snapshot_ref(sv.snap);
    const struct conf *cf = &sv.boot->conf; /* start-up settings (listeners, paths, TLS) */
    log_set_prefix("serve");
    signal(SIGPIPE, SIG_IGN);
    struct privsep ps;
    if (privsep_plan(cf, &ps, why, sizeof(why)) < 0) {
        fprintf(stderr, "tern serve: %s\n", why);
        return 2;
    }
    if (privsep_prepare(cf, &ps, why, sizeof(why)) < 0) {
        fprintf(stderr, "tern serve: %s\n", why);
        return 1;
    }
    sv.tls = tls_server_ctx(cf->tls_cert[0] ? cf->tls_cert : NULL,
                            cf->tls_key[0] ? cf->tls_key : NULL, cf->hostname, why, sizeof(why));
    if (!sv.tls) {
        fprintf(stderr, "tern serve: TLS: %s\n", why);
        return 2;
    }
    sv.base = event_base_new();
    if (!sv.base)
        fatal("cannot create the event loop");
    sv.commit_pool = workers_new(sv.base, 8);
    receive_init(&sv);
    sv.deliver_pool = workers_new(sv.base, cf->concurrency);
    workers_on_thread_exit(sv.deliver_pool, courier_thread_exit); /* every courier's */
    sv.timer = event_new(sv.base, -1, 0, serve_timer, &sv);
    if (!sv.timer)
        fatal("cannot create the delivery timer");

    struct smtp_limits_conf lc = {
        .max_sessions = cf->max_sessions,
        .max_sessions_per_ip = cf->max_sessions_per_ip,
        .max_connect_rate_per_ip = cf->max_connect_rate_per_ip,
        .body_memory = cf->body_memory,
    };
    struct smtp_limits *limits = smtp_limits_new(&lc); /* shared by smtp and submission */
    log_info("at most %u sessions", smtp_limits_max_sessions(limits));
    struct smtp_server_conf sc = {
        .hostname = cf->hostname,
        .max_size = cf->max_size,
        .max_rcpts = cf->max_rcpts,
        .max_errors = cf->max_errors,
        .idle_timeout = (unsigned)(cf->idle_timeout_ms / 1000),
        .command_timeout = (unsigned)(cf->command_timeout_ms / 1000),
        .data_timeout = (unsigned)(cf->data_timeout_ms / 1000),
        .total_timeout = (unsigned)(cf->session_timeout_ms / 1000),
        .limits = limits,
        .max_line = (size_t)cf->max_line_length + 2, /* CRLF included */
        .tls = sv.tls,
        .auth = true,
        .ext = EXT_8BITMIME | EXT_SMTPUTF8 | EXT_DSN,
        .hooks = &receive_hooks,
        .ctx = &sv,
        .name = "smtp",
    };
    sv.smtp = smtp_server_new(sv.base, &sc);
    sc.auth_required = true;
    sc.name = "submission";
    sc.name_tls = "submissions";
    sv.submission = smtp_server_new(sv.base, &sc);
    run.sv = &sv;
    if (serve_listen(&run, &cf->smtp, sv.smtp, false, "smtp") < 0 ||
        serve_listen(&run, &cf->submission, sv.submission, false, "submission") < 0 ||
        serve_listen(&run, &cf->submissions, sv.submission, true, "submissions") < 0)
        return 1;
    if (serve_admin_start(&sv) < 0)
        return 1;
    /* bound, key read, data_dir prepared: nothing below runs as root */
    char pidfile[CONF_STR_MAX + 16];
    snprintf(pidfile, sizeof(pidfile), "%s/tern.pid", cf->data_dir);
    int pidfd = privsep_pidfile(pidfile, &ps);
    if (pidfd < 0)
        log_warn("cannot write %s: `tern queue retry` will not wake the server", pidfile);
    if (privsep_drop(&ps, why, sizeof(why)) < 0) {
        fprintf(stderr, "tern serve: %s\n", why);
        return 1;
    }
    if (!(sv.store = serve_open_spool(cf->data_dir, "queue")) ||
        !(sv.pickup = serve_open_spool(cf->data_dir, "pickup")))
        return 1;
    /* removed items' files are written over by the next commits (store.h):
     * enough for the commits that run at once, a bounded disk cost */
    qstore_set_spares(sv.store, SERVE_QUEUE_SPARES);

    /* after the listeners: the loop check knows our addresses */
    struct engine_conf ec = {.store = sv.store,
                             .pickup = sv.pickup,
                             .submit = serve_submit,
                             .submit_ctx = &sv,
                             .now_ms = serve_now_ms,
                             .arm = serve_arm,
                             .arm_ctx = &sv,
                             .self = sv.self,
                             .nself = sv.nself};
    sv.engine = engine_new(&ec, sv.snap);
    struct qstore_stats st;
    if (engine_recover(sv.engine, &st, why, sizeof(why)) < 0)
        fatal("queue %s: %s", qstore_dir(sv.store), why);
    log_info("queue recovered: %zu items, %zu incomplete removed, %zu orphans removed, "
             "%zu quarantined",
             st.recovered, st.incomplete, st.orphans, st.quarantined);
    serve_watch_pickup(&run, qstore_dir(sv.pickup));
    engine_pickup(sv.engine);

    int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGUSR1};
    struct event *sigev[4];
    for (int i = 0; i < 4; i++) {
        sigev[i] = evsignal_new(sv.base, sigs[i], serve_signal, &run);
        if (!sigev[i] || event_add(sigev[i], NULL) < 0)
            fatal("cannot watch signals");
    }
    log_info("ready: hostname=%s data_dir=%s domains=%zu queued=%zu dkim_keys=%zu", cf->hostname,
             cf->data_dir, sv.snap->policy.n, qstore_count(sv.store), sv.snap->dkim.n);
    notify_ready(qstore_count(sv.store), (unsigned)serve_nsessions(&sv));
    struct timeval notify_every = {1, 0};
    if (notify_enabled() &&
        (!(run.notify_timer = event_new(sv.base, -1, EV_PERSIST, serve_notify_tick, &run)) ||
         event_add(run.notify_timer, &notify_every) < 0))
        fatal("cannot create the systemd status timer");
    if (event_base_dispatch(sv.base) < 0)
        fatal("event loop failed");

    /* data_dir is root's: the user may not remove the pid file, so empty it */
    if (pidfd >= 0 && unlink(pidfile) < 0 && (errno != EACCES || ftruncate(pidfd, 0) < 0))
        log_warn("cannot remove %s: %s", pidfile, strerror(errno));
    if (pidfd >= 0)
        close(pidfd);
    for (size_t i = 0; i < run.nlisteners; i++)
        smtp_listener_free(run.listeners[i]);
    workers_free(sv.commit_pool); /* commits in flight finish and answer their clients */
    sv.commit_pool = NULL;
    receive_free(&sv);
    engine_stop(sv.engine);
    workers_free(sv.deliver_pool); /* attempts in flight finish and report to the engine */
    smtp_server_free(sv.smtp);
    smtp_server_free(sv.submission);
    smtp_limits_free(limits);
    engine_free(sv.engine);
    event_free(sv.timer);
    if (run.pickup_ev)
        event_free(run.pickup_ev);
    if (run.inotify_fd >= 0)
        close(run.inotify_fd);
    if (run.stop_timer)
        event_free(run.stop_timer);
    if (run.notify_timer)
        event_free(run.notify_timer);
    for (int i = 0; i < 4; i++)
        event_free(sigev[i]);
    qstore_close(sv.store);
    qstore_close(sv.pickup);
    SSL_CTX_free(sv.tls);
    log_info("stopped: %llu messages accepted", (unsigned long long)sv.accepted);
    snapshot_put(sv.snap);
    snapshot_put(sv.boot);
    serve_admin_free();
    event_base_free(sv.base);
    return 0;
}
