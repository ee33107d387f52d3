/*
 * sendmail.c - the `sendmail` command-line convention for local programs
 * (cron, scripts, PHP's mail()): `tern sendmail` or tern invoked as
 * "sendmail".
 *
 *   sendmail [-t] [-i] [-f SENDER] [-F NAME] [--config FILE] [RECIPIENT...]
 *
 * The message is read from standard input (a line holding only "." ends it
 * unless -i / -oi), line ends become CRLF, and it is limited to the
 * server's max_size.  -t adds the To, Cc and Bcc addresses of the header to
 * the recipients and removes Bcc.  Missing From, Date and Message-ID are
 * added.  The message and its envelope (the recipients as given) are
 * committed into the pickup spool, DATA_DIR/pickup (written and fsynced
 * like any received message): the running server notices the new item
 * (inotify, or SIGUSR1 from `tern queue retry`), routes its recipients
 * through the aliases with its own configuration, moves it into its queue
 * and removes it from pickup.  A recipient that routes nowhere is bounced
 * to the sender, as a server would.  Envelope data never reaches a shell.  Exit status follows
 * sysexits: 64 usage, 65 bad input, 75 temporary failure, 0 queued.
 */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "server/privsep.h"
#include "cli/admin.h"
#include "core/addrlist.h"
#include "core/address.h"
#include "core/buf.h"
#include "queue/store.h"
#include "conf/config.h"
#include "queue/envelope.h"

#define EX_USAGE 64
#define EX_DATAERR 65
#define EX_TEMPFAIL 75

struct sm_rcpts {
    char **v;
    size_t n;
    unsigned bad;
};

static void sm_add(void *ctx, const char *addr)
{
    struct sm_rcpts *r = ctx;
    for (size_t i = 0; i < r->n; i++)
        if (strcasecmp(r->v[i], addr) == 0)
            return;
    char **nv = realloc(r->v, (r->n + 1) * sizeof(char *));
    if (!nv || !(nv[r->n] = strdup(addr))) {
        fprintf(stderr, "sendmail: out of memory\n");
        exit(EX_TEMPFAIL);
    }
    r->v = nv;
    r->n++;
}

static void sm_bad(void *ctx, const char *what)
{
    struct sm_rcpts *r = ctx;
    fprintf(stderr, "sendmail: not an address in the header: %s\n", what);
    r->bad++;
}

/* Read stdin into out with CRLF line ends; returns 0, or -1 if over max. */
static int sm_read(struct buf *out, bool dot_ends, uint64_t max)
{
    char line[8192];
    while (fgets(line, sizeof(line), stdin)) {
        size_t n = strlen(line);
        bool eol = n && line[n - 1] == '\n';
        if (eol)
            n--;
        if (n && line[n - 1] == '\r')
            n--;
        if (dot_ends && eol && n == 1 && line[0] == '.')
            break;
        buf_append(out, line, n);
        if (eol)
            buf_append(out, "\r\n", 2);
        if (out->len > max)
            return -1;
    }
    if (out->len && (out->len < 2 || memcmp(out->p + out->len - 2, "\r\n", 2) != 0))
        buf_append(out, "\r\n", 2);
    return 0;
}

/* Header section of msg: length up to and including the empty line (or all). */
static size_t sm_header_len(const struct buf *m)
{
    for (size_t i = 0; i + 1 < m->len; i++)
        if (m->p[i] == '\r' && m->p[i + 1] == '\n' &&
            (i == 0 || (i >= 2 && m->p[i - 2] == '\r' && m->p[i - 1] == '\n')))
            return i + 2;
    return m->len;
}

/* Walk the header fields: call fn for each with its whole (folded) text. Drops
 * fields for which fn returns false. */
static void sm_fields(struct buf *m, size_t hlen, bool (*fn)(void *ctx, const char *f, size_t n),
                      void *ctx)
{
    struct buf out = {0};
    size_t i = 0;
    while (i < hlen) {
        size_t j = i;
        do { /* one field: its line and its continuation lines */
            const char *eol = memchr(m->p + j, '\n', hlen - j);
            j = eol ? (size_t)(eol - m->p) + 1 : hlen;
        } while (j < hlen && (m->p[j] == ' ' || m->p[j] == '\t'));
        if (fn(ctx, m->p + i, j - i))
            buf_append(&out, m->p + i, j - i);
        i = j;
    }
    buf_append(&out, m->p + hlen, m->len - hlen);
    buf_free(m);
    *m = out;
}

