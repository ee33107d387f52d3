/*
 * store.c - the spool on disk (see store.h for the layout and the commit
 * protocol).
 *
 * Every file is opened relative to a directory descriptor taken at open time
 * (openat/renameat/unlinkat), with O_NOFOLLOW, mode 0600.  An item is one
 * file: its envelope (with the message's size and CRC-32C) followed by the
 * message, written to tmp/ in one writev, fsynced and renamed into queue/.
 * A file in queue/ was therefore whole when it got there, and one that is
 * not whole now was damaged (quarantined, never discarded).  A rewritten
 * item also goes through tmp/ and a rename.  The queue directory is fsynced
 * before success is reported, one fsync shared by the commits and updates
 * that run at the same time (group commit).  Per accepted message that is
 * one file created, one fsync of it and a share of one directory fsync;
 * removal is one unlink.  Every return value is checked and the first
 * failing one decides errno.  Cleanup after a failure never overwrites that
 * errno.
 *
 * Items of an older tern (ID.env + ID.msg) are converted at recovery.
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
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/crc32c.h"
#include "core/log.h"
#include "core/syncgroup.h"

/* A removed item's file in spare/: reusable once the removal is durable,
 * i.e. once an fsync of queue/ that started after it has succeeded. */
struct qstore_spare {
    uint32_t num; /* spare/NUM */
    uint64_t gen; /* syncgroup_started() when it was moved there */
};

