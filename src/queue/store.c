/*
 * store.c - the spool on disk (see store.h for the layout and the commit
 * protocol).
 *
 * Every file is opened relative to a directory descriptor taken at open time
 * (openat/renameat/unlinkat), with O_NOFOLLOW, mode 0600.  A new item's
 * .msg is written straight into queue/ and fsynced; its .env (with the
 * .msg's size and CRC-32C) is written to tmp/, fsynced and renamed into
 * queue/: a version 2 .env in queue/ was therefore whole when it got
 * there, and one that is not whole now was damaged (quarantined, never
 * discarded).  A rewritten .env also goes through tmp/ and a rename.  The
 * queue directory is fsynced before success is reported, one fsync shared
 * by the commits and updates that run at the same time (group commit); every
 * return value is checked and the first failing one decides errno.  Cleanup
 * after a failure never overwrites that errno.
 *
 * Thread safety: the struct is read-only after qstore_open() except for two
 * atomics (id counter, item count) and the group-commit state under its
 * mutex; callers never work on one id from two threads.  Recovery runs
 * alone, before commits.
 *
 * Never: deletes a complete item other than by qstore_remove(); deletes a
 * file it cannot parse (that goes to quarantine/); follows a symlink in the
 * spool.
 */
#include "queue/store.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "core/crc32c.h"
#include "core/log.h"

/* A commit waiting for the queue folder to be fsynced (on its stack). */
struct qstore_syncer {
    struct qstore_syncer *next;
    bool done;
    int err;
};

struct qstore {
    char *dir;
    int dirfd, tmpfd, queuefd, quarfd;
    struct qstore_io io;
    _Atomic uint32_t counter;
    _Atomic size_t count;
    /* group commit of the queue folder's fsync (sync_queue_group) */
    pthread_mutex_t sync_mu;
    pthread_cond_t sync_cv;
    struct qstore_syncer *sync_waiting;
    bool syncing;
};

/* ---- small helpers --------------------------------------------------- */

static void set_why(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_why(char *why, size_t whylen, const char *fmt, ...)
{
    if (!why || whylen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

static ssize_t sys_write(int fd, const void *p, size_t n)
{
    return write(fd, p, n);
}

static int sys_fsync(int fd)
{
    return fsync(fd);
}

static int open_subdir(int parent, const char *name)
{
    if (mkdirat(parent, name, 0700) < 0 && errno != EEXIST)
        return -1;
    return openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* name = id + "." + ext into out (ids are short: always fits). */
static void item_name(char *out, size_t size, const char *id, const char *ext)
{
    snprintf(out, size, "%s.%s", id, ext);
}

#define NAME_MAX_LEN (ENV_ID_MAX + 16)

/* ---- open / close ---------------------------------------------------- */

struct qstore *qstore_open(const char *dir, char *why, size_t whylen)
{
    struct qstore *s = calloc(1, sizeof(*s));
    if (!s)
        fatal("out of memory (queue store)");
    s->dirfd = s->tmpfd = s->queuefd = s->quarfd = -1;
    if (pthread_mutex_init(&s->sync_mu, NULL) != 0 || pthread_cond_init(&s->sync_cv, NULL) != 0)
        fatal("cannot create the queue's locks");
    s->io.write = sys_write;
    s->io.fsync = sys_fsync;
    s->dir = strdup(dir);
    if (!s->dir)
        fatal("out of memory (queue store)");
    atomic_init(&s->counter, 0);
    atomic_init(&s->count, 0);

    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        set_why(why, whylen, "%s: cannot create: %s", dir, strerror(errno));
        goto fail;
    }
    s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0) {
        set_why(why, whylen, "%s: cannot open: %s", dir, strerror(errno));
        goto fail;
    }
    static const char *const names[] = {"tmp", "queue", "quarantine"};
    int *fds[] = {&s->tmpfd, &s->queuefd, &s->quarfd};
    for (int i = 0; i < 3; i++) {
        *fds[i] = open_subdir(s->dirfd, names[i]);
        if (*fds[i] < 0) {
            set_why(why, whylen, "%s/%s: cannot create or open: %s", dir, names[i],
                    strerror(errno));
            goto fail;
        }
    }
    /* the new subdirectories must survive a crash too */
    if (fsync(s->dirfd) < 0) {
        set_why(why, whylen, "%s: fsync: %s", dir, strerror(errno));
        goto fail;
    }
    return s;
fail:;
    int e = errno;
    qstore_close(s);
    errno = e;
    return NULL;
}

void qstore_close(struct qstore *s)
{
    if (!s)
        return;
    int fds[] = {s->dirfd, s->tmpfd, s->queuefd, s->quarfd};
    for (int i = 0; i < 4; i++) {
        /* read-only directory descriptors: nothing to lose on close */
        if (fds[i] >= 0 && close(fds[i]) < 0)
            log_warn("%s: close: %s", s->dir, strerror(errno));
    }
    pthread_mutex_destroy(&s->sync_mu);
    pthread_cond_destroy(&s->sync_cv);
    free(s->dir);
    free(s);
}

const char *qstore_dir(const struct qstore *s)
{
    return s->dir;
}

void qstore_set_io(struct qstore *s, const struct qstore_io *io)
{
    s->io.write = io && io->write ? io->write : sys_write;
    s->io.fsync = io && io->fsync ? io->fsync : sys_fsync;
}

size_t qstore_count(const struct qstore *s)
{
    return atomic_load(&s->count);
}

void qstore_count_adjust(struct qstore *s, int delta)
{
    if (delta > 0)
        atomic_fetch_add(&s->count, (size_t)delta);
    else if (delta < 0 && atomic_load(&s->count) >= (size_t)-delta)
        atomic_fetch_sub(&s->count, (size_t)-delta);
}

/* ---- ids --------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void qstore_new_id(struct qstore *s, char out[ENV_ID_MAX + 1])
{
    uint32_t n = atomic_fetch_add(&s->counter, 1);
    uint64_t r;
    if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        /* no kernel randomness: still unique per process (pid, clock, counter) */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_nsec ^ n;
        r = splitmix64(&x);
    }
    snprintf(out, ENV_ID_MAX + 1, "%010lld-%08x-%016llx", (long long)time(NULL), (unsigned)n,
             (unsigned long long)r);
}

