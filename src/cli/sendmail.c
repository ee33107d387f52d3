/*
 * sendmail.c - the `sendmail` command-line convention for local programs
 * (cron, mail(1), git send-email, scripts): `tern sendmail`, or tern
 * invoked as "sendmail", "mailq" or "newaliases".  The options are those of
 * Postfix's sendmail(1):
 *
 *   sendmail [-t] [-i] [-f SENDER] [-F NAME] [-B TYPE] [-N DSN] [-R RET]
 *            [-V ENVID] [-v] [-C|--config FILE] [RECIPIENT...]   submit (-bm)
 *   sendmail -bp, mailq          list the queue (as `tern queue list`)
 *   sendmail -bs                 an SMTP session on standard input/output
 *   sendmail -q                  ask the running server to retry now
 *   sendmail -bi, -I, newaliases nothing to do (tern reads aliases files)
 *
 * Options of Sendmail that mean nothing here are accepted and ignored (-o
 * anything but -oi, -O, -L, -h, -X, -G, -U, -m, -n, -Ac, -Am, -bh, -bH,
 * -qINTERVAL); every other option is refused with a message naming it and
 * exit 64.  Clustered flags (-ti) and option values attached or in the
 * next argument (-fX, -f X) work as with getopt.
 *
 * Submission: the message is read from standard input (a line holding only
 * "." ends it unless -i / -oi), line ends become CRLF, and it is limited
 * to the server's max_size.  -t adds the To, Cc and Bcc addresses of the
 * header to the recipients and removes Bcc.  Missing From, Date and
 * Message-ID are added.  A bare name (root, me) gets "@" and the default
 * domain (sm_domain()).  The message and its envelope are committed into
 * the pickup spool, DATA_DIR/pickup (written and fsynced like any received
 * message): the running server notices the new item (inotify, or SIGUSR1),
 * routes its recipients through the aliases with its own configuration,
 * moves it into its queue and removes it from pickup.  -bs runs the
 * server's SMTP session code (smtp/session.c) on one end of a socketpair,
 * two threads copying standard input to it and its replies to standard
 * output; each accepted message goes into pickup the same way.  Envelope
 * data never reaches a shell.  Exit status follows sysexits: 64 usage, 65
 * bad input, 75 temporary failure, 0 done.
 */
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "server/privsep.h"
#include "cli/admin.h"
#include "core/fdio.h"
#include "core/addrlist.h"
#include "core/address.h"
#include "core/buf.h"
#include "core/log.h"
#include "queue/store.h"
#include "conf/config.h"
#include "queue/envelope.h"
#include "smtp/session.h"

#define EX_USAGE 64
#define EX_DATAERR 65
#define EX_TEMPFAIL 75

enum sm_mode {
    SM_SUBMIT = 0, /* -bm, the default */
    SM_LIST,       /* -bp, mailq */
    SM_SMTP,       /* -bs */
    SM_ALIASES,    /* -bi, -I, newaliases */
    SM_FLUSH,      /* -q, -qR, -qS, -qI */
    SM_NOTHING,    /* -qINTERVAL alone */
};

struct sm_opts {
    enum sm_mode mode;
    const char *config, *from, *fullname, *envid;
    bool t, dot_ends, eightbit, verbose;
    unsigned notify;       /* enum dsn_notify bits, 0 if -N not given */
    enum dsn_ret ret;      /* -R */
    const char *name;      /* "sendmail", "mailq" or "newaliases": for messages */
    const char *ignored_q; /* a -qINTERVAL given */
};

struct sm_rcpts {
    char **v;
    size_t n;
    unsigned bad;
    const char *domain; /* for bare names in -t headers */
};

static void sm_oom(void)
{
    fprintf(stderr, "sendmail: out of memory\n");
    exit(EX_TEMPFAIL);
}

/* ---- the default domain and bare names ------------------------------------------ */

