/*
 * test_maildir.c - the built-in Maildir courier (deliver/maildir.c): a
 * delivery lands whole in new/ with LF line ends and leaves tmp/ empty;
 * names are unique; symbolic links are refused; permission problems and a
 * missing parent are transient; a delivery named by queue id and recipient
 * index is made once even when repeated (copy in new/, or moved to cur/);
 * the move into new/ is one rename (link + unlink only where renameat2
 * cannot refuse to replace); concurrent deliveries into one Maildir share
 * new/'s fsync; a failed fsync of new/ leaves nothing behind; the folders
 * above a Maildir are made only when missing.  Every test works in its own
 * mkdtemp directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../support/testutil.h"
#include "deliver/maildir.h"
#include "queue/envelope.h"

struct fx {
    char root[64];
    char md[128];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_non_null(tu_tmpdir(f->root, sizeof(f->root), "tern-maildir"));
    snprintf(f->md, sizeof(f->md), "%s/Maildir", f->root);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    memset(&maildir_testio, 0, sizeof(maildir_testio));
    assert_int_equal(tu_rmtree(f->root), 0);
    free(f);
    return 0;
}

static void sub(const struct fx *f, const char *s, char *out, size_t size)
{
    snprintf(out, size, "%s/%s", f->md, s);
}

static void test_deliver(void **state)
{
    struct fx *f = *state;
    struct rcpt_result err;
    const char *msg = "Subject: hi\r\nFrom: a@b\r\n\r\nline one\r\nbare\rCR stays\r\n";
    const char *prefix = "Return-Path: <a@b>\r\nDelivered-To: c@d\r\n";
    char dir[192], name[256], file[512];
    struct stat st;
    size_t len;

    assert_int_equal(maildir_deliver(f->md, prefix, msg, strlen(msg), "mx.example.org", NULL, &err),
                     RESULT_OK);
    assert_string_equal(err.status, "");
    for (const char *s = "tmp\0new\0cur\0"; *s; s += strlen(s) + 1) {
        sub(f, s, dir, sizeof(dir));
        assert_int_equal(lstat(dir, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 0777, 0700);
    }
    sub(f, "tmp", dir, sizeof(dir));
    assert_int_equal(tu_count_entries(dir, NULL, 0), 0);
    sub(f, "cur", dir, sizeof(dir));
    assert_int_equal(tu_count_entries(dir, NULL, 0), 0);
    sub(f, "new", dir, sizeof(dir));
    assert_int_equal(tu_count_entries(dir, name, sizeof(name)), 1);
    assert_non_null(strstr(name, ".mx.example.org"));
    assert_null(strchr(name, ':'));
    snprintf(file, sizeof(file), "%s/%s", dir, name);
    assert_int_equal(lstat(file, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_nlink, 1);
    assert_int_equal(st.st_mode & 0777, 0600);
    char *got = tu_slurp(file, &len);
    assert_string_equal(got, "Return-Path: <a@b>\nDelivered-To: c@d\nSubject: hi\nFrom: a@b\n\n"
                             "line one\nbare\rCR stays\n");
    free(got);
}

static void test_big_and_empty(void **state)
{
    struct fx *f = *state;
    struct rcpt_result err;
    size_t n = 3u << 20, len;
    char *msg = malloc(n), *want = malloc(n);
    char dir[192], name[256], file[512];
    size_t w = 0;

    assert_non_null(msg);
    assert_non_null(want);
    for (size_t i = 0; i < n; i++) {
        msg[i] = (i % 100 == 98) ? '\r' : (i % 100 == 99) ? '\n' : (char)('a' + i % 26);
        if (msg[i] != '\r')
            want[w++] = msg[i];
    }
    assert_int_equal(maildir_deliver(f->md, NULL, msg, n, "h", NULL, &err), RESULT_OK);
    sub(f, "new", dir, sizeof(dir));
    assert_int_equal(tu_count_entries(dir, name, sizeof(name)), 1);
    snprintf(file, sizeof(file), "%s/%s", dir, name);
    char *got = tu_slurp(file, &len);
    assert_int_equal(len, w);
    assert_memory_equal(got, want, w);
    free(got);
    free(msg);
    free(want);
    assert_int_equal(unlink(file), 0);

    /* an empty message is an empty file; a NULL err is allowed */
    assert_int_equal(maildir_deliver(f->md, NULL, "", 0, NULL, NULL, NULL), RESULT_OK);
    assert_int_equal(tu_count_entries(dir, name, sizeof(name)), 1);
    assert_non_null(strstr(name, ".localhost"));
    snprintf(file, sizeof(file), "%s/%s", dir, name);
    got = tu_slurp(file, &len);
    assert_int_equal(len, 0);
    free(got);
}

