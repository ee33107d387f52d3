/*
 * send.c - `tern send` (see send.h): options, planning, workers, progress.
 *
 * Planning happens before any connection: rows are validated (bad rows and
 * duplicates are reported with their line and skipped), the ledger says
 * what was already done, reminder mode says what is due.  Nothing to do
 * means no connection at all.
 *
 * Workers (--parallel) each own one SMTP client (lazy connect, reconnect
 * with backoff inside smtp_client_send) and take jobs from one queue under
 * a mutex; a shared token schedule enforces --rate across them.  A
 * transient failure is put back with a growing delay, up to --attempts;
 * every final outcome is written to the ledger (one SQLite commit) the
 * moment it is known, so kill -9 at any instant loses nothing: at most the
 * messages in flight (one per worker) may be sent again by the next run.
 */
#include "send/dkimsign.h"
#include "send/send.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/address.h"
#include "core/backoff.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/num.h"
#include "send/csv.h"
#include "send/ingest.h"
#include "send/ledger.h"
#include "send/remind.h"
#include "send/template.h"
#include "send/unsub.h"
#include "smtp/client.h"
#include "smtp/httpmetrics.h"

#define SEND_PARALLEL_MAX 64

struct job {
    size_t row; /* index into the table */
    char rcpt[ADDR_PATH_MAX + 1];
    char key[ADDR_PATH_MAX + 1]; /* lower-cased address, the ledger key */
    char window[24];             /* "" or seconds */
    unsigned attempts;
    uint64_t not_before; /* monotonic ms */
};

struct send_opts {
    const char *list, *template_path, *from, *server, *ledger_path, *campaign, *report;
    const char *dry_run, *email_col, *expires_col, *remind, *now_str;
    const char *metrics;     /* --metrics ADDR:PORT, NULL = none */
    struct bulk_opts bulk;   /* --return-path, --unsubscribe-*, --token-secret, --suppress */
    const char *bounces;     /* --bounces MAILDIR, NULL = none */
    struct send_dkim dkim;   /* --dkim-key, --dkim-selector, --dkim-domain */
    uint64_t metrics_linger; /* ms the metrics stay up after the run */
    const char *auth_user, *auth_pass_file, *tls_ca;
    enum smtp_tls_policy tls;
    int tls_verify;
    bool auth_insecure, retry_failed, quiet, ledger_fsync;
    unsigned parallel, attempts;
    double rate;
    uint64_t reconnect_base, reconnect_max, give_up, timeout;
};

struct sender {
    struct send_opts o;
    struct csv_table table;
    struct template *tpl;
    struct ledger *ledger;
    struct bulk *bulk; /* the bulk-sender rules (send/unsub.c) */
    unsigned long skipped_suppressed, skipped_bounced;
    time_t now;
    char host[256], port[16];
    char *auth_pass;
    struct job *jobs;
    size_t njobs;
    /* the queue */
    pthread_mutex_t mu;
    size_t next;   /* next fresh job */
    size_t *retry; /* indexes of jobs waiting for another attempt */
    size_t nretry;
    size_t inflight;
    uint64_t rate_next_us; /* the rate schedule, monotonic microseconds */
    /* progress */
    atomic_ulong sent, perm, trans;
    uint64_t started;
    bool tty;
    uint64_t last_progress;
    struct smtp_client_stats totals;
    pthread_mutex_t ledger_mu;
};

