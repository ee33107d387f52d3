/*
 * admin.c - `tern user`, `tern alias`, `tern check-config`: operating the
 * server's configuration from the command line.
 *
 * The config file is --config FILE, else $TERN_CONFIG, else
 * /etc/tern/tern.conf.  Every problem found is printed as "FILE:LINE:
 * what" on standard error, all of them, never only the first.  Passwords
 * come from --password-file (its first line) or standard input (without
 * echo on a terminal, asked twice for `add`); they are never taken from
 * the command line, where ps(1) would show them, and the buffers holding
 * them are wiped.  User edits go through users_add()/users_remove(), which
 * rewrite the users file atomically; a new domain folder is created (and
 * its parent fsynced) on the first `user add`.  Nothing here talks to a
 * running server: it picks up changes on SIGHUP.
 */
#include "cli/admin.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "core/address.h"
#include "conf/aliases.h"
#include "conf/config.h"
#include "conf/policy.h"
#include "conf/snapshot.h"
#include "conf/users.h"
#include "deliver/route.h"

static const char user_usage[] =
    "usage: tern user add    [--config FILE] [--password-file FILE] [--replace] USER@DOMAIN\n"
    "       tern user remove [--config FILE] USER@DOMAIN\n"
    "       tern user check  [--config FILE] [--password-file FILE] USER@DOMAIN\n"
    "       tern user list   [--config FILE] [DOMAIN]\n"
    "\n"
    "The password is read from --password-file (first line) or standard input\n"
    "(without echo on a terminal). Users live in DATA_DIR/domains/DOMAIN/users;\n"
    "the first user of a new domain creates the domain. Send SIGHUP to a running\n"
    "`tern serve` to make it reload.\n";

static const char alias_usage[] =
    "usage: tern alias resolve [--config FILE] ADDRESS\n"
    "\n"
    "Prints each final target (KIND<tab>TARGET<tab>CHAIN), KIND being local,\n"
    "remote or pipe, then notes about loops and unknown names. Exit status 1\n"
    "if the address would be refused.\n";

static const char check_usage[] =
    "usage: tern check-config [--config FILE]\n"
    "\n"
    "Prints every problem of the configuration (tern.conf, users\n"
    "and aliases files) as FILE:LINE: what, and exits 1; prints\n"
    "\"ok\" and exits 0 when there is none.  Also checks owners and\n"
    "modes: secrets (TLS key, smarthost password) readable only by\n"
    "their owner, rules (tern.conf, users, aliases and their folders)\n"
    "writable only by their owner (root or [server] user).\n";

struct admin_opts {
    const char *config;
    const char *password_file;
    bool replace;
    const char *args[4];
    int nargs;
};

/* Parse the options after argv[first]; 0, or 2 after printing usage. */
static int admin_opts(int argc, char **argv, int first, const char *usage, struct admin_opts *o)
{
    memset(o, 0, sizeof(*o));
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return 3;
        } else if (strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0) {
            if (++i == argc)
                goto missing;
            o->config = argv[i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            o->config = a + 9;
        } else if (strcmp(a, "--password-file") == 0) {
            if (++i == argc)
                goto missing;
            o->password_file = argv[i];
        } else if (strncmp(a, "--password-file=", 16) == 0) {
            o->password_file = a + 16;
        } else if (strcmp(a, "--replace") == 0) {
            o->replace = true;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "tern: unknown option '%s'\n%s", a, usage);
            return 2;
        } else {
            if (o->nargs == 4) {
                fprintf(stderr, "tern: too many arguments\n%s", usage);
                return 2;
            }
            o->args[o->nargs++] = a;
        }
        continue;
    missing:
        fprintf(stderr, "tern: %s needs a value\n%s", a, usage);
        return 2;
    }
    return 0;
}

static void admin_print_errors(const struct conf_errors *e)
{
    for (size_t i = 0; i < e->n; i++)
        fprintf(stderr, "%s\n", e->v[i]);
    if (e->truncated)
        fprintf(stderr, "(more than %d problems: the rest are not shown)\n", CONF_ERRORS_MAX);
    for (size_t i = 0; i < e->nw; i++)
        fprintf(stderr, "warning: %s\n", e->w[i]);
}

/* Run as root: give what we created to [server] group so that the server,
   once it runs as that user, can read it again on SIGHUP (0750 / 0640). */