static void test_unique_names(void **state)
{
    struct fx *f = *state;
    struct rcpt_result err;
    char dir[192], name[256];

    for (int i = 0; i < 50; i++)
        assert_int_equal(maildir_deliver(f->md, NULL, "x\r\n", 3, "a/b:c", NULL, &err), RESULT_OK);
    sub(f, "new", dir, sizeof(dir));
    assert_int_equal(tu_count_entries(dir, name, sizeof(name)), 50);
    /* '/' and ':' of the host name are escaped as the Maildir spec says */
    assert_non_null(strstr(name, ".a\\057b\\072c"));
    sub(f, "tmp", dir, sizeof(dir));
    assert_int_equal(tu_count_entries(dir, NULL, 0), 0);
}

static void test_symlinked_maildir(void **state)
{
    struct fx *f = *state;
    struct rcpt_result err;
    char real[128], dir[192], link2[192];

    snprintf(real, sizeof(real), "%s/real", f->root);
    assert_int_equal(mkdir(real, 0700), 0);
    assert_int_equal(symlink(real, f->md), 0);
    assert_int_equal(maildir_deliver(f->md, NULL, "x\r\n", 3, "h", NULL, &err), RESULT_PERM);
    assert_string_equal(err.status, "5.2.0");
    assert_non_null(strstr(err.text, "symbolic link"));
    assert_null(strstr(err.text, f->root)); /* a permanent text names no path */
    /* a trailing slash does not make the link acceptable */
    snprintf(link2, sizeof(link2), "%s//", f->md);
    assert_int_equal(maildir_deliver(link2, NULL, "x\r\n", 3, "h", NULL, &err), RESULT_PERM);
    /* nothing was created behind the link */
    assert_int_equal(tu_count_entries(real, NULL, 0), 0);
    /* a dangling link is refused the same way, and not created through */
    assert_int_equal(unlink(f->md), 0);
    snprintf(dir, sizeof(dir), "%s/nowhere", f->root);
    assert_int_equal(symlink(dir, f->md), 0);
    assert_int_equal(maildir_deliver(f->md, NULL, "x\r\n", 3, "h", NULL, &err), RESULT_PERM);
    assert_int_equal(access(dir, F_OK), -1);
}

static void test_symlinked_sub(void **state)
{
    struct fx *f = *state;
    struct rcpt_result err;
    char other[128], dir[192];

    snprintf(other, sizeof(other), "%s/elsewhere", f->root);
    assert_int_equal(mkdir(other, 0700), 0);
    assert_int_equal(mkdir(f->md, 0700), 0);
    for (const char *s = "tmp\0new\0cur\0"; *s; s += strlen(s) + 1) {
        sub(f, s, dir, sizeof(dir));
        assert_int_equal(symlink(other, dir), 0);
        assert_int_equal(maildir_deliver(f->md, NULL, "x\r\n", 3, "h", NULL, &err), RESULT_PERM);
        assert_string_equal(err.status, "5.2.0");
        assert_non_null(strstr(err.text, s));
        assert_int_equal(tu_count_entries(other, NULL, 0), 0);
        assert_int_equal(unlink(dir), 0);
        assert_int_equal(mkdir(dir, 0700), 0);
    }
    assert_int_equal(maildir_deliver(f->md, NULL, "x\r\n", 3, "h", NULL, &err), RESULT_OK);
}