static bool sm_is_local_domain(const struct conf *c, const char *d)
{
    char path[CONF_STR_MAX + CONF_HOST_MAX + 16];
    struct stat st;
    if (!*d || d[0] == '.' || strchr(d, '/'))
        return false;
    snprintf(path, sizeof(path), "%s/domains/%s", c->data_dir, d);
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/*
 * The domain added to bare names: [local] default_domain when set;
 * otherwise the host name if it is a local domain, or the nearest parent
 * domain of the host name that is local (mx.example.org -> example.org);
 * otherwise the only local domain if there is exactly one; otherwise the
 * host name (Postfix's myorigin = $myhostname).  Never a domain picked at
 * random among several.
 */
static void sm_domain(const struct conf *c, char *out, size_t size)
{
    if (c->default_domain[0]) {
        snprintf(out, size, "%s", c->default_domain);
        return;
    }
    for (const char *h = c->hostname; h && *h; h = strchr(h, '.') ? strchr(h, '.') + 1 : NULL) {
        if (strchr(h, '.') && sm_is_local_domain(c, h)) { /* never a top-level domain */
            snprintf(out, size, "%s", h);
            return;
        }
    }
    char dir[CONF_STR_MAX + 16], only[CONF_HOST_MAX + 1] = "";
    unsigned n = 0;
    snprintf(dir, sizeof(dir), "%s/domains", c->data_dir);
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) && n < 2) {
            if (de->d_name[0] == '.' || strlen(de->d_name) > CONF_HOST_MAX ||
                !sm_is_local_domain(c, de->d_name))
                continue;
            snprintf(only, sizeof(only), "%s", de->d_name);
            n++;
        }
        closedir(d);
    }
    snprintf(out, size, "%s", n == 1 ? only : c->hostname);
}

/* addr as a full address into out: a bare name gets "@domain".  0, or -1 if
 * it is not an address either way. */
static int sm_qualify(const char *addr, const char *domain, char *out, size_t size)
{
    struct mailaddr a;
    size_t len = strlen(addr);
    if (len && len <= ADDR_LOCAL_MAX && !strchr(addr, '@')) {
        int n = snprintf(out, size, "%s@%s", addr, domain);
        if (n > 0 && (size_t)n < size &&
            addr_parse_mailbox(out, (size_t)n, ADDR_ALLOW_UTF8, &a) == ADDR_OK)
            return 0;
        return -1;
    }
    if (addr_parse_mailbox(addr, len, ADDR_ALLOW_UTF8, &a) != ADDR_OK || len >= size)
        return -1;
    memcpy(out, addr, len + 1);
    return 0;
}

static void sm_add(void *ctx, const char *addr)
{
    struct sm_rcpts *r = ctx;
    for (size_t i = 0; i < r->n; i++)
        if (strcasecmp(r->v[i], addr) == 0)
            return;
    char **nv = realloc(r->v, (r->n + 1) * sizeof(char *));
    if (!nv)
        sm_oom();
    r->v = nv;
    if (!(nv[r->n] = strdup(addr)))
        sm_oom();
    r->n++;
}

static void sm_bad(void *ctx, const char *what)
{
    struct sm_rcpts *r = ctx;
    char full[ADDR_PATH_MAX + 1];
    if (r->domain && sm_qualify(what, r->domain, full, sizeof(full)) == 0) {
        sm_add(r, full); /* "To: root" */
        return;
    }
    fprintf(stderr, "sendmail: not an address in the header: %s\n", what);
    r->bad++;
}

/* ---- the message ------------------------------------------------------------------ */

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
    bool keep_bcc; /* -bs: the message as the client sent it */
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
    return !bcc || sc->keep_bcc;
}

/* full = what msg lacks (Received first), then msg.  from_how: the
 * Received clause; fullname: for an added From: (NULL: none). */
