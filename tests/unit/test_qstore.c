/*
 * test_qstore.c - unit tests for queue/store.c in mkdtemp spools: commit
 * (one file per item), read back, update, remove; recovery after crashes
 * simulated by writing the spool by hand (items without end line, garbage,
 * symlinks, foreign files, tmp/ and spare/ leftovers, and an older tern's
 * ID.env + ID.msg pairs: incomplete, orphan, damaged, converted);
 * write/fsync failures (ENOSPC, EIO) injected through the qstore_io seam
 * leave nothing behind; committed items damaged afterwards (cut in the
 * envelope or the message, a bit flipped, octets added) are quarantined
 * with a reason; a never-finished commit is removed; spare files are reused
 * only once their removal is durable, and cut to the new item's length;
 * 10000 commits from 4 threads give 10000 distinct ids; room checks.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../support/testutil.h"
#include "core/crc32c.h"
#include "core/log.h"
#include "queue/store.h"

struct fixture {
    char dir[64];
    struct qstore *s;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_non_null(tu_tmpdir(f->dir, sizeof(f->dir) - strlen("/spool"), "tern-qstore"));
    strcat(f->dir, "/spool"); /* qstore_open creates it */
    char why[256];
    f->s = qstore_open(f->dir, why, sizeof(why));
    if (!f->s)
        fail_msg("qstore_open: %s", why);
    log_set_level(LOG_ERROR);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    qstore_close(f->s);
    char *slash = strrchr(f->dir, '/');
    *slash = '\0';
    tu_rmtree(f->dir);
    free(f);
    return 0;
}

/* ---- helpers ------------------------------------------------------------- */

static void make_env(struct envelope *env, const char *rcpt)
{
    envelope_init(env);
    envelope_set(&env->sender, "alice@example.org");
    env->created = 1712345678;
    env->next_attempt = 1712345678;
    envelope_add_rcpt(env, rcpt, NULL, "maildir:/tmp/x");
}

static const char msg[] = "From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n";

static char *commit(struct fixture *f, const char *rcpt)
{
    struct envelope env;
    char why[256];
    make_env(&env, rcpt);
    if (qstore_commit(f->s, &env, msg, strlen(msg), why, sizeof(why)) != 0)
        fail_msg("commit: %s", why);
    char *id = strdup(env.id);
    envelope_free(&env);
    return id;
}

static void path(const struct fixture *f, const char *sub, const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/%s/%s", f->dir, sub, name);
}

static bool file_exists(const struct fixture *f, const char *sub, const char *name)
{
    char p[512];
    struct stat st;
    path(f, sub, name, p, sizeof(p));
    return lstat(p, &st) == 0;
}

static void put_file(const struct fixture *f, const char *sub, const char *name, const char *data,
                     size_t len)
{
    char p[512];
    path(f, sub, name, p, sizeof(p));
    tu_write(p, data, len, 0666);
}

static size_t count_dir(const struct fixture *f, const char *sub)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", f->dir, sub);
    DIR *d = opendir(p);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

/* A complete, valid envelope file for id (version 1: no checksum). */
static void env_text(const char *id, bool with_end, struct buf *out)
{
    struct envelope env;
    make_env(&env, "bob@example.net");
    strcpy(env.id, id);
    assert_int_equal(envelope_format(&env, out), 0);
    if (!with_end)
        out->len -= 4; /* drop "end\n" */
    envelope_free(&env);
}

/* An older tern's version 2 .env for id, with msg's size and checksum. */
static void env_text2(const char *id, struct buf *out)
{
    struct envelope env;
    make_env(&env, "bob@example.net");
    strcpy(env.id, id);
    env.msg_sum = true;
    env.msg_size = strlen(msg);
    env.msg_crc = crc32c_update(0, msg, strlen(msg));
    assert_int_equal(envelope_format(&env, out), 0);
    envelope_free(&env);
}

/* The octets of queue/ID's envelope (through its end line) and of the whole file. */
static size_t item_env_len(const struct fixture *f, const char *id, size_t *total)
{
    char p[512];
    path(f, "queue", id, p, sizeof(p));
    size_t n;
    char *text = tu_slurp(p, &n);
    char *end = memmem(text, n, "\nend\n", 5);
    assert_non_null(end);
    size_t len = (size_t)(end - text) + 5;
    free(text);
    if (total)
        *total = n;
    return len;
}

struct collected {
    size_t n;
    char ids[16][ENV_ID_MAX + 1];
    struct envelope kept; /* the first one, moved out of the callback */
};

static void collect(void *ctx, struct envelope *env)
{
    struct collected *c = ctx;
    if (c->n == 0) {
        c->kept = *env; /* a move: the store must not free it */
        envelope_init(env);
        snprintf(c->ids[c->n++], ENV_ID_MAX + 1, "%s", c->kept.id);
        return;
    }
    if (c->n < 16)
        snprintf(c->ids[c->n], ENV_ID_MAX + 1, "%s", env->id);
    c->n++;
}

/* ---- tests --------------------------------------------------------------- */

static void test_layout(void **state)
{
    struct fixture *f = *state;
    char p[512];
    struct stat st;
    static const char *const subs[] = {"tmp", "queue", "quarantine", "spare"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof(p), "%s/%s", f->dir, subs[i]);
        assert_int_equal(stat(p, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 0777, 0700);
    }
    assert_string_equal(qstore_dir(f->s), f->dir);
    /* reopening an existing spool works */
    char why[128];
    struct qstore *s2 = qstore_open(f->dir, why, sizeof(why));
    assert_non_null(s2);
    qstore_close(s2);
    /* a spool where a file stands is refused with a reason */
    put_file(f, "queue", "x", "", 0);
    snprintf(p, sizeof(p), "%s/queue/x", f->dir);
    assert_null(qstore_open(p, why, sizeof(why)));
    assert_non_null(strstr(why, p));
    unlink(p);
}

