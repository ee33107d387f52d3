/*
 * serve.c - `tern serve`: start-up, listeners, signals, shutdown.
 *
 * Start-up refuses a bad configuration with every problem listed as
 * FILE:LINE: what (the same text as `tern check-config`).  Then: the policy
 * (users, aliases), TLS (the configured certificate, or a generated
 * self-signed one so that STARTTLS and AUTH work out of the box), the
 * queue (recovered before anything is accepted), the worker pools, and the
 * listeners: smtp (25: local recipients, relay only after AUTH), submission
 * (587: AUTH required) and submissions (465: implicit TLS, AUTH required).
 *
 * Signals: SIGHUP reloads tern.conf's policy parts, users and aliases (a
 * bad new configuration is logged and the old one kept; listeners and
 * paths need a restart); SIGUSR1 retries every queued item now; SIGTERM
 * and SIGINT stop accepting, answer 421 to every session, let commits in
 * flight finish (their clients get their 250) and deliveries end, then
 * exit.  Whatever is still queued stays on disk for the next start.
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
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/netaddr.h"
#include "deliver/remote.h"
#include "server/workers.h"
#include "smtp/listen.h"
#include "smtp/session.h"
#include "smtp/tls.h"

#define SERVE_LISTENERS_MAX 24
#define SERVE_STOP_MS 10000

struct policy_ref *serve_policy_get(struct serve *sv)
{
    struct policy_ref *pr = sv->policy;
    atomic_fetch_add(&pr->refs, 1);
    return pr;
}

void serve_policy_put(struct policy_ref *pr)
{
    if (atomic_fetch_sub(&pr->refs, 1) == 1) {
        policy_free(&pr->p);
        free(pr);
    }
}

static void serve_print_errors(const struct conf_errors *e)
{
    for (size_t i = 0; i < e->n; i++)
        fprintf(stderr, "%s\n", e->v[i]);
    if (e->truncated)
        fprintf(stderr, "(more problems not shown)\n");
}

static struct policy_ref *serve_load_policy(const struct conf *c, struct conf_errors *e)
{
    struct policy_ref *pr = calloc(1, sizeof(*pr));
    if (!pr)
        fatal("out of memory");
    if (policy_load(c, &pr->p, e) < 0 || e->n) {
        policy_free(&pr->p);
        free(pr);
        return NULL;
    }
    atomic_init(&pr->refs, 1);
    return pr;
}

struct serve_run {
    struct serve *sv;
    struct smtp_listener *listeners[SERVE_LISTENERS_MAX];
    size_t nlisteners;
    struct event *stop_timer;
    uint64_t stop_deadline;
};

static void serve_reload(struct serve *sv)
{
    struct conf c;
    struct conf_errors e = {0};
    if (conf_load(sv->conf_path, &c, &e) < 0 || e.n) {
        for (size_t i = 0; i < e.n; i++)
            log_error("reload: %s", e.v[i]);
        log_error("reload: configuration refused; the old one stays in force");
        conf_errors_free(&e);
        return;
    }
    struct policy_ref *pr = serve_load_policy(&c, &e);
    if (!pr) {
        for (size_t i = 0; i < e.n; i++)
            log_error("reload: %s", e.v[i]);
        log_error("reload: users or aliases refused; the old ones stay in force");
        conf_errors_free(&e);
        return;
    }
    conf_errors_free(&e);
    /* only what can change under running sessions and workers */
    sv->conf.senders_must_match = c.senders_must_match;
    memcpy(sv->conf.retry_ms, c.retry_ms, sizeof(c.retry_ms));
    sv->conf.n_retry = c.n_retry;
    sv->conf.give_up_ms = c.give_up_ms;
    sv->conf.delay_warning_ms = c.delay_warning_ms;
    sv->conf.queue_max_items = c.queue_max_items;
    sv->conf.queue_min_free = c.queue_min_free;
    struct policy_ref *old = sv->policy;
    sv->policy = pr;
    serve_policy_put(old);
    log_info("reloaded %s: %zu local domains", sv->conf_path, pr->p.n);
}

static void serve_stop_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct serve_run *r = arg;
    struct serve *sv = r->sv;
    bool idle = smtp_server_sessions(sv->smtp) == 0 && smtp_server_sessions(sv->submission) == 0 &&
                workers_pending(sv->commit_pool) == 0 && sched_busy(sv->sched) == 0;
    if (idle || clock_mono_ms() > r->stop_deadline)
        event_base_loopbreak(sv->base);
}