static void sm_complete(const struct conf *c, const struct sm_scan *sc, const char *sender,
                        const char *fullname, const char *from_how, const struct buf *msg,
                        struct buf *full)
{
    char line[1024], date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    int n = snprintf(line, sizeof(line), "Received: %sby %s (tern sendmail, uid %u); %s\r\n",
                     from_how, c->hostname, (unsigned)getuid(), date);
    buf_append(full, line, (size_t)n);
    if (!sc->has_from) {
        bool clean = fullname && !strpbrk(fullname, "\r\n\"\\");
        n = clean ? snprintf(line, sizeof(line), "From: \"%.200s\" <%s>\r\n", fullname, sender)
                  : snprintf(line, sizeof(line), "From: <%s>\r\n", sender);
        buf_append(full, line, (size_t)n);
    }
    if (!sc->has_date) {
        n = snprintf(line, sizeof(line), "Date: %s\r\n", date);
        buf_append(full, line, (size_t)n);
    }
    if (!sc->has_msgid) {
        unsigned long long rnd = 0;
        if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
            rnd = (unsigned long long)now ^ (unsigned long long)getpid();
        n = snprintf(line, sizeof(line), "Message-ID: <%llx.%lld@%s>\r\n", rnd, (long long)now,
                     c->hostname);
        buf_append(full, line, (size_t)n);
    }
    /* input that does not start with a header field is all body */
    size_t fl = 0;
    while (fl < msg->len && msg->p[fl] > ' ' && msg->p[fl] < 0x7f && msg->p[fl] != ':')
        fl++;
    if (fl == 0 || fl == msg->len || msg->p[fl] != ':')
        buf_append(full, "\r\n", 2);
    buf_append(full, msg->p, msg->len);
}

/* Open the pickup spool, as its owner when we are root. */
static struct qstore *sm_pickup(const struct conf *c, char *why, size_t whylen)
{
    char pdir[CONF_STR_MAX + 16];
    snprintf(pdir, sizeof(pdir), "%s/pickup", c->data_dir);
    if (privsep_become_owner(pdir, why, whylen) < 0) /* root: write as the server's user */
        return NULL;
    return qstore_open(pdir, why, whylen);
}

/* The envelope's common part: sender, times, client, DSN. */
static void sm_envelope(struct envelope *env, const struct sm_opts *o, const char *sender,
                        const char *helo)
{
    char peer[64];
    envelope_set(&env->sender, sender);
    env->created = env->next_attempt = time(NULL);
    envelope_set(&env->helo, helo);
    snprintf(peer, sizeof(peer), "local (uid %u)", (unsigned)getuid());
    envelope_set(&env->peer, peer);
    envelope_set(&env->auth_user, "");
    env->ret = o->ret;
    envelope_set(&env->envid, o->envid ? o->envid : "");
    env->eightbitmime = o->eightbit;
}

/* ---- options ---------------------------------------------------------------------- */

static const char sm_usage[] =
    "usage: sendmail [options] [RECIPIENT...]   submit a message read from standard input\n"
    "       sendmail -bp | mailq                list the queue\n"
    "       sendmail -bs                        SMTP session on standard input and output\n"
    "       sendmail -q                         ask the server to retry the queue now\n"
    "       sendmail -bi | newaliases           nothing to do: tern reads aliases files\n"
    "  -t        also send to the To, Cc and Bcc addresses (Bcc is removed)\n"
    "  -i, -oi   a line with a single '.' does not end the message\n"
    "  -f ADDR   envelope sender (default: your user name @ the default domain)\n"
    "  -F NAME   full name for an added From: header\n"
    "  -B TYPE   body type: 7BIT or 8BITMIME\n"
    "  -N DSN    never, or success,delay,failure; -R full|hdrs; -V ENVID\n"
    "  -v        say what was queued\n"
    "  -C FILE, --config FILE  tern.conf (a folder: FILE/tern.conf)\n"
    "A bare name (root) gets @ [local] default_domain.  Other Sendmail options\n"
    "(-oX, -O, -L, -h, -X, -G, -U, -m, -n, -A) are accepted and ignored.\n";

