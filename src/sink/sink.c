/*
 * sink.c - `tern sink`: options, the SMTP session hooks (faults, AUTH,
 * storing messages), start-up and clean shutdown.
 *
 * A message is stored only at end-of-data with a 250: anything cut or
 * refused before that leaves no record.  Each stored message and each
 * injected fault gets one log line.  SIGINT/SIGTERM answer 421 to every
 * session, stop listening and exit once sessions are gone (2 s at most).
 */
#include "sink/sink.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/http.h>
#include <getopt.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/header.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/num.h"
#include "smtp/httpmetrics.h"
#include "smtp/listen.h"
#include "smtp/session.h"
#include "smtp/tls.h"
#include "sink/disk.h"
#include "sink/events.h"

#define SINK_LISTEN_MAX 8

/* Unix time in milliseconds (a date: for received_ms and the seed). */
static int64_t sink_now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static const char sink_usage[] =
    "usage: tern sink [options]\n"
    "\n"
    "An SMTP test server: keeps received mail in memory, shows it over an HTTP\n"
    "JSON API, and can misbehave on purpose so that clients can be tested.\n"
    "\n"
    "Listening:\n"
    "  --smtp ADDR:PORT        SMTP listener (repeatable; default 127.0.0.1:1025;\n"
    "                          IPv6 as [::1]:1025; port 0 picks a free port)\n"
    "  --smtps ADDR:PORT       implicit-TLS listener (repeatable; needs TLS)\n"
    "  --http ADDR:PORT        HTTP API (default 127.0.0.1:8025); --http none: no API\n"
    "  --hostname NAME         name in the greeting and replies (default localhost)\n"
    "TLS:\n"
    "  --tls                   offer STARTTLS with a generated self-signed certificate\n"
    "  --tls-cert FILE         certificate chain (PEM); with --tls-key offers STARTTLS\n"
    "  --tls-key FILE          private key (PEM)\n"
    "AUTH (PLAIN and LOGIN; offered only over TLS unless --auth-insecure):\n"
    "  --auth any              accept any user name and password\n"
    "  --auth-file FILE        accept only the user:password lines of FILE\n"
    "  --auth-insecure         offer AUTH without TLS too\n"
    "Limits:\n"
    "  --max-messages N        messages kept in memory, oldest dropped first (10000)\n"
    "  --max-memory SIZE       bytes of message data kept, e.g. 512M (512M)\n"
    "  --max-size SIZE         largest message accepted, e.g. 25M (25M)\n"
    "  --max-rcpts N           recipients per message (1000)\n"
    "  --max-errors N          bad commands before 421 and close (20)\n"
    "  --timeout SECONDS       idle timeout per connection (300)\n"
    "Faults (also changeable at runtime: PUT /api/faults):\n"
    "  --close-first N         cut the first N connections when MAIL arrives, half\n"
    "                          with 421 4.4.2, half with a clean close\n"
    "  --close-chance P        cut P percent (0-100) of MAIL commands the same way\n"
    "  --fail CMD:CODE:P       answer CODE to P percent of CMD (repeatable); CMD is\n"
    "                          CONNECT, EHLO, AUTH, MAIL, RCPT, DATA or EOD (end of data)\n"
    "  --delay CMD:MS          wait MS milliseconds before every reply to CMD\n"
    "  --seed N                seed for fault decisions (default: from the clock, logged)\n"
    "Other:\n"
    "  --quiet                 no log line per message (faults are still logged)\n"
    "  --metrics ADDR:PORT     Prometheus metrics at http://ADDR:PORT/metrics\n"
    "  --store DIR             keep messages in DIR as ID.eml + ID.json, so that a\n"
    "                          restart keeps the inbox (no fsync)\n"
    "  --compat MODE           tern (default) or mail-test-srv: /count and /mail/N\n"
    "                          count one record per recipient, as mail-test-srv does\n"
    "  --help                  this text\n"
    "mail-test-srv's Go-style flags (-name value, -name=value or --name value):\n"
    "  -closeFirst N, -closeChance P, -cert FILE, -key FILE, -http ADDR:PORT and\n"
    "  -smtp ADDR:PORT (implicit TLS when a certificate is given; also -smtpAddr,\n"
    "  -httpAddr).  They imply --compat mail-test-srv, --auth any (unless --auth\n"
    "  or --auth-file is given) and its ports: SMTP 127.0.0.1:9380, HTTP\n"
    "  127.0.0.1:9381.\n"
    "\n"
    "HTTP API: GET /api/messages[?to=&from=&subject=&limit=&offset=], GET\n"
    "/api/messages/{id|latest}, GET /api/messages/{id}/raw, GET /api/messages/{id}/part/N,\n"
    "DELETE /api/messages[/{id}], GET /api/count, GET /api/stats, GET|PUT /api/faults,\n"
    "GET /api/events (server-sent events); mail-test-srv compatible: GET /count,\n"
    "POST /clear, GET /mail/N (filters to= and from=).  The web inbox: GET /.\n";