/* ---- durable file writing ---------------------------------------------- */

static int write_all(struct qstore *s, int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = s->io.write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Write tmp/name with data, fsync and close it.  On failure tmp/name is gone. */
/* Write data into dirfd/name (a new file when excl) and fsync it; on failure the
 * file is removed.  sub names the folder in messages. */
static int write_at(struct qstore *s, int dirfd, const char *sub, const char *name, int excl,
                    const char *data, size_t len, char *why, size_t whylen)
{
    int flags = O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | (excl ? O_EXCL : O_TRUNC);
    int fd = openat(dirfd, name, flags, 0600);
    if (fd < 0) {
        set_why(why, whylen, "%s/%s/%s: create: %s", s->dir, sub, name, strerror(errno));
        return -1;
    }
    const char *step = NULL;
    if (write_all(s, fd, data, len) < 0)
        step = "write";
    else if (s->io.fsync(fd) < 0)
        step = "fsync";
    int e = errno;
    if (close(fd) < 0 && !step) {
        step = "close";
        e = errno;
    }
    if (!step)
        return 0;
    set_why(why, whylen, "%s/%s/%s: %s: %s", s->dir, sub, name, step, strerror(e));
    if (unlinkat(dirfd, name, 0) < 0)
        log_warn("%s/%s/%s: unlink: %s", s->dir, sub, name, strerror(errno));
    errno = e;
    return -1;
}

static int write_tmp(struct qstore *s, const char *name, int excl, const char *data, size_t len,
                     char *why, size_t whylen)
{
    return write_at(s, s->tmpfd, "tmp", name, excl, data, len, why, whylen);
}

/* Move tmp/name to queue/name.  On failure tmp/name is gone. */
static int publish(struct qstore *s, const char *name, char *why, size_t whylen)
{
    if (renameat(s->tmpfd, name, s->queuefd, name) == 0)
        return 0;
    int e = errno;
    set_why(why, whylen, "%s/queue/%s: rename: %s", s->dir, name, strerror(e));
    if (unlinkat(s->tmpfd, name, 0) < 0)
        log_warn("%s/tmp/%s: unlink: %s", s->dir, name, strerror(errno));
    errno = e;
    return -1;
}

static void unlink_quiet(struct qstore *s, int dirfd, const char *sub, const char *name)
{
    if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
        log_warn("%s/%s/%s: unlink: %s", s->dir, sub, name, strerror(errno));
}

static int sync_dir(struct qstore *s, int fd, const char *sub, char *why, size_t whylen)
{
    if (s->io.fsync(fd) == 0)
        return 0;
    set_why(why, whylen, "%s/%s: fsync: %s", s->dir, sub, strerror(errno));
    return -1;
}

/*
 * Group commit of the queue folder: concurrent commits share one fsync of
 * it.  A commit's new names are durable once an fsync of the folder has
 * STARTED after its rename.  Each commit queues itself (after its rename)
 * and waits; whoever finds no fsync running takes every commit queued so
 * far, runs one fsync for all of them, hands each its result and wakes the
 * others.  A commit queued while an fsync runs waits for the next one.  A
 * failed fsync fails exactly the commits of its group.
 */
static int sync_queue_group(struct qstore *s, char *why, size_t whylen)
{
    struct qstore_syncer me = {0};
    pthread_mutex_lock(&s->sync_mu);
    me.next = s->sync_waiting;
    s->sync_waiting = &me;
    while (!me.done) {
        if (s->syncing) {
            pthread_cond_wait(&s->sync_cv, &s->sync_mu);
            continue;
        }
        struct qstore_syncer *group = s->sync_waiting;
        s->sync_waiting = NULL;
        s->syncing = true;
        pthread_mutex_unlock(&s->sync_mu);
        int err = s->io.fsync(s->queuefd) < 0 ? errno : 0;
        pthread_mutex_lock(&s->sync_mu);
        for (struct qstore_syncer *w = group, *next; w; w = next) {
            next = w->next; /* w may be gone once done is set */
            w->err = err;
            w->done = true;
        }
        s->syncing = false;
        pthread_cond_broadcast(&s->sync_cv);
    }
    pthread_mutex_unlock(&s->sync_mu);
    if (me.err == 0)
        return 0;
    set_why(why, whylen, "%s/queue: fsync: %s", s->dir, strerror(me.err));
    errno = me.err;
    return -1;
}

int qstore_commit(struct qstore *s, struct envelope *env, const char *msg, size_t len, char *why,
                  size_t whylen)
{
    char msgname[NAME_MAX_LEN], envname[NAME_MAX_LEN];
    struct buf eb = {0};
    int e;

    qstore_new_id(s, env->id);
    env->msg_sum = true;
    env->msg_size = len;
    env->msg_crc = crc32c_update(0, msg, len);
    if (envelope_format(env, &eb) < 0) {
        set_why(why, whylen, "envelope cannot be written (no recipient or value too long)");
        env->id[0] = '\0';
        errno = EINVAL;
        return -1;
    }
    item_name(msgname, sizeof(msgname), env->id, "msg");
    item_name(envname, sizeof(envname), env->id, "env");

    /*
     * The .msg straight into queue/ (alone it is inert: an orphan is removed
     * at recovery), written and fsynced; then the .env written and fsynced in
     * tmp/ and renamed into queue/, so that an .env in queue/ is always whole
     * (a crash before the rename leaves junk in tmp/, removed at recovery);
     * then the folder fsynced for both names, one fsync shared by the commits
     * running at the same time (sync_queue_group) -- and only then may the
     * caller answer 250.
     */
    if (write_at(s, s->queuefd, "queue", msgname, 1, msg, len, why, whylen) < 0)
        goto fail;
    if (write_tmp(s, envname, 0, eb.p, eb.len, why, whylen) < 0 ||
        publish(s, envname, why, whylen) < 0)
        goto fail_msg;
    if (sync_queue_group(s, why, whylen) < 0)
        goto fail_env;
    buf_free(&eb);
    atomic_fetch_add(&s->count, 1);
    return 0;

fail_env:
    e = errno;
    unlink_quiet(s, s->queuefd, "queue", envname);
    errno = e;
fail_msg:
    e = errno;
    unlink_quiet(s, s->queuefd, "queue", msgname);
    errno = e;
fail:
    e = errno;
    buf_free(&eb);
    env->id[0] = '\0';
    errno = e;
    return -1;
}

int qstore_update(struct qstore *s, const struct envelope *env, char *why, size_t whylen)
{
    char msgname[NAME_MAX_LEN], envname[NAME_MAX_LEN];
    struct buf eb = {0};
    struct stat st;
    int rc = -1, e = 0;

    if (!envelope_id_valid(env->id) || envelope_format(env, &eb) < 0) {
        set_why(why, whylen, "envelope cannot be written (bad id, no recipient or too long)");
        errno = EINVAL;
        return -1;
    }
    item_name(msgname, sizeof(msgname), env->id, "msg");
    item_name(envname, sizeof(envname), env->id, "env");
    /* never bring back the envelope of an item that was removed */
    if (fstatat(s->queuefd, envname, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
        fstatat(s->queuefd, msgname, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        e = errno;
        set_why(why, whylen, "%s/queue/%s: %s", s->dir, envname, strerror(e));
        goto out;
    }
    if (write_tmp(s, envname, 0, eb.p, eb.len, why, whylen) < 0 ||
        publish(s, envname, why, whylen) < 0 || sync_queue_group(s, why, whylen) < 0) {
        e = errno;
        goto out;
    }
    rc = 0;
out:
    buf_free(&eb);
    errno = e;
    return rc;
}

int qstore_remove(struct qstore *s, const char *id, char *why, size_t whylen)
{
    char msgname[NAME_MAX_LEN], envname[NAME_MAX_LEN];
    if (!envelope_id_valid(id)) {
        set_why(why, whylen, "not a queue id");
        errno = EINVAL;
        return -1;
    }
    item_name(msgname, sizeof(msgname), id, "msg");
    item_name(envname, sizeof(envname), id, "env");
    if (unlinkat(s->queuefd, envname, 0) == 0) {
        atomic_fetch_sub(&s->count, 1);
    } else if (errno != ENOENT) {
        set_why(why, whylen, "%s/queue/%s: unlink: %s", s->dir, envname, strerror(errno));
        return -1;
    }
    if (unlinkat(s->queuefd, msgname, 0) < 0 && errno != ENOENT) {
        /* the item is gone already; the .msg alone is removed at recovery */
        set_why(why, whylen, "%s/queue/%s: unlink: %s", s->dir, msgname, strerror(errno));
        return -1;
    }
    /* No directory fsync: if a crash undoes the unlink, recovery delivers the
     * item again -- a duplicate, never a loss (as Postfix, which does not sync
     * deletions either).  This saves a journal commit per delivered message. */
    return 0;
}

/* ---- reading ----------------------------------------------------------- */

/* Read a regular file dirfd/name (no symlink) of at most max octets into out. */
static int read_file(int dirfd, const char *name, size_t max, struct buf *out)
{
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    int e = 0;
    if (fstat(fd, &st) < 0) {
        e = errno;
    } else if (!S_ISREG(st.st_mode)) {
        e = EINVAL;
    } else if ((uint64_t)st.st_size > max) {
        e = EFBIG;
    } else {
        size_t start = out->len;
        buf_reserve(out, out->len + (size_t)st.st_size + 1);
        for (;;) {
            if (out->len - start > max) {
                e = EFBIG;
                break;
            }
            if (out->cap - out->len < 4096)
                buf_reserve(out, out->cap < 4096 ? 8192 : out->cap * 2);
            ssize_t r = read(fd, out->p + out->len, out->cap - out->len);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0) {
                e = errno;
                break;
            }
            if (r == 0)
                break;
            out->len += (size_t)r;
        }
        if (e)
            out->len = start;
    }
    if (close(fd) < 0) /* read-only: nothing is lost, but say so */
        log_warn("close after reading %s: %s", name, strerror(errno));
    errno = e;
    return e ? -1 : 0;
}

int qstore_read_msg(struct qstore *s, const char *id, struct buf *out, char *why, size_t whylen)
{
    char name[NAME_MAX_LEN];
    if (!envelope_id_valid(id)) {
        set_why(why, whylen, "not a queue id");
        errno = EINVAL;
        return -1;
    }
    item_name(name, sizeof(name), id, "msg");
    if (read_file(s->queuefd, name, QSTORE_MSG_MAX, out) < 0) {
        int e = errno;
        set_why(why, whylen, "%s/queue/%s: %s", s->dir, name, strerror(e));
        errno = e;
        return -1;
    }
    return 0;
}

int qstore_open_msg(struct qstore *s, const char *id)
{
    char name[NAME_MAX_LEN];
    if (!envelope_id_valid(id)) {
        errno = EINVAL;
        return -1;
    }
    item_name(name, sizeof(name), id, "msg");
    return openat(s->queuefd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
}

/* Read and parse name (an .env in queue/); errno on I/O failure. */
static int read_env_file(struct qstore *s, const char *name, struct envelope *env, char *why,
                         size_t whylen)
{
    struct buf b = {0};
    envelope_init(env);
    if (read_file(s->queuefd, name, QSTORE_ENV_MAX, &b) < 0) {
        int e = errno;
        set_why(why, whylen, "%s/queue/%s: %s", s->dir, name, strerror(e));
        buf_free(&b);
        errno = e;
        return -1;
    }
    char pwhy[256];
    envelope_free(env);
    int rc = envelope_parse(b.p ? b.p : "", b.len, env, pwhy, sizeof(pwhy));
    if (rc != ENV_OK)
        set_why(why, whylen, "%s/queue/%s: %s", s->dir, name, pwhy);
    buf_free(&b);
    return rc;
}

int qstore_read_env(struct qstore *s, const char *id, struct envelope *env, char *why,
                    size_t whylen)
{
    char name[NAME_MAX_LEN];
    if (!envelope_id_valid(id)) {
        envelope_init(env);
        set_why(why, whylen, "not a queue id");
        errno = EINVAL;
        return -1;
    }
    item_name(name, sizeof(name), id, "env");
    return read_env_file(s, name, env, why, whylen);
}

/* ---- integrity of the message file -------------------------------------- */

int qstore_check_msg(const struct envelope *env, const char *msg, size_t len, char *why,
                     size_t whylen)
{
    if (!env->msg_sum) /* version 1: nothing to compare with */
        return 0;
    if (len != env->msg_size) {
        set_why(why, whylen, "message file damaged: %zu octets, the envelope says %llu", len,
                (unsigned long long)env->msg_size);
        return -1;
    }
    uint32_t crc = crc32c_update(0, msg, len);
    if (crc != env->msg_crc) {
        set_why(why, whylen, "message file damaged: CRC-32C %08x, the envelope says %08x",
                (unsigned)crc, (unsigned)env->msg_crc);
        return -1;
    }
    return 0;
}

/* Compare queue/name with env's size and checksum, reading it in chunks.
 * 0 if it matches (or env has no checksum), QSTORE_DAMAGED with why if not,
 * -1 with errno on an I/O error. */
static int verify_msg_file(struct qstore *s, const char *name, const struct envelope *env,
                           char *why, size_t whylen)
{
    if (!env->msg_sum)
        return 0;
    int fd = openat(s->queuefd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        set_why(why, whylen, "%s/queue/%s: %s", s->dir, name, strerror(e));
        errno = e;
        return -1;
    }
    struct stat st;
    int rc = 0, e = 0;
    if (fstat(fd, &st) < 0) {
        e = errno;
        rc = -1;
    } else if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != env->msg_size) {
        set_why(why, whylen, "message file damaged: %llu octets, the envelope says %llu",
                (unsigned long long)st.st_size, (unsigned long long)env->msg_size);
        rc = QSTORE_DAMAGED;
    } else {
        static _Thread_local char chunk[65536];
        uint32_t crc = 0;
        uint64_t total = 0;
        for (;;) {
            ssize_t r = read(fd, chunk, sizeof(chunk));
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0) {
                e = errno;
                rc = -1;
                break;
            }
            if (r == 0)
                break;
            crc = crc32c_update(crc, chunk, (size_t)r);
            total += (uint64_t)r;
        }
        if (rc == 0 && (total != env->msg_size || crc != env->msg_crc)) {
            set_why(why, whylen,
                    "message file damaged: %llu octets with CRC-32C %08x, the envelope says %llu "
                    "with %08x",
                    (unsigned long long)total, (unsigned)crc, (unsigned long long)env->msg_size,
                    (unsigned)env->msg_crc);
            rc = QSTORE_DAMAGED;
        }
    }
    if (rc < 0)
        set_why(why, whylen, "%s/queue/%s: %s", s->dir, name, strerror(e));
    if (close(fd) < 0)
        log_warn("close after reading %s: %s", name, strerror(errno));
    errno = e;
    return rc;
}

int qstore_read_item(struct qstore *s, const char *id, struct envelope *env, struct buf *msg,
                     char *why, size_t whylen)
{
    int rc = qstore_read_env(s, id, env, why, whylen);
    if (rc != ENV_OK)
        return rc;
    size_t start = msg->len;
    if (qstore_read_msg(s, id, msg, why, whylen) < 0)
        return -1;
    char w[200];
    if (qstore_check_msg(env, msg->p + start, msg->len - start, w, sizeof(w)) < 0) {
        set_why(why, whylen, "%s/queue/%s.msg: %s", s->dir, id, w);
        msg->len = start;
        return QSTORE_DAMAGED;
    }
    return 0;
}

/* ---- quarantine ---------------------------------------------------------- */

/* Move queue/name to quarantine/name (or name.N if taken), never overwriting. */
static int quarantine_file(struct qstore *s, const char *name, char *dest, size_t destlen)
{
    for (int i = 0; i < 1000; i++) {
        if (i == 0)
            snprintf(dest, destlen, "%s", name);
        else
            snprintf(dest, destlen, "%s.%d", name, i);
        if (renameat2(s->queuefd, name, s->quarfd, dest, RENAME_NOREPLACE) == 0)
            return 0;
        if (errno == EINVAL) {
            /* a file system without RENAME_NOREPLACE: link + unlink never overwrites */
            if (linkat(s->queuefd, name, s->quarfd, dest, 0) == 0)
                return unlinkat(s->queuefd, name, 0);
        }
        if (errno != EEXIST)
            return -1;
    }
    errno = EEXIST;
    return -1;
}

/* Write quarantine/ID.why (best effort: the log has the reason too). */
static void quarantine_reason(struct qstore *s, const char *id, const char *reason)
{
    char name[NAME_MAX_LEN + 8], text[1200];
    snprintf(name, sizeof(name), "%.*s.why", ENV_ID_MAX + 8, id);
    int n = snprintf(text, sizeof(text), "%s\n", reason);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(text))
        n = (int)sizeof(text) - 1;
    int fd = openat(s->quarfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_warn("%s/quarantine/%s: create: %s", s->dir, name, strerror(errno));
        return;
    }
    if (write_all(s, fd, text, (size_t)n) < 0)
        log_warn("%s/quarantine/%s: write: %s", s->dir, name, strerror(errno));
    if (close(fd) < 0)
        log_warn("%s/quarantine/%s: close: %s", s->dir, name, strerror(errno));
}