static int sm_refuse(const char *name, const char *opt, const char *why)
{
    fprintf(stderr, "%s: %s: %s (`%s --help` lists the options)\n", name, opt, why, name);
    return EX_USAGE;
}

static int sm_dsn_notify(const char *v, unsigned *out)
{
    char tmp[64];
    if (strlen(v) >= sizeof(tmp))
        return -1;
    snprintf(tmp, sizeof(tmp), "%s", v);
    unsigned bits = 0;
    for (char *save = NULL, *w = strtok_r(tmp, ", ", &save); w; w = strtok_r(NULL, ", ", &save)) {
        if (strcasecmp(w, "never") == 0)
            bits |= NOTIFY_NEVER;
        else if (strcasecmp(w, "success") == 0)
            bits |= NOTIFY_SUCCESS;
        else if (strcasecmp(w, "delay") == 0)
            bits |= NOTIFY_DELAY;
        else if (strcasecmp(w, "failure") == 0)
            bits |= NOTIFY_FAILURE;
        else
            return -1;
    }
    if (!bits || ((bits & NOTIFY_NEVER) && bits != NOTIFY_NEVER))
        return -1;
    *out = bits;
    return 0;
}

/* Parse the options; *first: index of the first recipient.  0, or an exit status. */
static int sm_parse(int argc, char **argv, struct sm_opts *o, int *first, bool *done)
{
    static char cfgbuf[CONF_STR_MAX];
    int i;
    *done = false;
    for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strcmp(a, "--config") == 0) {
            if (i + 1 >= argc)
                return sm_refuse(o->name, a, "needs a file");
            o->config = argv[++i];
            continue;
        }
        if (strcmp(a, "--help") == 0) {
            fputs(sm_usage, stdout);
            *done = true;
            return 0;
        }
        if (a[1] == '-')
            return sm_refuse(o->name, a, "unknown option");
        for (const char *p = a + 1; *p; p++) {
            char opt[4] = {'-', *p, 0, 0};
            const char *v = NULL;
            if (strchr("BCFLNORVXbfhorq", *p)) { /* options with a value */
                if (p[1])
                    v = p + 1;
                else if (*p != 'q' && i + 1 < argc)
                    v = argv[++i];
                else if (*p != 'q')
                    return sm_refuse(o->name, opt, "needs a value");
            }
            switch (*p) {
            case 't':
                o->t = true;
                break;
            case 'i':
                o->dot_ends = false;
                break;
            case 'v':
                o->verbose = true;
                break;
            case 'G':
            case 'U':
            case 'm':
            case 'n':
                break; /* gateway, initial submission, me too, no aliasing: ignored */
            case 'I':
                o->mode = SM_ALIASES;
                break;
            case 'A': /* -Am, -Ac: which configuration file: we have one */
                if (p[1] != 'm' && p[1] != 'c')
                    return sm_refuse(o->name, a, "unknown option (-Am or -Ac)");
                p++;
                break;
            case 'L':
            case 'O':
            case 'X':
            case 'h':
                break; /* syslog label, option=value, log file, hop count: ignored */
            case 'o':  /* -oi; -oem, -odb, -om, -o7, -oAfile...: ignored */
                if (strcmp(v, "i") == 0)
                    o->dot_ends = false;
                break;
            case 'F':
                o->fullname = v;
                break;
            case 'f':
            case 'r':
                o->from = v;
                break;
            case 'C':
                if (strlen(v) + 12 > sizeof(cfgbuf))
                    return sm_refuse(o->name, opt, "path too long");
                {
                    struct stat st;
                    if (stat(v, &st) == 0 && S_ISDIR(st.st_mode))
                        snprintf(cfgbuf, sizeof(cfgbuf), "%s/tern.conf", v);
                    else
                        snprintf(cfgbuf, sizeof(cfgbuf), "%s", v);
                }
                o->config = cfgbuf;
                break;
            case 'B':
                if (strcasecmp(v, "8BITMIME") == 0)
                    o->eightbit = true;
                else if (strcasecmp(v, "7BIT") == 0)
                    o->eightbit = false;
                else
                    return sm_refuse(o->name, a, "the body type is 7BIT or 8BITMIME");
                break;
            case 'N':
                if (sm_dsn_notify(v, &o->notify) < 0)
                    return sm_refuse(o->name, a,
                                     "DSN is never, or a list of success, delay, failure");
                break;
            case 'R':
                if (strcasecmp(v, "full") == 0)
                    o->ret = RET_FULL;
                else if (strcasecmp(v, "hdrs") == 0)
                    o->ret = RET_HDRS;
                else
                    return sm_refuse(o->name, a, "the DSN return is full or hdrs");
                break;
            case 'V': {
                char dec[ENVID_MAX + 1];
                if (strlen(v) > ENVID_MAX || xtext_decode(v, strlen(v), dec, sizeof(dec)) < 0)
                    return sm_refuse(o->name, a, "not an ENVID (xtext, at most 100 octets)");
                o->envid = v;
                break;
            }
            case 'b':
                if (strcmp(v, "m") == 0)
                    o->mode = SM_SUBMIT;
                else if (strcmp(v, "p") == 0)
                    o->mode = SM_LIST;
                else if (strcmp(v, "s") == 0)
                    o->mode = SM_SMTP;
                else if (strcmp(v, "i") == 0)
                    o->mode = SM_ALIASES;
                else if (strcmp(v, "h") == 0 || strcmp(v, "H") == 0)
                    ; /* host status: ignored */
                else if (strcmp(v, "d") == 0 || strcmp(v, "D") == 0 || strcmp(v, "l") == 0)
                    return sm_refuse(o->name, a, "the daemon is `tern serve`");
                else if (strcmp(v, "v") == 0)
                    return sm_refuse(o->name, a, "address verification is not supported");
                else
                    return sm_refuse(o->name, a, "unknown mode");
                break;
            case 'q':
                if (!v || strchr("IRS", v[0])) { /* -q, -qIid, -qRsite, -qSsite: all now */
                    o->mode = SM_FLUSH;
                } else {
                    o->ignored_q = a;
                    if (o->mode == SM_SUBMIT)
                        o->mode = SM_NOTHING;
                }
                break;
            default:
                return sm_refuse(o->name, opt, "unknown option");
            }
            if (v)
                break; /* the value took the rest of this argument (or the next one) */
        }
    }
    *first = i;
    return 0;
}