struct sm_scan {
    bool t, has_from, has_date, has_msgid;
    struct sm_rcpts *r;
};

static bool sm_field(void *ctx, const char *f, size_t n)
{
    struct sm_scan *sc = ctx;
    size_t colon = 0;
    while (colon < n && f[colon] != ':')
        colon++;
    if (colon == n)
        return true;
    bool bcc = colon == 3 && strncasecmp(f, "Bcc", 3) == 0;
    if (colon == 4 && strncasecmp(f, "From", 4) == 0)
        sc->has_from = true;
    if (colon == 4 && strncasecmp(f, "Date", 4) == 0)
        sc->has_date = true;
    if (colon == 10 && strncasecmp(f, "Message-ID", 10) == 0)
        sc->has_msgid = true;
    if (sc->t &&
        (bcc || (colon == 2 && (strncasecmp(f, "To", 2) == 0 || strncasecmp(f, "Cc", 2) == 0)))) {
        if (addrlist_parse(f + colon + 1, n - colon - 1, sm_add, sm_bad, sc->r) < 0)
            sm_bad(sc->r, "(malformed address list)");
    }
    return !bcc;
}

static const char sm_usage[] =
    "usage: sendmail [-t] [-i] [-f SENDER] [-F NAME] [--config FILE] [RECIPIENT...]\n"
    "Reads a message from standard input and queues it for `tern serve`.\n"
    "  -t        also send to the To, Cc and Bcc addresses (Bcc is removed)\n"
    "  -i, -oi   a line with a single '.' does not end the message\n"
    "  -f ADDR   envelope sender (default: your user name @ the server's host name)\n"
    "  -F NAME   full name for an added From: header\n";