/* ---- AUTH users ---------------------------------------------------------- */

static int sink_load_users(struct sink *sk, const char *file)
{
    FILE *f = fopen(file, "r");
    char line[1024];
    unsigned lineno = 0;
    if (!f) {
        fprintf(stderr, "tern sink: %s: %s\n", file, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        size_t n = strlen(line);
        if (n && line[n - 1] != '\n' && !feof(f)) {
            fprintf(stderr, "tern sink: %s:%u: line too long\n", file, lineno);
            fclose(f);
            return -1;
        }
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0 || line[0] == '#')
            continue;
        char *colon = strchr(line, ':');
        if (!colon || colon == line) {
            fprintf(stderr, "tern sink: %s:%u: expected user:password\n", file, lineno);
            fclose(f);
            return -1;
        }
        *colon = '\0';
        struct sink_user *u = realloc(sk->users, (sk->nusers + 1) * sizeof(*u));
        if (!u)
            fatal("out of memory");
        sk->users = u;
        u[sk->nusers].name = strdup(line);
        u[sk->nusers].pass = strdup(colon + 1);
        if (!u[sk->nusers].name || !u[sk->nusers].pass)
            fatal("out of memory");
        sk->nusers++;
    }
    if (ferror(f)) {
        fprintf(stderr, "tern sink: %s: read error\n", file);
        fclose(f);
        return -1;
    }
    fclose(f);
    return 0;
}

static bool sink_check_user(const struct sink *sk, const char *user, const char *pass)
{
    bool ok = false;
    for (size_t i = 0; i < sk->nusers; i++) {
        if (strcmp(sk->users[i].name, user) == 0) {
            size_t a = strlen(sk->users[i].pass), b = strlen(pass);
            ok = a == b && CRYPTO_memcmp(sk->users[i].pass, pass, a) == 0;
        }
    }
    return ok;
}

/* ---- hooks ----------------------------------------------------------------- */

static void sink_log_fault(const struct smtp_session *s, const char *what, enum fault_point p,
                           int code)
{
    metrics_inc(M_SINK_FAULTS, what, NULL);
    log_info("fault session=%llu point=%s kind=%s%s%.0d", (unsigned long long)smtp_session_id(s),
             fault_point_name(p), what, code ? " code=" : "", code);
}

/* Failures and delays common to every hook point. */
static void sink_fault(struct sink *sk, struct smtp_session *s, enum fault_point p,
                       struct smtp_verdict *v)
{
    int code = fault_fail(&sk->faults, p);
    if (code) {
        sink_log_fault(s, "fail", p, code);
        if (code == 421) {
            smtp_verdict_set(v, 421, fault_enh(p, code), "%s Service not available (injected)",
                             sk->hostname);
            v->action = SMTP_V_REPLY_CLOSE;
        } else {
            smtp_verdict_set(v, code, fault_enh(p, code), "Injected failure (tern sink)");
        }
    }
    v->delay_ms = fault_delay(&sk->faults, p);
}

static void sink_on_connect(void *ctx, struct smtp_session *s, struct smtp_verdict *v)
{
    struct sink *sk = ctx;
    sk->connections++;
    sink_fault(sk, s, FP_CONNECT, v);
}

static void sink_on_helo(void *ctx, struct smtp_session *s, const char *name,
                         struct smtp_verdict *v)
{
    (void)name;
    sink_fault(ctx, s, FP_EHLO, v);
}

static void sink_on_auth(void *ctx, struct smtp_session *s, const char *user, const char *pass,
                         struct smtp_verdict *v)
{
    struct sink *sk = ctx;
    if (sk->auth == SINK_AUTH_ANY ||
        (sk->auth == SINK_AUTH_FILE && sink_check_user(sk, user, pass)))
        smtp_verdict_set(v, 235, "2.7.0", "Authentication successful");
    sink_fault(sk, s, FP_AUTH, v);
}