static void test_commit_read_update_remove(void **state)
{
    struct fixture *f = *state;
    struct envelope env, back;
    char why[256], name[128];
    make_env(&env, "bob@example.net");
    envelope_add_rcpt(&env, "carol@example.net", "list@example.net", "mda");
    assert_int_equal(qstore_commit(f->s, &env, msg, strlen(msg), why, sizeof(why)), 0);
    assert_true(envelope_id_valid(env.id));
    assert_int_equal(qstore_count(f->s), 1);

    snprintf(name, sizeof(name), "%s", env.id);
    assert_true(file_exists(f, "queue", name)); /* one file: envelope + message */
    assert_int_equal(count_dir(f, "tmp"), 0);
    assert_int_equal(count_dir(f, "queue"), 1);
    size_t total, elen = item_env_len(f, env.id, &total);
    assert_int_equal(total, elen + strlen(msg));
    char p[512];
    struct stat st;
    path(f, "queue", name, p, sizeof(p));
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    struct buf b = {0};
    assert_int_equal(qstore_read_msg(f->s, env.id, &b, why, sizeof(why)), 0);
    assert_int_equal(b.len, strlen(msg));
    assert_memory_equal(b.p, msg, b.len);
    buf_free(&b);
    int fd = qstore_open_msg(f->s, env.id);
    assert_true(fd >= 0);
    char head[5] = "";
    assert_int_equal(read(fd, head, 4), 4);
    assert_string_equal(head, "From");
    close(fd);

    assert_int_equal(qstore_read_env(f->s, env.id, &back, why, sizeof(why)), ENV_OK);
    assert_true(envelope_equal(&env, &back));
    envelope_free(&back);

    /* update: the recipient's outcome survives a re-read */
    envelope_rcpt_result(&env.rcpts[0], ENV_RCPT_FAILED, 1712345999, "550 5.1.1 no such user");
    env.next_attempt = 1712346000;
    assert_int_equal(qstore_update(f->s, &env, why, sizeof(why)), 0);
    assert_int_equal(count_dir(f, "tmp"), 0);
    assert_int_equal(qstore_read_env(f->s, env.id, &back, why, sizeof(why)), ENV_OK);
    assert_true(envelope_equal(&env, &back));
    assert_string_equal(back.rcpts[0].error, "550 5.1.1 no such user");
    envelope_free(&back);

    /* the message is still there, whole, after the rewrite */
    assert_int_equal(qstore_read_item(f->s, env.id, &back, &b, why, sizeof(why)), 0);
    assert_int_equal(b.len, strlen(msg));
    assert_memory_equal(b.p, msg, b.len);
    envelope_free(&back);
    b.len = 0;

    /* remove: the file gone, idempotent */
    assert_int_equal(qstore_remove(f->s, env.id, why, sizeof(why)), 0);
    assert_int_equal(count_dir(f, "queue"), 0);
    assert_int_equal(qstore_count(f->s), 0);
    assert_int_equal(qstore_remove(f->s, env.id, why, sizeof(why)), 0);
    /* an update of a removed item does not bring it back */
    assert_int_equal(qstore_update(f->s, &env, why, sizeof(why)), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(count_dir(f, "queue"), 0);
    assert_int_equal(qstore_read_msg(f->s, env.id, &b, why, sizeof(why)), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(qstore_read_msg(f->s, "../x", &b, why, sizeof(why)), -1);
    assert_int_equal(errno, EINVAL);
    envelope_free(&env);
    buf_free(&b);
}

static void test_commit_refuses_bad_envelope(void **state)
{
    struct fixture *f = *state;
    struct envelope env;
    char why[256];
    envelope_init(&env); /* no recipient */
    assert_int_equal(qstore_commit(f->s, &env, msg, strlen(msg), why, sizeof(why)), -1);
    assert_int_equal(errno, EINVAL);
    assert_string_equal(env.id, "");
    assert_int_equal(count_dir(f, "queue"), 0);
    assert_int_equal(count_dir(f, "tmp"), 0);
    envelope_free(&env);
}

static void test_recover_complete(void **state)
{
    struct fixture *f = *state;
    char *ids[3];
    for (int i = 0; i < 3; i++)
        ids[i] = commit(f, "bob@example.net");
    qstore_close(f->s);

    char why[256];
    f->s = qstore_open(f->dir, why, sizeof(why));
    assert_non_null(f->s);
    assert_int_equal(qstore_count(f->s), 0);
    struct collected c = {0};
    struct qstore_stats st;
    assert_int_equal(qstore_recover(f->s, collect, &c, &st, why, sizeof(why)), 0);
    assert_int_equal(c.n, 3);
    assert_int_equal(st.recovered, 3);
    assert_int_equal(st.incomplete + st.orphans + st.quarantined + st.errors, 0);
    assert_int_equal(qstore_count(f->s), 3);
    /* in id order, and the moved envelope is intact */
    for (int i = 0; i < 3; i++)
        assert_string_equal(c.ids[i], ids[i]);
    assert_string_equal(c.kept.rcpts[0].addr, "bob@example.net");
    envelope_free(&c.kept);
    /* nothing was changed on disk */
    assert_int_equal(count_dir(f, "queue"), 3);
    for (int i = 0; i < 3; i++)
        free(ids[i]);
}

static void test_recover_crashes(void **state)
{
    struct fixture *f = *state;
    struct buf t = {0};
    char *good = commit(f, "bob@example.net");

    /* crash while writing the envelope: no end line (with and without its .msg) */
    env_text("1000000000-00000001-aaaaaaaaaaaaaaaa", false, &t);
    put_file(f, "queue", "1000000000-00000001-aaaaaaaaaaaaaaaa.env", t.p, t.len);
    put_file(f, "queue", "1000000000-00000001-aaaaaaaaaaaaaaaa.msg", msg, strlen(msg));
    put_file(f, "queue", "1000000000-00000002-aaaaaaaaaaaaaaaa.env", t.p, t.len / 2);
    /* an empty .env: an older tern's crash right after create, or damage; no one
     * can tell which, so it is kept (quarantined) */
    put_file(f, "queue", "1000000000-00000003-aaaaaaaaaaaaaaaa.env", "", 0);
    /* crash before the envelope: a .msg alone */
    put_file(f, "queue", "1000000000-00000004-aaaaaaaaaaaaaaaa.msg", msg, strlen(msg));
    /* garbage .env with its .msg: quarantined together */
    put_file(f, "queue", "1000000000-00000005-aaaaaaaaaaaaaaaa.env",
             "\x7f"
             "ELF\1\1\0garbage",
             13);
    put_file(f, "queue", "1000000000-00000005-aaaaaaaaaaaaaaaa.msg", msg, strlen(msg));
    /* complete envelope whose id does not match its file name */
    t.len = 0;
    env_text("1000000000-00000099-bbbbbbbbbbbbbbbb", true, &t);
    put_file(f, "queue", "1000000000-00000006-aaaaaaaaaaaaaaaa.env", t.p, t.len);
    put_file(f, "queue", "1000000000-00000006-aaaaaaaaaaaaaaaa.msg", msg, strlen(msg));
    /* complete envelope without its message */
    t.len = 0;
    env_text("1000000000-00000007-aaaaaaaaaaaaaaaa", true, &t);
    put_file(f, "queue", "1000000000-00000007-aaaaaaaaaaaaaaaa.env", t.p, t.len);
    /* a file that is no queue item, and leftovers in tmp/ */
    put_file(f, "queue", "notes.txt", "hello", 5);
    put_file(f, "tmp", "1000000000-00000008-aaaaaaaaaaaaaaaa.msg", msg, 10);
    put_file(f, "tmp", "whatever", "x", 1);
    /* a symlinked envelope is never followed */
    char target[512], link[512];
    path(f, "queue", "notes.txt", target, sizeof(target));
    path(f, "queue", "1000000000-00000009-aaaaaaaaaaaaaaaa.env", link, sizeof(link));
    assert_int_equal(symlink(target, link), 0);
    /* one-file items: garbage, a symlink, an envelope without end line and
     * no message (an item only reaches queue/ whole: all three quarantined) */
    put_file(f, "queue", "1000000000-0000000a-aaaaaaaaaaaaaaaa", "garbage\n", 8);
    path(f, "queue", "1000000000-0000000b-aaaaaaaaaaaaaaaa", link, sizeof(link));
    assert_int_equal(symlink(target, link), 0);
    t.len = 0;
    env_text("1000000000-0000000c-aaaaaaaaaaaaaaaa", false, &t);
    put_file(f, "queue", "1000000000-0000000c-aaaaaaaaaaaaaaaa", t.p, t.len);
    /* spare/ is emptied without counting */
    put_file(f, "spare", "7", msg, strlen(msg));

    qstore_close(f->s);
    char why[256];
    f->s = qstore_open(f->dir, why, sizeof(why));
    assert_non_null(f->s);
    struct collected c = {0};
    struct qstore_stats st;
    assert_int_equal(qstore_recover(f->s, collect, &c, &st, why, sizeof(why)), 0);

    assert_int_equal(c.n, 1);
    assert_string_equal(c.ids[0], good);
    envelope_free(&c.kept);
    assert_int_equal(st.recovered, 1);
    assert_int_equal(st.incomplete, 2);
    assert_int_equal(st.orphans, 1);
    assert_int_equal(st.tmp_removed, 2);
    assert_int_equal(st.errors, 0);
    /* 3 (env), 5 (env+msg), 6 (env+msg), 7 (env), notes.txt, 9 (the symlink),
     * a, b, c */
    assert_int_equal(st.quarantined, 11);
    assert_int_equal(qstore_count(f->s), 1);

    /* what is left: the good item only */
    assert_int_equal(count_dir(f, "queue"), 1);
    assert_int_equal(count_dir(f, "tmp"), 0);
    assert_int_equal(count_dir(f, "spare"), 0);
    assert_true(file_exists(f, "quarantine", "1000000000-0000000a-aaaaaaaaaaaaaaaa"));
    assert_true(file_exists(f, "quarantine", "1000000000-0000000a-aaaaaaaaaaaaaaaa.why"));
    assert_true(file_exists(f, "quarantine", "1000000000-0000000b-aaaaaaaaaaaaaaaa"));
    assert_true(file_exists(f, "quarantine", "1000000000-0000000c-aaaaaaaaaaaaaaaa"));
    assert_false(file_exists(f, "queue", "1000000000-00000001-aaaaaaaaaaaaaaaa.msg"));
    assert_false(file_exists(f, "queue", "1000000000-00000004-aaaaaaaaaaaaaaaa.msg"));
    /* quarantined, never deleted, with the reason beside them */
    assert_true(file_exists(f, "quarantine", "1000000000-00000005-aaaaaaaaaaaaaaaa.env"));
    assert_true(file_exists(f, "quarantine", "1000000000-00000005-aaaaaaaaaaaaaaaa.msg"));
    assert_true(file_exists(f, "quarantine", "1000000000-00000006-aaaaaaaaaaaaaaaa.msg"));
    assert_true(file_exists(f, "quarantine", "1000000000-00000007-aaaaaaaaaaaaaaaa.env"));
    assert_true(file_exists(f, "quarantine", "notes.txt"));
    assert_true(file_exists(f, "quarantine", "1000000000-00000009-aaaaaaaaaaaaaaaa.env"));
    char p[512];
    path(f, "quarantine", "1000000000-00000005-aaaaaaaaaaaaaaaa.why", p, sizeof(p));
    FILE *fp = fopen(p, "r");
    assert_non_null(fp);
    char line[600] = "";
    assert_non_null(fgets(line, sizeof(line), fp));
    fclose(fp);
    assert_non_null(strstr(line, "queue/1000000000-00000005-aaaaaaaaaaaaaaaa.env: line 1"));
    path(f, "quarantine", "1000000000-00000007-aaaaaaaaaaaaaaaa.why", p, sizeof(p));
    fp = fopen(p, "r");
    assert_non_null(fp);
    assert_non_null(fgets(line, sizeof(line), fp));
    fclose(fp);
    assert_non_null(strstr(line, "message file"));

    /* a second recovery finds a clean spool; a name taken in quarantine is not overwritten */
    put_file(f, "queue", "notes.txt", "again", 5);
    assert_int_equal(qstore_recover(f->s, collect, &c, &st, why, sizeof(why)), 0);
    assert_int_equal(st.recovered, 1);
    assert_int_equal(st.quarantined, 1);
    assert_true(file_exists(f, "quarantine", "notes.txt.1"));
    envelope_free(&c.kept);
    free(good);
    buf_free(&t);
}

/* The first line of quarantine/NAME (its .why). */
static void why_line(const struct fixture *f, const char *name, char *line, size_t size)
{
    char p[512];
    path(f, "quarantine", name, p, sizeof(p));
    FILE *fp = fopen(p, "r");
    if (!fp)
        fail_msg("no %s", p);
    line[0] = '\0';
    assert_non_null(fgets(line, (int)size, fp));
    fclose(fp);
}

/* Change the file queue/ID: cut it to len octets (flip < 0), or flip one bit
 * of octet flip. */
static void damage(const struct fixture *f, const char *id, long len, long flip)
{
    char p[512];
    path(f, "queue", id, p, sizeof(p));
    if (flip < 0) {
        assert_int_equal(truncate(p, len), 0);
        return;
    }
    int fd = open(p, O_RDWR);
    assert_true(fd >= 0);
    unsigned char c;
    assert_int_equal(pread(fd, &c, 1, flip), 1);
    c ^= 0x10;
    assert_int_equal(pwrite(fd, &c, 1, flip), 1);
    close(fd);
}

/* A commit writes a version 2 envelope with the message's size and checksum. */
static void test_commit_records_checksum(void **state)
{
    struct fixture *f = *state;
    char *id = commit(f, "bob@example.net");
    char p[512], line[64];
    path(f, "queue", id, p, sizeof(p));
    size_t n;
    char *text = tu_slurp(p, &n);
    assert_memory_equal(text, "tern-envelope 2\n", 16);
    snprintf(line, sizeof(line), "\nmsg-size %zu\n", strlen(msg));
    assert_non_null(strstr(text, line));
    assert_non_null(strstr(text, "\nmsg-crc32c "));
    /* the message follows the envelope's end line, as it was received */
    assert_true(n > strlen(msg) + 5);
    assert_memory_equal(text + n - strlen(msg) - 4, "end\n", 4);
    assert_memory_equal(text + n - strlen(msg), msg, strlen(msg));
    free(text);

    struct envelope env;
    struct buf b = {0};
    char why[256];
    buf_append(&b, "x", 1); /* appended to, not replaced */
    assert_int_equal(qstore_read_item(f->s, id, &env, &b, why, sizeof(why)), 0);
    assert_true(env.msg_sum);
    assert_int_equal(env.msg_size, strlen(msg));
    assert_int_equal(b.len, 1 + strlen(msg));
    assert_int_equal(qstore_check_msg(&env, msg, strlen(msg), why, sizeof(why)), 0);
    assert_int_equal(qstore_check_msg(&env, msg, strlen(msg) - 1, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "damaged"));
    envelope_free(&env);
    buf_free(&b);
    free(id);
}

/*
 * Committed items damaged afterwards (a cut or a flipped bit in the .msg or
 * the .env) are quarantined with a reason, at recovery and on the delivery
 * path; the undamaged one is recovered.
 */
static void test_damaged_after_commit(void **state)
{
    struct fixture *f = *state;
    char *ids[7];
    for (int i = 0; i < 7; i++)
        ids[i] = commit(f, "bob@example.net");
    long mlen = (long)strlen(msg);
    long elen = (long)item_env_len(f, ids[0], NULL);
    damage(f, ids[0], elen + mlen / 2, -1); /* message cut */
    damage(f, ids[1], 0, elen + mlen - 3);  /* one bit flipped in the message, same size */
    damage(f, ids[2], elen, -1);            /* message emptied */
    damage(f, ids[3], elen / 2, -1);        /* envelope cut in half after its 250 */
    damage(f, ids[4], elen - 4, -1);        /* envelope without its end line */
    char p[512];
    path(f, "queue", ids[6], p, sizeof(p));
    FILE *fp = fopen(p, "a");
    assert_non_null(fp);
    assert_int_equal(fputs("more", fp) >= 0, 1); /* octets added after the message */
    assert_int_equal(fclose(fp), 0);

    /* on the delivery path: the message is checked before anything is handed on */
    struct envelope env;
    struct buf b = {0};
    char why[512];
    assert_int_equal(qstore_read_item(f->s, ids[0], &env, &b, why, sizeof(why)), QSTORE_DAMAGED);
    assert_non_null(strstr(why, "message file damaged"));
    assert_int_equal(b.len, 0);
    envelope_free(&env);
    assert_int_equal(qstore_read_item(f->s, ids[1], &env, &b, why, sizeof(why)), QSTORE_DAMAGED);
    assert_non_null(strstr(why, "CRC-32C"));
    assert_int_equal(b.len, 0);
    envelope_free(&env);
    assert_int_equal(qstore_read_item(f->s, ids[3], &env, &b, why, sizeof(why)), ENV_INCOMPLETE);
    envelope_free(&env);
    assert_int_equal(qstore_read_item(f->s, ids[6], &env, &b, why, sizeof(why)), QSTORE_DAMAGED);
    envelope_free(&env);
    assert_int_equal(qstore_read_item(f->s, ids[5], &env, &b, why, sizeof(why)), 0);
    assert_int_equal(b.len, strlen(msg));
    envelope_free(&env);
    buf_free(&b);

    /* at recovery */
    qstore_close(f->s);
    f->s = qstore_open(f->dir, why, sizeof(why));
    assert_non_null(f->s);
    struct collected c = {0};
    struct qstore_stats st;
    assert_int_equal(qstore_recover(f->s, collect, &c, &st, why, sizeof(why)), 0);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.ids[0], ids[5]);
    envelope_free(&c.kept);
    assert_int_equal(st.recovered, 1);
    assert_int_equal(st.incomplete, 0);
    assert_int_equal(st.quarantined, 6); /* six items, one file each */
    assert_int_equal(st.errors, 0);
    assert_int_equal(qstore_count(f->s), 1);
    assert_int_equal(count_dir(f, "queue"), 1);
    char line[700], name[128];
    for (int i = 0; i < 7; i++) {
        if (i == 5)
            continue;
        assert_true(file_exists(f, "quarantine", ids[i]));
        snprintf(name, sizeof(name), "%s.why", ids[i]);
        why_line(f, name, line, sizeof(line));
        if (i < 3 || i == 6)
            assert_non_null(strstr(line, "message file damaged"));
        else
            assert_non_null(strstr(line, "envelope damaged after it was committed"));
    }
    for (int i = 0; i < 7; i++)
        free(ids[i]);
}

/* A commit that never finished (crash before the rename into queue/) leaves
 * nothing: the half-written file in tmp/ is junk. */
static void test_unfinished_commit_removed(void **state)
{
    struct fixture *f = *state;
    char *id = commit(f, "bob@example.net");
    char from[512], to[512];
    path(f, "queue", id, from, sizeof(from));
    path(f, "tmp", id, to, sizeof(to));
    assert_int_equal(rename(from, to), 0);
    assert_int_equal(truncate(to, 40), 0);
    qstore_close(f->s);
    char why[256];
    f->s = qstore_open(f->dir, why, sizeof(why));
    assert_non_null(f->s);
    struct collected c = {0};
    struct qstore_stats st;
    assert_int_equal(qstore_recover(f->s, collect, &c, &st, why, sizeof(why)), 0);
    assert_int_equal(c.n, 0);
    assert_int_equal(st.tmp_removed, 1);
    assert_int_equal(st.orphans + st.quarantined + st.errors + st.recovered, 0);
    assert_int_equal(count_dir(f, "queue"), 0);
    assert_int_equal(count_dir(f, "tmp"), 0);
    assert_int_equal(count_dir(f, "quarantine"), 0);
    envelope_free(&c.kept);
    free(id);
}

/* An older tern's items (ID.env + ID.msg, version 1 without a checksum or
 * version 2 with one) are converted into one file at recovery and then read
 * like any other; a pair left beside its converted item (a crash during the
 * conversion) is removed. */
static void test_legacy_items_converted(void **state)
{
    struct fixture *f = *state;
    const char *id1 = "1000000000-00000001-cccccccccccccccc";
    const char *id2 = "1000000000-00000002-cccccccccccccccc";
    struct buf t = {0};
    char name[128];
    env_text(id1, true, &t);
    assert_memory_equal(t.p, "tern-envelope 1\n", 16);
    snprintf(name, sizeof(name), "%s.env", id1);
    put_file(f, "queue", name, t.p, t.len);
    snprintf(name, sizeof(name), "%s.msg", id1);
    put_file(f, "queue", name, msg, strlen(msg));
    t.len = 0;
    env_text2(id2, &t);
    assert_memory_equal(t.p, "tern-envelope 2\n", 16);
    snprintf(name, sizeof(name), "%s.env", id2);
    put_file(f, "queue", name, t.p, t.len);
    snprintf(name, sizeof(name), "%s.msg", id2);
    put_file(f, "queue", name, msg, strlen(msg));
    struct collected c = {0};
    struct qstore_stats st;
    char why[256];
    assert_int_equal(qstore_recover(f->s, collect, &c, &st, why, sizeof(why)), 0);
    assert_int_equal(st.recovered, 2);
    assert_int_equal(st.quarantined + st.errors + st.incomplete + st.orphans, 0);
    assert_string_equal(c.ids[0], id1);
    assert_string_equal(c.ids[1], id2);
    envelope_free(&c.kept);
    assert_int_equal(count_dir(f, "queue"), 2); /* id1 and id2, one file each */
    assert_true(file_exists(f, "queue", id1));
    assert_true(file_exists(f, "queue", id2));

    struct envelope env;
    struct buf b = {0};
    for (int i = 0; i < 2; i++) {
        const char *id = i ? id2 : id1;
        assert_int_equal(qstore_read_item(f->s, id, &env, &b, why, sizeof(why)), 0);
        assert_true(env.msg_sum); /* version 1 got the checksum of what was there */
        assert_int_equal(b.len, strlen(msg));
        assert_memory_equal(b.p, msg, b.len);
        b.len = 0;
        envelope_rcpt_result(&env.rcpts[0], ENV_RCPT_PENDING, 5, "451 later");
        assert_int_equal(qstore_update(f->s, &env, why, sizeof(why)), 0);
        envelope_free(&env);
    }
    assert_int_equal(qstore_read_env(f->s, id1, &env, why, sizeof(why)), ENV_OK);
    assert_int_equal(env.version, 2);
    assert_string_equal(env.rcpts[0].error, "451 later");
    envelope_free(&env);

    /* a crash after the conversion, before the pair was removed */
    t.len = 0;
    env_text2(id2, &t);
    snprintf(name, sizeof(name), "%s.env", id2);
    put_file(f, "queue", name, t.p, t.len);
    snprintf(name, sizeof(name), "%s.msg", id2);
    put_file(f, "queue", name, msg, strlen(msg));
    memset(&c, 0, sizeof(c));
    assert_int_equal(qstore_recover(f->s, collect, &c, &st, why, sizeof(why)), 0);
    assert_int_equal(st.recovered, 2);
    assert_int_equal(st.quarantined + st.errors, 0);
    envelope_free(&c.kept);
    assert_int_equal(count_dir(f, "queue"), 2);
    /* the rewritten envelope of id2 survived (the pair did not win) */
    assert_int_equal(qstore_read_env(f->s, id2, &env, why, sizeof(why)), ENV_OK);
    assert_string_equal(env.rcpts[0].error, "451 later");
    envelope_free(&env);
    buf_free(&b);
    buf_free(&t);
}

/* Removed items' files are kept in spare/ (up to the limit, small ones only)
 * and written over by later commits -- but only once the removal is durable
 * (an fsync of queue/ began after it); a reused file is cut to the new
 * item's length; `tern queue`'s store (no spares) unlinks. */
static void test_spares(void **state)
{
    struct fixture *f = *state;
    char why[256];
    qstore_set_spares(f->s, 2);
    char *a = commit(f, "a@b"), *b = commit(f, "a@b"), *c = commit(f, "a@b");
    assert_int_equal(qstore_remove(f->s, a, why, sizeof(why)), 0);
    assert_int_equal(qstore_remove(f->s, b, why, sizeof(why)), 0);
    assert_int_equal(qstore_remove(f->s, c, why, sizeof(why)), 0); /* spare/ full: unlinked */
    assert_int_equal(count_dir(f, "spare"), 2);
    assert_int_equal(count_dir(f, "queue"), 0);
    assert_int_equal(qstore_count(f->s), 0);

    /* no fsync of queue/ since the removals: a new file, not a spare */
    char *d = commit(f, "a@b");
    assert_int_equal(count_dir(f, "spare"), 2);
    /* that commit's fsync made the removals durable: the next ones reuse */
    char *e = commit(f, "a@b");
    assert_int_equal(count_dir(f, "spare"), 1);
    struct envelope env;
    struct buf m = {0};
    assert_int_equal(qstore_read_item(f->s, e, &env, &m, why, sizeof(why)), 0);
    assert_int_equal(m.len, strlen(msg));
    envelope_free(&env);

    /* a longer item removed, a shorter one written over it: nothing left behind */
    static char big[4000];
    memset(big, 'x', sizeof(big));
    make_env(&env, "a@b");
    assert_int_equal(qstore_commit(f->s, &env, big, sizeof(big), why, sizeof(why)), 0);
    assert_int_equal(count_dir(f, "spare"), 0);
    assert_int_equal(qstore_remove(f->s, env.id, why, sizeof(why)), 0);
    envelope_free(&env);
    free(commit(f, "a@b"));     /* a new file (fsyncs queue/) */
    char *g = commit(f, "a@b"); /* over the 4000-octet spare */
    m.len = 0;
    assert_int_equal(qstore_read_item(f->s, g, &env, &m, why, sizeof(why)), 0);
    assert_int_equal(m.len, strlen(msg));
    assert_memory_equal(m.p, msg, m.len);
    envelope_free(&env);
    size_t total, elen = item_env_len(f, g, &total);
    assert_int_equal(total, elen + strlen(msg));
    char p[512];
    struct stat st;
    path(f, "queue", g, p, sizeof(p));
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* a large item is unlinked, never kept */
    static char huge[QSTORE_SPARE_SIZE_MAX + 1];
    memset(huge, 'y', sizeof(huge));
    make_env(&env, "a@b");
    assert_int_equal(qstore_commit(f->s, &env, huge, sizeof(huge), why, sizeof(why)), 0);
    size_t before = count_dir(f, "spare");
    errno = ENOENT; /* whatever errno says before, the item goes */
    assert_int_equal(qstore_remove(f->s, env.id, why, sizeof(why)), 0);
    assert_int_equal(count_dir(f, "spare"), before);
    assert_false(file_exists(f, "queue", env.id));
    envelope_free(&env);

    /* spare/ is emptied at recovery */
    assert_int_equal(qstore_remove(f->s, g, why, sizeof(why)), 0);
    assert_true(count_dir(f, "spare") > 0);
    struct collected col = {0};
    struct qstore_stats rs;
    assert_int_equal(qstore_recover(f->s, collect, &col, &rs, why, sizeof(why)), 0);
    assert_int_equal(count_dir(f, "spare"), 0);
    assert_int_equal(rs.tmp_removed, 0);
    envelope_free(&col.kept);
    buf_free(&m);
    free(a);
    free(b);
    free(c);
    free(d);
    free(e);
    free(g);
}

static void test_list_is_read_only(void **state)
{
    struct fixture *f = *state;
    struct buf t = {0};
    char *good = commit(f, "bob@example.net");
    env_text("1000000000-00000001-aaaaaaaaaaaaaaaa", false, &t);
    put_file(f, "queue", "1000000000-00000001-aaaaaaaaaaaaaaaa.env", t.p, t.len);
    put_file(f, "queue", "1000000000-00000002-aaaaaaaaaaaaaaaa.msg", msg, strlen(msg));
    put_file(f, "queue", "junk", "x", 1);
    put_file(f, "tmp", "x", "x", 1);
    /* an older tern's complete pair is listed too */
    t.len = 0;
    env_text2("1000000000-00000003-aaaaaaaaaaaaaaaa", &t);
    put_file(f, "queue", "1000000000-00000003-aaaaaaaaaaaaaaaa.env", t.p, t.len);
    put_file(f, "queue", "1000000000-00000003-aaaaaaaaaaaaaaaa.msg", msg, strlen(msg));
    struct collected c = {0};
    char why[256];
    assert_int_equal(qstore_list(f->s, collect, &c, why, sizeof(why)), 0);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.ids[0], "1000000000-00000003-aaaaaaaaaaaaaaaa");
    assert_string_equal(c.ids[1], good);
    envelope_free(&c.kept);
    assert_int_equal(count_dir(f, "queue"), 6);
    assert_int_equal(count_dir(f, "tmp"), 1);
    assert_int_equal(count_dir(f, "quarantine"), 0);
    free(good);
    buf_free(&t);
}

