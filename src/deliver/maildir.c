/*
 * maildir.c - deliver one message into a Maildir (see maildir.h).
 *
 * Every directory is opened with O_NOFOLLOW|O_DIRECTORY and every later
 * step works relative to those descriptors (openat, renameat2, unlinkat), so
 * a symbolic link swapped in after the check is never followed.  The path
 * is used as given except for trailing slashes, which are dropped (a
 * trailing slash would make the kernel follow a symbolic link in spite of
 * O_NOFOLLOW).  Links higher up the path (/home -> /usr/home) are the
 * administrator's and are followed.
 *
 * Durability order: file written, fsync, close; renamed from tmp/ into
 * new/ (renameat2 RENAME_NOREPLACE: one system call, never replacing a
 * name; where the file system cannot do that, link into new/ and unlink
 * from tmp/); fsync new/.  OK only after that last fsync.  The fsync of
 * new/ is shared by the deliveries into the same new/ that wait for one at
 * the same time (core/syncgroup.h: each one's rename happened before the
 * shared fsync started), through a fixed table of groups keyed by new/'s
 * device and inode; when every slot is busy with other folders, a plain
 * fsync.  tmp/ is not fsynced: a crash can at worst leave a second name of
 * a delivered file in tmp/ (the rename's two folder updates reach the disk
 * apart on a file system without a journal), which Maildir readers remove
 * after 36 hours, or, before OK, the file in neither folder (the queue
 * retries); it can never lose or duplicate a message, and it saves a
 * synchronous write per delivery.  On a failure the file is removed again
 * (best effort) and TEMP returned: the queue retries, and a duplicate is
 * preferred to a loss.  Nothing is allocated; every descriptor is
 * O_CLOEXEC and closed before return.
 *
 * System calls per delivery, none that the rules above do not need: three
 * opens (the Maildir, tmp/, new/: every later step is relative to them),
 * an fstatat of cur/ (it must exist; its mtime for the look-up below), the
 * file's create, writes, fsync and close, the rename, an fstat of new/ (the
 * group's key), the shared fsync, three closes.  The file is not fstat'ed
 * after writing: O_CREAT|O_EXCL made it, so it is a regular file of ours.
 * The folders above the Maildir are made only when opening it says they
 * are missing (the courier then retries once).
 *
 * Exactly once (struct maildir_once): the name is fixed by the queue item
 * and recipient, so a repeated delivery (a retry after kill -9 between the
 * link into new/ and the envelope update) first looks for that name in new/
 * (one fstatat) and for its unique part in cur/ (a reader may have moved
 * and flagged it); cur/ is opened and read only when its mtime is not older
 * than the item's arrival, since nothing can have been moved there before.
 */
#include "deliver/maildir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/fdio.h"
#include "core/log.h"
#include "core/syncgroup.h"
#include "queue/envelope.h"

#define MAILDIR_HOST_MAX 64 /* octets of the escaped host name in a file name */
#define MAILDIR_NAME_MAX 200
#define MAILDIR_TRIES 5
#define MAILDIR_SYNC_SLOTS 64 /* new/ folders fsynced at once with a shared fsync */

static atomic_uint maildir_counter;

struct maildir_testio maildir_testio;

/* the system calls a test may replace */
static int maildir_renameat2(int ofd, const char *old, int nfd, const char *new, unsigned flags)
{
    if (maildir_testio.renameat2)
        return maildir_testio.renameat2(ofd, old, nfd, new, flags);
    return renameat2(ofd, old, nfd, new, flags);
}

static int maildir_fsync(int fd)
{
    return maildir_testio.fsync ? maildir_testio.fsync(fd) : fsync(fd);
}

static int maildir_mkdir(const char *path, mode_t mode)
{
    return maildir_testio.mkdir ? maildir_testio.mkdir(path, mode) : mkdir(path, mode);
}

/*
 * The fsync groups of new/ folders.  A slot belongs to one folder (dev, ino)
 * while users > 0; then every user holds a descriptor of that folder, so
 * its inode cannot be freed and reused by another, and any user's
 * descriptor fsyncs the same folder.  An idle slot (users 0: no call in its
 * group, nothing queued, no fsync running) is taken over by any folder.
 */
struct maildir_syncslot {
    dev_t dev;
    ino_t ino;
    unsigned users;
    struct syncgroup group;
};

static pthread_mutex_t maildir_sync_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t maildir_sync_once = PTHREAD_ONCE_INIT;
static struct maildir_syncslot maildir_sync_slots[MAILDIR_SYNC_SLOTS];

static void maildir_sync_init(void)
{
    for (int i = 0; i < MAILDIR_SYNC_SLOTS; i++)
        syncgroup_init(&maildir_sync_slots[i].group);
}