static int admin_share(const struct conf *c, const char *path)
{
    uid_t uid;
    gid_t gid;
    if (geteuid() != 0 || conf_user_ids(c, &uid, &gid) < 0)
        return 0;
    if (chown(path, (uid_t)-1, gid) < 0) {
        fprintf(stderr, "tern: chgrp %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Load the config; on problems print them all and return -1. */
static int admin_conf(const struct admin_opts *o, struct conf *c)
{
    struct conf_errors e = {0};
    int r = conf_load(conf_default_path(o->config), c, &e);
    admin_print_errors(&e);
    conf_errors_free(&e);
    return r;
}

/* ---- passwords ------------------------------------------------------------- */

#define PW_MAX (USERS_PASSWORD_MAX + 2)

/* One line from fd into pw (newline and a CR before it removed); 0 or -1. */
static int admin_read_line(int fd, char *pw, size_t size)
{
    size_t n = 0;
    for (;;) {
        char ch;
        ssize_t r = read(fd, &ch, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0 || ch == '\n')
            break;
        if (n + 1 >= size) {
            errno = EMSGSIZE;
            return -1;
        }
        pw[n++] = ch;
    }
    if (n > 0 && pw[n - 1] == '\r')
        n--;
    pw[n] = '\0';
    return 0;
}

static int admin_prompt(const char *prompt, char *pw, size_t size)
{
    struct termios old, quiet;
    bool tty = tcgetattr(STDIN_FILENO, &old) == 0;
    int r;

    fputs(prompt, stderr);
    fflush(stderr);
    if (tty) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) < 0)
            return -1;
    }
    r = admin_read_line(STDIN_FILENO, pw, size);
    if (tty) {
        int saved = errno;
        if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &old) < 0 && r == 0)
            r = -1;
        fputc('\n', stderr);
        errno = saved;
    }
    return r;
}

/* The password, from the file or standard input; twice on a terminal if confirm. */
static int admin_password(const struct admin_opts *o, bool confirm, char *pw, size_t size)
{
    if (o->password_file) {
        int fd = open(o->password_file, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            fprintf(stderr, "tern: %s: %s\n", o->password_file, strerror(errno));
            return -1;
        }
        int r = admin_read_line(fd, pw, size);
        int err = errno;
        if (close(fd) < 0 && r == 0) {
            err = errno;
            r = -1;
        }
        if (r < 0) {
            fprintf(stderr, "tern: %s: %s\n", o->password_file, strerror(err));
            return -1;
        }
    } else {
        bool tty = isatty(STDIN_FILENO);
        if (admin_prompt(tty ? "Password: " : "", pw, size) < 0) {
            fprintf(stderr, "tern: reading the password: %s\n", strerror(errno));
            return -1;
        }
        if (tty && confirm) {
            char again[PW_MAX];
            int r = admin_prompt("Again: ", again, sizeof(again));
            bool same = r == 0 && strcmp(pw, again) == 0;
            explicit_bzero(again, sizeof(again));
            if (!same) {
                fprintf(stderr, "tern: the passwords differ\n");
                return -1;
            }
        }
    }
    if (!pw[0]) {
        fprintf(stderr, "tern: empty password\n");
        return -1;
    }
    return 0;
}

/* ---- tern user ------------------------------------------------------------- */

/* "user@domain" into its parts, domain in lower case; -1 after a message. */
static int admin_split(const char *addr, char *user, char *domain)
{
    struct mailaddr a;
    int err = addr_parse_mailbox(addr, strlen(addr), 0, &a);
    if (err != ADDR_OK || a.is_literal || a.is_quoted) {
        fprintf(stderr, "tern: '%s' is not USER@DOMAIN%s%s\n", addr, err ? ": " : "",
                err ? addr_strerror(err) : "");
        return -1;
    }
    if (!users_name_ok(a.local)) {
        fprintf(stderr,
                "tern: '%s' is not a valid user name (letters, digits, - _ = + ~ ' & and "
                "inner dots)\n",
                a.local);
        return -1;
    }
    for (size_t i = 0;; i++) { /* users_add() writes names in lower case too */
        user[i] = (char)tolower((unsigned char)a.local[i]);
        if (!a.local[i])
            break;
    }
    for (size_t i = 0;; i++) {
        domain[i] = (char)tolower((unsigned char)a.domain[i]);
        if (!a.domain[i])
            break;
    }
    return 0;
}