static void sleep_us(uint64_t us)
{
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static const char send_usage[] =
    "usage: tern send --to LIST.csv --template MESSAGE.txt --from ADDRESS [options]\n"
    "\n"
    "Sends one message per row of LIST.csv (a CSV file with a header row; the\n"
    "'email' column is the recipient, every column is a {{placeholder}} of the\n"
    "template).  Every outcome goes to a ledger, so running the same command again\n"
    "sends only what was not sent yet.\n"
    "\n"
    "Server:\n"
    "  --server HOST:PORT        SMTP server (default 127.0.0.1:25; [v6]:port)\n"
    "  --tls                     require STARTTLS (certificate verified)\n"
    "  --tls-implicit            TLS from the start (port 465; verified)\n"
    "  --tls-opportunistic       STARTTLS when offered, not verified\n"
    "  --tls-ca FILE             verify against FILE instead of the system store\n"
    "  --tls-no-verify           do not verify the certificate (tests only)\n"
    "  --auth-user NAME          AUTH PLAIN/LOGIN; the password comes from\n"
    "  --auth-password-file F    this file (first line), or the environment\n"
    "                            variable TERN_SMTP_PASSWORD; never the command line\n"
    "  --auth-insecure           allow AUTH without TLS (tests only)\n"
    "Sending:\n"
    "  --parallel N              connections used at once (1..64, default 1)\n"
    "  --rate R                  at most R messages per second in all (default: no limit)\n"
    "  --attempts N              tries for a transient failure in this run (default 3)\n"
    "  --reconnect-base D        first backoff after a dropped connection (default 1s)\n"
    "  --reconnect-max D         backoff cap (default 60s)\n"
    "  --give-up D               stop retrying one message after D (default 10m)\n"
    "  --timeout D               timeout per SMTP command (default: RFC 5321's)\n"
    "  --dry-run DIR             render every message into DIR, send nothing\n"
    "Records:\n"
    "  --ledger FILE             SQLite ledger (default LIST.csv.ledger)\n"
    "  --ledger-fsync            fsync every ledger entry (survives power loss, slower);\n"
    "                            without it an entry survives tern being killed\n"
    "  --campaign NAME           ledger key prefix (default the template's file name)\n"
    "  --retry-failed            send again to recipients whose last try failed transiently\n"
    "  --report FILE             permanent failures as CSV (default LIST.csv.failed.csv)\n"
    "Columns:\n"
    "  --email-column NAME       recipient column (default email)\n"
    "Reminders:\n"
    "  --remind 30d,7d,1d        reminder windows before the expiry; one message per\n"
    "                            row and window, only the latest due window is sent\n"
    "  --expires-column NAME     expiry date/time column, ISO 8601 (default expires)\n"
    "  --now TIME                the current time (ISO 8601; or env TERN_NOW), for tests\n"
    "DKIM (each message signed last, after every header is added):\n"
    "  --dkim-key FILE           sign with this PEM private key (RSA or Ed25519;\n"
    "                            repeatable, e.g. both: dual signing)\n"
    "  --dkim-selector S         its selector (one per --dkim-key, in the same order)\n"
    "  --dkim-domain D           d= of the signatures (default: the domain of --from)\n"
    "Other:\n"
    "  --quiet                   no progress, only the summary\n"
    "  --metrics ADDR:PORT       Prometheus metrics at http://ADDR:PORT/metrics during the run\n"
    "  --metrics-linger D        keep them up D after the run, for a last scrape (default 0)\n"
    "Bulk-sender rules ({{token}}, {{rcpt_verp}}, {{campaign}}, {{email}} or a column):\n"
    "  --return-path PATTERN     envelope sender per message (VERP), e.g.\n"
    "                            'bounces+{{token}}@example.org'\n"
    "  --unsubscribe-url PATTERN List-Unsubscribe https URL + List-Unsubscribe-Post\n"
    "                            One-Click (RFC 8058), e.g. 'https://example.org/u/{{token}}'\n"
    "  --unsubscribe-mailto PAT  List-Unsubscribe mailto address, e.g.\n"
    "                            'unsubscribe+{{token}}@example.org'\n"
    "  --token-secret FILE       HMAC secret of {{token}} (first line, >= 16 octets;\n"
    "                            default: the ledger's own; a 'token' column wins)\n"
    "  --suppress FILE           skip the addresses in FILE (one per line, # comments)\n"
    "  --bounces MAILDIR         read the bounces in MAILDIR into the ledger first;\n"
    "                            hard-bounced addresses are skipped by every run\n"
    "  tern send ingest-bounce --ledger FILE      one bounce on stdin (a pipe alias)\n"
    "  tern send ingest-bounces --ledger FILE DIR the bounces of a Maildir\n"
    "  tern send report --ledger FILE [--campaign NAME]   the ledger's counts\n"
    "Durations: 50ms, 2s, 5m, 1h.  Exit status: 0 all sent, 1 a permanent failure or a bad\n"
    "row, 75 transient failures remain (run again later), 2 usage or input error.\n";

/* ---- the run's plan ------------------------------------------------------------ */

static void lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

struct seen_set {
    char **keys;
    size_t *lines;
    size_t cap; /* power of two */
};

/* Returns the line of an earlier row with the same key, or 0 (and remembers this one). */
static size_t seen_check(struct seen_set *s, char *key, size_t line)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = key; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    for (size_t i = h & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (!s->keys[i]) {
            s->keys[i] = key;
            s->lines[i] = line;
            return 0;
        }
        if (strcmp(s->keys[i], key) == 0)
            return s->lines[i];
    }
}