static void test_not_a_directory(void **state)
{
    struct fx *f = *state;
    struct rcpt_result err;
    char dir[192];

    int fd = open(f->md, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(maildir_deliver(f->md, NULL, "x\r\n", 3, "h", NULL, &err), RESULT_TEMP);
    assert_string_equal(err.status, "4.3.5");
    assert_int_equal(unlink(f->md), 0);
    /* the same for new/ as a file */
    assert_int_equal(mkdir(f->md, 0700), 0);
    sub(f, "new", dir, sizeof(dir));
    fd = open(dir, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(maildir_deliver(f->md, NULL, "x\r\n", 3, "h", NULL, &err), RESULT_TEMP);
    assert_non_null(strstr(err.text, "not a directory"));
}

static void test_missing_parent(void **state)
{
    struct fx *f = *state;
    struct rcpt_result err;
    char path[192];

    snprintf(path, sizeof(path), "%s/no/such/Maildir", f->root);
    assert_int_equal(maildir_deliver(path, NULL, "x\r\n", 3, "h", NULL, &err), RESULT_TEMP);
    assert_string_equal(err.status, "4.3.5");
    assert_non_null(strstr(err.text, "parent directory is missing"));
    assert_int_equal(maildir_deliver("", NULL, "x\r\n", 3, "h", NULL, &err), RESULT_TEMP);
    assert_int_equal(maildir_deliver(NULL, NULL, "x\r\n", 3, "h", NULL, &err), RESULT_TEMP);
}

/*
 * A read-only new/ is a transient failure and leaves tmp/ empty.  Root
 * ignores permissions, so when the test runs as root the delivery happens
 * in a child that has become "nobody".
 */
static void test_readonly_new(void **state)
{
    struct fx *f = *state;
    struct rcpt_result err;
    char dir[192], cmd[300];
    const uid_t nobody = 65534;

    assert_int_equal(maildir_deliver(f->md, NULL, "x\r\n", 3, "h", NULL, &err), RESULT_OK);
    sub(f, "new", dir, sizeof(dir));
    assert_int_equal(chmod(dir, 0500), 0);
    if (geteuid() != 0) {
        assert_int_equal(maildir_deliver(f->md, NULL, "y\r\n", 3, "h", NULL, &err), RESULT_TEMP);
        assert_string_equal(err.status, "4.3.5");
        assert_non_null(strstr(err.text, "permission"));
    } else {
        snprintf(cmd, sizeof(cmd), "chown -R %u:%u '%s' && chmod 0755 '%s'", nobody, nobody,
                 f->root, f->root);
        assert_int_equal(system(cmd), 0);
        int p[2];
        assert_int_equal(pipe(p), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            if (setgroups(0, NULL) != 0 || setgid(nobody) != 0 || setuid(nobody) != 0)
                _exit(99);
            int r = maildir_deliver(f->md, NULL, "y\r\n", 3, "h", NULL, &err);
            if (write(p[1], &err, sizeof(err)) != (ssize_t)sizeof(err))
                _exit(98);
            _exit(r);
        }
        close(p[1]);
        assert_int_equal(read(p[0], &err, sizeof(err)), (ssize_t)sizeof(err));
        close(p[0]);
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), RESULT_TEMP);
        assert_string_equal(err.status, "4.3.5");
        assert_non_null(strstr(err.text, "permission"));
    }
    assert_int_equal(tu_count_entries(dir, NULL, 0), 1);
    sub(f, "tmp", dir, sizeof(dir));
    assert_int_equal(tu_count_entries(dir, NULL, 0), 0);
}

/*
 * Exactly once: the same delivery (queue id and recipient index) made again
 * -- a retry after kill -9 -- writes no second copy, whether the first is
 * still in new/ or a reader moved it to cur/ and flagged it; a crashed
 * attempt's tmp/ leftover is replaced; another recipient index is another
 * copy.
 */