/* mkdir dir (one level) if missing, then fsync its parent so the name is durable. */
static int admin_mkdir(const struct conf *c, const char *dir)
{
    char parent[CONF_STR_MAX];
    if (mkdir(dir, 0750) < 0) {
        if (errno == EEXIST)
            return 0;
        fprintf(stderr, "tern: mkdir %s: %s\n", dir, strerror(errno));
        return -1;
    }
    if (admin_share(c, dir) < 0)
        return -1;
    snprintf(parent, sizeof(parent), "%s", dir);
    char *slash = strrchr(parent, '/');
    if (!slash)
        return 0;
    *slash = '\0';
    int fd = open(*parent ? parent : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0) {
        fprintf(stderr, "tern: fsync %s: %s\n", parent, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (close(fd) < 0) {
        fprintf(stderr, "tern: close %s: %s\n", parent, strerror(errno));
        return -1;
    }
    return 0;
}

static int user_add(const struct conf *c, const struct admin_opts *o, const char *user,
                    const char *domain)
{
    char path[CONF_STR_MAX], dir[CONF_STR_MAX], pw[PW_MAX], why[1024];
    struct stat st;

    int n = snprintf(dir, sizeof(dir), "%s/domains/%s", c->data_dir, domain);
    if (n < 0 || (size_t)n >= sizeof(dir) ||
        policy_file_path(c, domain, "users", path, sizeof(path)) < 0) {
        fprintf(stderr, "tern: %s: path too long\n", c->data_dir);
        return 1;
    }
    bool new_domain = stat(dir, &st) < 0;
    if (admin_password(o, true, pw, sizeof(pw)) < 0)
        return 1;
    char domains[CONF_STR_MAX + 16];
    snprintf(domains, sizeof(domains), "%s/domains", c->data_dir);
    if (admin_mkdir(c, c->data_dir) < 0 || admin_mkdir(c, domains) < 0 || admin_mkdir(c, dir) < 0) {
        explicit_bzero(pw, sizeof(pw));
        return 1;
    }
    bool new_file = stat(path, &st) < 0;
    int r = users_add(path, user, pw, o->replace, why, sizeof(why));
    explicit_bzero(pw, sizeof(pw));
    if (r < 0) {
        fprintf(stderr, "tern: %s\n", why);
        return 1;
    }
    if (new_file && admin_share(c, path) < 0)
        return 1;
    if (new_domain)
        printf("new local domain %s (%s)\n", domain, dir);
    printf("%s %s@%s\n", o->replace ? "set" : "added", user, domain);
    return 0;
}

static int user_check(const struct conf *c, const struct admin_opts *o, const char *user,
                      const char *domain)
{
    char path[CONF_STR_MAX], pw[PW_MAX];
    struct users u;
    struct conf_errors e = {0};

    if (policy_file_path(c, domain, "users", path, sizeof(path)) < 0) {
        fprintf(stderr, "tern: %s: path too long\n", c->data_dir);
        return 1;
    }
    int lr = users_load(path, &u, &e);
    admin_print_errors(&e);
    conf_errors_free(&e);
    if (lr < 0) {
        users_free(&u);
        return 1;
    }
    if (!users_find(&u, user)) {
        fprintf(stderr, "tern: no user %s@%s\n", user, domain);
        users_free(&u);
        return 1;
    }
    if (admin_password(o, false, pw, sizeof(pw)) < 0) {
        users_free(&u);
        return 1;
    }
    bool ok = users_check(&u, user, pw);
    explicit_bzero(pw, sizeof(pw));
    users_free(&u);
    if (!ok) {
        fprintf(stderr, "tern: wrong password for %s@%s\n", user, domain);
        return 1;
    }
    printf("ok\n");
    return 0;
}

static int user_list(const struct conf *c, const char *only)
{
    struct policy p;
    struct conf_errors e = {0};
    int r = policy_load(c, &p, &e) < 0 ? 1 : 0;
    admin_print_errors(&e);
    conf_errors_free(&e);
    bool found = !only;
    for (size_t i = 0; i < p.n; i++) {
        const struct policy_domain *d = &p.v[i];
        if (only && strcasecmp(only, d->name) != 0)
            continue;
        found = true;
        for (size_t j = 0; j < d->users.n; j++)
            printf("%s@%s\n", d->users.v[j].name, d->name);
    }
    if (!found) {
        fprintf(stderr, "tern: %s is not a local domain (no folder %s/domains/%s)\n", only,
                c->data_dir, only);
        r = 1;
    }
    policy_free(&p);
    return r;
}

int cli_user(int argc, char **argv)
{
    struct admin_opts o;
    struct conf c;
    char user[USERS_NAME_MAX + 1], domain[ADDR_DOMAIN_MAX + 1], why[1024];

    if (argc < 2) {
        fputs(user_usage, stderr);
        return 2;
    }
    const char *verb = argv[1];
    if (strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0 || strcmp(verb, "help") == 0) {
        fputs(user_usage, stdout);
        return 0;
    }
    int r = admin_opts(argc, argv, 2, user_usage, &o);
    if (r)
        return r == 3 ? 0 : r;
    bool is_list = strcmp(verb, "list") == 0;
    if (!is_list && strcmp(verb, "add") != 0 && strcmp(verb, "remove") != 0 &&
        strcmp(verb, "check") != 0) {
        fprintf(stderr, "tern user: unknown action '%s'\n%s", verb, user_usage);
        return 2;
    }
    if ((is_list && o.nargs > 1) || (!is_list && o.nargs != 1)) {
        fputs(user_usage, stderr);
        return 2;
    }
    if (admin_conf(&o, &c) < 0)
        return 1;
    if (is_list)
        return user_list(&c, o.nargs ? o.args[0] : NULL);
    if (admin_split(o.args[0], user, domain) < 0)
        return 1;
    if (strcmp(verb, "add") == 0)
        return user_add(&c, &o, user, domain);
    if (strcmp(verb, "check") == 0)
        return user_check(&c, &o, user, domain);
    char path[CONF_STR_MAX];
    if (policy_file_path(&c, domain, "users", path, sizeof(path)) < 0) {
        fprintf(stderr, "tern: %s: path too long\n", c.data_dir);
        return 1;
    }
    if (users_remove(path, user, why, sizeof(why)) < 0) {
        fprintf(stderr, "tern: %s\n", why);
        return 1;
    }
    printf("removed %s@%s\n", user, domain);
    return 0;
}

/* ---- tern alias ------------------------------------------------------------ */

static const char *alias_kind_name(enum route_kind k)
{
    switch (k) {
    case ROUTE_LOCAL:
        return "local";
    case ROUTE_REMOTE:
        return "remote";
    case ROUTE_PIPE:
        return "pipe";
    }
    return "?";
}

int cli_alias(int argc, char **argv)
{
    struct admin_opts o;
    struct conf c;
    struct policy p;
    struct route_result res;
    struct conf_errors e = {0};

    if (argc < 2) {
        fputs(alias_usage, stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(alias_usage, stdout);
        return 0;
    }
    int r = admin_opts(argc, argv, 2, alias_usage, &o);
    if (r)
        return r == 3 ? 0 : r;
    if (strcmp(argv[1], "resolve") != 0 || o.nargs != 1) {
        fputs(alias_usage, stderr);
        return 2;
    }
    if (admin_conf(&o, &c) < 0)
        return 1;
    policy_load(&c, &p, &e); /* problems are shown; the rest still resolves */
    admin_print_errors(&e);
    conf_errors_free(&e);

    int st = route_resolve_str(&p, o.args[0], &res);
    for (size_t i = 0; i < res.n; i++)
        printf("%s\t%s\t%s\n", alias_kind_name(res.v[i].kind), res.v[i].value, res.v[i].chain);
    for (size_t i = 0; i < res.n_notes; i++)
        printf("note: %s\n", res.notes[i]);
    if (st == ROUTE_NOT_LOCAL)
        printf("note: %s is not in a local domain: relayed for authenticated senders only\n",
               res.original);
    r = st == ROUTE_OK || st == ROUTE_NOT_LOCAL ? 0 : 1;
    if (r)
        fprintf(stderr, "tern: %s: %s\n", o.args[0], route_status_str(st));
    route_result_free(&res);
    policy_free(&p);
    return r;
}

/* ---- tern check-config ------------------------------------------------------ */

int cli_check_config(int argc, char **argv)
{
    struct admin_opts o;
    struct conf c;
    struct policy p;
    struct conf_errors e = {0};

    int r = admin_opts(argc, argv, 1, check_usage, &o);
    if (r)
        return r == 3 ? 0 : r;
    if (o.nargs) {
        fputs(check_usage, stderr);
        return 2;
    }
    const char *path = conf_default_path(o.config);
    conf_load(path, &c, &e);
    if (c.path[0]) { /* the file was read: check the domains it points to */
        if (policy_load(&c, &p, &e) == 0) {
            snapshot_check_files(&c, &p, &e);
            struct dkimkeys dk = {0}; /* [dkim]: every key loads, nobody else reads it */
            if (e.n == 0 && dkimkeys_load(&c, &p, &dk, &e) == 0 && dk.n > 0)
                printf("dkim: %zu signing key%s\n", dk.n, dk.n == 1 ? "" : "s");
            dkimkeys_free(&dk);
        }
        if (e.n == 0 && p.n == 0)
            fprintf(stderr, "note: no local domain yet (no folder in %s/domains)\n", c.data_dir);
        policy_free(&p);
    }
    admin_print_errors(&e);
    r = e.n || e.truncated ? 1 : 0;
    conf_errors_free(&e);
    if (r == 0)
        printf("ok\n");
    return r;
}