static int send_plan(struct sender *sd, unsigned long *bad, unsigned long *skipped_sent,
                     unsigned long *skipped_failed, unsigned long *not_due)
{
    struct csv_table *t = &sd->table;
    int ecol = csv_col(t, sd->o.email_col), xcol = -1;
    struct remind_windows rw = {.n = 0};
    char why[512];

    if (ecol < 0) {
        fprintf(stderr, "tern send: %s:1: no column '%s' in the header row\n", sd->o.list,
                sd->o.email_col);
        return -1;
    }
    if (sd->o.remind) {
        if (remind_parse_windows(sd->o.remind, &rw, why, sizeof(why)) < 0) {
            fprintf(stderr, "tern send: --remind %s: %s\n", sd->o.remind, why);
            return -1;
        }
        xcol = csv_col(t, sd->o.expires_col);
        if (xcol < 0) {
            fprintf(stderr, "tern send: %s:1: no column '%s' for --remind\n", sd->o.list,
                    sd->o.expires_col);
            return -1;
        }
    }
    struct seen_set seen;
    seen.cap = 16;
    while (seen.cap < t->nrows * 2 + 16)
        seen.cap *= 2;
    seen.keys = calloc(seen.cap, sizeof(char *));
    seen.lines = calloc(seen.cap, sizeof(size_t));
    sd->jobs = calloc(t->nrows ? t->nrows : 1, sizeof(struct job));
    if (!seen.keys || !seen.lines || !sd->jobs)
        fatal("out of memory");
    if (bulk_uses_token(sd->bulk) && ledger_begin(sd->ledger) < 0) { /* tokens: one commit */
        fprintf(stderr, "tern send: ledger %s: cannot begin a transaction\n", sd->o.ledger_path);
        return -1;
    }

    for (size_t i = 0; i < t->nrows; i++) {
        const struct csv_row *r = &t->rows[i];
        struct job *j = &sd->jobs[sd->njobs];
        struct mailaddr a;
        if (r->bad_fields) {
            fprintf(stderr, "tern send: %s:%lu: %zu fields where the header has %zu; row skipped\n",
                    sd->o.list, r->line, r->nfields, t->ncols);
            (*bad)++;
            continue;
        }
        const char *email = r->fields[ecol];
        int e = addr_parse_mailbox(email, strlen(email), ADDR_ALLOW_UTF8, &a);
        if (e != ADDR_OK || strlen(email) >= sizeof(j->rcpt)) {
            fprintf(stderr,
                    "tern send: %s:%lu: column '%s': '%.80s' is not a valid address (%s); "
                    "row skipped\n",
                    sd->o.list, r->line, sd->o.email_col, email,
                    e != ADDR_OK ? addr_strerror(e) : "too long");
            (*bad)++;
            continue;
        }
        snprintf(j->rcpt, sizeof(j->rcpt), "%s", email);
        snprintf(j->key, sizeof(j->key), "%s", email);
        lower(j->key);
        char *kcopy = strdup(j->key);
        if (!kcopy)
            fatal("out of memory");
        size_t dup = seen_check(&seen, kcopy, r->line);
        if (dup)
            free(kcopy);
        if (dup) {
            fprintf(stderr, "tern send: %s:%lu: %s already on line %zu; row skipped\n", sd->o.list,
                    r->line, email, dup);
            (*bad)++;
            continue;
        }
        enum bulk_skip bs; /* suppressed, hard bounce; else its token recorded */
        if (bulk_plan(sd->bulk, sd->ledger, sd->o.campaign, t, r, j->key, &bs) < 0) {
            fprintf(stderr, "tern send: ledger %s: read or write error\n", sd->o.ledger_path);
            return -1;
        }
        if (bs != BULK_SEND) {
            (*(bs == BULK_SUPPRESSED ? &sd->skipped_suppressed : &sd->skipped_bounced))++;
            continue;
        }
        if (sd->o.remind) {
            time_t exp;
            if (remind_parse_time(r->fields[xcol], &exp) < 0) {
                fprintf(stderr,
                        "tern send: %s:%lu: column '%s': '%.40s' is not an ISO 8601 date; row "
                        "skipped\n",
                        sd->o.list, r->line, sd->o.expires_col, r->fields[xcol]);
                (*bad)++;
                continue;
            }
            int64_t min_sent = ledger_min_window_sent(sd->ledger, sd->o.campaign, j->key);
            if (min_sent < -1) {
                fprintf(stderr, "tern send: ledger %s: read error\n", sd->o.ledger_path);
                return -1;
            }
            int64_t due = remind_due(&rw, exp, sd->now, min_sent);
            if (due < 0) {
                (*not_due)++;
                continue;
            }
            snprintf(j->window, sizeof(j->window), "%lld", (long long)due);
        }
        enum ledger_status st;
        if (ledger_get(sd->ledger, sd->o.campaign, j->key, j->window, &st) < 0) {
            fprintf(stderr, "tern send: ledger %s: read error\n", sd->o.ledger_path);
            return -1;
        }
        if (st == LEDGER_SENT) {
            (*skipped_sent)++;
            continue;
        }
        if (st == LEDGER_PERMANENT || (st == LEDGER_TRANSIENT && !sd->o.retry_failed)) {
            (*skipped_failed)++;
            continue;
        }
        j->row = i;
        sd->njobs++;
    }
    for (size_t i = 0; i < seen.cap; i++)
        free(seen.keys[i]);
    free(seen.keys);
    free(seen.lines);
    if (bulk_uses_token(sd->bulk) && ledger_commit(sd->ledger) < 0) {
        fprintf(stderr, "tern send: ledger %s: cannot commit the tokens\n", sd->o.ledger_path);
        return -1;
    }
    return 0;
}

/* ---- workers ----------------------------------------------------------------------- */

/* Next job index, or -1 when all are done; waits for retries that are not yet due. */
static long queue_take(struct sender *sd)
{
    for (;;) {
        pthread_mutex_lock(&sd->mu);
        uint64_t now = clock_mono_us() / 1000, wake = 0;
        for (size_t i = 0; i < sd->nretry; i++) {
            struct job *j = &sd->jobs[sd->retry[i]];
            if (j->not_before <= now) {
                size_t idx = sd->retry[i];
                sd->retry[i] = sd->retry[--sd->nretry];
                sd->inflight++;
                pthread_mutex_unlock(&sd->mu);
                return (long)idx;
            }
            if (!wake || j->not_before < wake)
                wake = j->not_before;
        }
        if (sd->next < sd->njobs) {
            sd->inflight++;
            long idx = (long)sd->next++;
            pthread_mutex_unlock(&sd->mu);
            return idx;
        }
        bool done = sd->nretry == 0 && sd->inflight == 0;
        pthread_mutex_unlock(&sd->mu);
        if (done)
            return -1;
        uint64_t d = wake > now ? wake - now : 50;
        sleep_us((d > 50 ? 50 : d) * 1000);
    }
}

static void rate_wait(struct sender *sd)
{
    if (sd->o.rate <= 0)
        return;
    uint64_t step = (uint64_t)(1e6 / sd->o.rate), at;
    pthread_mutex_lock(&sd->mu);
    uint64_t now = clock_mono_us();
    at = sd->rate_next_us > now ? sd->rate_next_us : now;
    sd->rate_next_us = at + step;
    pthread_mutex_unlock(&sd->mu);
    if (at > now)
        sleep_us(at - now);
}