static void test_quarantine_api(void **state)
{
    struct fixture *f = *state;
    char *id = commit(f, "bob@example.net");
    char name[128];
    assert_int_equal(qstore_count(f->s), 1);
    assert_int_equal(qstore_quarantine(f->s, id, "message unreadable at delivery"), 0);
    assert_int_equal(qstore_count(f->s), 0);
    assert_int_equal(count_dir(f, "queue"), 0);
    assert_true(file_exists(f, "quarantine", id));
    snprintf(name, sizeof(name), "%s.why", id);
    assert_true(file_exists(f, "quarantine", name));
    free(id);
}

/* ---- injected failures ----------------------------------------------------- */

static int fail_write_at, write_calls, fail_errno;
static int fail_fsync_at, fsync_calls;

static ssize_t bad_write(int fd, const void *p, size_t n)
{
    if (++write_calls == fail_write_at) {
        errno = fail_errno;
        return -1;
    }
    /* short writes are retried by the store */
    return write(fd, p, n > 7 ? 7 : n);
}

static int bad_fsync(int fd)
{
    if (++fsync_calls == fail_fsync_at) {
        errno = fail_errno;
        return -1;
    }
    return fsync(fd);
}

static void arm(int write_at, int fsync_at, int err)
{
    fail_write_at = write_at;
    fail_fsync_at = fsync_at;
    fail_errno = err;
    write_calls = fsync_calls = 0;
}

