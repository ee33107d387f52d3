/*
 * users.c - the users file of a local domain (see users.h).
 *
 * Parsing is line by line: "name:HASH", '#' comments, blank lines; every
 * bad line is reported with its number and skipped.  Hashes are checked
 * with crypt_checksalt() so that a typo cannot lock a user out silently.
 * Checking a password always runs one crypt_r() (against a dummy hash for
 * an unknown user) and compares in constant time.  Edits never touch the
 * file in place: the new content goes to a temporary file in the same
 * folder, which is fsynced, closed and renamed over the old one, then the
 * folder is fsynced; comment and blank lines are copied as they were.
 * struct crypt_data (32 KiB) lives on the heap, never on the stack.
 * Memory: each entry owns its hash; users_free() releases everything.
 */
#include "conf/users.h"

#include <crypt.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fdio.h"
#include "core/buf.h"
#include "core/log.h"

/* yescrypt of a random password: makes an unknown user cost the same as a known one. */
static const char users_dummy_hash[] =
    "$y$j9T$vHWZ5pvAKAXJDIjJdjR0Y0$X1mxaEAkl8MVZv00M6miHuaUMV0XE1TbqMRtElz/en2";

/*
 * The characters of a name: letters, digits and the part of RFC 5322 atext
 * that is harmless in a path, a log line and an alias file (no '/', '%',
 * '!', '|', '*', '$', '`', ...).
 */
static bool users_name_char(unsigned char c)
{
    return isalnum(c) || (c && strchr("-_=+~'&", c) != NULL);
}

bool users_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > USERS_NAME_MAX || name[0] == '.' || name[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '.') {
            if (name[i + 1] == '.')
                return false;
        } else if (c >= 0x80 || !users_name_char(c)) {
            return false;
        }
    }
    return true;
}

static void users_push(struct users *u, const char *name, size_t nlen, const char *hash,
                       size_t hlen, unsigned line)
{
    if (u->n % 64 == 0) {
        struct users_entry *v = realloc(u->v, (u->n + 64) * sizeof(*v));
        if (!v)
            fatal("out of memory");
        u->v = v;
    }
    struct users_entry *x = &u->v[u->n++];
    memcpy(x->name, name, nlen);
    x->name[nlen] = '\0';
    x->hash = strndup(hash, hlen);
    if (!x->hash)
        fatal("out of memory");
    x->line = line;
}

/* Trim spaces and tabs around s[0..*n). */
static const char *users_trim(const char *s, size_t *n)
{
    while (*n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        (*n)--;
    }
    while (*n > 0 && (s[*n - 1] == ' ' || s[*n - 1] == '\t' || s[*n - 1] == '\r'))
        (*n)--;
    return s;
}

int users_parse(const char *text, size_t len, const char *name, struct users *u,
                struct conf_errors *e)
{
    size_t before = e->n, pos = 0;
    unsigned line = 0;

    memset(u, 0, sizeof(*u));
    while (pos < len) {
        const char *s = text + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        pos += n + (nl ? 1 : 0);
        line++;
        if (memchr(s, '\0', n)) {
            conf_error(e, name, line, "NUL byte in line");
            continue;
        }
        if (n > USERS_LINE_MAX) {
            conf_error(e, name, line, "line longer than %d characters", USERS_LINE_MAX);
            continue;
        }
        s = users_trim(s, &n);
        if (n == 0 || s[0] == '#')
            continue;
        const char *colon = memchr(s, ':', n);
        if (!colon) {
            conf_error(e, name, line, "expected 'user:HASH'");
            continue;
        }
        size_t ulen = (size_t)(colon - s), hlen = n - ulen - 1;
        const char *user = users_trim(s, &ulen), *hash = users_trim(colon + 1, &hlen);
        char uname[USERS_NAME_MAX + 2], hbuf[USERS_LINE_MAX + 1];
        snprintf(uname, sizeof(uname), "%.*s",
                 (int)(ulen > USERS_NAME_MAX ? USERS_NAME_MAX + 1 : ulen), user);
        if (ulen > USERS_NAME_MAX || !users_name_ok(uname)) {
            conf_error(e, name, line, "'%.*s' is not a valid user name",
                       (int)(ulen > 64 ? 64 : ulen), user);
            continue;
        }
        memcpy(hbuf, hash, hlen);
        hbuf[hlen] = '\0';
        int cs = hlen ? crypt_checksalt(hbuf) : CRYPT_SALT_INVALID;
        if (hbuf[0] != '$' || (cs != CRYPT_SALT_OK && cs != CRYPT_SALT_METHOD_LEGACY)) {
            conf_error(e, name, line,
                       "user '%s': not a crypt(3) password hash (make one with "
                       "`tern user add`)",
                       uname);
            continue;
        }
        const struct users_entry *dup = users_find(u, uname);
        if (dup) {
            conf_error(e, name, line, "user '%s' is listed twice (first on line %u)", uname,
                       dup->line);
            continue;
        }
        users_push(u, uname, ulen, hash, hlen, line);
    }
    return e->n > before ? -1 : 0;
}