/* ---- -bs: SMTP on standard input and output ------------------------------------ */

struct sm_smtp {
    const struct conf *c;
    const struct sm_opts *o;
    struct qstore *st;
    struct event_base *base;
    char domain[CONF_HOST_MAX + 1];
    unsigned queued;
};

struct sm_pump {
    int from, to;
    bool shut; /* shutdown(to, SHUT_WR) at end of input */
};

static void *sm_pump_run(void *arg)
{
    struct sm_pump *pm = arg;
    char b[16384];
    for (;;) {
        ssize_t n = read(pm->from, b, sizeof(b));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || write_all(pm->to, b, (size_t)n) < 0)
            break;
    }
    if (pm->shut)
        shutdown(pm->to, SHUT_WR);
    return NULL;
}

static void sm_smtp_message(void *ctx, struct smtp_session *s, struct smtp_txn *t,
                            struct smtp_verdict *v)
{
    struct sm_smtp *x = ctx;
    struct envelope env;
    struct buf msg = {0}, full = {0};
    char sender[ADDR_PATH_MAX + 1], addr[ADDR_PATH_MAX + 1], why[512], how[300];
    struct sm_scan sc = {.keep_bcc = true};

    envelope_init(&env);
    addr_format(&t->mail.from, sender, sizeof(sender));
    struct sm_opts o = *x->o;
    o.ret = t->mail.ret;
    o.envid = t->mail.envid;
    o.eightbit = t->mail.body == BODY_8BITMIME;
    sm_envelope(&env, &o, sender, smtp_session_helo(s));
    env.smtputf8 = t->mail.smtputf8;
    for (size_t i = 0; i < t->nrcpt; i++) {
        const struct mailaddr *to = &t->rcpts[i].to;
        if (to->domain[0])
            addr_format(to, addr, sizeof(addr));
        else /* <Postmaster> */
            snprintf(addr, sizeof(addr), "%s@%s", to->local, x->domain);
        struct env_rcpt *r = envelope_add_rcpt(&env, addr, addr, "");
        r->notify = t->rcpts[i].notify;
        envelope_set(&r->orcpt, t->rcpts[i].orcpt);
    }
    buf_append(&msg, t->body.p, t->body.len);
    sm_fields(&msg, sm_header_len(&msg), sm_field, &sc);
    snprintf(how, sizeof(how), "from %.200s ",
             smtp_session_helo(s)[0] ? smtp_session_helo(s) : "local");
    sm_complete(x->c, &sc, sender[0] ? sender : "MAILER-DAEMON", NULL, how, &msg, &full);
    if (qstore_commit(x->st, &env, full.p, full.len, why, sizeof(why)) < 0) {
        fprintf(stderr, "sendmail: cannot queue the message: %s\n", why);
        smtp_verdict_set(v, 451, "4.3.0", "Cannot queue the message now, try again");
    } else {
        x->queued++;
        if (x->o->verbose)
            fprintf(stderr, "sendmail: queued in pickup as %s\n", env.id);
        smtp_verdict_set(v, 250, "2.0.0", "Ok: queued as %s", env.id);
    }
    envelope_free(&env);
    buf_free(&msg);
    buf_free(&full);
}