static void sink_on_mail(void *ctx, struct smtp_session *s, const struct mail_params *p,
                         struct smtp_verdict *v)
{
    struct sink *sk = ctx;
    (void)p;
    enum fault_cut cut = fault_at_mail(&sk->faults);
    if (cut == CUT_CLEAN) {
        sink_log_fault(s, "close", FP_MAIL, 0);
        v->action = SMTP_V_CLOSE;
        return;
    }
    if (cut == CUT_421) {
        sink_log_fault(s, "close-421", FP_MAIL, 421);
        smtp_verdict_set(v, 421, "4.4.2", "%s Error: timeout exceeded", sk->hostname);
        v->action = SMTP_V_REPLY_CLOSE;
        return;
    }
    sink_fault(sk, s, FP_MAIL, v);
}

static void sink_on_rcpt(void *ctx, struct smtp_session *s, const struct rcpt_params *p,
                         struct smtp_verdict *v)
{
    (void)p;
    sink_fault(ctx, s, FP_RCPT, v);
}

static void sink_on_data(void *ctx, struct smtp_session *s, struct smtp_verdict *v)
{
    sink_fault(ctx, s, FP_DATA, v);
}

static char *sink_strdup(const char *s)
{
    char *d = strdup(s);
    if (!d)
        fatal("out of memory");
    return d;
}

static void sink_on_message(void *ctx, struct smtp_session *s, struct smtp_txn *t,
                            struct smtp_verdict *v)
{
    struct sink *sk = ctx;
    char addr[ADDR_PATH_MAX + 2];

    sink_fault(sk, s, FP_EOD, v);
    if (v->code != 250) {
        sk->messages_refused++;
        return;
    }
    struct sink_msg *m = calloc(1, sizeof(*m));
    if (!m)
        fatal("out of memory");
    m->received_ms = sink_now_ms();
    addr_format(&t->mail.from, addr, sizeof(addr));
    m->mail_from = sink_strdup(addr);
    m->rcpts = calloc(t->nrcpt, sizeof(char *));
    if (!m->rcpts)
        fatal("out of memory");
    for (size_t i = 0; i < t->nrcpt; i++) {
        addr_format(&t->rcpts[i].to, addr, sizeof(addr));
        m->rcpts[i] = sink_strdup(addr);
    }
    m->nrcpt = t->nrcpt;
    m->raw = t->body.p; /* the store takes the body over */
    m->size = t->body.len;
    size_t cap = t->body.cap;
    t->body.p = NULL;
    t->body.len = t->body.cap = 0;
    if (!m->raw) {
        m->raw = malloc(1);
        if (!m->raw)
            fatal("out of memory");
    }
    if (m->size + 64 < cap) { /* give back the growth slack: it is kept for long */
        char *shrunk = realloc(m->raw, m->size ? m->size : 1);
        if (shrunk)
            m->raw = shrunk;
    }
    char hv[1024];
    header_get(m->raw, m->size, "Subject", hv, sizeof(hv));
    m->subject = sink_strdup(hv);
    header_get(m->raw, m->size, "From", hv, sizeof(hv));
    m->hdr_from = sink_strdup(hv);
    header_get(m->raw, m->size, "To", hv, sizeof(hv));
    m->hdr_to = sink_strdup(hv);
    m->helo = sink_strdup(smtp_session_helo(s));
    m->peer = sink_strdup(smtp_session_peer(s));
    const char *au = smtp_session_auth_user(s);
    m->auth_user = sink_strdup(au ? au : "");
    m->tls = smtp_session_tls(s);
    store_add(&sk->store, m);
    events_publish(sk->api.events, "new", m->id);
    if (sk->disk)
        disk_save(sk->disk, m);
    metrics_inc(M_SINK_MESSAGES, NULL, NULL);
    smtp_verdict_set(v, 250, "2.0.0", "Ok: queued as %llu", (unsigned long long)m->id);
    if (!sk->quiet)
        log_info("message id=%llu session=%llu from=<%s> rcpts=%zu first=<%s> size=%zu",
                 (unsigned long long)m->id, (unsigned long long)smtp_session_id(s), m->mail_from,
                 m->nrcpt, m->nrcpt ? m->rcpts[0] : "", m->size);
}