static void expect_failure(struct fixture *f, int err)
{
    struct envelope env;
    char why[256] = "";
    make_env(&env, "bob@example.net");
    assert_int_equal(qstore_commit(f->s, &env, msg, strlen(msg), why, sizeof(why)), -1);
    assert_int_equal(errno, err);
    assert_non_null(strstr(why, strerror(err)));
    assert_string_equal(env.id, "");
    assert_int_equal(count_dir(f, "queue"), 0);
    assert_int_equal(count_dir(f, "tmp"), 0);
    assert_int_equal(qstore_count(f->s), 0);
    envelope_free(&env);
}

static void test_write_failures(void **state)
{
    struct fixture *f = *state;
    struct qstore_io io = {bad_write, bad_fsync};
    qstore_set_io(f->s, &io);

    /* short writes alone are fine */
    arm(0, 0, 0);
    char *id = commit(f, "bob@example.net");
    assert_true(write_calls > 2);
    char why[256];
    assert_int_equal(qstore_remove(f->s, id, why, sizeof(why)), 0);
    free(id);

    arm(1, 0, ENOSPC); /* the envelope */
    expect_failure(f, ENOSPC);
    arm(3, 0, EDQUOT); /* within the envelope, after a few short writes */
    expect_failure(f, EDQUOT);
    /* the message, after the envelope: within the last ceil(len/7) writes */
    arm(0, 0, 0);
    id = commit(f, "bob@example.net");
    int all = write_calls;
    assert_int_equal(qstore_remove(f->s, id, why, sizeof(why)), 0);
    free(id);
    arm(all - 1, 0, ENOSPC);
    expect_failure(f, ENOSPC);
    arm(0, 1, EIO); /* fsync of the item */
    expect_failure(f, EIO);
    arm(0, 2, EIO); /* fsync of the queue directory */
    expect_failure(f, EIO);

    /* update failing leaves the old envelope in place */
    arm(0, 0, 0);
    struct envelope env, back;
    make_env(&env, "bob@example.net");
    assert_int_equal(qstore_commit(f->s, &env, msg, strlen(msg), why, sizeof(why)), 0);
    envelope_rcpt_result(&env.rcpts[0], ENV_RCPT_SENT, 5, NULL);
    arm(1, 0, ENOSPC);
    assert_int_equal(qstore_update(f->s, &env, why, sizeof(why)), -1);
    assert_int_equal(errno, ENOSPC);
    assert_int_equal(count_dir(f, "tmp"), 0);
    assert_int_equal(qstore_read_env(f->s, env.id, &back, why, sizeof(why)), ENV_OK);
    assert_int_equal(back.rcpts[0].status, ENV_RCPT_PENDING);
    envelope_free(&back);
    arm(all - 1, 0, ENOSPC); /* while copying the message */
    assert_int_equal(qstore_update(f->s, &env, why, sizeof(why)), -1);
    assert_int_equal(errno, ENOSPC);
    arm(0, 1, EIO);
    assert_int_equal(qstore_update(f->s, &env, why, sizeof(why)), -1);
    assert_int_equal(errno, EIO);
    assert_int_equal(count_dir(f, "tmp"), 0);
    struct buf mb = {0};
    assert_int_equal(qstore_read_item(f->s, env.id, &back, &mb, why, sizeof(why)), 0);
    assert_int_equal(back.rcpts[0].status, ENV_RCPT_PENDING);
    assert_int_equal(mb.len, strlen(msg));
    envelope_free(&back);
    buf_free(&mb);
    envelope_free(&env);
    qstore_set_io(f->s, NULL);
}