/* Quarantine base.env and base.msg, or with single the one file named base.
 * Returns how many files moved, or -1 on error (logged). */
static int quarantine_item(struct qstore *s, const char *base, bool single, const char *reason)
{
    static const char *const exts[] = {"env", "msg"};
    char name[NAME_MAX_LEN + 256], dest[NAME_MAX_LEN + 272];
    int moved = 0, rc = 0;
    for (int i = 0; i < (single ? 1 : 2); i++) {
        if (single)
            snprintf(name, sizeof(name), "%s", base);
        else
            snprintf(name, sizeof(name), "%s.%s", base, exts[i]);
        if (quarantine_file(s, name, dest, sizeof(dest)) == 0) {
            moved++;
            log_warn("%s/queue/%s: %s; moved to %s/quarantine/%s", s->dir, name, reason, s->dir,
                     dest);
        } else if (errno != ENOENT) {
            log_error("%s/queue/%s: cannot move to quarantine: %s", s->dir, name, strerror(errno));
            rc = -1;
        }
    }
    if (moved > 0 && !single)
        quarantine_reason(s, base, reason);
    if (s->io.fsync(s->quarfd) < 0 || s->io.fsync(s->queuefd) < 0) {
        log_error("%s: fsync after quarantine: %s", s->dir, strerror(errno));
        rc = -1;
    }
    return rc < 0 ? -1 : moved;
}

