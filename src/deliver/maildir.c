/*
 * maildir.c - deliver one message into a Maildir (see maildir.h).
 *
 * Every directory is opened with O_NOFOLLOW|O_DIRECTORY and every later
 * step works relative to those descriptors (openat, linkat, unlinkat), so
 * a symbolic link swapped in after the check is never followed.  The path
 * is used as given except for trailing slashes, which are dropped (a
 * trailing slash would make the kernel follow a symbolic link in spite of
 * O_NOFOLLOW).  Links higher up the path (/home -> /usr/home) are the
 * administrator's and are followed.
 *
 * Durability order: file written, fsync, close; link into new/; unlink
 * from tmp/; fsync new/.  OK only after that last fsync.  tmp/ is not
 * fsynced: a crash can at worst leave a second name of a delivered file in
 * tmp/, which Maildir readers remove after 36 hours; it can never lose or
 * duplicate a message, and it saves a journal commit per delivery.  On a
 * failure the file is removed again (best effort) and TEMP returned: the
 * queue retries, and a duplicate is preferred to a loss.  Nothing is
 * allocated; every descriptor is O_CLOEXEC and closed before return.
 *
 * Exactly once (struct maildir_once): the name is fixed by the queue item
 * and recipient, so a repeated delivery (a retry after kill -9 between the
 * link into new/ and the envelope update) first looks for that name in new/
 * (one fstatat) and for its unique part in cur/ (a reader may have moved
 * and flagged it); cur/ is read only when its mtime is not older than the
 * item's arrival, since nothing can have been moved there before.
 */
#include "deliver/maildir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "queue/envelope.h"

#define MAILDIR_HOST_MAX 64 /* octets of the escaped host name in a file name */
#define MAILDIR_NAME_MAX 200
#define MAILDIR_TRIES 5

static atomic_uint maildir_counter;

static void maildir_close(int *fd)
{
    if (*fd < 0)
        return;
    if (close(*fd) != 0 && errno != EINTR)
        log_warn("maildir: close: %s", strerror(errno));
    *fd = -1;
}

/* TEMP (or PERM for links) for an errno while doing "what" on "where". */
static enum result_class maildir_errno(struct rcpt_result *err, int e, const char *what,
                                       const char *where)
{
    const char *why = strerrordesc_np(e) ? strerrordesc_np(e) : "unknown error";
    switch (e) {
    case ENOSPC:
        return result_fail(err, RESULT_TEMP, "4.3.1", "mail system full: cannot %s %s: %s", what,
                           where, why);
    case EDQUOT:
        return result_fail(err, RESULT_TEMP, "4.2.2", "mailbox over quota: cannot %s %s: %s", what,
                           where, why);
    case EACCES:
    case EPERM:
    case EROFS:
        return result_fail(err, RESULT_TEMP, "4.3.5",
                           "cannot %s %s: %s (the administrator must fix the permissions)", what,
                           where, why);
    case ENOENT:
        return result_fail(err, RESULT_TEMP, "4.3.5",
                           "cannot %s %s: %s (a parent directory is missing; the administrator "
                           "must create it)",
                           what, where, why);
    default:
        return result_fail(err, RESULT_TEMP, "4.3.0", "cannot %s %s: %s", what, where, why);
    }
}

/*
 * Open (creating when absent) the directory name under at, never through a
 * symbolic link.  Returns a descriptor, or -1 with err filled.  *created is
 * set when this call made it.
 */
static int maildir_dir(int at, const char *name, const char *shown, bool *created,
                       enum result_class *r, struct rcpt_result *err)
{
    const int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    int fd = openat(at, name, flags);