/* ---- ids and threads ------------------------------------------------------- */

#define THREADS 4
#define PER_THREAD 2500

struct worker {
    struct qstore *s;
    char (*ids)[ENV_ID_MAX + 1];
    int failures;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        struct envelope env;
        char why[256];
        make_env(&env, "bob@example.net");
        if (qstore_commit(w->s, &env, "x\r\n", 3, why, sizeof(why)) != 0)
            w->failures++;
        memcpy(w->ids[i], env.id, sizeof(env.id));
        envelope_free(&env);
    }
    return NULL;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_unique_ids_threads(void **state)
{
    struct fixture *f = *state;
    static char ids[THREADS * PER_THREAD][ENV_ID_MAX + 1];
    pthread_t th[THREADS];
    struct worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){f->s, ids + i * PER_THREAD, 0};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(w[i].failures, 0);
    }
    qsort(ids, THREADS * PER_THREAD, sizeof(ids[0]), cmp_id);
    for (int i = 1; i < THREADS * PER_THREAD; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);
    assert_int_equal(qstore_count(f->s), THREADS * PER_THREAD);
    assert_int_equal(count_dir(f, "queue"), THREADS * PER_THREAD);
    /* and all of them come back */
    qstore_close(f->s);
    char why[256];
    f->s = qstore_open(f->dir, why, sizeof(why));
    struct collected c = {0};
    struct qstore_stats st;
    assert_int_equal(qstore_recover(f->s, collect, &c, &st, why, sizeof(why)), 0);
    assert_int_equal(st.recovered, THREADS * PER_THREAD);
    envelope_free(&c.kept);
}