static void sink_on_refused(void *ctx, struct smtp_session *s, const struct smtp_verdict *v)
{
    struct sink *sk = ctx;
    (void)s;
    (void)v;
    sk->messages_refused++;
}

static const struct smtp_hooks sink_hooks = {
    .on_refused = sink_on_refused,
    .on_connect = sink_on_connect,
    .on_helo = sink_on_helo,
    .on_auth = sink_on_auth,
    .on_mail = sink_on_mail,
    .on_rcpt = sink_on_rcpt,
    .on_data = sink_on_data,
    .on_message = sink_on_message,
};

/* ---- shutdown -------------------------------------------------------------- */

struct sink_shutdown {
    struct sink *sk;
    struct event *timer;
    int64_t deadline;
    struct smtp_listener **listeners;
    size_t nlisteners;
};

static void sink_drain_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sink_shutdown *sd = arg;
    (void)fd;
    (void)what;
    if (smtp_server_sessions(sd->sk->smtp) == 0 || sink_now_ms() > sd->deadline)
        event_base_loopbreak(sd->sk->base);
}

static void sink_signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct sink_shutdown *sd = arg;
    (void)what;
    if (sd->timer)
        return;
    log_info("signal %d: shutting down", (int)sig);
    for (size_t i = 0; i < sd->nlisteners; i++) {
        smtp_listener_free(sd->listeners[i]);
        sd->listeners[i] = NULL;
    }
    smtp_server_shutdown(sd->sk->smtp);
    sd->deadline = sink_now_ms() + 2000;
    struct timeval tv = {0, 20000};
    sd->timer = event_new(sd->sk->base, -1, EV_PERSIST, sink_drain_cb, sd);
    if (!sd->timer || event_add(sd->timer, &tv) < 0)
        event_base_loopbreak(sd->sk->base);
}

/* ---- main -------------------------------------------------------------------- */

enum {
    OPT_SMTP = 256,
    OPT_SMTPS,
    OPT_HTTP,
    OPT_HOSTNAME,
    OPT_TLS,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_AUTH,
    OPT_AUTH_FILE,
    OPT_AUTH_INSECURE,
    OPT_MAX_MESSAGES,
    OPT_MAX_MEMORY,
    OPT_MAX_SIZE,
    OPT_MAX_RCPTS,
    OPT_MAX_ERRORS,
    OPT_TIMEOUT,
    OPT_CLOSE_FIRST,
    OPT_CLOSE_CHANCE,
    OPT_FAIL,
    OPT_DELAY,
    OPT_SEED,
    OPT_QUIET,
    OPT_METRICS,
    OPT_STORE,
    OPT_COMPAT,
    OPT_HELP,
};

static const struct option sink_options[] = {
    {"smtp", required_argument, NULL, OPT_SMTP},
    {"smtps", required_argument, NULL, OPT_SMTPS},
    {"http", required_argument, NULL, OPT_HTTP},
    {"hostname", required_argument, NULL, OPT_HOSTNAME},
    {"tls", no_argument, NULL, OPT_TLS},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"auth", required_argument, NULL, OPT_AUTH},
    {"auth-file", required_argument, NULL, OPT_AUTH_FILE},
    {"auth-insecure", no_argument, NULL, OPT_AUTH_INSECURE},
    {"max-messages", required_argument, NULL, OPT_MAX_MESSAGES},
    {"max-memory", required_argument, NULL, OPT_MAX_MEMORY},
    {"max-size", required_argument, NULL, OPT_MAX_SIZE},
    {"max-rcpts", required_argument, NULL, OPT_MAX_RCPTS},
    {"max-errors", required_argument, NULL, OPT_MAX_ERRORS},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"close-first", required_argument, NULL, OPT_CLOSE_FIRST},
    {"close-chance", required_argument, NULL, OPT_CLOSE_CHANCE},
    {"fail", required_argument, NULL, OPT_FAIL},
    {"delay", required_argument, NULL, OPT_DELAY},
    {"seed", required_argument, NULL, OPT_SEED},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"metrics", required_argument, NULL, OPT_METRICS},
    {"store", required_argument, NULL, OPT_STORE},
    {"compat", required_argument, NULL, OPT_COMPAT},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static int sink_bad(const char *opt, const char *val, const char *why)
{
    fprintf(stderr, "tern sink: --%s %s: %s (see tern sink --help)\n", opt, val, why);
    return 2;
}