int users_load(const char *path, struct users *u, struct conf_errors *e)
{
    char why[256], *text;
    size_t len;

    memset(u, 0, sizeof(*u));
    if (conf_read_file(path, USERS_FILE_MAX, &text, &len, why, sizeof(why)) < 0) {
        if (errno == ENOENT)
            return 0;
        conf_error(e, path, 0, "%s", why);
        return -1;
    }
    int r = users_parse(text, len, path, u, e);
    free(text);
    return r;
}

void users_free(struct users *u)
{
    for (size_t i = 0; i < u->n; i++)
        free(u->v[i].hash);
    free(u->v);
    u->v = NULL;
    u->n = 0;
}

const struct users_entry *users_find(const struct users *u, const char *user)
{
    for (size_t i = 0; i < u->n; i++)
        if (strcasecmp(u->v[i].name, user) == 0)
            return &u->v[i];
    return NULL;
}

/* Equality of two strings in time that depends only on the length of b. */
static bool users_ct_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = la != lb;
    for (size_t i = 0; i < lb; i++)
        d |= (unsigned char)((i < la ? a[i] : 0) ^ b[i]);
    return d == 0;
}

bool users_check(const struct users *u, const char *user, const char *password)
{
    const struct users_entry *x = users_find(u, user);
    const char *hash = x ? x->hash : users_dummy_hash;
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    bool ok = false;

    if (!cd)
        fatal("out of memory");
    if (strlen(password) <= USERS_PASSWORD_MAX) {
        const char *out = crypt_r(password, hash, cd);
        ok = out && out[0] != '*' && users_ct_equal(out, hash);
    }
    free(cd);
    return ok && x != NULL;
}

int users_hash(const char *password, char *out, size_t size)
{
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data *cd;
    int r = -1;

    if (!crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof(salt)))
        return -1;
    cd = calloc(1, sizeof(*cd));
    if (!cd)
        fatal("out of memory");
    const char *h = crypt_r(password, salt, cd);
    if (h && h[0] == '$' && strlen(h) < size) {
        memcpy(out, h, strlen(h) + 1);
        r = 0;
    }
    explicit_bzero(cd, sizeof(*cd));
    free(cd);
    return r;
}

/* ---- atomic edits ---------------------------------------------------------- */

/*
 * Replace the file at path by content: temporary file, fsync, close,
 * rename, fsync of the folder (dirfd, already open and locked).
 */