static void test_deliver_once(void **state)
{
    struct fx *f = *state;
    struct rcpt_result err;
    char newdir[192], curdir[192], tmpdir[192], name[256], from[512], to[600];
    struct maildir_once once = {.time = time(NULL) - 10, .uniq = "1712345678-0000002a-9f3a_0"};

    sub(f, "new", newdir, sizeof(newdir));
    sub(f, "cur", curdir, sizeof(curdir));
    sub(f, "tmp", tmpdir, sizeof(tmpdir));
    assert_int_equal(maildir_deliver(f->md, NULL, "one\r\n", 5, "h", &once, &err), RESULT_OK);
    assert_int_equal(tu_count_entries(newdir, name, sizeof(name)), 1);
    char want[128];
    snprintf(want, sizeof(want), "%lld.%s.h", (long long)once.time, once.uniq);
    assert_string_equal(name, want);
    /* again: still one copy, and the first one's content */
    assert_int_equal(maildir_deliver(f->md, NULL, "two\r\n", 5, "h", &once, &err), RESULT_OK);
    assert_int_equal(tu_count_entries(newdir, NULL, 0), 1);
    snprintf(from, sizeof(from), "%s/%s", newdir, name);
    size_t len;
    char *got = tu_slurp(from, &len);
    assert_string_equal(got, "one\n");
    free(got);

    /* a reader moves it to cur/ and flags it: still one copy */
    snprintf(to, sizeof(to), "%s/%s:2,RS", curdir, name);
    assert_int_equal(rename(from, to), 0);
    assert_int_equal(maildir_deliver(f->md, NULL, "two\r\n", 5, "h", &once, &err), RESULT_OK);
    assert_int_equal(tu_count_entries(newdir, NULL, 0), 0);
    assert_int_equal(tu_count_entries(curdir, NULL, 0), 1);
    /* even under another host name (the configuration changed in between) */
    assert_int_equal(maildir_deliver(f->md, NULL, "two\r\n", 5, "other", &once, &err), RESULT_OK);
    assert_int_equal(tu_count_entries(newdir, NULL, 0), 0);
    assert_int_equal(tu_count_entries(curdir, NULL, 0), 1);

    /* the next recipient of the same item is a copy of its own; a look-alike
     * unique part (a prefix of ours) in cur/ does not count */
    struct maildir_once other = {.time = once.time, .uniq = "1712345678-0000002a-9f3a_1"};
    snprintf(to, sizeof(to), "%s/%lld.1712345678-0000002a-9f3a_10.h:2,S", curdir,
             (long long)once.time);
    tu_write(to, "x", 1, 0600);
    assert_int_equal(maildir_deliver(f->md, NULL, "three\r\n", 7, "h", &other, &err), RESULT_OK);
    assert_int_equal(tu_count_entries(newdir, NULL, 0), 1);

    /* a crashed attempt left its half-written file in tmp/: replaced, delivered once */
    struct maildir_once third = {.time = once.time, .uniq = "1712345678-0000002a-9f3a_2"};
    snprintf(to, sizeof(to), "%s/%lld.%s.h", tmpdir, (long long)third.time, third.uniq);
    tu_write(to, "half", 4, 0600);
    assert_int_equal(maildir_deliver(f->md, NULL, "four\r\n", 6, "h", &third, &err), RESULT_OK);
    assert_int_equal(tu_count_entries(tmpdir, NULL, 0), 0);
    assert_int_equal(tu_count_entries(newdir, NULL, 0), 2);
    snprintf(to, sizeof(to), "%s/%lld.%s.h", newdir, (long long)third.time, third.uniq);
    got = tu_slurp(to, &len);
    assert_string_equal(got, "four\n");
    free(got);

    /* cur/ older than the item's arrival is not read (the documented limit: only a
     * clock stepped back could have put this item's copy there) */
    struct maildir_once late = {.time = time(NULL) + 3600, .uniq = "1712345678-0000002a-9f3a_0"};
    assert_int_equal(maildir_deliver(f->md, NULL, "five\r\n", 6, "h", &late, &err), RESULT_OK);
    assert_int_equal(tu_count_entries(newdir, NULL, 0), 3);
}

/* The courier names the delivery after the queue id and the recipient's index. */
static void test_courier_uses_queue_id(void **state)
{
    struct fx *f = *state;
    struct envelope env;
    struct rcpt_result res;
    char newdir[192], name[256];

    envelope_init(&env);
    strcpy(env.id, "1712345678-0000002a-9f3a0c1d2e3b4a5f");
    envelope_set(&env.sender, "a@example.org");
    env.created = 1712345678;
    envelope_add_rcpt(&env, "x@example.org", NULL, "maildir:/x");
    envelope_add_rcpt(&env, "bob@example.org", NULL, "maildir:/x");
    const struct env_rcpt *r = &env.rcpts[1];
    struct courier_job j = {.env = &env,
                            .rcpts = &r,
                            .n = 1,
                            .arg = f->md,
                            .msg = "m\r\n",
                            .len = 3,
                            .hostname = "mx.example.org"};
    for (int i = 0; i < 2; i++) {
        courier_maildir.deliver(&j, &res);
        assert_int_equal(res.cls, RESULT_OK);
    }
    sub(f, "new", newdir, sizeof(newdir));
    assert_int_equal(tu_count_entries(newdir, name, sizeof(name)), 1);
    assert_string_equal(name, "1712345678.1712345678-0000002a-9f3a0c1d2e3b4a5f_1.mx.example.org");
    envelope_free(&env);
}

/* ---- the move into new/, the shared fsync, the folders above -------- */