/* fsync new/ (nfd), shared with the concurrent deliveries into it. */
static int maildir_sync_new(int nfd)
{
    struct maildir_syncslot *slot = NULL, *idle = NULL;
    struct stat st;

    if (fstat(nfd, &st) != 0)
        return -1;
    pthread_once(&maildir_sync_once, maildir_sync_init);
    pthread_mutex_lock(&maildir_sync_mu);
    for (int i = 0; i < MAILDIR_SYNC_SLOTS && !slot; i++) {
        struct maildir_syncslot *s = &maildir_sync_slots[i];
        if (s->users > 0 && s->dev == st.st_dev && s->ino == st.st_ino)
            slot = s;
        else if (s->users == 0 && !idle)
            idle = s;
    }
    if (!slot && idle) {
        slot = idle;
        slot->dev = st.st_dev;
        slot->ino = st.st_ino;
    }
    if (slot)
        slot->users++;
    pthread_mutex_unlock(&maildir_sync_mu);
    if (!slot)
        return maildir_fsync(nfd); /* every slot busy with other folders */

    int rc = syncgroup_fsync(&slot->group, nfd, maildir_fsync);
    int e = errno;
    pthread_mutex_lock(&maildir_sync_mu);
    slot->users--;
    pthread_mutex_unlock(&maildir_sync_mu);
    errno = e;
    return rc;
}

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
    int fd = openat(at, name, flags), e;

    if (fd < 0 && errno == ENOENT) {
        if (mkdirat(at, name, 0700) == 0) {
            *created = true;
        } else if (errno != EEXIST) {
            e = errno;
            *r = maildir_errno(err, e, "create", shown);
            errno = e;
            return -1;
        }
        fd = openat(at, name, flags);
    }
    if (fd >= 0)
        return fd;
    e = errno;
    struct stat st;
    if ((e == ELOOP || e == ENOTDIR) && fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode)) {
            *r = result_fail(err, RESULT_PERM, "5.2.0", "mailbox refused: %s is a symbolic link",
                             at == AT_FDCWD ? "the Maildir" : name);
        } else {
            *r = result_fail(err, RESULT_TEMP, "4.3.5",
                             "%s is not a directory (the administrator must fix it)", shown);
        }
    } else {
        *r = maildir_errno(err, e, "open", shown);
    }
    errno = e;
    return -1;
}

/*
 * cur/ must exist (a Maildir reader needs it) but is read only by the
 * look-up for an earlier copy: one fstatat when it is there, into *st;
 * created (or refused, as maildir_dir() does) when it is not.  0, or -1
 * with err filled.
 */