static void progress(struct sender *sd, bool final)
{
    uint64_t now = clock_mono_us();
    if (sd->o.quiet || (!final && now - sd->last_progress < (sd->tty ? 200000 : 5000000)))
        return;
    sd->last_progress = now;
    unsigned long s = sd->sent, p = sd->perm, t = sd->trans;
    double el = (double)(now - sd->started) / 1e6, rate = el > 0 ? (double)(s + p) / el : 0;
    double left = (double)sd->njobs - (double)(s + p + t);
    if (sd->tty) {
        int width = 30,
            fill = sd->njobs ? (int)((double)(s + p + t) * width / (double)sd->njobs) : 0;
        char bar[40];
        memset(bar, '#', (size_t)fill);
        memset(bar + fill, '.', (size_t)(width - fill));
        bar[width] = '\0';
        fprintf(stderr, "\r[%s] sent %lu  failed %lu  %.1f msg/s  ETA %.0fs   ", bar, s, p + t,
                rate, rate > 0 ? left / rate : 0);
        if (final)
            fputc('\n', stderr);
    } else {
        log_info("progress: sent %lu, failed %lu, %lu to go, %.1f msg/s", s, p + t,
                 (unsigned long)(left > 0 ? left : 0), rate);
    }
}

static void *worker(void *arg)
{
    struct sender *sd = arg;
    struct smtp_client_conf cc = {
        .host = sd->host,
        .port = sd->port,
        .helo_name = "localhost",
        .tls = sd->o.tls,
        .tls_verify = sd->o.tls_verify,
        .tls_ca_file = sd->o.tls_ca,
        .auth_user = sd->o.auth_user,
        .auth_pass = sd->auth_pass,
        .auth_plaintext = sd->o.auth_insecure,
        .command_ms = (unsigned)sd->o.timeout,
        .greeting_ms = (unsigned)sd->o.timeout,
        .data_init_ms = (unsigned)sd->o.timeout,
        .data_block_ms = (unsigned)sd->o.timeout,
        .data_end_ms = (unsigned)sd->o.timeout,
        .reconnect_base_ms = sd->o.reconnect_base,
        .reconnect_max_ms = sd->o.reconnect_max,
        .give_up_ms = sd->o.give_up,
    };
    struct smtp_client *c = smtp_client_new(&cc);
    struct render_opts ro = {.from = sd->o.from, .now = sd->now};
    struct bulk_msg bm; /* this message's return path and List-Unsubscribe */
    char why[512];
    long idx;

    while ((idx = queue_take(sd)) >= 0) {
        struct job *j = &sd->jobs[idx];
        const struct csv_row *row = &sd->table.rows[j->row];
        char *msg = NULL;
        size_t len = 0;
        struct rcpt_result res;
        char detail[RESULT_STATUS_MAX + RESULT_TEXT_MAX];
        enum ledger_status st;

        ro.to = j->rcpt;
        ro.msgid_seed = j->key;
        int brc =
            bulk_message(sd->bulk, sd->o.campaign, &sd->table, row, j->key, &bm, why, sizeof(why));
        ro.list_unsubscribe = bm.list_unsubscribe;
        ro.one_click = bm.one_click;
        if (brc < 0 ||
            template_render(sd->tpl, &sd->table, row, &ro, &msg, &len, why, sizeof(why)) < 0 ||
            send_dkim_sign(&sd->o.dkim, &msg, &len, why, sizeof(why)) < 0) {
            result_fail(&res, RESULT_PERM, "5.3.0", "%s", why);
            fprintf(stderr, "tern send: %s; row skipped\n", why);
        } else {
            rate_wait(sd);
            const struct smtp_rcpt rcpt = {.addr = j->rcpt}; /* no DSN parameters */
            const char *mail_from = bm.return_path[0] ? bm.return_path : sd->o.from; /* VERP */
            const struct smtp_envelope env = {
                .from = mail_from, .envid = bm.envid, .rcpts = &rcpt, .nrcpt = 1};
            smtp_client_send(c, &env, msg, len, &res);
        }
        free(msg);
        j->attempts++;
        if (res.cls == RESULT_TEMP && j->attempts < sd->o.attempts) {
            pthread_mutex_lock(&sd->mu);
            j->not_before =
                clock_mono_us() / 1000 +
                backoff_delay_ms(j->attempts, sd->o.reconnect_base, sd->o.reconnect_max, 0.5);
            sd->retry[sd->nretry++] = (size_t)idx;
            metrics_inc(M_SEND_RETRIES, NULL, NULL);
            sd->inflight--;
            pthread_mutex_unlock(&sd->mu);
            continue;
        }
        st = res.cls == RESULT_OK     ? LEDGER_SENT
             : res.cls == RESULT_TEMP ? LEDGER_TRANSIENT
                                      : LEDGER_PERMANENT;
        /* the server's reply as it came, or our status and explanation */
        bool own = res.code == 0 && res.status[0];
        snprintf(detail, sizeof(detail), "%s%s%s", own ? res.status : "", own ? " " : "", res.text);
        pthread_mutex_lock(&sd->ledger_mu);
        if (ledger_put(sd->ledger, sd->o.campaign, j->key, j->window, st, detail) < 0)
            fatal("ledger %s: cannot record the outcome for %s", sd->o.ledger_path, j->rcpt);
        metrics_inc(M_SEND_MESSAGES, st == LEDGER_SENT ? "sent" : "failed", NULL);
        if (st == LEDGER_SENT)
            sd->sent++;
        else if (st == LEDGER_PERMANENT)
            sd->perm++;
        else
            sd->trans++;
        if (st != LEDGER_SENT)
            log_warn("%s: %s failure: %s", j->rcpt,
                     st == LEDGER_PERMANENT ? "permanent" : "transient", detail);
        progress(sd, false);
        pthread_mutex_unlock(&sd->ledger_mu);
        pthread_mutex_lock(&sd->mu);
        sd->inflight--;
        pthread_mutex_unlock(&sd->mu);
    }
    smtp_client_close(c);
    pthread_mutex_lock(&sd->mu);
    const struct smtp_client_stats *cs = smtp_client_stats(c);
    sd->totals.attempts += cs->attempts;
    sd->totals.successes += cs->successes;
    sd->totals.reconnects += cs->reconnects;
    sd->totals.replies_421 += cs->replies_421;
    sd->totals.connects += cs->connects;
    pthread_mutex_unlock(&sd->mu);
    smtp_client_free(c);
    return NULL;
}