int qstore_quarantine(struct qstore *s, const char *id, const char *reason)
{
    struct stat st;
    char envname[NAME_MAX_LEN];
    if (!envelope_id_valid(id)) {
        errno = EINVAL;
        return -1;
    }
    item_name(envname, sizeof(envname), id, "env");
    bool had_env = fstatat(s->queuefd, envname, &st, AT_SYMLINK_NOFOLLOW) == 0;
    int rc = quarantine_item(s, id, false, reason);
    if (had_env && fstatat(s->queuefd, envname, &st, AT_SYMLINK_NOFOLLOW) < 0)
        atomic_fetch_sub(&s->count, 1);
    return rc < 0 ? -1 : 0;
}

/* ---- recovery ------------------------------------------------------------ */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in queue/ (not "." or ".."), sorted.  NULL with errno on failure. */
static char **list_dir(struct qstore *s, int fd, size_t *n)
{
    int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return NULL;
    DIR *d = fdopendir(dfd);
    if (!d) {
        int e = errno;
        close(dfd);
        errno = e;
        return NULL;
    }
    char **names = NULL;
    size_t cap = 0;
    *n = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = realloc(names, cap * sizeof(*nn));
            if (!nn)
                fatal("out of memory (listing %s)", s->dir);
            names = nn;
        }
        names[*n] = strdup(de->d_name);
        if (!names[*n])
            fatal("out of memory (listing %s)", s->dir);
        (*n)++;
        errno = 0;
    }
    int e = errno;
    if (closedir(d) < 0)
        log_warn("%s: closedir: %s", s->dir, strerror(errno));
    if (e) {
        for (size_t i = 0; i < *n; i++)
            free(names[i]);
        free(names);
        errno = e;
        return NULL;
    }
    if (*n)
        qsort(names, *n, sizeof(*names), cmp_str);
    else if (!names)
        names = calloc(1, sizeof(*names)); /* an empty, non-NULL list */
    if (!names)
        fatal("out of memory (listing %s)", s->dir);
    return names;
}