int cli_sendmail(int argc, char **argv)
{
    const char *config = NULL, *from = NULL, *fullname = NULL;
    bool t = false, dot_ends = true;
    struct sm_rcpts r = {0};
    struct buf msg = {0}, full = {0};
    struct envelope env;
    struct qstore *st = NULL;
    int i, rc = 0;

    envelope_init(&env);

    for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        } else if (strcmp(a, "-t") == 0) {
            t = true;
        } else if (strcmp(a, "-i") == 0 || strcmp(a, "-oi") == 0) {
            dot_ends = false;
        } else if (strncmp(a, "-f", 2) == 0 || strncmp(a, "-F", 2) == 0 ||
                   strncmp(a, "-r", 2) == 0) {
            const char *v = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v) {
                fputs(sm_usage, stderr);
                return EX_USAGE;
            }
            if (a[1] == 'F')
                fullname = v;
            else
                from = v;
        } else if (strcmp(a, "--config") == 0 && i + 1 < argc) {
            config = argv[++i];
        } else if (strcmp(a, "--help") == 0) {
            fputs(sm_usage, stdout);
            return 0;
        } else if (a[1] == 'o' || a[1] == 'b' || a[1] == 'v' || a[1] == 'U') {
            continue; /* -odi, -oem, -bm, -v...: accepted and ignored, as elsewhere */
        } else {
            fprintf(stderr, "sendmail: unknown option %s\n%s", a, sm_usage);
            return EX_USAGE;
        }
    }
    for (; i < argc; i++) {
        struct mailaddr a;
        if (addr_parse_mailbox(argv[i], strlen(argv[i]), ADDR_ALLOW_UTF8, &a) != ADDR_OK) {
            fprintf(stderr, "sendmail: not an address: %s\n", argv[i]);
            rc = EX_DATAERR;
            goto out;
        }
        sm_add(&r, argv[i]);
    }

    struct conf c;
    struct conf_errors e = {0};
    if (conf_load(conf_default_path(config), &c, &e) < 0 || e.n) {
        for (size_t k = 0; k < e.n; k++)
            fprintf(stderr, "%s\n", e.v[k]);
        conf_errors_free(&e);
        rc = EX_TEMPFAIL;
        goto out;
    }
    char sender[ADDR_PATH_MAX + 1];
    if (from) {
        struct mailaddr a;
        if (from[0] && addr_parse_mailbox(from, strlen(from), ADDR_ALLOW_UTF8, &a) != ADDR_OK) {
            fprintf(stderr, "sendmail: -f %s: not an address\n", from);
            rc = EX_DATAERR;
            goto out;
        }
        snprintf(sender, sizeof(sender), "%s", from);
    } else {
        struct passwd *pw = getpwuid(getuid());
        snprintf(sender, sizeof(sender), "%.64s@%.180s", pw ? pw->pw_name : "nobody", c.hostname);
    }

    if (sm_read(&msg, dot_ends, c.max_size) < 0) {
        fprintf(stderr, "sendmail: message larger than %llu octets\n",
                (unsigned long long)c.max_size);
        rc = EX_DATAERR;
        goto out;
    }
    struct sm_scan sc = {.t = t, .r = &r};
    sm_fields(&msg, sm_header_len(&msg), sm_field, &sc);
    if (r.bad) {
        rc = EX_DATAERR;
        goto out;
    }
    if (r.n == 0) {
        fputs("sendmail: no recipients\n", stderr);
        rc = EX_USAGE;
        goto out;
    }
    /* what the message lacks, in front of it */
    char line[1024], date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    int n = snprintf(line, sizeof(line), "Received: by %s (tern sendmail, uid %u); %s\r\n",
                     c.hostname, (unsigned)getuid(), date);
    buf_append(&full, line, (size_t)n);
    if (!sc.has_from) {
        bool clean = fullname && !strpbrk(fullname, "\r\n\"\\");
        n = clean ? snprintf(line, sizeof(line), "From: \"%s\" <%s>\r\n", fullname, sender)
                  : snprintf(line, sizeof(line), "From: <%s>\r\n", sender);
        buf_append(&full, line, (size_t)n);
    }
    if (!sc.has_date) {
        n = snprintf(line, sizeof(line), "Date: %s\r\n", date);
        buf_append(&full, line, (size_t)n);
    }
    if (!sc.has_msgid) {
        unsigned long long rnd = 0;
        if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
            rnd = (unsigned long long)now ^ (unsigned long long)getpid();
        n = snprintf(line, sizeof(line), "Message-ID: <%llx.%lld@%s>\r\n", rnd, (long long)now,
                     c.hostname);
        buf_append(&full, line, (size_t)n);
    }
    /* input that does not start with a header field is all body */
    size_t fl = 0;
    while (fl < msg.len && msg.p[fl] > ' ' && msg.p[fl] < 0x7f && msg.p[fl] != ':')
        fl++;
    if (fl == 0 || fl == msg.len || msg.p[fl] != ':')
        buf_append(&full, "\r\n", 2);
    buf_append(&full, msg.p, msg.len);

    /* the envelope as given: the server routes it when it takes the item in */
    envelope_set(&env.sender, sender);
    env.created = env.next_attempt = now;
    envelope_set(&env.helo, "sendmail");
    char peer[64];
    snprintf(peer, sizeof(peer), "local (uid %u)", (unsigned)getuid());
    envelope_set(&env.peer, peer);
    envelope_set(&env.auth_user, "");
    for (size_t k = 0; k < r.n; k++)
        envelope_add_rcpt(&env, r.v[k], r.v[k], "");
    char pdir[CONF_STR_MAX + 16], why[512];
    snprintf(pdir, sizeof(pdir), "%s/pickup", c.data_dir);
    if (privsep_become_owner(pdir, why, sizeof(why)) < 0) { /* root: write as the server's user */
        fprintf(stderr, "sendmail: %s\n", why);
        rc = EX_TEMPFAIL;
        goto out;
    }
    st = qstore_open(pdir, why, sizeof(why));
    if (!st || qstore_commit(st, &env, full.p, full.len, why, sizeof(why)) < 0) {
        fprintf(stderr, "sendmail: cannot queue the message: %s\n", why);
        rc = EX_TEMPFAIL;
        goto out;
    }
out:
    if (st)
        qstore_close(st);
    envelope_free(&env);
    buf_free(&msg);
    buf_free(&full);
    for (size_t k = 0; k < r.n; k++)
        free(r.v[k]);
    free(r.v);
    return rc;
}