static int users_replace_file(const char *path, int dirfd, const struct buf *content,
                              const struct stat *old, char *why, size_t whylen)
{
    char tmp[CONF_STR_MAX + 32];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        snprintf(why, whylen, "%s: path too long", path);
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0) {
        snprintf(why, whylen, "%s: %s", tmp, strerror(errno));
        return -1;
    }
    const char *step = "write";
    if (old && fchmod(fd, old->st_mode & 07777) < 0) {
        step = "chmod";
        goto fail;
    }
    if (old && geteuid() == 0 && fchown(fd, old->st_uid, old->st_gid) < 0) {
        step = "chown";
        goto fail;
    }
    if (write_all(fd, content->p ? content->p : "", content->len) < 0)
        goto fail;
    step = "fsync";
    if (fsync(fd) < 0)
        goto fail;
    step = "close";
    n = close(fd);
    fd = -1;
    if (n < 0)
        goto fail;
    step = "rename";
    if (rename(tmp, path) < 0)
        goto fail;
    if (fsync(dirfd) < 0) {
        /* the new file is in place; only its durability is in doubt */
        snprintf(why, whylen, "fsync of the folder of %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
fail:
    snprintf(why, whylen, "%s: %s: %s", tmp, step, strerror(errno));
    if (fd >= 0 && close(fd) < 0)
        log_warn("close %s: %s", tmp, strerror(errno));
    if (unlink(tmp) < 0)
        log_warn("unlink %s: %s", tmp, strerror(errno));
    return -1;
}

/*
 * The common part of add and remove: lock the folder, read and parse the
 * file, let edit() build the new content, replace the file.
 */
struct users_edit {
    const char *user;
    const char *hash;  /* add: the new hash */
    bool add, replace; /* add (replace allowed) or remove */
};

static int users_edit(const char *path, const struct users_edit *ed, char *why, size_t whylen)
{
    char dir[CONF_STR_MAX], rwhy[256], *text = NULL;
    size_t len = 0;
    struct users u;
    struct conf_errors e = {0};
    struct buf out = {0};
    struct stat st, *old = NULL;
    int r = -1;

    if (strlen(path) >= sizeof(dir)) {
        snprintf(why, whylen, "%s: path too long", path);
        return -1;
    }
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof(dir), ".");
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        snprintf(why, whylen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    if (flock(dirfd, LOCK_EX) < 0) {
        snprintf(why, whylen, "lock %s: %s", dir, strerror(errno));
        goto out;
    }
    if (conf_read_file(path, USERS_FILE_MAX, &text, &len, rwhy, sizeof(rwhy)) < 0) {
        if (errno != ENOENT) {
            snprintf(why, whylen, "%s: %s", path, rwhy);
            goto out;
        }
        text = NULL;
        len = 0;
    } else if (stat(path, &st) == 0) {
        old = &st;
    }
    if (users_parse(text ? text : "", len, path, &u, &e) < 0) {
        snprintf(why, whylen, "%s (and %zu more problem(s)); fix the file first", e.v[0], e.n - 1);
        users_free(&u);
        goto out;
    }
    const struct users_entry *x = users_find(&u, ed->user);
    unsigned skip = 0;
    if (ed->add && x && !ed->replace) {
        snprintf(why, whylen, "user '%s' already exists (%s:%u)", ed->user, path, x->line);
        users_free(&u);
        goto out;
    }
    if (!ed->add && !x) {
        snprintf(why, whylen, "no user '%s' in %s", ed->user, path);
        users_free(&u);
        goto out;
    }
    if (x)
        skip = x->line;
    users_free(&u);

    /* copy every line but the edited one; a replaced user keeps its place */
    size_t pos = 0;
    unsigned line = 0;
    while (pos < len) {
        const char *s = text + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) + 1 : len - pos;
        pos += n;
        line++;
        if (line == skip) {
            if (ed->add) {
                buf_append(&out, ed->user, strlen(ed->user));
                buf_append(&out, ":", 1);
                buf_append(&out, ed->hash, strlen(ed->hash));
                buf_append(&out, "\n", 1);
            }
            continue;
        }
        buf_append(&out, s, n);
        if (!nl)
            buf_append(&out, "\n", 1);
    }
    if (ed->add && !skip) {
        buf_append(&out, ed->user, strlen(ed->user));
        buf_append(&out, ":", 1);
        buf_append(&out, ed->hash, strlen(ed->hash));
        buf_append(&out, "\n", 1);
    }
    r = users_replace_file(path, dirfd, &out, old, why, whylen);
out:
    conf_errors_free(&e);
    buf_free(&out);
    free(text);
    if (close(dirfd) < 0 && r == 0) { /* also releases the lock */
        snprintf(why, whylen, "close %s: %s", dir, strerror(errno));
        r = -1;
    }
    return r;
}

static int users_lower_name(const char *user, char *out, char *why, size_t whylen)
{
    if (!users_name_ok(user)) {
        snprintf(why, whylen,
                 "'%.64s' is not a valid user name (letters, digits, - _ = + ~ ' & and "
                 "inner dots, at most 64)",
                 user);
        return -1;
    }
    size_t i;
    for (i = 0; user[i]; i++)
        out[i] = (char)tolower((unsigned char)user[i]);
    out[i] = '\0';
    return 0;
}

int users_add(const char *path, const char *user, const char *password, bool replace, char *why,
              size_t whylen)
{
    char name[USERS_NAME_MAX + 1], hash[CRYPT_OUTPUT_SIZE];

    if (users_lower_name(user, name, why, whylen) < 0)
        return -1;
    if (!*password || strlen(password) > USERS_PASSWORD_MAX || strpbrk(password, "\r\n")) {
        snprintf(why, whylen, "the password must be 1 to %d characters on one line",
                 USERS_PASSWORD_MAX);
        return -1;
    }
    if (users_hash(password, hash, sizeof(hash)) < 0) {
        snprintf(why, whylen, "cannot hash the password (yescrypt): %s", strerror(errno));
        return -1;
    }
    struct users_edit ed = {.user = name, .hash = hash, .add = true, .replace = replace};
    return users_edit(path, &ed, why, whylen);
}

int users_remove(const char *path, const char *user, char *why, size_t whylen)
{
    char name[USERS_NAME_MAX + 1];

    if (users_lower_name(user, name, why, whylen) < 0)
        return -1;
    struct users_edit ed = {.user = name, .add = false};
    return users_edit(path, &ed, why, whylen);
}