/* Group commit: commits running at the same time share the queue folder's
 * fsync (a slow folder fsync makes them meet), every commit still returns only
 * after an fsync of the folder that began after its rename, and a failed
 * folder fsync fails its own group and no other. */
static _Atomic int dir_fsyncs, dir_fsync_fail_next;

static int slow_dir_fsync(int fd)
{
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        dir_fsyncs++;
        struct timespec ts = {0, 3 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (atomic_exchange(&dir_fsync_fail_next, 0)) {
            errno = EIO;
            return -1;
        }
    }
    return fsync(fd);
}

static void test_group_commit(void **state)
{
    struct fixture *f = *state;
    static char ids[THREADS * PER_THREAD][ENV_ID_MAX + 1];
    pthread_t th[THREADS];
    struct worker w[THREADS];
    struct qstore_io io = {.fsync = slow_dir_fsync};
    qstore_set_io(f->s, &io);
    dir_fsyncs = 0;
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){f->s, ids + i * PER_THREAD, 0};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(w[i].failures, 0);
    }
    assert_int_equal(qstore_count(f->s), THREADS * PER_THREAD);
    assert_true(dir_fsyncs >= 1);
    assert_true(dir_fsyncs < THREADS * PER_THREAD); /* shared, not one each */
    /* a failed folder fsync fails the commit it covered, and it leaves nothing */
    dir_fsync_fail_next = 1;
    struct envelope env;
    char why[256];
    make_env(&env, "bob@example.net");
    assert_int_equal(qstore_commit(f->s, &env, "x\r\n", 3, why, sizeof(why)), -1);
    assert_int_equal(errno, EIO);
    assert_non_null(strstr(why, "fsync"));
    envelope_free(&env);
    assert_int_equal(count_dir(f, "queue"), THREADS * PER_THREAD);
    make_env(&env, "bob@example.net"); /* the next group is fine again */
    assert_int_equal(qstore_commit(f->s, &env, "x\r\n", 3, why, sizeof(why)), 0);
    envelope_free(&env);
    qstore_set_io(f->s, NULL);
}