    if (fd < 0 && errno == ENOENT) {
        if (mkdirat(at, name, 0700) == 0) {
            *created = true;
        } else if (errno != EEXIST) {
            *r = maildir_errno(err, errno, "create", shown);
            return -1;
        }
        fd = openat(at, name, flags);
    }
    if (fd >= 0)
        return fd;
    int e = errno;
    struct stat st;
    if ((e == ELOOP || e == ENOTDIR) && fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode)) {
            *r = result_fail(err, RESULT_PERM, "5.2.0", "mailbox refused: %s is a symbolic link",
                             at == AT_FDCWD ? "the Maildir" : name);
            return -1;
        }
        *r = result_fail(err, RESULT_TEMP, "4.3.5",
                         "%s is not a directory (the administrator must fix it)", shown);
        return -1;
    }
    *r = maildir_errno(err, e, "open", shown);
    return -1;
}

/* "SECONDS.MusecPpidQcounterRrandom.host", or with once "TIME.UNIQ.host",
 * into name. */
static void maildir_name(char *name, size_t size, const char *hostname,
                         const struct maildir_once *once)
{
    char host[MAILDIR_HOST_MAX + 1];
    size_t h = 0;
    struct timespec ts;
    uint64_t rnd = 0;
    unsigned n = once ? 0 : atomic_fetch_add(&maildir_counter, 1u);

    clock_gettime(CLOCK_REALTIME, &ts);
    if (!once && getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
        rnd = ((uint64_t)ts.tv_nsec << 20) ^ ((uint64_t)getpid() << 40) ^
              ((uint64_t)n * 0x9e3779b97f4a7c15ull);
    if (!hostname || !*hostname)
        hostname = "localhost";
    for (const char *p = hostname; *p && h < MAILDIR_HOST_MAX; p++) {
        unsigned char c = (unsigned char)*p;
        const char *esc = c == '/' ? "\\057" : c == ':' ? "\\072" : NULL;
        if (esc) {
            if (h + 4 > MAILDIR_HOST_MAX)
                break;
            memcpy(host + h, esc, 4);
            h += 4;
        } else {
            host[h++] = c > 0x20 && c < 0x7f ? (char)c : '_';
        }
    }
    host[h] = '\0';
    if (once)
        snprintf(name, size, "%lld.%s.%s", (long long)once->time, once->uniq, host);
    else
        snprintf(name, size, "%lld.M%06ldP%ldQ%uR%016llx.%s", (long long)ts.tv_sec,
                 ts.tv_nsec / 1000, (long)getpid(), n, (unsigned long long)rnd, host);
}

/* Is once->uniq the unique part (between the first two dots) of name? */
static bool maildir_same_uniq(const char *name, const char *uniq)
{
    const char *dot = strchr(name, '.');
    size_t u = strlen(uniq);
    return dot && strncmp(dot + 1, uniq, u) == 0 && dot[1 + u] == '.';
}

/*
 * Has this delivery been made already?  new/name (the exact name), or an
 * entry of cur/ with the same unique part.  1 yes, 0 no, -1 with errno.
 */
static int maildir_seen(int nfd, int cfd, const char *name, const struct maildir_once *once)
{
    struct stat st;
    if (fstatat(nfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return 1;
    if (errno != ENOENT)
        return -1;
    if (fstat(cfd, &st) != 0)
        return -1;
    if ((int64_t)st.st_mtim.tv_sec < once->time)
        return 0; /* nothing entered cur/ since the item arrived */
    int dfd = openat(cfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -1;
    DIR *d = fdopendir(dfd);
    if (!d) {
        int e = errno;
        maildir_close(&dfd);
        errno = e;
        return -1;
    }
    int found = 0;
    struct dirent *de;
    errno = 0;
    while (!found && (de = readdir(d)) != NULL)
        found = maildir_same_uniq(de->d_name, once->uniq);
    int e = found ? 0 : errno;
    if (closedir(d) != 0)
        log_warn("maildir: closedir cur/: %s", strerror(errno));
    errno = e;
    return e ? -1 : found;
}

static int maildir_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void maildir_unlink(int dirfd, const char *name, const char *where)
{
    if (unlinkat(dirfd, name, 0) != 0 && errno != ENOENT)
        log_warn("maildir: cannot remove %s/%s: %s", where, name, strerror(errno));
}

/*
 * Write the message into tmp/name: OK, or TEMP/PERM with err filled and the
 * file removed.  *taken is set (and nothing filled) when the name exists.
 */
static enum result_class maildir_write(int tfd, const char *name, const char *prefix,
                                       const char *msg, size_t len, bool *taken,
                                       struct rcpt_result *err)
{
    char chunk[32768];
    struct courier_lf rd;
    struct stat st;
    enum result_class r;
    size_t n;
    int fd;

    *taken = false;
    fd = openat(tfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST) {
            *taken = true;
            return RESULT_TEMP;
        }
        return maildir_errno(err, errno, "create a file in", "the Maildir's tmp/");
    }
    courier_lf_init(&rd, prefix, prefix ? strlen(prefix) : 0, msg, len, true);
    while ((n = courier_lf_read(&rd, chunk, sizeof(chunk))) > 0) {
        if (maildir_write_all(fd, chunk, n) != 0) {
            r = maildir_errno(err, errno, "write", "the message");
            goto fail;
        }
    }
    if (fsync(fd) != 0) {
        r = maildir_errno(err, errno, "fsync", "the message");
        goto fail;
    }
    if (fstat(fd, &st) != 0) {
        r = maildir_errno(err, errno, "fstat", "the message");
        goto fail;
    }
    if (!S_ISREG(st.st_mode) || st.st_nlink != 1) {
        r = result_fail(err, RESULT_PERM, "5.2.0",
                        "mailbox refused: the new file in tmp/ is not a regular file with one "
                        "link (%lu links)",
                        (unsigned long)st.st_nlink);
        goto fail;
    }
    if (close(fd) != 0) {
        fd = -1;
        r = maildir_errno(err, errno, "close", "the message");
        goto fail;
    }
    return RESULT_OK;
fail:
    maildir_close(&fd);
    maildir_unlink(tfd, name, "tmp");
    return r;
}

/* tmp/name -> new/name, never replacing anything.  0, or -1 with errno set. */
static int maildir_move(int tfd, int nfd, const char *name)
{
    if (linkat(tfd, name, nfd, name, 0) == 0) {
        maildir_unlink(tfd, name, "tmp");
        return 0;
    }
    if (errno != EPERM && errno != EOPNOTSUPP && errno != ENOSYS && errno != EMLINK)
        return -1;
    /* file systems without hard links */
    if (renameat2(tfd, name, nfd, name, RENAME_NOREPLACE) == 0)
        return 0;
    return -1;
}

enum result_class maildir_deliver(const char *path, const char *prefix, const char *msg, size_t len,
                                  const char *hostname, const struct maildir_once *once,
                                  struct rcpt_result *err)
{
    char dir[PATH_MAX], name[MAILDIR_NAME_MAX];
    int mfd = -1, tfd = -1, nfd = -1, cfd = -1;
    bool made_maildir = false, made_sub = false;
    enum result_class r = RESULT_TEMP;
    size_t plen = path ? strlen(path) : 0;
    int e;

    result_clear(err);
    while (plen > 1 && path[plen - 1] == '/')
        plen--;
    if (plen == 0 || plen >= sizeof(dir))
        return result_fail(err, RESULT_TEMP, "4.3.5", "bad Maildir path (empty or too long)");
    memcpy(dir, path, plen);
    dir[plen] = '\0';

    mfd = maildir_dir(AT_FDCWD, dir, dir, &made_maildir, &r, err);
    if (mfd < 0)
        return r;
    if (made_maildir) {
        /* make the new Maildir's name durable in its parent */
        char parent[PATH_MAX];
        char *slash = strrchr(dir, '/');
        if (!slash)
            memcpy(parent, ".", 2);
        else if (slash == dir)
            memcpy(parent, "/", 2);
        else {
            memcpy(parent, dir, (size_t)(slash - dir));
            parent[slash - dir] = '\0';
        }
        int pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (pfd < 0 || fsync(pfd) != 0) {
            r = maildir_errno(err, errno, "fsync the parent of", dir);
            maildir_close(&pfd);
            goto out;
        }
        maildir_close(&pfd);
    }
    tfd = maildir_dir(mfd, "tmp", "the Maildir's tmp/", &made_sub, &r, err);
    if (tfd >= 0)
        nfd = maildir_dir(mfd, "new", "the Maildir's new/", &made_sub, &r, err);
    if (nfd >= 0)
        cfd = maildir_dir(mfd, "cur", "the Maildir's cur/", &made_sub, &r, err);
    if (cfd < 0)
        goto out;
    if (made_sub && fsync(mfd) != 0) {
        r = maildir_errno(err, errno, "fsync", dir);
        goto out;
    }

    if (once) {
        maildir_name(name, sizeof(name), hostname, once);
        int seen = maildir_seen(nfd, cfd, name, once);
        if (seen < 0) {
            r = maildir_errno(err, errno, "look for an earlier copy in", dir);
            goto out;
        }
        if (seen) {
            log_info("maildir: %s already holds delivery %s: not written again", dir, once->uniq);
            r = RESULT_OK;
            goto out;
        }
    }
    for (int tries = 0;; tries++) {
        bool taken;
        if (!once)
            maildir_name(name, sizeof(name), hostname, NULL);
        r = maildir_write(tfd, name, prefix, msg, len, &taken, err);
        if (r == RESULT_OK)
            break;
        if (!taken)
            goto out;
        if (once && tries == 0) {
            /* a crashed attempt's leftover: the name belongs to this delivery alone */
            maildir_unlink(tfd, name, "tmp");
            continue;
        }
        if (once || tries + 1 == MAILDIR_TRIES) {
            r = result_fail(err, RESULT_TEMP, "4.3.0",
                            "no unique file name in the Maildir's tmp/ after %d tries", tries + 1);
            goto out;
        }
    }
    if (maildir_move(tfd, nfd, name) != 0) {
        e = errno;
        maildir_unlink(tfd, name, "tmp");
        r = maildir_errno(err, e, "move the message into", "the Maildir's new/");
        goto out;
    }
    if (fsync(nfd) != 0) {
        e = errno;
        maildir_unlink(nfd, name, "new"); /* not known to be durable: the queue retries */
        r = maildir_errno(err, e, "fsync", "the Maildir's new/");
        goto out;
    }
    r = RESULT_OK;
    result_clear(err);
out:
    maildir_close(&cfd);
    maildir_close(&nfd);
    maildir_close(&tfd);
    maildir_close(&mfd);
    return r;
}

/* Create the missing folders above a Maildir (0700 each); the Maildir itself is
 * made by maildir_deliver(), which also refuses symlinks there. */
static void maildir_mkparents(const char *maildir)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof(p), "%s", maildir) >= (int)sizeof(p))
        return;
    char *slash = strrchr(p, '/');
    if (!slash || slash == p)
        return;
    *slash = '\0';
    for (char *q = p + 1; *q; q++) {
        if (*q != '/')
            continue;
        *q = '\0';
        if (mkdir(p, 0700) < 0 && errno != EEXIST)
            return;
        *q = '/';
    }
    if (mkdir(p, 0700) < 0 && errno != EEXIST)
        log_debug("mkdir %s: %s", p, strerror(errno));
}

static void maildir_courier(const struct courier_job *j, struct rcpt_result *res)
{
    struct courier_local cl;
    char uniq[ENV_ID_MAX + 24];
    struct maildir_once once = {.uniq = uniq}, *op = NULL;
    const struct envelope *env = j->env;

    courier_local_init(&cl, j, &res[0]);
    /* the queue id and the recipient's index in its envelope name this delivery */
    if (env && envelope_id_valid(env->id) && j->n == 1 && j->rcpts[0] >= env->rcpts &&
        j->rcpts[0] < env->rcpts + env->nrcpt) {
        snprintf(uniq, sizeof(uniq), "%s_%zu", env->id, (size_t)(j->rcpts[0] - env->rcpts));
        once.time = env->created;
        op = &once;
    }
    maildir_mkparents(j->arg);
    maildir_deliver(j->arg, cl.prefix, j->msg, j->len, j->hostname, op, &res[0]);
}

const struct courier_ops courier_maildir = {.name = "maildir", .deliver = maildir_courier};