static atomic_int renames, renames_refused, dir_fsyncs, file_fsyncs, mkdirs;
static atomic_int fail_dir_fsync;

static int count_renameat2(int ofd, const char *old, int nfd, const char *new, unsigned flags)
{
    atomic_fetch_add(&renames, 1);
    return renameat2(ofd, old, nfd, new, flags);
}

/* a file system whose rename cannot refuse to replace */
static int no_renameat2(int ofd, const char *old, int nfd, const char *new, unsigned flags)
{
    (void)ofd, (void)old, (void)nfd, (void)new, (void)flags;
    atomic_fetch_add(&renames_refused, 1);
    errno = EINVAL;
    return -1;
}

/* another writer takes the name in new/ just before the rename */
static int squat_renameat2(int ofd, const char *old, int nfd, const char *new, unsigned flags)
{
    int fd = openat(nfd, new, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, "keep", 4) != 4 || close(fd) != 0)
        return -1;
    return renameat2(ofd, old, nfd, new, flags);
}

/* counts; a folder's fsync is slow (so that deliveries pile up behind it),
 * and fails while fail_dir_fsync is set */
static int count_fsync(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        atomic_fetch_add(&file_fsyncs, 1);
        return fsync(fd);
    }
    atomic_fetch_add(&dir_fsyncs, 1);
    if (atomic_load(&fail_dir_fsync)) {
        errno = EIO;
        return -1;
    }
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
    return fsync(fd);
}

static int count_mkdir(const char *path, mode_t mode)
{
    atomic_fetch_add(&mkdirs, 1);
    return mkdir(path, mode);
}

static void reset_counts(void)
{
    atomic_store(&renames, 0);
    atomic_store(&renames_refused, 0);
    atomic_store(&dir_fsyncs, 0);
    atomic_store(&file_fsyncs, 0);
    atomic_store(&mkdirs, 0);
    atomic_store(&fail_dir_fsync, 0);
}

static void test_rename_and_fallback(void **state)
{
    struct fx *f = *state;
    struct rcpt_result err;
    char newdir[192], tmpdir[192], name[256], file[512];
    struct stat st;
    struct maildir_once once = {.time = time(NULL) - 10, .uniq = "1712345678-0000002a-9f3a_0"};

    sub(f, "new", newdir, sizeof(newdir));
    sub(f, "tmp", tmpdir, sizeof(tmpdir));
    reset_counts();
    maildir_testio.renameat2 = count_renameat2;
    maildir_testio.fsync = count_fsync;
    assert_int_equal(maildir_deliver(f->md, NULL, "a\r\n", 3, "h", &once, &err), RESULT_OK);
    assert_int_equal(atomic_load(&renames), 1);
    assert_int_equal(atomic_load(&file_fsyncs), 1);
    /* new/ once for the message; the new Maildir and its folders once each */
    assert_int_equal(atomic_load(&dir_fsyncs), 3);
    assert_int_equal(tu_count_entries(tmpdir, NULL, 0), 0);
    assert_int_equal(tu_count_entries(newdir, NULL, 0), 1);
    /* the next delivery into the existing Maildir: one fsync of each kind */
    reset_counts();
    assert_int_equal(maildir_deliver(f->md, NULL, "b\r\n", 3, "h", NULL, &err), RESULT_OK);
    assert_int_equal(atomic_load(&renames), 1);
    assert_int_equal(atomic_load(&file_fsyncs), 1);
    assert_int_equal(atomic_load(&dir_fsyncs), 1);
    assert_int_equal(tu_count_entries(tmpdir, NULL, 0), 0);
    assert_int_equal(tu_count_entries(newdir, NULL, 0), 2);
    /* repeated: no rename, no fsync, still one copy */
    reset_counts();
    assert_int_equal(maildir_deliver(f->md, NULL, "a\r\n", 3, "h", &once, &err), RESULT_OK);
    assert_int_equal(atomic_load(&renames) + atomic_load(&file_fsyncs), 0);
    assert_int_equal(tu_count_entries(newdir, NULL, 0), 2);

    /* without RENAME_NOREPLACE: link + unlink, same result */
    maildir_testio.renameat2 = no_renameat2;
    struct maildir_once two = {.time = once.time, .uniq = "1712345678-0000002a-9f3a_1"};
    assert_int_equal(maildir_deliver(f->md, NULL, "c\r\n", 3, "h", &two, &err), RESULT_OK);
    assert_int_equal(atomic_load(&renames_refused), 1);
    assert_int_equal(tu_count_entries(tmpdir, NULL, 0), 0);
    assert_int_equal(tu_count_entries(newdir, NULL, 0), 3);
    snprintf(name, sizeof(name), "%lld.%s.h", (long long)two.time, two.uniq);
    snprintf(file, sizeof(file), "%s/%s", newdir, name);
    assert_int_equal(lstat(file, &st), 0);
    assert_int_equal(st.st_nlink, 1);
    assert_int_equal(maildir_deliver(f->md, NULL, "c\r\n", 3, "h", &two, &err), RESULT_OK);
    assert_int_equal(tu_count_entries(newdir, NULL, 0), 3);

    /* a name taken in new/ after the look-up is never replaced: TEMP, tmp/ cleaned */
    maildir_testio.renameat2 = squat_renameat2;
    struct maildir_once three = {.time = once.time, .uniq = "1712345678-0000002a-9f3a_2"};
    assert_int_equal(maildir_deliver(f->md, NULL, "d\r\n", 3, "h", &three, &err), RESULT_TEMP);
    assert_int_equal(tu_count_entries(tmpdir, NULL, 0), 0);
    assert_int_equal(tu_count_entries(newdir, NULL, 0), 4);
    snprintf(file, sizeof(file), "%s/%lld.%s.h", newdir, (long long)three.time, three.uniq);
    size_t len;
    char *got = tu_slurp(file, &len);
    assert_string_equal(got, "keep");
    free(got);
}