/* tmp/ files of another process's writer: only old ones are removed. */
static void test_clean_stale(void **state)
{
    struct fixture *f = *state;
    put_file(f, "tmp", "old", "x", 1);
    put_file(f, "tmp", "young", "x", 1);
    char p[512];
    path(f, "tmp", "old", p, sizeof(p));
    struct timespec ts[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    assert_int_equal(qstore_clean_stale(f->s, (int64_t)time(NULL), 3600), 1);
    assert_false(file_exists(f, "tmp", "old"));
    assert_true(file_exists(f, "tmp", "young"));
    assert_int_equal(qstore_clean_stale(f->s, (int64_t)time(NULL), 3600), 0);
}

/* `tern queue delete` while an update writes the new version: the update
 * finds the item gone and does not bring it back. */
static char race_path[512];
static int delete_during_fsync(int fd)
{
    if (race_path[0] && unlink(race_path) == 0)
        race_path[0] = '\0';
    return fsync(fd);
}

static void test_update_racing_delete(void **state)
{
    struct fixture *f = *state;
    char why[256];
    struct envelope env;
    char *id = commit(f, "bob@example.net");
    assert_int_equal(qstore_read_env(f->s, id, &env, why, sizeof(why)), ENV_OK);
    path(f, "queue", id, race_path, sizeof(race_path));
    struct qstore_io io = {.fsync = delete_during_fsync};
    qstore_set_io(f->s, &io);
    envelope_rcpt_result(&env.rcpts[0], ENV_RCPT_PENDING, 5, "451 later");
    assert_int_equal(qstore_update(f->s, &env, why, sizeof(why)), -1);
    assert_int_equal(errno, ENOENT);
    assert_string_equal(race_path, ""); /* the delete happened in between */
    assert_false(file_exists(f, "queue", id));
    assert_int_equal(count_dir(f, "tmp"), 0);
    qstore_set_io(f->s, NULL);
    envelope_free(&env);
    free(id);
}

static void test_room(void **state)
{
    struct fixture *f = *state;
    char why[256];
    struct qstore_limits lim = {0};
    assert_int_equal(qstore_check_room(f->s, &lim, 1000, why, sizeof(why)), 0);
    lim.min_free_bytes = 1;
    lim.min_free_inodes = 1;
    assert_int_equal(qstore_check_room(f->s, &lim, 1000, why, sizeof(why)), 0);
    lim.min_free_bytes = UINT64_MAX / 2; /* more than any disk */
    assert_int_equal(qstore_check_room(f->s, &lim, 1000, why, sizeof(why)), -1);
    assert_int_equal(errno, ENOSPC);
    assert_non_null(strstr(why, "disk nearly full"));
    lim.min_free_bytes = 1;
    assert_int_equal(qstore_check_room(f->s, &lim, UINT64_MAX, why, sizeof(why)), -1);
    assert_int_equal(errno, ENOSPC);
    lim.min_free_bytes = 0;
    lim.max_items = 2;
    char *a = commit(f, "a@b"), *b = commit(f, "a@b");
    assert_int_equal(qstore_check_room(f->s, &lim, 0, why, sizeof(why)), -1);
    assert_int_equal(errno, ENOSPC);
    assert_non_null(strstr(why, "queue full"));
    assert_int_equal(qstore_remove(f->s, a, why, sizeof(why)), 0);
    assert_int_equal(qstore_check_room(f->s, &lim, 0, why, sizeof(why)), 0);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_read_update_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_refuses_bad_envelope, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover_complete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover_crashes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_records_checksum, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_after_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unfinished_commit_removed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_legacy_items_converted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spares, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_is_read_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quarantine_api, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unique_ids_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clean_stale, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update_racing_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_room, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