/* ---- dry run ----------------------------------------------------------------------- */

static int send_dry_run(struct sender *sd)
{
    struct render_opts ro = {.from = sd->o.from, .now = sd->now};
    char why[512], path[4096];
    if (mkdir(sd->o.dry_run, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "tern send: --dry-run %s: %s\n", sd->o.dry_run, strerror(errno));
        return 2;
    }
    for (size_t i = 0; i < sd->njobs; i++) {
        struct job *j = &sd->jobs[i];
        char *msg;
        size_t len;
        struct bulk_msg bm;
        ro.to = j->rcpt;
        ro.msgid_seed = j->key;
        int brc = bulk_message(sd->bulk, sd->o.campaign, &sd->table, &sd->table.rows[j->row],
                               j->key, &bm, why, sizeof(why));
        ro.list_unsubscribe = bm.list_unsubscribe;
        ro.one_click = bm.one_click;
        if (brc < 0 || template_render(sd->tpl, &sd->table, &sd->table.rows[j->row], &ro, &msg,
                                       &len, why, sizeof(why)) < 0) {
            fprintf(stderr, "tern send: %s; row skipped\n", why);
            sd->perm++;
            continue;
        }
        snprintf(path, sizeof(path), "%s/%06zu-%s.eml", sd->o.dry_run, i + 1, j->key);
        for (char *p = path + strlen(sd->o.dry_run) + 1; *p; p++)
            if (*p == '/')
                *p = '_';
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(msg, 1, len, f) != len || fclose(f) != 0) {
            fprintf(stderr, "tern send: %s: %s\n", path, strerror(errno));
            free(msg);
            return 2;
        }
        free(msg);
        sd->sent++;
    }
    printf("dry run: %lu messages rendered into %s, %lu could not be rendered; skipped %lu: "
           "hard bounce, %lu: suppressed\n",
           (unsigned long)sd->sent, sd->o.dry_run, (unsigned long)sd->perm, sd->skipped_bounced,
           sd->skipped_suppressed);
    return sd->perm ? 1 : 0;
}

/* ---- main ---------------------------------------------------------------------------- */

enum {
    O_TO = 256,
    O_TEMPLATE,
    O_FROM,
    O_SERVER,
    O_TLS,
    O_TLS_IMPLICIT,
    O_TLS_OPP,
    O_TLS_CA,
    O_TLS_NOVERIFY,
    O_AUTH_USER,
    O_AUTH_PASS_FILE,
    O_AUTH_INSECURE,
    O_PARALLEL,
    O_RATE,
    O_ATTEMPTS,
    O_RBASE,
    O_RMAX,
    O_GIVEUP,
    O_TIMEOUT,
    O_DRY,
    O_LEDGER,
    O_LEDGER_FSYNC,
    O_CAMPAIGN,
    O_RETRY,
    O_REPORT,
    O_EMAIL_COL,
    O_REMIND,
    O_EXPIRES_COL,
    O_NOW,
    O_QUIET,
    O_METRICS,
    O_METRICS_LINGER,
    O_RETURN_PATH, /* bulk-sender rules: keep in step with send_options[] */
    O_UNSUB_URL,
    O_UNSUB_MAILTO,
    O_TOKEN_SECRET,
    O_SUPPRESS,
    O_BOUNCES,
    O_DKIM_KEY,
    O_DKIM_SELECTOR,
    O_DKIM_DOMAIN,
    O_HELP,
};