/* mail-test-srv's command line (Go's flag package: -name value, -name=value, --name
 * value, --name=value), rewritten into tern's options.  -smtp addresses are taken out
 * into go->smtp (implicit TLS when a certificate is given, as in mail-test-srv). */
struct sink_go {
    char **argv;
    int argc;
    bool used;
    const char *smtp[SINK_LISTEN_MAX];
    size_t nsmtp;
};

static const struct {
    const char *go, *tern; /* tern NULL: the -smtp listener */
} sink_go_flags[] = {
    {"closeFirst", "--close-first"},
    {"closeChance", "--close-chance"},
    {"cert", "--tls-cert"},
    {"key", "--tls-key"},
    {"http", "--http"},
    {"httpAddr", "--http"},
    {"smtp", NULL},
    {"smtpAddr", NULL},
};

static int sink_go_rewrite(int argc, char **argv, struct sink_go *go)
{
    go->argv = calloc(2 * (size_t)argc + 1, sizeof(char *));
    if (!go->argv)
        fatal("out of memory");
    go->argc = 0;
    for (int i = 0; i < argc; i++) {
        char *a = argv[i];
        bool dd = a[0] == '-' && a[1] == '-';
        if (i == 0 || a[0] != '-' || strcmp(a, "--") == 0 || (!dd && strlen(a) <= 2)) {
            go->argv[go->argc++] = a;
            if (i && strcmp(a, "--") == 0) {
                while (++i < argc)
                    go->argv[go->argc++] = argv[i];
            }
            continue;
        }
        const char *name = a + (dd ? 2 : 1), *eq = strchr(name, '=');
        if (strcmp(name, "help") == 0) { /* Go's -help */
            go->argv[go->argc++] = "--help";
            continue;
        }
        size_t nl = eq ? (size_t)(eq - name) : strlen(name);
        size_t k;
        for (k = 0; k < sizeof(sink_go_flags) / sizeof(sink_go_flags[0]); k++)
            if (strlen(sink_go_flags[k].go) == nl && strncmp(sink_go_flags[k].go, name, nl) == 0)
                break;
        /* --http and --smtp are tern's own options: only -http and -smtp are Go's */
        if (k == sizeof(sink_go_flags) / sizeof(sink_go_flags[0]) ||
            (dd && (strcmp(sink_go_flags[k].go, "http") == 0 ||
                    strcmp(sink_go_flags[k].go, "smtp") == 0))) {
            if (dd) {
                go->argv[go->argc++] = a;
                continue;
            }
            fprintf(stderr,
                    "tern sink: unknown option '%s' (Go-style flags are -closeFirst, "
                    "-closeChance, -smtp, -http, -cert and -key; see tern sink --help)\n",
                    a);
            return 2;
        }
        char *val = eq ? (char *)eq + 1 : i + 1 < argc ? argv[++i] : NULL;
        if (!val) {
            fprintf(stderr, "tern sink: %s: needs a value (see tern sink --help)\n", a);
            return 2;
        }
        uint64_t n;
        double pc;
        if ((strcmp(sink_go_flags[k].go, "closeFirst") == 0 &&
             num_parse_u64(val, 1000000000, &n) < 0) ||
            (strcmp(sink_go_flags[k].go, "closeChance") == 0 && num_parse_percent(val, &pc) < 0)) {
            fprintf(stderr, "tern sink: -%s %s: expected %s (see tern sink --help)\n",
                    sink_go_flags[k].go, val,
                    sink_go_flags[k].go[5] == 'F' ? "a number of connections"
                                                  : "a percentage from 0 to 100");
            return 2;
        }
        go->used = true;
        if (!sink_go_flags[k].tern) {
            if (go->nsmtp == SINK_LISTEN_MAX) {
                fprintf(stderr, "tern sink: %s %s: too many listeners\n", a, val);
                return 2;
            }
            go->smtp[go->nsmtp++] = val;
            continue;
        }
        go->argv[go->argc++] = (char *)sink_go_flags[k].tern;
        go->argv[go->argc++] = val;
    }
    go->argv[go->argc] = NULL;
    return 0;
}