static void sm_smtp_close(void *ctx, struct smtp_session *s)
{
    struct sm_smtp *x = ctx;
    (void)s;
    event_base_loopexit(x->base, NULL);
}

static const struct smtp_hooks sm_smtp_hooks = {
    .on_message = sm_smtp_message,
    .on_close = sm_smtp_close,
};

static int sm_smtp(const struct conf *c, const struct sm_opts *o)
{
    struct sm_smtp x = {.c = c, .o = o};
    char why[512];
    int sv[2] = {-1, -1}, rc = 0;
    pthread_t in_t, out_t;
    static struct sm_pump in = {.from = 0, .shut = true}, out = {.to = 1}; /* outlive us */

    sm_domain(c, x.domain, sizeof(x.domain));
    if (!(x.st = sm_pickup(c, why, sizeof(why)))) {
        fprintf(stderr, "sendmail: %s\n", why);
        return EX_TEMPFAIL;
    }
    log_set_prefix("sendmail");
    if (!o->verbose)
        log_set_level(LOG_WARN);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
        fcntl(sv[0], F_SETFL, O_NONBLOCK) < 0 || !(x.base = event_base_new())) {
        fprintf(stderr, "sendmail: -bs: %s\n", strerror(errno));
        qstore_close(x.st);
        return EX_TEMPFAIL;
    }
    struct smtp_server_conf sc = {
        .hostname = c->hostname,
        .max_size = c->max_size,
        .max_rcpts = c->max_rcpts,
        .max_errors = c->max_errors,
        .idle_timeout = (unsigned)(c->idle_timeout_ms / 1000),
        .command_timeout = (unsigned)(c->command_timeout_ms / 1000),
        .data_timeout = (unsigned)(c->data_timeout_ms / 1000),
        .total_timeout = (unsigned)(c->session_timeout_ms / 1000),
        .max_line = 1000,
        .ext = EXT_8BITMIME | EXT_SMTPUTF8 | EXT_DSN,
        .hooks = &sm_smtp_hooks,
        .ctx = &x,
    };
    struct smtp_server *srv = smtp_server_new(x.base, &sc);
    struct sockaddr_un peer = {.sun_family = AF_UNIX};
    in.to = sv[1];
    out.from = sv[1];
    if (pthread_create(&in_t, NULL, sm_pump_run, &in) != 0 ||
        pthread_create(&out_t, NULL, sm_pump_run, &out) != 0) {
        fprintf(stderr, "sendmail: -bs: cannot start a thread\n");
        exit(EX_TEMPFAIL);
    }
    pthread_detach(in_t); /* may wait on standard input for ever: the exit ends it */
    smtp_server_accept(srv, sv[0], (const struct sockaddr *)&peer, false);
    if (event_base_dispatch(x.base) < 0)
        rc = EX_TEMPFAIL;
    smtp_server_free(srv);
    pthread_join(out_t, NULL); /* the session closed its end: the replies are all out */
    event_base_free(x.base);
    qstore_close(x.st);
    return rc;
}