static const struct option send_options[] = {
    {"to", required_argument, NULL, O_TO},
    {"template", required_argument, NULL, O_TEMPLATE},
    {"from", required_argument, NULL, O_FROM},
    {"server", required_argument, NULL, O_SERVER},
    {"tls", no_argument, NULL, O_TLS},
    {"tls-implicit", no_argument, NULL, O_TLS_IMPLICIT},
    {"tls-opportunistic", no_argument, NULL, O_TLS_OPP},
    {"tls-ca", required_argument, NULL, O_TLS_CA},
    {"tls-no-verify", no_argument, NULL, O_TLS_NOVERIFY},
    {"auth-user", required_argument, NULL, O_AUTH_USER},
    {"auth-password-file", required_argument, NULL, O_AUTH_PASS_FILE},
    {"auth-insecure", no_argument, NULL, O_AUTH_INSECURE},
    {"parallel", required_argument, NULL, O_PARALLEL},
    {"rate", required_argument, NULL, O_RATE},
    {"attempts", required_argument, NULL, O_ATTEMPTS},
    {"reconnect-base", required_argument, NULL, O_RBASE},
    {"reconnect-max", required_argument, NULL, O_RMAX},
    {"give-up", required_argument, NULL, O_GIVEUP},
    {"timeout", required_argument, NULL, O_TIMEOUT},
    {"dry-run", required_argument, NULL, O_DRY},
    {"ledger", required_argument, NULL, O_LEDGER},
    {"ledger-fsync", no_argument, NULL, O_LEDGER_FSYNC},
    {"campaign", required_argument, NULL, O_CAMPAIGN},
    {"retry-failed", no_argument, NULL, O_RETRY},
    {"report", required_argument, NULL, O_REPORT},
    {"email-column", required_argument, NULL, O_EMAIL_COL},
    {"remind", required_argument, NULL, O_REMIND},
    {"expires-column", required_argument, NULL, O_EXPIRES_COL},
    {"now", required_argument, NULL, O_NOW},
    {"quiet", no_argument, NULL, O_QUIET},
    {"metrics", required_argument, NULL, O_METRICS},
    {"metrics-linger", required_argument, NULL, O_METRICS_LINGER},
    {"return-path", required_argument, NULL, O_RETURN_PATH},
    {"unsubscribe-url", required_argument, NULL, O_UNSUB_URL},
    {"unsubscribe-mailto", required_argument, NULL, O_UNSUB_MAILTO},
    {"token-secret", required_argument, NULL, O_TOKEN_SECRET},
    {"suppress", required_argument, NULL, O_SUPPRESS},
    {"bounces", required_argument, NULL, O_BOUNCES},
    {"dkim-key", required_argument, NULL, O_DKIM_KEY},
    {"dkim-selector", required_argument, NULL, O_DKIM_SELECTOR},
    {"dkim-domain", required_argument, NULL, O_DKIM_DOMAIN},
    {"help", no_argument, NULL, O_HELP},
    {NULL, 0, NULL, 0},
};

static int usage_error(const char *opt, const char *val, const char *why)
{
    fprintf(stderr, "tern send: --%s %s: %s (see tern send --help)\n", opt, val ? val : "", why);
    return 2;
}

static int parse_duration(const char *opt, const char *v, uint64_t *out)
{
    if (num_parse_duration_ms(v, out) < 0 || *out == 0)
        return usage_error(opt, v, "expected a duration such as 50ms, 2s or 5m");
    return 0;
}

static char *read_password(const char *file)
{
    char line[1024];
    FILE *f = fopen(file, "r");
    if (!f) {
        fprintf(stderr, "tern send: --auth-password-file %s: %s\n", file, strerror(errno));
        return NULL;
    }
    if (!fgets(line, sizeof(line), f)) {
        fprintf(stderr, "tern send: %s:1: empty password file\n", file);
        fclose(f);
        return NULL;
    }
    fclose(f);
    line[strcspn(line, "\r\n")] = '\0';
    char *p = strdup(line);
    explicit_bzero(line, sizeof(line));
    return p;
}