/* A failed fsync of new/ is TEMP and leaves neither tmp/ nor new/ a copy. */
static void test_new_fsync_fails(void **state)
{
    struct fx *f = *state;
    struct rcpt_result err;
    char newdir[192], tmpdir[192];
    struct maildir_once once = {.time = time(NULL) - 10, .uniq = "1712345678-0000002a-9f3a_0"};

    assert_int_equal(maildir_deliver(f->md, NULL, "a\r\n", 3, "h", NULL, &err), RESULT_OK);
    reset_counts();
    maildir_testio.fsync = count_fsync;
    atomic_store(&fail_dir_fsync, 1);
    assert_int_equal(maildir_deliver(f->md, NULL, "b\r\n", 3, "h", &once, &err), RESULT_TEMP);
    assert_string_equal(err.status, "4.3.0");
    assert_non_null(strstr(err.text, "fsync"));
    sub(f, "new", newdir, sizeof(newdir));
    sub(f, "tmp", tmpdir, sizeof(tmpdir));
    assert_int_equal(tu_count_entries(newdir, NULL, 0), 1);
    assert_int_equal(tu_count_entries(tmpdir, NULL, 0), 0);
    /* the retry delivers it (the failure was not remembered as "seen") */
    atomic_store(&fail_dir_fsync, 0);
    assert_int_equal(maildir_deliver(f->md, NULL, "b\r\n", 3, "h", &once, &err), RESULT_OK);
    assert_int_equal(tu_count_entries(newdir, NULL, 0), 2);
}

#define SHARE_THREADS 16
#define SHARE_EACH 8

struct share_arg {
    const char *md;
    int who;
    int failures;
    int64_t time; /* the items' arrival: fixed, it is part of the name */
};

static void *share_worker(void *p)
{
    struct share_arg *a = p;
    char uniq[64];
    for (int i = 0; i < SHARE_EACH; i++) {
        struct rcpt_result err;
        snprintf(uniq, sizeof(uniq), "1712345678-%08x-9f3a_%d", a->who, i);
        struct maildir_once once = {.time = a->time, .uniq = uniq};
        if (maildir_deliver(a->md, NULL, "m\r\n", 3, "h", &once, &err) != RESULT_OK)
            a->failures++;
    }
    return NULL;
}

/* Many workers into one Maildir: every message lands once, and they share
 * new/'s fsyncs. */