static void free_list(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Split "ID.ext" into id (valid) and ext; false if name is no item file. */
static bool split_name(const char *name, char id[ENV_ID_MAX + 1], const char **ext)
{
    const char *dot = strrchr(name, '.');
    if (!dot || (size_t)(dot - name) > ENV_ID_MAX)
        return false;
    memcpy(id, name, (size_t)(dot - name));
    id[dot - name] = '\0';
    *ext = dot + 1;
    return envelope_id_valid(id) && (strcmp(*ext, "env") == 0 || strcmp(*ext, "msg") == 0);
}

static bool exists(int dirfd, const char *name)
{
    struct stat st;
    return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

static void clean_tmp(struct qstore *s, struct qstore_stats *st)
{
    size_t n;
    char **names = list_dir(s, s->tmpfd, &n);
    if (!names) {
        log_error("%s/tmp: cannot list: %s", s->dir, strerror(errno));
        st->errors++;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (unlinkat(s->tmpfd, names[i], 0) == 0)
            st->tmp_removed++;
        else if (errno != ENOENT) {
            log_warn("%s/tmp/%s: unlink: %s", s->dir, names[i], strerror(errno));
            st->errors++;
        }
    }
    free_list(names, n);
}

/* Recovery found the item unusable: into quarantine/ (counted), or an error if it
 * could not be moved.  loud: also an error line (damaged after its 250). */
static void recover_quarantine(struct qstore *s, const char *id, const char *reason, bool loud,
                               struct qstore_stats *st)
{
    if (loud)
        log_error("id=%s: %s", id, reason);
    int moved = quarantine_item(s, id, false, reason);
    if (moved > 0)
        st->quarantined += (size_t)moved;
    else
        st->errors++;
}

/* One .env of the queue.  Returns true if the item was handed on. */
static bool recover_env(struct qstore *s, const char *id, bool readonly, qstore_item_fn fn,
                        void *ctx, struct qstore_stats *st)
{
    char envname[NAME_MAX_LEN], msgname[NAME_MAX_LEN], why[512], reason[600];
    struct envelope env;
    item_name(envname, sizeof(envname), id, "env");
    item_name(msgname, sizeof(msgname), id, "msg");

    int rc = read_env_file(s, envname, &env, why, sizeof(why));
    if (rc < 0) {
        int e = errno;
        envelope_free(&env);
        if (e == ENOENT || readonly)
            return false;
        if (e == ELOOP || e == EINVAL || e == EFBIG) { /* symlink, not a file, huge */
            int moved = quarantine_item(s, id, false, why);
            if (moved > 0)
                st->quarantined += (size_t)moved;
            return false;
        }
        log_error("%s (left in place)", why);
        st->errors++;
        return false;
    }
    if (rc == ENV_OK && strcmp(env.id, id) != 0) {
        snprintf(why, sizeof(why), "%s/queue/%s: id %s does not match the file name", s->dir,
                 envname, env.id);
        rc = ENV_CORRUPT;
    } else if (rc == ENV_OK && !exists(s->queuefd, msgname)) {
        snprintf(why, sizeof(why), "%s/queue/%s: its message file %s is missing", s->dir, envname,
                 msgname);
        rc = ENV_CORRUPT;
    } else if (rc == ENV_OK && !readonly) {
        char mwhy[400];
        int v = verify_msg_file(s, msgname, &env, mwhy, sizeof(mwhy));
        if (v < 0) {
            log_error("%s (left in place)", mwhy);
            st->errors++;
            envelope_free(&env);
            return false;
        }
        if (v == QSTORE_DAMAGED) {
            snprintf(why, sizeof(why), "%s/queue/%s: %s", s->dir, msgname, mwhy);
            rc = QSTORE_DAMAGED;
        }
    }
    if (readonly) {
        if (rc == ENV_OK)
            fn(ctx, &env);
        envelope_free(&env);
        return rc == ENV_OK;
    }
    switch (rc) {
    case ENV_OK:
        fn(ctx, &env);
        envelope_free(&env);
        st->recovered++;
        return true;
    case ENV_INCOMPLETE:
        if (env.version == 1) {
            /* written in place by an older tern and cut short while being written:
             * the client never had its 250 */
            log_info("%s; incomplete item %s discarded", why, id);
            unlink_quiet(s, s->queuefd, "queue", envname);
            unlink_quiet(s, s->queuefd, "queue", msgname);
            st->incomplete++;
            break;
        }
        /* an .env only reaches queue/ whole (renamed from tmp/): this one was
         * damaged after it was committed, and the client may have had its 250 */
        snprintf(reason, sizeof(reason), "envelope damaged after it was committed: %s", why);
        recover_quarantine(s, id, reason, true, st);
        break;
    case QSTORE_DAMAGED:
        recover_quarantine(s, id, why, true, st);
        break;
    default:
        snprintf(reason, sizeof(reason), "unusable envelope: %s", why);
        recover_quarantine(s, id, reason, false, st);
        break;
    }
    envelope_free(&env);
    return false;
}

static int scan(struct qstore *s, bool readonly, qstore_item_fn fn, void *ctx,
                struct qstore_stats *st, char *why, size_t whylen)
{
    size_t n;
    char **names = list_dir(s, s->queuefd, &n);
    if (!names) {
        set_why(why, whylen, "%s/queue: cannot list: %s", s->dir, strerror(errno));
        return -1;
    }
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        char id[ENV_ID_MAX + 1], envname[NAME_MAX_LEN];
        const char *ext;
        if (!split_name(names[i], id, &ext)) {
            if (!readonly) {
                int moved = quarantine_item(s, names[i], true, "not a queue file");
                if (moved > 0)
                    st->quarantined++;
                else if (moved < 0)
                    st->errors++;
            }
            continue;
        }
        if (strcmp(ext, "env") == 0) {
            kept += recover_env(s, id, readonly, fn, ctx, st);
            continue;
        }
        /* a .msg: an orphan unless its .env exists (handled above, sorted first) */
        item_name(envname, sizeof(envname), id, "env");
        if (readonly || exists(s->queuefd, envname))
            continue;
        if (unlinkat(s->queuefd, names[i], 0) == 0) {
            log_info("%s/queue/%s: message without envelope discarded", s->dir, names[i]);
            st->orphans++;
        } else if (errno != ENOENT) {
            log_warn("%s/queue/%s: unlink: %s", s->dir, names[i], strerror(errno));
            st->errors++;
        }
    }
    free_list(names, n);
    if (!readonly) {
        atomic_store(&s->count, kept);
        if (sync_dir(s, s->queuefd, "queue", why, whylen) < 0 ||
            sync_dir(s, s->tmpfd, "tmp", why, whylen) < 0)
            return -1;
    }
    return 0;
}

int qstore_recover(struct qstore *s, qstore_item_fn fn, void *ctx, struct qstore_stats *stats,
                   char *why, size_t whylen)
{
    struct qstore_stats local;
    struct qstore_stats *st = stats ? stats : &local;
    memset(st, 0, sizeof(*st));
    clean_tmp(s, st);
    int rc = scan(s, false, fn, ctx, st, why, whylen);
    if (rc == 0)
        log_info("%s: recovered %zu items (%zu incomplete and %zu orphan files removed, %zu "
                 "quarantined, %zu temporary files removed, %zu errors)",
                 s->dir, st->recovered, st->incomplete, st->orphans, st->quarantined,
                 st->tmp_removed, st->errors);
    return rc;
}

int qstore_list(struct qstore *s, qstore_item_fn fn, void *ctx, char *why, size_t whylen)
{
    struct qstore_stats st;
    memset(&st, 0, sizeof(st));
    return scan(s, true, fn, ctx, &st, why, whylen);
}

/* ---- room ---------------------------------------------------------------- */

int qstore_check_room(struct qstore *s, const struct qstore_limits *lim, uint64_t size, char *why,
                      size_t whylen)
{
    if (lim->max_items && qstore_count(s) >= lim->max_items) {
        set_why(why, whylen, "queue full (%zu items)", qstore_count(s));
        errno = ENOSPC;
        return -1;
    }
    if (!lim->min_free_bytes && !lim->min_free_inodes)
        return 0;
    struct statvfs vfs;
    if (fstatvfs(s->queuefd, &vfs) < 0) {
        int e = errno;
        set_why(why, whylen, "%s: statvfs: %s", s->dir, strerror(e));
        errno = e;
        return -1;
    }
    uint64_t avail = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
    uint64_t need = lim->min_free_bytes + size;
    if (lim->min_free_bytes && (avail < need || need < size)) {
        set_why(why, whylen, "%s: disk nearly full (%llu KiB free)", s->dir,
                (unsigned long long)(avail / 1024));
        errno = ENOSPC;
        return -1;
    }
    /* file systems without inode accounting report f_files == 0 */
    if (lim->min_free_inodes && vfs.f_files > 0 && (uint64_t)vfs.f_favail < lim->min_free_inodes) {
        set_why(why, whylen, "%s: out of inodes (%llu free)", s->dir,
                (unsigned long long)vfs.f_favail);
        errno = ENOSPC;
        return -1;
    }
    return 0;
}