/* ---- the modes -------------------------------------------------------------------- */

static void sm_count(void *ctx, struct envelope *env)
{
    (void)env;
    (*(size_t *)ctx)++;
}

static int sm_list(const struct sm_opts *o, const struct conf *c)
{
    char *qargv[5];
    int qargc = 0;
    qargv[qargc++] = "queue";
    if (o->config) {
        qargv[qargc++] = "--config";
        qargv[qargc++] = (char *)o->config;
    }
    qargv[qargc++] = "list";
    qargv[qargc] = NULL;
    fflush(stdout);
    int rc = cli_queue(qargc, qargv);
    /* what sendmail dropped and the server has not taken in yet */
    char pdir[CONF_STR_MAX + 16], why[512];
    size_t n = 0;
    snprintf(pdir, sizeof(pdir), "%s/pickup", c->data_dir);
    struct qstore *st = NULL; /* as the folder's owner: never a root-owned folder inside it */
    if (access(pdir, F_OK) == 0 && privsep_become_owner(pdir, why, sizeof(why)) == 0)
        st = qstore_open(pdir, why, sizeof(why));
    if (st && qstore_list(st, sm_count, &n, why, sizeof(why)) == 0 && n)
        printf("%zu message%s in %s, not yet taken in by the server\n", n, n == 1 ? "" : "s", pdir);
    if (st)
        qstore_close(st);
    return rc;
}