static int maildir_cur(int mfd, struct stat *st, bool *created, enum result_class *r,
                       struct rcpt_result *err)
{
    if (fstatat(mfd, "cur", st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st->st_mode))
        return 0;
    int cfd = maildir_dir(mfd, "cur", "the Maildir's cur/", created, r, err);
    if (cfd < 0)
        return -1;
    int rc = fstat(cfd, st);
    if (rc != 0)
        *r = maildir_errno(err, errno, "fstat", "the Maildir's cur/");
    maildir_close(&cfd);
    return rc;
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
static int maildir_seen(int mfd, int nfd, const struct stat *cur, const char *name,
                        const struct maildir_once *once)
{
    struct stat st;
    if (fstatat(nfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return 1;
    if (errno != ENOENT)
        return -1;
    if ((int64_t)cur->st_mtim.tv_sec < once->time)
        return 0; /* nothing entered cur/ since the item arrived */
    int dfd = openat(mfd, "cur", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
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
        if (write_all(fd, chunk, n) != 0) {
            r = maildir_errno(err, errno, "write", "the message");
            goto fail;
        }
    }
    if (maildir_fsync(fd) != 0) {
        r = maildir_errno(err, errno, "fsync", "the message");
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

/*
 * tmp/name -> new/name, never replacing anything.  0, or -1 with errno set.
 * One rename; link + unlink only where the kernel or the file system cannot
 * rename without replacing (EINVAL: flag unknown to the file system).
 */
static int maildir_move(int tfd, int nfd, const char *name)
{
    if (maildir_renameat2(tfd, name, nfd, name, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
        return -1;
    if (linkat(tfd, name, nfd, name, 0) != 0)
        return -1;
    maildir_unlink(tfd, name, "tmp");
    return 0;
}

/*
 * maildir_deliver(); *no_parent (when not NULL) is set when the Maildir could
 * not be opened or made because a folder above it is missing.
 */
static enum result_class maildir_deliver_in(const char *path, const char *prefix, const char *msg,
                                            size_t len, const char *hostname,
                                            const struct maildir_once *once,
                                            struct rcpt_result *err, bool *no_parent)
{
    char dir[PATH_MAX], name[MAILDIR_NAME_MAX];
    int mfd = -1, tfd = -1, nfd = -1;
    bool made_maildir = false, made_sub = false;
    enum result_class r = RESULT_TEMP;
    size_t plen = path ? strlen(path) : 0;
    struct stat cur;
    int e;

    result_clear(err);
    while (plen > 1 && path[plen - 1] == '/')
        plen--;
    if (plen == 0 || plen >= sizeof(dir))
        return result_fail(err, RESULT_TEMP, "4.3.5", "bad Maildir path (empty or too long)");
    memcpy(dir, path, plen);
    dir[plen] = '\0';

    mfd = maildir_dir(AT_FDCWD, dir, dir, &made_maildir, &r, err);
    if (mfd < 0) {
        if (no_parent)
            *no_parent = errno == ENOENT;
        return r;
    }
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
        if (pfd < 0 || maildir_fsync(pfd) != 0) {
            r = maildir_errno(err, errno, "fsync the parent of", dir);
            maildir_close(&pfd);
            goto out;
        }
        maildir_close(&pfd);
    }
    tfd = maildir_dir(mfd, "tmp", "the Maildir's tmp/", &made_sub, &r, err);
    if (tfd >= 0)
        nfd = maildir_dir(mfd, "new", "the Maildir's new/", &made_sub, &r, err);
    if (nfd < 0 || maildir_cur(mfd, &cur, &made_sub, &r, err) != 0)
        goto out;
    if (made_sub && maildir_fsync(mfd) != 0) {
        r = maildir_errno(err, errno, "fsync", dir);
        goto out;
    }

    if (once) {
        maildir_name(name, sizeof(name), hostname, once);
        int seen = maildir_seen(mfd, nfd, &cur, name, once);
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
    if (maildir_sync_new(nfd) != 0) {
        e = errno;
        maildir_unlink(nfd, name, "new"); /* not known to be durable: the queue retries */
        r = maildir_errno(err, e, "fsync", "the Maildir's new/");
        goto out;
    }
    r = RESULT_OK;
    result_clear(err);
out:
    maildir_close(&nfd);
    maildir_close(&tfd);
    maildir_close(&mfd);
    return r;
}

enum result_class maildir_deliver(const char *path, const char *prefix, const char *msg, size_t len,
                                  const char *hostname, const struct maildir_once *once,
                                  struct rcpt_result *err)
{
    return maildir_deliver_in(path, prefix, msg, len, hostname, once, err, NULL);
}

/*
 * fsync the folder that holds path (its name just made there).  0, or -1
 * with errno.
 */
static int maildir_sync_parent(char *path)
{
    char *slash = strrchr(path, '/');
    char keep = slash ? slash[1] : '\0';
    if (slash)
        slash[slash == path ? 1 : 0] = '\0';
    int fd = open(slash ? path : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = fd < 0 ? -1 : maildir_fsync(fd);
    int e = errno;
    if (slash == path)
        slash[1] = keep;
    else if (slash)
        *slash = '/';
    maildir_close(&fd);
    errno = e;
    return rc;
}

/*
 * Create the missing folders above a Maildir (0700 each), each one's name
 * made durable in its parent before anything is delivered below it; the
 * Maildir itself is made by maildir_deliver(), which also refuses symlinks
 * there.  0, or -1 with errno.
 */
static int maildir_mkparents(const char *maildir)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof(p), "%s", maildir) >= (int)sizeof(p)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    char *slash = strrchr(p, '/');
    if (!slash || slash == p)
        return 0;
    *slash = '\0';
    for (char *q = p + 1;; q++) {
        if (*q != '/' && *q != '\0')
            continue;
        bool last = *q == '\0';
        *q = '\0';
        if (maildir_mkdir(p, 0700) == 0) {
            if (maildir_sync_parent(p) != 0)
                return -1;
        } else if (errno != EEXIST) {
            return -1;
        }
        if (last)
            return 0;
        *q = '/';
    }
}

static void maildir_courier(const struct courier_job *j, struct rcpt_result *res)
{
    struct courier_local cl;
    char uniq[ENV_ID_MAX + 24];
    struct maildir_once once = {.uniq = uniq}, *op = NULL;
    const struct envelope *env = j->env;
    bool no_parent = false;

    courier_local_init(&cl, j, &res[0]);
    /* the queue id and the recipient's index in its envelope name this delivery */
    if (env && envelope_id_valid(env->id) && j->n == 1 && j->rcpts[0] >= env->rcpts &&
        j->rcpts[0] < env->rcpts + env->nrcpt) {
        snprintf(uniq, sizeof(uniq), "%s_%zu", env->id, (size_t)(j->rcpts[0] - env->rcpts));
        once.time = env->created;
        op = &once;
    }
    /* the folders above the Maildir are made only for a first delivery (a
     * new user or domain), not with several mkdir calls on every one */
    if (maildir_deliver_in(j->arg, cl.prefix, j->msg, j->len, j->hostname, op, &res[0],
                           &no_parent) == RESULT_TEMP &&
        no_parent) {
        if (maildir_mkparents(j->arg) != 0) {
            int e = errno;
            maildir_errno(&res[0], e, "create the folders above", j->arg);
            return;
        }
        maildir_deliver_in(j->arg, cl.prefix, j->msg, j->len, j->hostname, op, &res[0], NULL);
    }
}

const struct courier_ops courier_maildir = {.name = "maildir", .deliver = maildir_courier};