int send_main(int argc, char **argv)
{
    static struct sender sd;
    struct send_opts *o = &sd.o;
    char why[512], ledger_buf[4096], report_buf[4096], campaign_buf[256];
    int c;
    uint64_t v;

    o->server = "127.0.0.1:25";
    o->email_col = "email";
    o->expires_col = "expires";
    o->tls = SMTP_TLS_NONE;
    o->tls_verify = -1;
    o->parallel = 1;
    o->attempts = 3;
    o->reconnect_base = 1000;
    o->reconnect_max = 60000;
    o->give_up = 600000;
    if (argc > 1 && (strcmp(argv[1], "ingest-bounce") == 0 ||
                     strcmp(argv[1], "ingest-bounces") == 0)) /* send/ingest.c */
        return ingest_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "report") == 0)
        return ingest_report_main(argc - 1, argv + 1);
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", send_options, NULL)) != -1) {
        const char *name = c >= O_TO && c <= O_HELP ? send_options[c - O_TO].name : "";
        switch (c) {
        case O_TO:
            o->list = optarg;
            break;
        case O_TEMPLATE:
            o->template_path = optarg;
            break;
        case O_FROM:
            o->from = optarg;
            break;
        case O_SERVER:
            o->server = optarg;
            break;
        case O_TLS:
            o->tls = SMTP_TLS_REQUIRED;
            break;
        case O_TLS_IMPLICIT:
            o->tls = SMTP_TLS_IMPLICIT;
            break;
        case O_TLS_OPP:
            o->tls = SMTP_TLS_OPPORTUNISTIC;
            break;
        case O_TLS_CA:
            o->tls_ca = optarg;
            break;
        case O_TLS_NOVERIFY:
            o->tls_verify = 0;
            break;
        case O_AUTH_USER:
            o->auth_user = optarg;
            break;
        case O_AUTH_PASS_FILE:
            o->auth_pass_file = optarg;
            break;
        case O_AUTH_INSECURE:
            o->auth_insecure = true;
            break;
        case O_PARALLEL:
            if (num_parse_u64(optarg, SEND_PARALLEL_MAX, &v) < 0 || v == 0)
                return usage_error(name, optarg, "expected a number from 1 to 64");
            o->parallel = (unsigned)v;
            break;
        case O_RATE: {
            char *end;
            errno = 0;
            o->rate = strtod(optarg, &end);
            if (errno || *end || end == optarg || !(o->rate > 0) || o->rate > 1e6)
                return usage_error(name, optarg, "expected messages per second, e.g. 10 or 0.5");
            break;
        }
        case O_ATTEMPTS:
            if (num_parse_u64(optarg, 100, &v) < 0 || v == 0)
                return usage_error(name, optarg, "expected a number from 1 to 100");
            o->attempts = (unsigned)v;
            break;
        case O_RBASE:
            if (parse_duration(name, optarg, &o->reconnect_base))
                return 2;
            break;
        case O_RMAX:
            if (parse_duration(name, optarg, &o->reconnect_max))
                return 2;
            break;
        case O_GIVEUP:
            if (parse_duration(name, optarg, &o->give_up))
                return 2;
            break;
        case O_TIMEOUT:
            if (parse_duration(name, optarg, &o->timeout) || o->timeout > 3600000)
                return usage_error(name, optarg, "expected a duration up to 1h");
            break;
        case O_DRY:
            o->dry_run = optarg;
            break;
        case O_LEDGER:
            o->ledger_path = optarg;
            break;
        case O_LEDGER_FSYNC:
            o->ledger_fsync = true;
            break;
        case O_CAMPAIGN:
            o->campaign = optarg;
            break;
        case O_RETRY:
            o->retry_failed = true;
            break;
        case O_REPORT:
            o->report = optarg;
            break;
        case O_EMAIL_COL:
            o->email_col = optarg;
            break;
        case O_REMIND:
            o->remind = optarg;
            break;
        case O_EXPIRES_COL:
            o->expires_col = optarg;
            break;
        case O_NOW:
            o->now_str = optarg;
            break;
        case O_QUIET:
            o->quiet = true;
            break;
        case O_METRICS:
            o->metrics = optarg;
            break;
        case O_METRICS_LINGER:
            if (num_parse_duration_ms(optarg, &o->metrics_linger) < 0 ||
                o->metrics_linger > 3600000)
                return usage_error(name, optarg, "expected a duration up to 1h, e.g. 30s");
            break;
        case O_RETURN_PATH:
            o->bulk.return_path = optarg;
            break;
        case O_UNSUB_URL:
            o->bulk.unsub_url = optarg;
            break;
        case O_UNSUB_MAILTO:
            o->bulk.unsub_mailto = optarg;
            break;
        case O_TOKEN_SECRET:
            o->bulk.token_secret = optarg;
            break;
        case O_SUPPRESS:
            o->bulk.suppress = optarg;
            break;
        case O_BOUNCES:
            o->bounces = optarg;
            break;
        case O_DKIM_KEY:
        case O_DKIM_SELECTOR:
        case O_DKIM_DOMAIN:
            if (send_dkim_option(&o->dkim, (enum send_dkim_opt)(c - O_DKIM_KEY), optarg) < 0)
                return 2;
            break;
        case O_HELP:
        case 'h':
            fputs(send_usage, stdout);
            return 0;
        default:
            fputs("see tern send --help\n", stderr);
            return 2;
        }
    }
    if (optind < argc)
        return usage_error("", argv[optind], "unexpected argument");
    if (!o->list || !o->template_path || !o->from) {
        fputs("tern send: --to, --template and --from are required (see tern send --help)\n",
              stderr);
        return 2;
    }
    struct mailaddr fa;
    if (o->from[0] && addr_parse_mailbox(o->from, strlen(o->from), ADDR_ALLOW_UTF8, &fa) != 0)
        return usage_error("from", o->from, "not a valid address");
    if (send_dkim_load(&o->dkim, o->from) < 0)
        return 2;
    /* server */
    const char *colon = strrchr(o->server, ':');
    if (!colon || colon == o->server || strlen(colon + 1) >= sizeof(sd.port) ||
        (size_t)(colon - o->server) >= sizeof(sd.host) || num_parse_u64(colon + 1, 65535, &v) < 0 ||
        v == 0)
        return usage_error("server", o->server, "expected HOST:PORT");
    memcpy(sd.host, o->server, (size_t)(colon - o->server));
    snprintf(sd.port, sizeof(sd.port), "%s", colon + 1);
    if (o->auth_user) {
        const char *env = getenv("TERN_SMTP_PASSWORD");
        sd.auth_pass = o->auth_pass_file ? read_password(o->auth_pass_file)
                       : env             ? strdup(env)
                                         : NULL;
        if (!sd.auth_pass) {
            if (!o->auth_pass_file)
                fputs("tern send: --auth-user needs --auth-password-file or TERN_SMTP_PASSWORD\n",
                      stderr);
            return 2;
        }
    }
    /* the clock */
    const char *now_s = o->now_str ? o->now_str : getenv("TERN_NOW");
    sd.now = time(NULL);
    if (now_s && remind_parse_time(now_s, &sd.now) < 0)
        return usage_error("now", now_s, "expected an ISO 8601 date/time");
    /* inputs */
    if (csv_load(o->list, &sd.table, why, sizeof(why)) < 0) {
        fprintf(stderr, "tern send: %s\n", why);
        return 2;
    }
    if (!(sd.tpl = template_load(o->template_path, why, sizeof(why))) ||
        template_check(sd.tpl, &sd.table, why, sizeof(why)) < 0) {
        fprintf(stderr, "tern send: %s\n", why);
        return 2;
    }
    if (!o->campaign) {
        const char *b = strrchr(o->template_path, '/');
        snprintf(campaign_buf, sizeof(campaign_buf), "%s", b ? b + 1 : o->template_path);
        o->campaign = campaign_buf;
    }
    if (!o->ledger_path) {
        snprintf(ledger_buf, sizeof(ledger_buf), "%s.ledger", o->list);
        o->ledger_path = ledger_buf;
    }
    if (!o->report) {
        snprintf(report_buf, sizeof(report_buf), "%s.failed.csv", o->list);
        o->report = report_buf;
    }
    log_set_prefix("send");
    signal(SIGPIPE, SIG_IGN); /* a server that closes mid-TLS-write is an error, not a kill */
    if (!(sd.ledger = ledger_open(o->ledger_path, o->ledger_fsync, why, sizeof(why)))) {
        fprintf(stderr, "tern send: %s\n", why);
        return 2;
    }
    if ((o->bulk.unsub_url || o->bulk.unsub_mailto) &&
        template_has_field(sd.tpl, "List-Unsubscribe")) {
        fprintf(stderr,
                "tern send: %s has its own List-Unsubscribe: drop it or the "
                "--unsubscribe-* options\n",
                o->template_path);
        return 2;
    }
    if (!(sd.bulk = bulk_new(&o->bulk, &sd.table, sd.ledger, why, sizeof(why)))) {
        fprintf(stderr, "tern send: %s\n", why);
        return 2;
    }
    if (o->bounces) { /* before the plan, so that what bounced is skipped now */
        struct ingest_stats is = {0};
        if (ingest_maildir(sd.ledger, o->bounces, &is, 0, why, sizeof(why)) < 0) {
            fprintf(stderr, "tern send: --bounces %s: %s\n", o->bounces, why);
            return 2;
        }
        printf("bounces read: %lu messages, %lu hard, %lu soft, %lu not matched\n", is.messages,
               is.hard, is.soft, is.unmatched);
    }
    unsigned long bad = 0, skipped_sent = 0, skipped_failed = 0, not_due = 0;
    if (send_plan(&sd, &bad, &skipped_sent, &skipped_failed, &not_due) < 0)
        return 2;
    if (o->dry_run)
        return send_dry_run(&sd);

    sd.retry = calloc(sd.njobs ? sd.njobs : 1, sizeof(size_t));
    if (!sd.retry)
        fatal("out of memory");
    struct httpmetrics *hm = NULL;
    if (o->metrics) {
        char bound[80];
        metrics_touch(M_SEND_MESSAGES, "sent", NULL);
        metrics_touch(M_SEND_MESSAGES, "failed", NULL);
        if (!(hm = httpmetrics_start(NULL, o->metrics, METRICS_SEND, bound, sizeof(bound), why,
                                     sizeof(why)))) {
            fprintf(stderr, "tern send: --metrics: %s\n", why);
            return 2;
        }
        log_info("metrics listening on %s", bound);
    }
    pthread_mutex_init(&sd.mu, NULL);
    pthread_mutex_init(&sd.ledger_mu, NULL);
    sd.tty = isatty(STDERR_FILENO);
    sd.started = sd.last_progress = clock_mono_us();
    if (sd.njobs > 0) {
        unsigned n = o->parallel < sd.njobs ? o->parallel : (unsigned)sd.njobs;
        pthread_t th[SEND_PARALLEL_MAX];
        for (unsigned i = 0; i < n; i++)
            if (pthread_create(&th[i], NULL, worker, &sd) != 0)
                fatal("cannot start a worker thread");
        for (unsigned i = 0; i < n; i++)
            pthread_join(th[i], NULL);
        progress(&sd, true);
    }
    double el = (double)(clock_mono_us() - sd.started) / 1e6;
    printf("sent %lu, failed permanently %lu, failed transiently %lu, bad rows %lu; "
           "skipped: %lu already sent, %lu failed before%s",
           (unsigned long)sd.sent, (unsigned long)sd.perm, (unsigned long)sd.trans, bad,
           skipped_sent, skipped_failed,
           skipped_failed && !o->retry_failed ? " (--retry-failed)" : "");
    if (o->remind)
        printf(", %lu not due", not_due);
    printf(", %lu: hard bounce, %lu: suppressed", sd.skipped_bounced, sd.skipped_suppressed);
    printf("; %.2f s, %llu connections, %llu reconnects, %llu 421 replies\n", el,
           (unsigned long long)sd.totals.connects, (unsigned long long)sd.totals.reconnects,
           (unsigned long long)sd.totals.replies_421);
    if (sd.perm && ledger_report(sd.ledger, o->campaign, o->report, why, sizeof(why)) == 0)
        printf("permanent failures listed in %s\n", o->report);
    struct ledger_counts lc; /* the campaign as a whole, all runs */
    if (ledger_counts(sd.ledger, o->campaign, &lc) == 0)
        printf("ledger, campaign %s: sent %lu, failed %lu, bounced hard %lu, bounced soft %lu, "
               "unsubscribed: not tracked\n",
               o->campaign, lc.sent, lc.permanent + lc.transient, lc.bounced_hard, lc.bounced_soft);
    if (fflush(stdout) != 0)
        return 2;
    if (hm && o->metrics_linger) {
        struct timespec ts = {(time_t)(o->metrics_linger / 1000),
                              (long)(o->metrics_linger % 1000) * 1000000};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
    }
    httpmetrics_free(hm);
    ledger_close(sd.ledger);
    int rc = sd.perm || bad ? 1 : sd.trans ? 75 : 0;
    if (sd.auth_pass) {
        explicit_bzero(sd.auth_pass, strlen(sd.auth_pass));
        free(sd.auth_pass);
    }
    bulk_free(sd.bulk);
    send_dkim_free(&o->dkim);
    template_free(sd.tpl);
    csv_table_free(&sd.table);
    free(sd.jobs);
    free(sd.retry);
    return rc;
}
