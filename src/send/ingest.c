/*
 * ingest.c - bounce ingestion and the ledger report (see ingest.h).
 *
 * The parser (bounce.c) is pure; this file does the I/O around it: standard
 * input or the files of a Maildir, bounded to INGEST_MSG_MAX octets each
 * (the rest is read and dropped), the token lookups, one ledger commit per
 * bounce recorded, then the Maildir rename.  A crash between the commit and
 * the rename reads the message again next time: its bounce is counted
 * twice, never lost.  Every address printed goes through log_msg() or is
 * cleaned by the parser (no control characters).
 */
#include "send/ingest.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/address.h"
#include "send/bounce.h"

#define INGEST_MAX_LOOKUPS 200

static void out_line(int verbose, const char *fmt, const char *kind, const char *status,
                     const char *rcpt, const char *campaign)
{
    if (verbose)
        printf(fmt, kind, status, rcpt, campaign);
}

/* Is c a separator inside a local part (where a token may begin or end)? */
static int sep(char c)
{
    return !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'));
}

/* Find the recipient named by a token or a local=domain in the local part of addr. */
static int lookup_addr(struct ledger *l, const char *addr, char *campaign, size_t csize, char *rcpt,
                       size_t rsize, unsigned *lookups)
{
    const char *at = strrchr(addr, '@');
    size_t ll = at ? (size_t)(at - addr) : 0;
    char piece[ADDR_PATH_MAX + 1];
    if (ll == 0 || ll > ADDR_LOCAL_MAX)
        return 0;
    /* tokens: every run [i, j) with i at the start or after a separator and j at the end or
     * at a separator; longest first so that a token with '-' or '_' inside is tried whole */
    for (size_t len = ll; len > 0; len--) {
        for (size_t i = 0; i + len <= ll; i++) {
            size_t j = i + len;
            if ((i > 0 && !sep(addr[i - 1])) || (j < ll && !sep(addr[j])))
                continue;
            if (++*lookups > INGEST_MAX_LOOKUPS)
                return 0;
            memcpy(piece, addr + i, len);
            piece[len] = '\0';
            int r = ledger_token_find(l, piece, campaign, csize, rcpt, rsize);
            if (r != 0)
                return r;
            /* {{rcpt_verp}}: local=domain */
            char *eq = strrchr(piece, '=');
            if (eq && eq > piece && eq[1] && !strchr(eq + 1, '=') && !strchr(piece, '@')) {
                *eq = '@';
                struct mailaddr ma;
                if (addr_parse_mailbox(piece, len, 0, &ma) == ADDR_OK) {
                    int k = ledger_rcpt_known(l, piece);
                    if (k < 0)
                        return -1;
                    if (k == 1) {
                        snprintf(rcpt, rsize, "%s", piece);
                        if (csize)
                            campaign[0] = '\0';
                        return 1;
                    }
                }
            }
        }
    }
    return 0;
}

static void lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

static int record(struct ledger *l, const char *rcpt, const struct bounce_rcpt *rc,
                  enum bounce_kind kind, const char *campaign, struct ingest_stats *st, int verbose)
{
    const char *status = rc && rc->status[0] ? rc->status : "";
    const char *diag = rc && rc->diag[0] ? rc->diag : "bounce without a delivery report";
    if (ledger_bounce_put(l, rcpt, kind == BOUNCE_HARD ? LEDGER_BOUNCE_HARD : LEDGER_BOUNCE_SOFT,
                          status, diag, campaign) < 0)
        return -1;
    if (kind == BOUNCE_HARD)
        st->hard++;
    else
        st->soft++;
    out_line(verbose, "bounce: %s %s %s (campaign '%s')\n", bounce_kind_name(kind),
             status[0] ? status : "-", rcpt, campaign);
    return 0;
}