static void serve_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct serve_run *r = arg;
    struct serve *sv = r->sv;
    if (sig == SIGHUP) {
        serve_reload(sv);
        return;
    }
    if (sig == SIGUSR1) {
        log_info("SIGUSR1: retrying every queued item now");
        sched_retry_all(sv->sched);
        return;
    }
    if (sv->stopping)
        return;
    log_info("signal %d: stopping", (int)sig);
    sv->stopping = true;
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
        if (r->sv->nself < sizeof(r->sv->self) / sizeof(r->sv->self[0]) &&
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
    "or | pipe aliases), retrying transient failures and returning a delivery\n"
    "status notification to the sender on permanent failure.\n"
    "\n"
    "  --config FILE   configuration (default $TERN_CONFIG or /etc/tern/tern.conf)\n"
    "\n"
    "Signals: HUP reloads users, aliases and policy; USR1 retries the queue now;\n"
    "TERM/INT stop (421 to open sessions; the queue is kept).  See docs/CONFIG.md.\n";

int serve_main(int argc, char **argv)
{
    static struct serve sv;
    static struct serve_run run;
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
    if (conf_load(sv.conf_path, &sv.conf, &e) < 0 || e.n) {
        serve_print_errors(&e);
        fprintf(stderr, "tern serve: refusing to start with a bad configuration\n");
        conf_errors_free(&e);
        return 2;
    }
    if (!(sv.policy = serve_load_policy(&sv.conf, &e))) {
        serve_print_errors(&e);
        fprintf(stderr, "tern serve: refusing to start with bad users or aliases\n");
        conf_errors_free(&e);
        return 2;
    }
    log_set_prefix("serve");
    signal(SIGPIPE, SIG_IGN);
    sv.tls = tls_server_ctx(sv.conf.tls_cert[0] ? sv.conf.tls_cert : NULL,
                            sv.conf.tls_key[0] ? sv.conf.tls_key : NULL, sv.conf.hostname, why,
                            sizeof(why));
    if (!sv.tls) {
        fprintf(stderr, "tern serve: TLS: %s\n", why);
        return 2;
    }
    if (sv.conf.smarthost_password_file[0]) {
        char *pw = NULL;
        size_t pl = 0;
        if (conf_read_file(sv.conf.smarthost_password_file, 4096, &pw, &pl, why, sizeof(why)) < 0) {
            fprintf(stderr, "tern serve: smarthost_password_file: %s\n", why);
            return 2;
        }
        pw[strcspn(pw, "\r\n")] = '\0';
        sv.smarthost_pass = pw;
    }
    char qdir[CONF_STR_MAX + 16];
    snprintf(qdir, sizeof(qdir), "%s/queue", sv.conf.data_dir);
    if (!(sv.store = qstore_open(qdir, why, sizeof(why)))) {
        fprintf(stderr, "tern serve: queue: %s\n", why);
        return 1;
    }
    sv.base = event_base_new();
    if (!sv.base)
        fatal("cannot create the event loop");
    sv.commit_pool = workers_new(sv.base, 8);
    sv.deliver_pool = workers_new(sv.base, sv.conf.concurrency);
    workers_on_thread_exit(sv.deliver_pool, remote_thread_cleanup);
    sv.sched = sched_new(&sv);

    struct smtp_server_conf sc = {
        .hostname = sv.conf.hostname,
        .max_size = sv.conf.max_size,
        .max_rcpts = sv.conf.max_rcpts,
        .max_errors = sv.conf.max_errors,
        .idle_timeout = (unsigned)(sv.conf.idle_timeout_ms / 1000),
        .total_timeout = 3600,
        .max_line = 1000,
        .tls = sv.tls,
        .auth = true,
        .ext = EXT_8BITMIME | EXT_SMTPUTF8 | EXT_DSN,
        .hooks = &receive_hooks,
        .ctx = &sv,
    };
    sv.smtp = smtp_server_new(sv.base, &sc);
    sc.auth_required = true;
    sv.submission = smtp_server_new(sv.base, &sc);
    run.sv = &sv;
    if (serve_listen(&run, &sv.conf.smtp, sv.smtp, false, "smtp") < 0 ||
        serve_listen(&run, &sv.conf.submission, sv.submission, false, "submission") < 0 ||
        serve_listen(&run, &sv.conf.submissions, sv.submission, true, "submissions") < 0)
        return 1;

    sched_recover(sv.sched); /* after the listeners: the loop check knows our addresses */

    int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGUSR1};
    struct event *sigev[4];
    for (int i = 0; i < 4; i++) {
        sigev[i] = evsignal_new(sv.base, sigs[i], serve_signal, &run);
        if (!sigev[i] || event_add(sigev[i], NULL) < 0)
            fatal("cannot watch signals");
    }
    char pidfile[CONF_STR_MAX + 16];
    snprintf(pidfile, sizeof(pidfile), "%s/tern.pid", sv.conf.data_dir);
    FILE *pf = fopen(pidfile, "w");
    if (!pf || fprintf(pf, "%ld\n", (long)getpid()) < 0 || fclose(pf) != 0)
        log_warn("cannot write %s: `tern sendmail` and `tern queue retry` will not wake the server",
                 pidfile);
    log_info("ready: hostname=%s data_dir=%s domains=%zu queued=%zu", sv.conf.hostname,
             sv.conf.data_dir, sv.policy->p.n, qstore_count(sv.store));
    if (event_base_dispatch(sv.base) < 0)
        fatal("event loop failed");

    if (unlink(pidfile) < 0)
        log_warn("cannot remove %s: %s", pidfile, strerror(errno));
    for (size_t i = 0; i < run.nlisteners; i++)
        smtp_listener_free(run.listeners[i]);
    workers_free(sv.commit_pool); /* commits in flight finish and answer their clients */
    sv.commit_pool = NULL;
    workers_free(sv.deliver_pool);
    smtp_server_free(sv.smtp);
    smtp_server_free(sv.submission);
    sched_free(sv.sched);
    if (run.stop_timer)
        event_free(run.stop_timer);
    for (int i = 0; i < 4; i++)
        event_free(sigev[i]);
    qstore_close(sv.store);
    serve_policy_put(sv.policy);
    SSL_CTX_free(sv.tls);
    if (sv.smarthost_pass) {
        explicit_bzero(sv.smarthost_pass, strlen(sv.smarthost_pass));
        free(sv.smarthost_pass);
    }
    event_base_free(sv.base);
    log_info("stopped: %llu messages accepted", (unsigned long long)sv.accepted);
    return 0;
}