static int sm_submit(const struct sm_opts *o, const struct conf *c, int argc, char **argv,
                     int first)
{
    struct sm_rcpts r = {0};
    struct buf msg = {0}, full = {0};
    struct envelope env;
    struct qstore *st = NULL;
    char domain[CONF_HOST_MAX + 1], sender[ADDR_PATH_MAX + 1], full_addr[ADDR_PATH_MAX + 1];
    char why[512];
    int rc = 0;

    envelope_init(&env);
    sm_domain(c, domain, sizeof(domain));
    r.domain = domain;
    for (int i = first; i < argc; i++) {
        if (sm_qualify(argv[i], domain, full_addr, sizeof(full_addr)) < 0) {
            fprintf(stderr, "sendmail: not an address: %s\n", argv[i]);
            rc = EX_DATAERR;
            goto out;
        }
        sm_add(&r, full_addr);
    }
    if (o->from) {
        if (!o->from[0] || strcmp(o->from, "<>") == 0) {
            sender[0] = '\0';
        } else if (sm_qualify(o->from, domain, sender, sizeof(sender)) < 0) {
            fprintf(stderr, "sendmail: -f %s: not an address\n", o->from);
            rc = EX_DATAERR;
            goto out;
        }
    } else {
        struct passwd *pw = getpwuid(getuid());
        snprintf(sender, sizeof(sender), "%.64s@%.180s", pw ? pw->pw_name : "nobody", domain);
    }
    if (sm_read(&msg, o->dot_ends, c->max_size) < 0) {
        fprintf(stderr, "sendmail: message larger than %llu octets\n",
                (unsigned long long)c->max_size);
        rc = EX_DATAERR;
        goto out;
    }
    struct sm_scan sc = {.t = o->t, .r = &r};
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
    sm_complete(c, &sc, sender[0] ? sender : "MAILER-DAEMON", o->fullname, "", &msg, &full);
    /* the envelope as given: the server routes it when it takes the item in */
    sm_envelope(&env, o, sender, "sendmail");
    for (size_t k = 0; k < r.n; k++)
        envelope_add_rcpt(&env, r.v[k], r.v[k], "")->notify = o->notify;
    st = sm_pickup(c, why, sizeof(why));
    if (!st || qstore_commit(st, &env, full.p, full.len, why, sizeof(why)) < 0) {
        fprintf(stderr, "sendmail: cannot queue the message: %s\n", why);
        rc = EX_TEMPFAIL;
        goto out;
    }
    if (o->verbose) {
        fprintf(stderr, "sendmail: queued in pickup as %s, from <%s>%s\n", env.id, sender,
                o->eightbit ? ", 8BITMIME" : "");
        for (size_t k = 0; k < r.n; k++)
            fprintf(stderr, "sendmail: to <%s>\n", r.v[k]);
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

static int sm_main(int argc, char **argv, struct sm_opts *o)
{
    int first = 0;
    bool done;
    int rc = sm_parse(argc, argv, o, &first, &done);
    if (rc || done)
        return rc;
    if (o->mode != SM_SUBMIT && first < argc) {
        fprintf(stderr, "%s: recipients (%s) given in a mode that reads no message\n", o->name,
                argv[first]);
        return EX_USAGE;
    }
    if (o->mode == SM_ALIASES) {
        printf("%s: nothing to do: tern reads each domain's aliases file "
               "(DATA_DIR/domains/DOMAIN/aliases) itself; `tern check-config` checks them, "
               "a reload (SIGHUP) applies a change\n",
               o->name);
        return 0;
    }
    if (o->mode == SM_NOTHING) {
        printf("%s: %s ignored: `tern serve` runs its queue by itself\n", o->name, o->ignored_q);
        return 0;
    }
    struct conf c;
    struct conf_errors e = {0};
    if (conf_load(conf_default_path(o->config), &c, &e) < 0 || e.n) {
        for (size_t k = 0; k < e.n; k++)
            fprintf(stderr, "%s\n", e.v[k]);
        conf_errors_free(&e);
        return EX_TEMPFAIL;
    }
    switch (o->mode) {
    case SM_LIST:
        return sm_list(o, &c) == 0 ? 0 : EX_TEMPFAIL;
    case SM_FLUSH:
        if (queue_wake_server(&c) < 0)
            return EX_TEMPFAIL;
        if (o->verbose)
            fprintf(stderr, "%s: asked the server to retry its queue now\n", o->name);
        return 0;
    case SM_SMTP:
        return sm_smtp(&c, o);
    default:
        return sm_submit(o, &c, argc, argv, first);
    }
}

int cli_sendmail(int argc, char **argv)
{
    struct sm_opts o = {.dot_ends = true, .name = "sendmail"};
    return sm_main(argc, argv, &o);
}

int cli_mailq(int argc, char **argv)
{
    struct sm_opts o = {.dot_ends = true, .mode = SM_LIST, .name = "mailq"};
    return sm_main(argc, argv, &o);
}

int cli_newaliases(int argc, char **argv)
{
    struct sm_opts o = {.dot_ends = true, .mode = SM_ALIASES, .name = "newaliases"};
    return sm_main(argc, argv, &o);
}