int ingest_message(struct ledger *l, const char *msg, size_t len, const char *const *env_rcpts,
                   size_t nenv, struct ingest_stats *st, int verbose, char *why, size_t whysize)
{
    static struct bounce_report rep; /* ~20 KiB: not on the stack; one caller at a time */
    char campaign[256], rcpt[ADDR_PATH_MAX + 1];
    unsigned lookups = 0;
    int found = 0;

    bounce_parse(msg, len, &rep);
    st->messages++;
    campaign[0] = rcpt[0] = '\0';
    for (size_t i = 0; i < nenv + rep.nhints && !found; i++) {
        const char *a = i < nenv ? env_rcpts[i] : rep.hints[i - nenv];
        if (!a || !*a)
            continue;
        found = lookup_addr(l, a, campaign, sizeof(campaign), rcpt, sizeof(rcpt), &lookups);
        if (found < 0) {
            snprintf(why, whysize, "ledger: read error");
            return -1;
        }
    }
    if (!found && rep.envid[0] && strlen(rep.envid) <= 64) { /* the token as ENVID */
        found = ledger_token_find(l, rep.envid, campaign, sizeof(campaign), rcpt, sizeof(rcpt));
        if (found < 0) {
            snprintf(why, whysize, "ledger: read error");
            return -1;
        }
    }
    if (found) {
        const struct bounce_rcpt *pick = NULL;
        for (size_t i = 0; i < rep.nrcpts && !pick; i++)
            if (strcasecmp(rep.rcpts[i].addr, rcpt) == 0)
                pick = &rep.rcpts[i];
        for (size_t i = 0; i < rep.nrcpts && !pick; i++)
            if (rep.rcpts[i].kind != BOUNCE_NONE)
                pick = &rep.rcpts[i];
        if (pick && pick->kind == BOUNCE_NONE)
            return 0; /* a success report */
        if (!pick && rep.nrcpts > 0)
            return 0; /* only successes */
        if (record(l, rcpt, pick, pick ? pick->kind : BOUNCE_SOFT, campaign, st, verbose) < 0)
            goto dberr;
        return 0;
    }
    /* no token: the recipients the report names, if this ledger has sent to them */
    int any = 0;
    for (size_t i = 0; i < rep.nrcpts; i++) {
        const struct bounce_rcpt *rc = &rep.rcpts[i];
        if (rc->kind == BOUNCE_NONE)
            continue;
        snprintf(rcpt, sizeof(rcpt), "%s", rc->addr);
        lower(rcpt);
        int k = ledger_rcpt_known(l, rcpt);
        if (k < 0)
            goto dberr;
        if (k == 0)
            continue;
        if (record(l, rcpt, rc, rc->kind, "", st, verbose) < 0)
            goto dberr;
        any = 1;
    }
    if (!any) {
        st->unmatched++;
        if (verbose)
            printf("not matched: a message naming no recipient of this ledger%s\n",
                   rep.nrcpts ? "" : " (and no delivery report)");
    }
    return 0;
dberr:
    snprintf(why, whysize, "ledger: cannot record a bounce");
    return -1;
}

/* Read fd into a buffer of at most INGEST_MSG_MAX octets; the rest is read and dropped when
 * drain (a pipe whose writer waits for its end), else left unread (a file). */
static char *read_bounded(int fd, bool drain, size_t *len, char *why, size_t whysize)
{
    size_t cap = 65536, n = 0;
    char *p = malloc(cap), drop[8192];
    if (!p) {
        snprintf(why, whysize, "out of memory");
        return NULL;
    }
    for (;;) {
        ssize_t r;
        if (n == cap && cap < INGEST_MSG_MAX) {
            cap = cap * 2 > INGEST_MSG_MAX ? INGEST_MSG_MAX : cap * 2;
            char *np = realloc(p, cap);
            if (!np) {
                free(p);
                snprintf(why, whysize, "out of memory");
                return NULL;
            }
            p = np;
        }
        if (n < cap)
            r = read(fd, p + n, cap - n);
        else if (drain)
            r = read(fd, drop, sizeof(drop));
        else
            break;
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(why, whysize, "read: %s", strerror(errno));
            free(p);
            return NULL;
        }
        if (r == 0)
            break;
        if (n < cap)
            n += (size_t)r;
    }
    *len = n;
    return p;
}

/* "NAME:2,FLAGS" with S added (flags kept sorted), into out. */
static void seen_name(const char *name, char *out, size_t size)
{
    const char *info = strstr(name, ":2,");
    if (!info) {
        snprintf(out, size, "%s:2,S", name);
        return;
    }
    char flags[64];
    size_t n = 0;
    bool added = false;
    for (const char *f = info + 3; *f && n + 2 < sizeof(flags); f++) {
        if (!added && *f > 'S') {
            flags[n++] = 'S';
            added = true;
        }
        flags[n++] = *f;
    }
    if (!added)
        flags[n++] = 'S';
    flags[n] = '\0';
    snprintf(out, size, "%.*s:2,%s", (int)(info - name), name, flags);
}

static bool has_seen(const char *name)
{
    const char *info = strstr(name, ":2,");
    return info && strchr(info + 3, 'S') != NULL;
}

int ingest_maildir(struct ledger *l, const char *dir, struct ingest_stats *st, int verbose,
                   char *why, size_t whysize)
{
    static const char *const subs[] = {"new", "cur"};
    char path[4096], to[4096], seen[1024];
    for (int s = 0; s < 2; s++) {
        snprintf(path, sizeof(path), "%s/%s", dir, subs[s]);
        DIR *d = opendir(path);
        if (!d) {
            snprintf(why, whysize, "%s: %s (a Maildir has new/ and cur/)", path, strerror(errno));
            return -1;
        }
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.' || strlen(e->d_name) > 900 || (s == 1 && has_seen(e->d_name)))
                continue;
            snprintf(path, sizeof(path), "%s/%s/%s", dir, subs[s], e->d_name);
            FILE *f = fopen(path, "rb");
            if (!f) {
                if (errno == ENOENT)
                    continue; /* taken by someone else meanwhile */
                snprintf(why, whysize, "%s: %s", path, strerror(errno));
                closedir(d);
                return -1;
            }
            struct stat sb;
            if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
                fclose(f);
                continue;
            }
            size_t len = 0;
            char *msg = read_bounded(fileno(f), false, &len, why, whysize);
            fclose(f);
            if (!msg) {
                closedir(d);
                return -1;
            }
            int rc = ingest_message(l, msg, len, NULL, 0, st, verbose, why, whysize);
            free(msg);
            if (rc < 0) {
                closedir(d);
                return -1;
            }
            seen_name(e->d_name, seen, sizeof(seen));
            snprintf(to, sizeof(to), "%s/cur/%s", dir, seen);
            if (rename(path, to) != 0) {
                snprintf(why, whysize, "rename %s: %s", path, strerror(errno));
                closedir(d);
                return -1;
            }
        }
        closedir(d);
    }
    return 0;
}