static void test_concurrent_share_fsync(void **state)
{
    struct fx *f = *state;
    struct rcpt_result err;
    pthread_t t[SHARE_THREADS];
    struct share_arg a[SHARE_THREADS];
    char newdir[192], tmpdir[192];

    assert_int_equal(maildir_deliver(f->md, NULL, "x\r\n", 3, "h", NULL, &err), RESULT_OK);
    reset_counts();
    maildir_testio.fsync = count_fsync;
    for (int i = 0; i < SHARE_THREADS; i++) {
        a[i] = (struct share_arg){.md = f->md, .who = i, .time = time(NULL) - 10};
        assert_int_equal(pthread_create(&t[i], NULL, share_worker, &a[i]), 0);
    }
    for (int i = 0; i < SHARE_THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(a[i].failures, 0);
    }
    int n = SHARE_THREADS * SHARE_EACH;
    sub(f, "new", newdir, sizeof(newdir));
    sub(f, "tmp", tmpdir, sizeof(tmpdir));
    assert_int_equal(tu_count_entries(newdir, NULL, 0), n + 1);
    assert_int_equal(tu_count_entries(tmpdir, NULL, 0), 0);
    assert_int_equal(atomic_load(&file_fsyncs), n);
    assert_true(atomic_load(&dir_fsyncs) >= SHARE_EACH);
    assert_true(atomic_load(&dir_fsyncs) < n / 2);
    /* all of them again (a retry after a crash): nothing new */
    for (int i = 0; i < SHARE_THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, share_worker, &a[i]), 0);
    for (int i = 0; i < SHARE_THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(a[i].failures, 0);
    }
    assert_int_equal(tu_count_entries(newdir, NULL, 0), n + 1);
}

/* The courier makes the folders above a Maildir for the first delivery only. */
static void test_courier_mkparents_when_needed(void **state)
{
    struct fx *f = *state;
    struct envelope env;
    struct rcpt_result res;
    char md[192], newdir[256];

    snprintf(md, sizeof(md), "%s/mail/example.org/bob/Maildir", f->root);
    envelope_init(&env);
    strcpy(env.id, "1712345678-0000002a-9f3a0c1d2e3b4a5f");
    envelope_set(&env.sender, "a@example.org");
    env.created = 1712345678;
    envelope_add_rcpt(&env, "bob@example.org", NULL, "maildir:/x");
    const struct env_rcpt *r = &env.rcpts[0];
    struct courier_job j = {
        .env = &env, .rcpts = &r, .n = 1, .arg = md, .msg = "m\r\n", .len = 3, .hostname = "h"};
    reset_counts();
    maildir_testio.mkdir = count_mkdir;
    courier_maildir.deliver(&j, &res);
    assert_int_equal(res.cls, RESULT_OK);
    assert_true(atomic_load(&mkdirs) >= 3); /* mail, example.org, bob (and those above) */
    snprintf(newdir, sizeof(newdir), "%s/new", md);
    assert_int_equal(tu_count_entries(newdir, NULL, 0), 1);

    /* the Maildir is there: no mkdir at all, for another delivery or a repeat */
    reset_counts();
    courier_maildir.deliver(&j, &res);
    assert_int_equal(res.cls, RESULT_OK);
    strcpy(env.id, "1712345678-0000002b-9f3a0c1d2e3b4a5f");
    courier_maildir.deliver(&j, &res);
    assert_int_equal(res.cls, RESULT_OK);
    assert_int_equal(atomic_load(&mkdirs), 0);
    assert_int_equal(tu_count_entries(newdir, NULL, 0), 2);

    /* the Maildir removed (not its parent): made again by the delivery itself */
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", md);
    assert_int_equal(system(cmd), 0);
    courier_maildir.deliver(&j, &res);
    assert_int_equal(res.cls, RESULT_OK);
    assert_int_equal(atomic_load(&mkdirs), 0);
    envelope_free(&env);
}

static void test_clean_text(void **state)
{
    (void)state;
    char out[16];
    assert_int_equal(result_clean(out, sizeof(out), "  a\r\n\tb\0c\x7f\xc3\xa9  ", 14), 8);
    assert_string_equal(out, "a b c ??");
    assert_int_equal(result_clean(out, sizeof(out), "0123456789abcdefghij", 20), 15);
    assert_string_equal(out, "0123456789ab...");
    struct rcpt_result e;
    assert_int_equal(result_fail(&e, RESULT_PERM, "5.3.0", "x\ny%s", "\x01z"), RESULT_PERM);
    assert_string_equal(e.status, "5.3.0");
    assert_string_equal(e.text, "x y z");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_deliver, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_and_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deliver_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_courier_uses_queue_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unique_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlinked_maildir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlinked_sub, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_parent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly_new, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rename_and_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_fsync_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_share_fsync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_courier_mkparents_when_needed, setup, teardown),
        cmocka_unit_test(test_clean_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