struct qstore {
    char *dir;
    int dirfd, tmpfd, queuefd, quarfd, sparefd;
    struct qstore_io io;
    _Atomic uint32_t counter;
    uint64_t seed; /* the random part of ids (qstore_new_id) */
    _Atomic size_t count;
    struct syncgroup qsync; /* group commit of the queue folder's fsync */
    /* spare files (qstore_set_spares): spare/N, oldest first, for the next commits */
    pthread_mutex_t spare_mu;
    struct qstore_spare *spares; /* a ring of spare_max */
    size_t spare_head, nspare;   /* the oldest; how many */
    size_t spare_out;            /* being moved into spare/ right now */
    size_t spare_max;            /* 0: removal unlinks */
    uint32_t spare_next;         /* the next N */
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

/* name = id + "." + ext (an older tern's item files) into out (ids are short: always fits). */
static void item_name(char *out, size_t size, const char *id, const char *ext)
{
    snprintf(out, size, "%s.%s", id, ext);
}

#define NAME_MAX_LEN (ENV_ID_MAX + 16)

static uint64_t id_seed(void);

/* ---- open / close ---------------------------------------------------- */

struct qstore *qstore_open(const char *dir, char *why, size_t whylen)
{
    struct qstore *s = calloc(1, sizeof(*s));
    if (!s)
        fatal("out of memory (queue store)");
    s->dirfd = s->tmpfd = s->queuefd = s->quarfd = s->sparefd = -1;
    syncgroup_init(&s->qsync);
    if (pthread_mutex_init(&s->spare_mu, NULL) != 0)
        fatal("cannot create the queue's locks");
    s->io.write = sys_write;
    s->io.fsync = sys_fsync;
    s->dir = strdup(dir);
    if (!s->dir)
        fatal("out of memory (queue store)");
    atomic_init(&s->counter, 0);
    s->seed = id_seed();
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
    static const char *const names[] = {"tmp", "queue", "quarantine", "spare"};
    int *fds[] = {&s->tmpfd, &s->queuefd, &s->quarfd, &s->sparefd};
    for (int i = 0; i < 4; i++) {
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
    int fds[] = {s->dirfd, s->tmpfd, s->queuefd, s->quarfd, s->sparefd};
    for (int i = 0; i < 5; i++) {
        /* read-only directory descriptors: nothing to lose on close */
        if (fds[i] >= 0 && close(fds[i]) < 0)
            log_warn("%s: close: %s", s->dir, strerror(errno));
    }
    syncgroup_destroy(&s->qsync);
    pthread_mutex_destroy(&s->spare_mu);
    free(s->spares);
    free(s->dir);
    free(s);
}

const char *qstore_dir(const struct qstore *s)
{
    return s->dir;
}

void qstore_set_spares(struct qstore *s, size_t max)
{
    pthread_mutex_lock(&s->spare_mu);
    if (s->nspare == 0 && s->spare_out == 0) { /* before the store is busy, as documented */
        free(s->spares);
        s->spares = max ? calloc(max, sizeof(*s->spares)) : NULL;
        if (max && !s->spares)
            fatal("out of memory (queue spares)");
        s->spare_max = max;
        s->spare_head = 0;
    }
    pthread_mutex_unlock(&s->spare_mu);
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

/* The store's random seed: from the kernel once per store, not once per id
 * (a system call per message), so that ids of different processes (the
 * server, each `tern sendmail`) differ. */
static uint64_t id_seed(void)
{
    uint64_t r;
    if (getrandom(&r, sizeof(r), 0) == (ssize_t)sizeof(r))
        return r;
    /* no kernel randomness: still unique per process (pid, clock) */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec;
    return splitmix64(&x);
}

void qstore_new_id(struct qstore *s, char out[ENV_ID_MAX + 1])
{
    uint32_t n = atomic_fetch_add(&s->counter, 1);
    uint64_t x = s->seed ^ ((uint64_t)n << 20); /* one seed, a distinct input per id */
    uint64_t r = splitmix64(&x);
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

/* Write a[0..alen) then b[0..blen): one writev() with the real system call
 * (an item is its envelope followed by its message, and the message is not
 * copied to join them), two write_all() through a test's io.write. */
static int write_two(struct qstore *s, int fd, const char *a, size_t alen, const char *b,
                     size_t blen)
{
    if (s->io.write != sys_write)
        return write_all(s, fd, a, alen) < 0 ? -1 : write_all(s, fd, b, blen);
    while (alen + blen > 0) {
        struct iovec iov[2] = {{(void *)a, alen}, {(void *)b, blen}};
        int first = alen == 0 ? 1 : 0;
        ssize_t w = writev(fd, iov + first, 2 - first);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        size_t k = (size_t)w;
        size_t ka = k < alen ? k : alen;
        a += ka;
        alen -= ka;
        b += k - ka;
        blen -= k - ka;
    }
    return 0;
}

/* Fill the new item file fd (dirfd/name, sub names the folder in messages)
 * with a[0..alen) b[0..blen), cut it there (a reused file may be longer),
 * fsync and close it.  On failure the file is gone. */
static int fill(struct qstore *s, int fd, int dirfd, const char *sub, const char *name,
                const char *a, size_t alen, const char *b, size_t blen, char *why, size_t whylen)
{
    const char *step = NULL;
    if (write_two(s, fd, a, alen, b, blen) < 0)
        step = "write";
    else if (dirfd == s->sparefd && ftruncate(fd, (off_t)(alen + blen)) < 0)
        step = "truncate";
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

/* Create tmp/name (replacing a leftover) with a[0..alen) b[0..blen), fsync
 * and close it.  On failure tmp/name is gone. */
static int write_tmp(struct qstore *s, const char *name, const char *a, size_t alen, const char *b,
                     size_t blen, char *why, size_t whylen)
{
    int fd = openat(s->tmpfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        set_why(why, whylen, "%s/tmp/%s: create: %s", s->dir, name, strerror(errno));
        return -1;
    }
    return fill(s, fd, s->tmpfd, "tmp", name, a, alen, b, blen, why, whylen);
}

/* ---- spare files ---------------------------------------------------------
 *
 * Creating and deleting a file per message is what a local delivery spends
 * most of its CPU on (on ext4 without a journal, the inode allocator even
 * steps over every inode freed in the last minutes, one by one).  So with
 * qstore_set_spares() a removed item's file is moved to spare/ instead of
 * being unlinked, and a later commit writes over it: no inode allocated or
 * freed, the blocks mostly reused.  A spare is reused only once its removal
 * is durable (an fsync of queue/ that started after the move has
 * succeeded): otherwise a crash could bring back the removed item's name
 * pointing at the new content.  spare/ is emptied at recovery; a file there
 * is never part of an item.
 */

static void spare_name(char out[NAME_MAX_LEN], uint32_t num)
{
    snprintf(out, NAME_MAX_LEN, "%u", (unsigned)num);
}

/* Take the oldest reusable spare (its name into out); false if there is none. */
static bool spare_take(struct qstore *s, char out[NAME_MAX_LEN])
{
    bool ok = false;
    pthread_mutex_lock(&s->spare_mu);
    if (s->nspare > 0 && s->spares[s->spare_head].gen < syncgroup_succeeded(&s->qsync)) {
        spare_name(out, s->spares[s->spare_head].num);
        s->spare_head = (s->spare_head + 1) % s->spare_max;
        s->nspare--;
        ok = true;
    }
    pthread_mutex_unlock(&s->spare_mu);
    return ok;
}

/* Room for one more spare: its number in *num; false if spare/ is full. */
static bool spare_reserve(struct qstore *s, uint32_t *num)
{
    bool ok = false;
    pthread_mutex_lock(&s->spare_mu);
    if (s->nspare + s->spare_out < s->spare_max) {
        s->spare_out++;
        *num = s->spare_next++;
        ok = true;
    }
    pthread_mutex_unlock(&s->spare_mu);
    return ok;
}

/* The move of a removed item into spare/num happened (moved) or not. */
static void spare_settle(struct qstore *s, uint32_t num, bool moved)
{
    uint64_t gen = syncgroup_started(&s->qsync); /* fsyncs begun before now */
    pthread_mutex_lock(&s->spare_mu);
    s->spare_out--;
    if (moved) {
        struct qstore_spare *sp = &s->spares[(s->spare_head + s->nspare) % s->spare_max];
        sp->num = num;
        sp->gen = gen;
        s->nspare++;
    }
    pthread_mutex_unlock(&s->spare_mu);
}

static void unlink_quiet(struct qstore *s, int dirfd, const char *sub, const char *name)
{
    if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
        log_warn("%s/%s/%s: unlink: %s", s->dir, sub, name, strerror(errno));
}

/* dirfd/name (in tmp/ or spare/, sub names it) -> queue/id, replacing it.
 * On failure the source is gone. */
static int publish(struct qstore *s, int dirfd, const char *sub, const char *name, const char *id,
                   char *why, size_t whylen)
{
    if (renameat(dirfd, name, s->queuefd, id) == 0)
        return 0;
    int e = errno;
    set_why(why, whylen, "%s/queue/%s: rename: %s", s->dir, id, strerror(e));
    unlink_quiet(s, dirfd, sub, name);
    errno = e;
    return -1;
}

static int sync_dir(struct qstore *s, int fd, const char *sub, char *why, size_t whylen)
{
    if (s->io.fsync(fd) == 0)
        return 0;
    set_why(why, whylen, "%s/%s: fsync: %s", s->dir, sub, strerror(errno));
    return -1;
}

/* Group commit of the queue folder (core/syncgroup.h): the commits and
 * updates running at the same time share one fsync of it, and each returns
 * only after an fsync that began after its rename has succeeded. */
static int sync_queue_group(struct qstore *s, char *why, size_t whylen)
{
    if (syncgroup_fsync(&s->qsync, s->queuefd, s->io.fsync) == 0)
        return 0;
    int e = errno;
    set_why(why, whylen, "%s/queue: fsync: %s", s->dir, strerror(e));
    errno = e;
    return -1;
}

/* dirfd/name (in tmp/ or spare/) -> queue/id, then the shared fsync of
 * queue/: the commit point.  On failure neither name is left. */
static int publish_synced(struct qstore *s, int dirfd, const char *sub, const char *name,
                          const char *id, char *why, size_t whylen)
{
    if (publish(s, dirfd, sub, name, id, why, whylen) < 0)
        return -1;
    if (sync_queue_group(s, why, whylen) == 0)
        return 0;
    int e = errno;
    unlink_quiet(s, s->queuefd, "queue", id);
    errno = e;
    return -1;
}

int qstore_commit(struct qstore *s, struct envelope *env, const char *msg, size_t len, char *why,
                  size_t whylen)
{
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
    /*
     * One file: the envelope and the message written in one writev to a
     * spare file or a new tmp/ID, fsynced, renamed to queue/ID, and the
     * folder fsynced (one fsync shared by the commits running at the same
     * time) -- only then may the caller answer 250.  A crash before the
     * rename leaves junk in spare/ or tmp/, removed at recovery; after it,
     * queue/ID is whole.
     */
    char slot[NAME_MAX_LEN];
    int fd = -1;
    if (spare_take(s, slot)) {
        fd = openat(s->sparefd, slot, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) { /* removed by hand? a new file then */
            log_warn("%s/spare/%s: open: %s", s->dir, slot, strerror(errno));
            unlink_quiet(s, s->sparefd, "spare", slot);
        }
    }
    bool spare = fd >= 0; /* else a new tmp/ID */
    int dirfd = spare ? s->sparefd : s->tmpfd;
    const char *sub = spare ? "spare" : "tmp", *name = spare ? slot : env->id;
    int rc = spare ? fill(s, fd, dirfd, sub, name, eb.p, eb.len, msg, len, why, whylen)
                   : write_tmp(s, name, eb.p, eb.len, msg, len, why, whylen);
    if (rc < 0 || publish_synced(s, dirfd, sub, name, env->id, why, whylen) < 0)
        goto fail;
    buf_free(&eb);
    atomic_fetch_add(&s->count, 1);
    return 0;

fail:
    e = errno;
    buf_free(&eb);
    env->id[0] = '\0';
    errno = e;
    return -1;
}

/* Copy n octets from in (at off) to out, in the kernel where it can. */
static int copy_range(struct qstore *s, int in, off_t off, int out, uint64_t n)
{
    bool kernel = s->io.write == sys_write;
    while (n > 0) {
        size_t want = n > (1u << 30) ? (1u << 30) : (size_t)n;
        ssize_t r = -1;
        if (kernel) {
            r = copy_file_range(in, &off, out, NULL, want, 0);
            if (r < 0 &&
                (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP)) {
                kernel = false;
                continue;
            }
        } else {
            static _Thread_local char chunk[65536];
            r = pread(in, chunk, want < sizeof(chunk) ? want : sizeof(chunk), off);
            if (r > 0 && write_all(s, out, chunk, (size_t)r) < 0)
                return -1;
            if (r > 0)
                off += r;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0) { /* the old file is shorter than its envelope says */
            errno = EIO;
            return -1;
        }
        n -= (uint64_t)r;
    }
    return 0;
}

/* tmp/id over queue/id, only while queue/id exists: swapped in one step
 * (RENAME_EXCHANGE), so that an item removed meanwhile (`tern queue delete`)
 * stays removed; then the previous version, now tmp/id, goes.  ENOENT if
 * the item is gone.  On failure tmp/id is gone. */
static int replace_item(struct qstore *s, const char *id, char *why, size_t whylen)
{
    if (renameat2(s->tmpfd, id, s->queuefd, id, RENAME_EXCHANGE) == 0) {
        unlink_quiet(s, s->tmpfd, "tmp", id);
        return 0;
    }
    int e = errno;
    if (e == EINVAL || e == ENOSYS) { /* no RENAME_EXCHANGE here: look, then rename */
        struct stat st;
        if (fstatat(s->queuefd, id, &st, AT_SYMLINK_NOFOLLOW) == 0)
            return publish(s, s->tmpfd, "tmp", id, id, why, whylen);
        e = errno;
    }
    set_why(why, whylen, "%s/queue/%s: replace: %s", s->dir, id, strerror(e));
    unlink_quiet(s, s->tmpfd, "tmp", id);
    errno = e;
    return -1;
}

static int item_head(int fd, struct buf *b, size_t *envlen);

int qstore_update(struct qstore *s, const struct envelope *env, char *why, size_t whylen)
{
    struct buf eb = {0}, head = {0};
    struct stat st;
    size_t oldlen = 0;
    int rc = -1, e = 0, in = -1, out = -1;

    if (!envelope_id_valid(env->id) || !env->msg_sum || envelope_format(env, &eb) < 0) {
        set_why(why, whylen, "envelope cannot be written (bad id, no recipient or too long)");
        errno = EINVAL;
        return -1;
    }
    /*
     * The item is rewritten whole: the new envelope and the message copied
     * from the current file into tmp/ID, fsynced and renamed over queue/ID
     * (atomic), then the folder fsynced.  Only after a temporary failure, so
     * the copy is off the common path; it never brings back an item that was
     * removed (the current file must exist) nor copies a damaged message (its
     * size must be what the envelope says).
     */
    in = openat(s->queuefd, env->id, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0) {
        e = errno;
        set_why(why, whylen, "%s/queue/%s: %s", s->dir, env->id, strerror(e));
        goto out;
    }
    if (item_head(in, &head, &oldlen) < 0 || fstat(in, &st) < 0) {
        e = errno;
        set_why(why, whylen, "%s/queue/%s: read: %s", s->dir, env->id, strerror(e));
        goto out;
    }
    if (oldlen == 0 || (uint64_t)st.st_size != oldlen + env->msg_size) {
        e = EIO;
        set_why(why, whylen, "%s/queue/%s: %llu octets, not an envelope and a message of %llu",
                s->dir, env->id, (unsigned long long)st.st_size, (unsigned long long)env->msg_size);
        goto out;
    }
    out = openat(s->tmpfd, env->id, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0) {
        e = errno;
        set_why(why, whylen, "%s/tmp/%s: create: %s", s->dir, env->id, strerror(e));
        goto out;
    }
    const char *step = NULL;
    if (write_all(s, out, eb.p, eb.len) < 0 ||
        copy_range(s, in, (off_t)oldlen, out, env->msg_size) < 0)
        step = "write";
    else if (s->io.fsync(out) < 0)
        step = "fsync";
    e = errno;
    if (close(out) < 0 && !step) {
        step = "close";
        e = errno;
    }
    out = -1;
    if (step) {
        set_why(why, whylen, "%s/tmp/%s: %s: %s", s->dir, env->id, step, strerror(e));
        unlink_quiet(s, s->tmpfd, "tmp", env->id);
        goto out;
    }
    if (replace_item(s, env->id, why, whylen) < 0 || sync_queue_group(s, why, whylen) < 0) {
        /* the rename replaced the old file or did not happen: either way queue/ID
         * is a whole item, so it stays */
        e = errno;
        goto out;
    }
    rc = 0;
    e = 0;
out:
    if (in >= 0 && close(in) < 0)
        log_warn("%s/queue/%s: close: %s", s->dir, env->id, strerror(errno));
    buf_free(&eb);
    buf_free(&head);
    errno = e;
    return rc;
}

int qstore_remove(struct qstore *s, const char *id, char *why, size_t whylen)
{
    char legacy[NAME_MAX_LEN];
    if (!envelope_id_valid(id)) {
        set_why(why, whylen, "not a queue id");
        errno = EINVAL;
        return -1;
    }
    /* No directory fsync: if a crash undoes the unlink, recovery delivers the
     * item again -- a duplicate (which a Maildir recognises), never a loss, as
     * Postfix, which does not sync deletions either.  This saves a
     * synchronous write per delivered message. */
    uint32_t num;
    int r = -1;
    bool gone = false;
    struct stat st;
    /* kept for a later commit, if small: a spare holds on to its blocks */
    if (s->spare_max && fstatat(s->queuefd, id, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISREG(st.st_mode) && st.st_size <= QSTORE_SPARE_SIZE_MAX && spare_reserve(s, &num)) {
        char spare[NAME_MAX_LEN];
        spare_name(spare, num);
        r = renameat(s->queuefd, id, s->sparefd, spare);
        int e = errno;
        spare_settle(s, num, r == 0);
        errno = e;
        if (r < 0 && e == ENOENT)
            gone = true; /* the item is not there: nothing to unlink */
    }
    if (r < 0 && !gone)
        r = unlinkat(s->queuefd, id, 0);
    if (r == 0) {
        qstore_count_adjust(s, -1);
        return 0;
    }
    if (errno != ENOENT) {
        set_why(why, whylen, "%s/queue/%s: unlink: %s", s->dir, id, strerror(errno));
        return -1;
    }
    /* `tern queue delete` on a queue an older tern wrote (not yet converted) */
    item_name(legacy, sizeof(legacy), id, "env");
    if (unlinkat(s->queuefd, legacy, 0) < 0 && errno != ENOENT) {
        set_why(why, whylen, "%s/queue/%s: unlink: %s", s->dir, legacy, strerror(errno));
        return -1;
    }
    item_name(legacy, sizeof(legacy), id, "msg");
    unlink_quiet(s, s->queuefd, "queue", legacy); /* alone, it is removed at recovery */
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

/* Octets of the envelope at the start of an item (through its "end" line),
 * or 0 if p[0..len) holds no end line.  Values are escaped, so a line "end"
 * is never part of a value; the envelope's first line is its version. */
static size_t env_end(const char *p, size_t len)
{
    const char *e = len >= 5 ? memmem(p, len, "\nend\n", 5) : NULL;
    return e ? (size_t)(e - p) + 5 : 0;
}

/* Read the start of an item from fd (at its beginning) into b until the end
 * of its envelope: *envlen is then its length (b may hold some of the message
 * after it), or 0 when the file ends (or QSTORE_ENV_MAX octets pass) without
 * an end line.  -1 with errno on a read error. */
static int item_head(int fd, struct buf *b, size_t *envlen)
{
    *envlen = 0;
    b->len = 0;
    for (;;) {
        if (b->cap - b->len < 4096)
            buf_reserve(b, b->cap < 4096 ? 8192 : b->cap * 2);
        ssize_t r = read(fd, b->p + b->len, b->cap - b->len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            return 0;
        /* look again from a little before the new octets: an end line may straddle reads */
        size_t from = b->len > 4 ? b->len - 4 : 0;
        b->len += (size_t)r;
        size_t at = env_end(b->p + from, b->len - from);
        if (at) {
            *envlen = from + at;
            return 0;
        }
        if (b->len > QSTORE_ENV_MAX)
            return 0;
    }
}

int qstore_item_parse(const char *data, size_t len, const char *name, struct envelope *env,
                      size_t *msgoff, char *why, size_t whylen)
{
    size_t envlen = env_end(data, len < QSTORE_ENV_MAX ? len : QSTORE_ENV_MAX);
    *msgoff = envlen;
    if (envlen == 0) {
        envelope_init(env);
        set_why(why, whylen, "no end line: the envelope is cut short");
        return ENV_INCOMPLETE;
    }
    if (envelope_parse(data, envlen, env, why, whylen) != ENV_OK)
        return ENV_CORRUPT; /* whole envelope text that does not parse */
    if (strcmp(env->id, name) != 0) {
        set_why(why, whylen, "id %s does not match the file name", env->id);
        return ENV_CORRUPT;
    }
    if (!env->msg_sum) {
        set_why(why, whylen, "no message size and checksum");
        return ENV_CORRUPT;
    }
    if (qstore_check_msg(env, data + envlen, len - envlen, why, whylen) < 0)
        return QSTORE_DAMAGED;
    return ENV_OK;
}

/* qstore_item_parse() of queue/name, with the file in why. */
static int parse_item(struct qstore *s, const char *name, const char *data, size_t len,
                      struct envelope *env, size_t *msgoff, char *why, size_t whylen)
{
    char w[300];
    int rc = qstore_item_parse(data, len, name, env, msgoff, w, sizeof(w));
    if (rc != ENV_OK)
        set_why(why, whylen, "%s/queue/%s: %s", s->dir, name, w);
    return rc;
}

int qstore_read_item(struct qstore *s, const char *id, struct envelope *env, struct buf *msg,
                     char *why, size_t whylen)
{
    if (!envelope_id_valid(id)) {
        envelope_init(env);
        set_why(why, whylen, "not a queue id");
        errno = EINVAL;
        return -1;
    }
    size_t start = msg->len, off;
    if (read_file(s->queuefd, id, QSTORE_MSG_MAX + (size_t)QSTORE_ENV_MAX, msg) < 0) {
        int e = errno;
        envelope_init(env);
        set_why(why, whylen, "%s/queue/%s: %s", s->dir, id, strerror(e));
        errno = e;
        return -1;
    }
    int rc = parse_item(s, id, msg->p + start, msg->len - start, env, &off, why, whylen);
    if (rc == ENV_OK) { /* keep the message alone: move it over the envelope */
        memmove(msg->p + start, msg->p + start + off, msg->len - start - off);
        msg->len -= off;
    } else {
        msg->len = start;
    }
    return rc;
}

int qstore_read_msg(struct qstore *s, const char *id, struct buf *out, char *why, size_t whylen)
{
    if (!envelope_id_valid(id)) {
        set_why(why, whylen, "not a queue id");
        errno = EINVAL;
        return -1;
    }
    size_t start = out->len;
    if (read_file(s->queuefd, id, QSTORE_MSG_MAX + (size_t)QSTORE_ENV_MAX, out) < 0) {
        int e = errno;
        set_why(why, whylen, "%s/queue/%s: %s", s->dir, id, strerror(e));
        errno = e;
        return -1;
    }
    size_t off = env_end(out->p + start, out->len - start);
    if (off == 0) {
        out->len = start;
        set_why(why, whylen, "%s/queue/%s: no end line: the envelope is cut short", s->dir, id);
        errno = EINVAL;
        return -1;
    }
    memmove(out->p + start, out->p + start + off, out->len - start - off);
    out->len -= off;
    return 0;
}

int qstore_open_msg(struct qstore *s, const char *id)
{
    if (!envelope_id_valid(id)) {
        errno = EINVAL;
        return -1;
    }
    int fd = openat(s->queuefd, id, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct buf b = {0};
    size_t envlen;
    int e = 0;
    if (item_head(fd, &b, &envlen) < 0)
        e = errno;
    else if (envlen == 0)
        e = EINVAL;
    else if (lseek(fd, (off_t)envlen, SEEK_SET) < 0)
        e = errno;
    buf_free(&b);
    if (!e)
        return fd;
    if (close(fd) < 0)
        log_warn("%s/queue/%s: close: %s", s->dir, id, strerror(errno));
    errno = e;
    return -1;
}

/* Read and parse the envelope of queue/name: the start of a one-file item,
 * or (legacy) a whole .env file.  errno on I/O failure. */
static int read_env_file(struct qstore *s, const char *name, bool legacy, struct envelope *env,
                         char *why, size_t whylen)
{
    struct buf b = {0};
    size_t envlen = 0;
    int rc = -1;
    envelope_init(env);
    if (legacy) {
        if (read_file(s->queuefd, name, QSTORE_ENV_MAX, &b) == 0) {
            envlen = b.len;
            rc = 0;
        }
    } else {
        int fd = openat(s->queuefd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) {
            struct stat st;
            if (fstat(fd, &st) < 0)
                rc = -1;
            else if (!S_ISREG(st.st_mode))
                errno = EINVAL;
            else
                rc = item_head(fd, &b, &envlen);
            int e = errno;
            if (close(fd) < 0)
                log_warn("%s/queue/%s: close: %s", s->dir, name, strerror(errno));
            errno = e;
        }
    }
    if (rc < 0) {
        int e = errno;
        set_why(why, whylen, "%s/queue/%s: %s", s->dir, name, strerror(e));
        buf_free(&b);
        errno = e;
        return -1;
    }
    char pwhy[256];
    if (!legacy && envlen == 0) {
        set_why(why, whylen, "%s/queue/%s: no end line: the envelope is cut short", s->dir, name);
        rc = ENV_INCOMPLETE;
    } else {
        envelope_free(env); /* envelope_parse() initialises it again */
        rc = envelope_parse(b.p ? b.p : "", envlen, env, pwhy, sizeof(pwhy));
        if (rc != ENV_OK)
            set_why(why, whylen, "%s/queue/%s: %s", s->dir, name, pwhy);
    }
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
    int rc = read_env_file(s, id, false, env, why, whylen);
    if (rc >= 0 || errno != ENOENT)
        return rc;
    /* an item an older tern wrote, not yet converted (`tern queue show` before a start) */
    envelope_free(env);
    item_name(name, sizeof(name), id, "env");
    return read_env_file(s, name, true, env, why, whylen);
}

/* ---- integrity of the message ------------------------------------------- */

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

/* What quarantine_item() moves. */
enum qkind {
    Q_ITEM,   /* queue/ID, with quarantine/ID.why */
    Q_LEGACY, /* queue/ID.env and queue/ID.msg of an older tern, with ID.why */
    Q_STRAY,  /* a file that is no item at all, named base (no .why) */
};

/* Returns how many files moved, or -1 on error (logged). */
static int quarantine_item(struct qstore *s, const char *base, enum qkind kind, const char *reason)
{
    static const char *const exts[] = {"env", "msg"};
    char name[NAME_MAX_LEN + 256], dest[NAME_MAX_LEN + 272];
    int moved = 0, rc = 0;
    for (int i = 0; i < (kind == Q_LEGACY ? 2 : 1); i++) {
        if (kind == Q_LEGACY)
            snprintf(name, sizeof(name), "%s.%s", base, exts[i]);
        else
            snprintf(name, sizeof(name), "%s", base);
        if (quarantine_file(s, name, dest, sizeof(dest)) == 0) {
            moved++;
            log_warn("%s/queue/%s: %s; moved to %s/quarantine/%s", s->dir, name, reason, s->dir,
                     dest);
        } else if (errno != ENOENT) {
            log_error("%s/queue/%s: cannot move to quarantine: %s", s->dir, name, strerror(errno));
            rc = -1;
        }
    }
    if (moved > 0 && kind != Q_STRAY)
        quarantine_reason(s, base, reason);
    if (s->io.fsync(s->quarfd) < 0 || s->io.fsync(s->queuefd) < 0) {
        log_error("%s: fsync after quarantine: %s", s->dir, strerror(errno));
        rc = -1;
    }
    return rc < 0 ? -1 : moved;
}

int qstore_quarantine(struct qstore *s, const char *id, const char *reason)
{
    if (!envelope_id_valid(id)) {
        errno = EINVAL;
        return -1;
    }
    int rc = quarantine_item(s, id, Q_ITEM, reason);
    if (rc > 0)
        qstore_count_adjust(s, -1);
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

/* Empty tmp/ or spare/ (fd, named sub): nothing there is part of an item.
 * *removed counts the files removed. */
static void clean_tmp(struct qstore *s, int fd, const char *sub, size_t *removed,
                      struct qstore_stats *st)
{
    size_t n;
    char **names = list_dir(s, fd, &n);
    if (!names) {
        log_error("%s/%s: cannot list: %s", s->dir, sub, strerror(errno));
        st->errors++;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (unlinkat(fd, names[i], 0) == 0)
            (*removed)++;
        else if (errno != ENOENT) {
            log_warn("%s/%s/%s: unlink: %s", s->dir, sub, names[i], strerror(errno));
            st->errors++;
        }
    }
    free_list(names, n);
}

/* Recovery found the item unusable: into quarantine/ (counted), or an error if it
 * could not be moved.  loud: also an error line (damaged after its 250). */
static void recover_quarantine(struct qstore *s, const char *id, enum qkind kind,
                               const char *reason, bool loud, struct qstore_stats *st)
{
    int moved = quarantine_item(s, id, kind, reason);
    if (loud) /* after the move: a reader of the line finds it in quarantine/ */
        log_error("id=%s: %s", id, reason);
    if (moved > 0)
        st->quarantined += (size_t)moved;
    else
        st->errors++;
}

/* What to do when an item's file cannot be read: ENOENT -> gone, a symlink,
 * not a file or too large -> quarantine, else an error (left in place). */
static void recover_unreadable(struct qstore *s, const char *id, enum qkind kind, int e,
                               const char *why, struct qstore_stats *st)
{
    if (e == ENOENT)
        return;
    if (e == ELOOP || e == EINVAL || e == EFBIG) {
        recover_quarantine(s, id, kind, why, false, st);
        return;
    }
    log_error("%s (left in place)", why);
    st->errors++;
}

/* One item (queue/ID) at start-up, read whole into scratch: checked, then
 * handed on or quarantined.  Returns true if it was handed on. */
static bool recover_item(struct qstore *s, const char *id, qstore_item_fn fn, void *ctx,
                         struct qstore_stats *st, struct buf *scratch)
{
    char why[512], reason[600];
    struct envelope env;
    size_t off;

    scratch->len = 0;
    if (read_file(s->queuefd, id, QSTORE_MSG_MAX + (size_t)QSTORE_ENV_MAX, scratch) < 0) {
        int e = errno;
        snprintf(why, sizeof(why), "%s/queue/%s: %s", s->dir, id, strerror(e));
        recover_unreadable(s, id, Q_ITEM, e, why, st);
        return false;
    }
    int rc =
        parse_item(s, id, scratch->p ? scratch->p : "", scratch->len, &env, &off, why, sizeof(why));
    switch (rc) {
    case ENV_OK:
        fn(ctx, &env);
        envelope_free(&env);
        st->recovered++;
        return true;
    case QSTORE_DAMAGED:
        recover_quarantine(s, id, Q_ITEM, why, true, st);
        break;
    default:
        /* an item reaches queue/ only whole (renamed from tmp/ after its
         * fsync): one that is not whole now was damaged after it was
         * committed, and its client may have had a 250 */
        snprintf(reason, sizeof(reason), "envelope damaged after it was committed: %s", why);
        recover_quarantine(s, id, Q_ITEM, reason, true, st);
        break;
    }
    envelope_free(&env);
    return false;
}

/*
 * An item written by an older tern (ID.env + ID.msg), converted into one
 * file: queue/ID written and made durable first, then the pair removed (a
 * crash in between leaves both; the next start sees queue/ID and removes
 * the pair).  Returns true if the item was handed on.
 */
static bool recover_legacy(struct qstore *s, const char *id, qstore_item_fn fn, void *ctx,
                           struct qstore_stats *st, struct buf *scratch)
{
    char envname[NAME_MAX_LEN], msgname[NAME_MAX_LEN], why[512], reason[600];
    struct envelope env;
    item_name(envname, sizeof(envname), id, "env");
    item_name(msgname, sizeof(msgname), id, "msg");

    if (exists(s->queuefd, id)) { /* converted already, the pair not yet removed */
        unlink_quiet(s, s->queuefd, "queue", envname);
        unlink_quiet(s, s->queuefd, "queue", msgname);
        return false;
    }
    int rc = read_env_file(s, envname, true, &env, why, sizeof(why));
    if (rc < 0) {
        int e = errno;
        envelope_free(&env);
        recover_unreadable(s, id, Q_LEGACY, e, why, st);
        return false;
    }
    scratch->len = 0;
    if (rc == ENV_OK && strcmp(env.id, id) != 0) {
        snprintf(why, sizeof(why), "%s/queue/%s: id %s does not match the file name", s->dir,
                 envname, env.id);
        rc = ENV_CORRUPT;
    } else if (rc == ENV_OK && read_file(s->queuefd, msgname, QSTORE_MSG_MAX, scratch) < 0) {
        int e = errno;
        if (e != ENOENT && e != ELOOP && e != EINVAL && e != EFBIG) {
            log_error("%s/queue/%s: %s (left in place)", s->dir, msgname, strerror(e));
            st->errors++;
            envelope_free(&env);
            return false;
        }
        snprintf(why, sizeof(why), "%s/queue/%s: its message file %s: %s", s->dir, envname, msgname,
                 e == ENOENT ? "missing" : strerror(e));
        rc = ENV_CORRUPT;
    } else if (rc == ENV_OK) {
        char mwhy[200];
        if (qstore_check_msg(&env, scratch->p ? scratch->p : "", scratch->len, mwhy, sizeof(mwhy)) <
            0) {
            snprintf(why, sizeof(why), "%s/queue/%s: %s", s->dir, msgname, mwhy);
            rc = QSTORE_DAMAGED;
        }
    }
    switch (rc) {
    case ENV_OK: {
        struct buf eb = {0};
        env.msg_sum = true; /* version 1 had none: the checksum of what is there now */
        env.msg_size = scratch->len;
        env.msg_crc = crc32c_update(0, scratch->p ? scratch->p : "", scratch->len);
        if (envelope_format(&env, &eb) < 0 ||
            write_tmp(s, id, eb.p, eb.len, scratch->p ? scratch->p : "", scratch->len, why,
                      sizeof(why)) < 0 ||
            publish(s, s->tmpfd, "tmp", id, id, why, sizeof(why)) < 0 ||
            sync_dir(s, s->queuefd, "queue", why, sizeof(why)) < 0) {
            log_error("id=%s: cannot convert the item of an older tern (left in place): %s", id,
                      why);
            st->errors++;
            buf_free(&eb);
            break;
        }
        buf_free(&eb);
        unlink_quiet(s, s->queuefd, "queue", envname);
        unlink_quiet(s, s->queuefd, "queue", msgname);
        log_info("id=%s: converted to one file", id);
        fn(ctx, &env);
        envelope_free(&env);
        st->recovered++;
        return true;
    }
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
        snprintf(reason, sizeof(reason), "envelope damaged after it was committed: %s", why);
        recover_quarantine(s, id, Q_LEGACY, reason, true, st);
        break;
    case QSTORE_DAMAGED:
        recover_quarantine(s, id, Q_LEGACY, why, true, st);
        break;
    default:
        snprintf(reason, sizeof(reason), "unusable envelope: %s", why);
        recover_quarantine(s, id, Q_LEGACY, reason, false, st);
        break;
    }
    envelope_free(&env);
    return false;
}

/* `tern queue list`, the pickup: the envelope of queue/name (an item, or a
 * legacy .env) handed on if it parses.  With take, an item whose envelope
 * is not whole is quarantined (it arrived whole: damaged), else nothing is
 * changed. */
static bool list_item(struct qstore *s, const char *name, bool legacy, bool take, qstore_item_fn fn,
                      void *ctx)
{
    char why[512], reason[600];
    struct envelope env;
    int rc = read_env_file(s, name, legacy, &env, why, sizeof(why));
    if (rc == ENV_OK)
        fn(ctx, &env);
    envelope_free(&env);
    if (take && !legacy && (rc == ENV_INCOMPLETE || rc == ENV_CORRUPT)) {
        snprintf(reason, sizeof(reason), "envelope damaged after it was committed: %s", why);
        if (quarantine_item(s, name, Q_ITEM, reason) > 0) /* moved, then said */
            qstore_count_adjust(s, -1);
        log_error("id=%s: %s", name, reason);
    }
    return rc == ENV_OK;
}

static int scan(struct qstore *s, bool readonly, bool take, qstore_item_fn fn, void *ctx,
                struct qstore_stats *st, char *why, size_t whylen)
{
    size_t n;
    char **names = list_dir(s, s->queuefd, &n);
    if (!names) {
        set_why(why, whylen, "%s/queue: cannot list: %s", s->dir, strerror(errno));
        return -1;
    }
    struct buf scratch = {0}; /* one buffer for every item read at start-up */
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        char id[ENV_ID_MAX + 1], envname[NAME_MAX_LEN];
        const char *ext;
        if (envelope_id_valid(names[i])) {
            if (readonly)
                list_item(s, names[i], false, take, fn, ctx);
            else
                kept += recover_item(s, names[i], fn, ctx, st, &scratch);
            continue;
        }
        if (!split_name(names[i], id, &ext)) {
            if (!readonly) {
                int moved = quarantine_item(s, names[i], Q_STRAY, "not a queue file");
                if (moved > 0)
                    st->quarantined++;
                else if (moved < 0)
                    st->errors++;
            }
            continue;
        }
        if (strcmp(ext, "env") == 0) {
            if (readonly)
                list_item(s, names[i], true, false, fn, ctx);
            else
                kept += recover_legacy(s, id, fn, ctx, st, &scratch);
            continue;
        }
        /* a legacy .msg: an orphan unless its .env exists (handled above, sorted first) */
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
    buf_free(&scratch);
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
    size_t spares = 0; /* expected there after a stop: not counted */
    clean_tmp(s, s->tmpfd, "tmp", &st->tmp_removed, st);
    clean_tmp(s, s->sparefd, "spare", &spares, st);
    int rc = scan(s, false, false, fn, ctx, st, why, whylen);
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
    return scan(s, true, false, fn, ctx, &st, why, whylen);
}

size_t qstore_clean_stale(struct qstore *s, int64_t now, int64_t age)
{
    size_t n, removed = 0;
    char **names = list_dir(s, s->tmpfd, &n);
    if (!names) {
        log_warn("%s/tmp: cannot list: %s", s->dir, strerror(errno));
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (fstatat(s->tmpfd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            (int64_t)st.st_mtime > now - age)
            continue; /* gone, or perhaps still being written */
        if (unlinkat(s->tmpfd, names[i], 0) == 0) {
            log_info("%s/tmp/%s: left by a writer that stopped; removed", s->dir, names[i]);
            removed++;
        } else if (errno != ENOENT) {
            log_warn("%s/tmp/%s: unlink: %s", s->dir, names[i], strerror(errno));
        }
    }
    free_list(names, n);
    return removed;
}

int qstore_take(struct qstore *s, qstore_item_fn fn, void *ctx, char *why, size_t whylen)
{
    struct qstore_stats st;
    memset(&st, 0, sizeof(st));
    return scan(s, true, true, fn, ctx, &st, why, whylen);
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