/* ---- the commands ------------------------------------------------------------------ */

static const char ingest_usage[] =
    "usage: tern send ingest-bounce --ledger FILE [--quiet]   (one message on standard input)\n"
    "       tern send ingest-bounces --ledger FILE [--quiet] MAILDIR\n"
    "       tern send report --ledger FILE [--campaign NAME]\n";

int ingest_main(int argc, char **argv)
{
    static const struct option opts[] = {{"ledger", required_argument, NULL, 'l'},
                                         {"quiet", no_argument, NULL, 'q'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *ledger_path = NULL;
    int verbose = 1, c;
    bool maildir = strcmp(argv[0], "ingest-bounces") == 0;
    char why[512];

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            ledger_path = optarg;
            break;
        case 'q':
            verbose = 0;
            break;
        case 'h':
            fputs(ingest_usage, stdout);
            return 0;
        default:
            fputs(ingest_usage, stderr);
            return 2;
        }
    }
    if (!ledger_path || (maildir ? optind + 1 != argc : optind != argc)) {
        fputs(ingest_usage, stderr);
        return 2;
    }
    if (access(ledger_path, F_OK) != 0) { /* a typo must not make an empty ledger */
        fprintf(stderr, "tern send %s: --ledger %s: %s\n", argv[0], ledger_path, strerror(errno));
        return 2;
    }
    struct ledger *l = ledger_open(ledger_path, true, why, sizeof(why));
    if (!l) {
        fprintf(stderr, "tern send %s: %s\n", argv[0], why);
        return 75; /* EX_TEMPFAIL: a pipe alias is tried again */
    }
    struct ingest_stats st = {0};
    int rc;
    if (maildir) {
        rc = ingest_maildir(l, argv[optind], &st, verbose, why, sizeof(why));
    } else {
        size_t len = 0;
        char *msg = read_bounded(STDIN_FILENO, true, &len, why, sizeof(why));
        /* tern serve's pipe: the address the bounce was delivered to */
        const char *env[2] = {getenv("ORIGINAL_RECIPIENT"), getenv("RECIPIENT")};
        rc = msg ? ingest_message(l, msg, len, env, 2, &st, verbose, why, sizeof(why)) : -1;
        free(msg);
    }
    ledger_close(l);
    if (rc < 0) {
        fprintf(stderr, "tern send %s: %s\n", argv[0], why);
        return 75;
    }
    if (verbose || maildir)
        printf("bounces: %lu messages, %lu hard, %lu soft, %lu not matched\n", st.messages, st.hard,
               st.soft, st.unmatched);
    return fflush(stdout) == 0 ? 0 : 75;
}

int ingest_report_main(int argc, char **argv)
{
    static const struct option opts[] = {{"ledger", required_argument, NULL, 'l'},
                                         {"campaign", required_argument, NULL, 'c'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *ledger_path = NULL, *campaign = NULL;
    int c;
    char why[512];

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            ledger_path = optarg;
            break;
        case 'c':
            campaign = optarg;
            break;
        case 'h':
            fputs(ingest_usage, stdout);
            return 0;
        default:
            fputs(ingest_usage, stderr);
            return 2;
        }
    }
    if (!ledger_path || optind != argc) {
        fputs(ingest_usage, stderr);
        return 2;
    }
    if (access(ledger_path, F_OK) != 0) {
        fprintf(stderr, "tern send report: %s: %s\n", ledger_path, strerror(errno));
        return 2;
    }
    struct ledger *l = ledger_open(ledger_path, false, why, sizeof(why));
    struct ledger_counts k;
    if (!l || ledger_counts(l, campaign, &k) < 0) {
        fprintf(stderr, "tern send report: %s\n", l ? "ledger: read error" : why);
        ledger_close(l);
        return 2;
    }
    ledger_close(l);
    printf("campaign: %s\n", campaign ? campaign : "(all)");
    printf("sent: %lu\nfailed permanently: %lu\nfailed transiently: %lu\n", k.sent, k.permanent,
           k.transient);
    printf("bounced hard: %lu\nbounced soft: %lu\n", k.bounced_hard, k.bounced_soft);
    printf("unsubscribed: none (one-click unsubscribes go to the URL's owner; add them to "
           "--suppress)\n");
    return fflush(stdout) == 0 ? 0 : 2;
}