int sink_main(int argc, char **argv)
{
    static struct sink sk;
    const char *smtp_addrs[SINK_LISTEN_MAX], *smtps_addrs[SINK_LISTEN_MAX];
    size_t nsmtp = 0, nsmtps = 0;
    const char *http_addr = "127.0.0.1:8025", *cert = NULL, *key = NULL, *auth_file = NULL;
    const char *metrics_addr = NULL, *store_dir = NULL;
    bool tls = false, auth_insecure = false, seeded = false, http_set = false, auth_set = false;
    int compat = -1;          /* --compat: 0 tern, 1 mail-test-srv, -1 not given */
    static struct sink_go go; /* static: its argv stays reachable until exit */
    uint64_t max_messages = 10000, max_memory = 512ULL << 20, max_size = 25ULL << 20;
    uint64_t max_rcpts = 1000, max_errors = 20, timeout = 300, v;
    struct fault_conf fc;
    char why[512];
    int c;

    memset(&fc, 0, sizeof(fc));
    sk.hostname = "localhost";
    if (sink_go_rewrite(argc, argv, &go) != 0)
        return 2;
    optind = 1;
    while ((c = getopt_long(go.argc, go.argv, "h", sink_options, NULL)) != -1) {
        const char *name = c >= OPT_SMTP && c <= OPT_HELP ? sink_options[c - OPT_SMTP].name : "";
        switch (c) {
        case OPT_SMTP:
        case OPT_SMTPS:
            if ((c == OPT_SMTP ? nsmtp : nsmtps) == SINK_LISTEN_MAX)
                return sink_bad(name, optarg, "too many listeners");
            if (c == OPT_SMTP)
                smtp_addrs[nsmtp++] = optarg;
            else
                smtps_addrs[nsmtps++] = optarg;
            break;
        case OPT_HTTP:
            http_addr = optarg;
            http_set = true;
            break;
        case OPT_HOSTNAME:
            if (!*optarg || strlen(optarg) > 200 || strpbrk(optarg, " \t\r\n"))
                return sink_bad(name, optarg, "not a host name");
            sk.hostname = optarg;
            break;
        case OPT_TLS:
            tls = true;
            break;
        case OPT_TLS_CERT:
            cert = optarg;
            break;
        case OPT_TLS_KEY:
            key = optarg;
            break;
        case OPT_AUTH:
            auth_set = true;
            if (strcmp(optarg, "any") == 0)
                sk.auth = SINK_AUTH_ANY;
            else if (strcmp(optarg, "none") == 0)
                sk.auth = SINK_AUTH_NONE;
            else
                return sink_bad(name, optarg, "expected 'any' or 'none' (or use --auth-file)");
            break;
        case OPT_AUTH_FILE:
            auth_set = true;
            auth_file = optarg;
            sk.auth = SINK_AUTH_FILE;
            break;
        case OPT_AUTH_INSECURE:
            auth_insecure = true;
            break;
        case OPT_MAX_MESSAGES:
            if (num_parse_u64(optarg, 10000000, &max_messages) < 0 || max_messages == 0)
                return sink_bad(name, optarg, "expected a number from 1 to 10000000");
            break;
        case OPT_MAX_MEMORY:
            if (num_parse_size(optarg, 1ULL << 40, &max_memory) < 0)
                return sink_bad(name, optarg, "expected a size such as 512M");
            break;
        case OPT_MAX_SIZE:
            if (num_parse_size(optarg, 1ULL << 32, &max_size) < 0 || max_size == 0)
                return sink_bad(name, optarg, "expected a size such as 25M (at most 4G)");
            break;
        case OPT_MAX_RCPTS:
            if (num_parse_u64(optarg, 100000, &max_rcpts) < 0 || max_rcpts == 0)
                return sink_bad(name, optarg, "expected a number from 1 to 100000");
            break;
        case OPT_MAX_ERRORS:
            if (num_parse_u64(optarg, 100000, &max_errors) < 0)
                return sink_bad(name, optarg, "expected a number");
            break;
        case OPT_TIMEOUT:
            if (num_parse_u64(optarg, 86400, &timeout) < 0 || timeout == 0)
                return sink_bad(name, optarg, "expected seconds from 1 to 86400");
            break;
        case OPT_CLOSE_FIRST:
            if (num_parse_u64(optarg, 1000000000, &v) < 0)
                return sink_bad(name, optarg, "expected a number of connections");
            fc.close_first = (unsigned)v;
            break;
        case OPT_CLOSE_CHANCE:
            if (num_parse_percent(optarg, &fc.close_chance) < 0)
                return sink_bad(name, optarg, "expected a percentage from 0 to 100");
            break;
        case OPT_FAIL: {
            struct fault_rule r;
            if (fault_parse_fail(optarg, &r, why, sizeof(why)) < 0 ||
                fault_conf_add_rule(&fc, &r, why, sizeof(why)) < 0)
                return sink_bad(name, optarg, why);
            break;
        }
        case OPT_DELAY: {
            enum fault_point p;
            unsigned ms;
            if (fault_parse_delay(optarg, &p, &ms, why, sizeof(why)) < 0)
                return sink_bad(name, optarg, why);
            fc.delay_ms[p] = ms;
            break;
        }
        case OPT_SEED:
            if (num_parse_u64(optarg, UINT64_MAX, &fc.seed) < 0)
                return sink_bad(name, optarg, "expected a number");
            seeded = true;
            break;
        case OPT_QUIET:
            sk.quiet = true;
            break;
        case OPT_METRICS:
            metrics_addr = optarg;
            break;
        case OPT_STORE:
            if (!*optarg)
                return sink_bad(name, optarg, "expected a directory");
            store_dir = optarg;
            break;
        case OPT_COMPAT:
            if (strcmp(optarg, "tern") == 0)
                compat = 0;
            else if (strcmp(optarg, "mail-test-srv") == 0)
                compat = 1;
            else
                return sink_bad(name, optarg, "expected 'tern' or 'mail-test-srv'");
            break;
        case OPT_HELP:
        case 'h':
            fputs(sink_usage, stdout);
            return 0;
        default:
            fputs("see tern sink --help\n", stderr);
            return 2;
        }
    }
    if (optind < go.argc) {
        fprintf(stderr, "tern sink: unexpected argument '%s' (see tern sink --help)\n",
                go.argv[optind]);
        return 2;
    }
    /* mail-test-srv's -smtp listener is implicit TLS; its ports are 9380 and 9381 */
    for (size_t i = 0; i < go.nsmtp; i++) {
        if ((tls || cert || key ? nsmtps : nsmtp) == SINK_LISTEN_MAX)
            return sink_bad("smtp", go.smtp[i], "too many listeners");
        if (tls || cert || key)
            smtps_addrs[nsmtps++] = go.smtp[i];
        else
            smtp_addrs[nsmtp++] = go.smtp[i];
    }
    if (go.used && nsmtp == 0 && nsmtps == 0) {
        if (tls || cert || key)
            smtps_addrs[nsmtps++] = "127.0.0.1:9380";
        else
            smtp_addrs[nsmtp++] = "127.0.0.1:9380";
    }
    if (go.used && !http_set)
        http_addr = "127.0.0.1:9381";
    if (go.used && !auth_set) /* mail-test-srv always offers AUTH PLAIN LOGIN */
        sk.auth = SINK_AUTH_ANY;
    if (nsmtp == 0 && nsmtps == 0)
        smtp_addrs[nsmtp++] = "127.0.0.1:1025";
    if (!seeded)
        fc.seed = (uint64_t)sink_now_ms() ^ ((uint64_t)getpid() << 32);
    if (auth_file && sink_load_users(&sk, auth_file) < 0)
        return 2;

    log_set_prefix("sink");
    signal(SIGPIPE, SIG_IGN);
    sk.base = event_base_new();
    if (!sk.base)
        fatal("cannot create the event loop");
    store_init(&sk.store, (size_t)max_messages, max_memory);
    fault_init(&sk.faults, &fc);
    sk.api = (struct sink_api){
        .store = &sk.store,
        .faults = &sk.faults,
        .connections = &sk.connections,
        .messages_refused = &sk.messages_refused,
        .started_ms = clock_mono_ms(),
        .events = events_new(sk.base),
    };
    sk.api.compat_mts = compat >= 0 ? compat == 1 : go.used;
    if (store_dir) {
        sk.disk = disk_open(store_dir, why, sizeof(why));
        if (!sk.disk) {
            fprintf(stderr, "tern sink: --store %s\n", why);
            return 2;
        }
        long loaded = disk_load(sk.disk, &sk.store);
        if (loaded < 0)
            return 1;
        log_info("store: %ld messages loaded from %s", loaded, store_dir);
        sk.store.on_remove = disk_remove;
        sk.store.remove_ctx = sk.disk;
    }

    SSL_CTX *ctx = NULL;
    if (tls || cert || key || nsmtps) {
        ctx = tls_server_ctx(cert, key, sk.hostname, why, sizeof(why));
        if (!ctx) {
            fprintf(stderr, "tern sink: TLS: %s\n", why);
            return 2;
        }
    }
    /* bodies being received get a budget of their own, as large as the store's */
    struct smtp_limits_conf lc = {.body_memory = max_memory};
    struct smtp_limits *limits = smtp_limits_new(&lc);
    struct smtp_server_conf conf = {
        .hostname = sk.hostname,
        .max_size = max_size,
        .max_rcpts = (unsigned)max_rcpts,
        .max_errors = (unsigned)max_errors,
        .idle_timeout = (unsigned)timeout,
        .total_timeout = 0,
        .limits = limits,
        .max_line = 1000,
        .tls = ctx,
        .auth = sk.auth != SINK_AUTH_NONE,
        .auth_plaintext = auth_insecure,
        .ext = EXT_8BITMIME | EXT_SMTPUTF8 | EXT_DSN,
        .hooks = &sink_hooks,
        .ctx = &sk,
        .name = "smtp",
        .name_tls = "smtps",
    };
    sk.smtp = smtp_server_new(sk.base, &conf);

    struct smtp_listener *listeners[2 * SINK_LISTEN_MAX];
    size_t nl = 0;
    for (size_t i = 0; i < nsmtp + nsmtps; i++) {
        bool implicit = i >= nsmtp;
        const char *a = implicit ? smtps_addrs[i - nsmtp] : smtp_addrs[i];
        struct smtp_listener *l = smtp_listen(sk.base, a, sk.smtp, implicit, why, sizeof(why));
        if (!l) {
            fprintf(stderr, "tern sink: cannot listen: %s\n", why);
            return 1;
        }
        listeners[nl++] = l;
        log_info("%s listening on %s", implicit ? "smtps" : "smtp", smtp_listener_addr(l));
    }
    struct httpmetrics *hm = NULL;
    if (metrics_addr) {
        char bound[80];
        hm = httpmetrics_start(sk.base, metrics_addr, METRICS_SINK, bound, sizeof(bound), why,
                               sizeof(why));
        if (!hm) {
            fprintf(stderr, "tern sink: cannot serve metrics: %s\n", why);
            return 1;
        }
        log_info("metrics listening on %s", bound);
    }
    if (strcmp(http_addr, "none") != 0) {
        char bound[80];
        int r = sink_api_start(&sk.api, sk.base, http_addr, bound, sizeof(bound), why, sizeof(why));
        if (r < 0) {
            fprintf(stderr, "tern sink: cannot serve HTTP: %s\n", why);
            return 1;
        }
        log_info("http listening on %s", bound);
    }
    log_info("ready: hostname=%s tls=%s auth=%s seed=%llu", sk.hostname, ctx ? "yes" : "no",
             sk.auth == SINK_AUTH_NONE  ? "none"
             : sk.auth == SINK_AUTH_ANY ? "any"
                                        : "file",
             (unsigned long long)fc.seed);

    struct sink_shutdown sd = {.sk = &sk, .listeners = listeners, .nlisteners = nl};
    struct event *sigint = evsignal_new(sk.base, SIGINT, sink_signal_cb, &sd);
    struct event *sigterm = evsignal_new(sk.base, SIGTERM, sink_signal_cb, &sd);
    if (!sigint || !sigterm || event_add(sigint, NULL) < 0 || event_add(sigterm, NULL) < 0)
        fatal("cannot watch signals");

    if (event_base_dispatch(sk.base) < 0)
        fatal("event loop failed");

    log_info("stopped: %llu connections, %llu messages received",
             (unsigned long long)sk.connections, (unsigned long long)sk.store.received);
    for (size_t i = 0; i < nl; i++)
        smtp_listener_free(listeners[i]);
    if (sk.api.http)
        evhttp_free(sk.api.http);
    events_free(sk.api.events);
    httpmetrics_free(hm);
    smtp_server_free(sk.smtp);
    smtp_limits_free(limits);
    sk.store.on_remove = NULL; /* the files stay for the next start */
    store_clear(&sk.store);
    disk_close(sk.disk);
    for (size_t i = 0; i < sk.nusers; i++) {
        free(sk.users[i].name);
        free(sk.users[i].pass);
    }
    free(sk.users);
    if (sd.timer)
        event_free(sd.timer);
    event_free(sigint);
    event_free(sigterm);
    SSL_CTX_free(ctx);
    event_base_free(sk.base);
    return 0;
}
