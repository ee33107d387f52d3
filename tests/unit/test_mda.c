/*
 * test_mda.c - delivery through programs (deliver/run.c, mda.c, pipe.c).
 * The programs under test are /bin/sh -c scripts (here only): they exit
 * 0, 75, 67 or 1, print errors, sleep past a 1 s deadline, copy stdin to a
 * file, never read stdin, look at their environment and descriptors.
 * Checked: the classification for the MDA rule and the pipe rule, the
 * bytes the program received, that substitution never splits a word, that
 * nothing is left running and nothing leaks (descriptors, zombies).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../support/testutil.h"
#include "deliver/mda.h"
#include "deliver/pipe.h"
#include "deliver/run.h"

static char dir[64];
static const char *msg = "Subject: test\r\nFrom: a@example.org\r\n\r\nbody line\r\n";

static const struct courier_vars vars = {
    .from = "alice@example.org",
    .to = "bob@example.com",
    .to_user = "bob",
    .to_domain = "example.com",
    .orig_to = "Bob@Example.com",
};

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_DFL); /* a SIGPIPE escaping run.c would kill the test */
    return tu_tmpdir(dir, sizeof(dir), "tern-mda") ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    return tu_rmtree(dir) == 0 ? 0 : -1;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    assert_non_null(d);
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Neither running nor stopped: gone, or a zombie waiting for its (new) parent. */
static int gone(pid_t pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    for (int i = 0; i < 100; i++) {
        FILE *fp = fopen(path, "r");
        if (!fp)
            return 1;
        size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
        fclose(fp);
        buf[n] = '\0';
        char *p = strrchr(buf, ')');
        if (p && (p[2] == 'Z' || p[2] == 'X'))
            return 1;
        usleep(10000);
    }
    return 0;
}

static void assert_no_children(void)
{
    int st;
    assert_int_equal(waitpid(-1, &st, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

static void test_stdin_bytes(void **state)
{
    (void)state;
    struct rcpt_result err;
    char cmd[256], out[128];
    size_t len;

    snprintf(out, sizeof(out), "%s/stdin", dir);
    snprintf(cmd, sizeof(cmd), "/bin/sh -c 'cat > \"$0\"' %s", out);
    assert_int_equal(
        mda_deliver(cmd, &vars, "Delivered-To: bob@example.com\r\n", msg, strlen(msg), 10, &err),
        RESULT_OK);
    assert_string_equal(err.status, "");
    char *got = tu_slurp(out, &len);
    assert_non_null(got);
    assert_string_equal(got, "Delivered-To: bob@example.com\nSubject: test\nFrom: a@example.org\n"
                             "\nbody line\n");
    free(got);
    /* and through a pipe alias, with its '|' */
    snprintf(cmd, sizeof(cmd), "|  /bin/sh -c 'cat > \"$0\"' %s", out);
    assert_int_equal(pipe_deliver(cmd, &vars, NULL, msg, strlen(msg), &err), RESULT_OK);
    got = tu_slurp(out, &len);
    assert_string_equal(got, "Subject: test\nFrom: a@example.org\n\nbody line\n");
    free(got);
    assert_no_children();
}

static void test_exit_codes(void **state)
{
    (void)state;
    struct rcpt_result err;

    assert_int_equal(
        mda_deliver("/bin/sh -c 'cat >/dev/null; exit 0'", &vars, NULL, msg, strlen(msg), 10, &err),
        RESULT_OK);
    /* exit 75: transient for an MDA, permanent for a pipe */
    assert_int_equal(mda_deliver("/bin/sh -c 'exit 75'", &vars, NULL, msg, strlen(msg), 10, &err),
                     RESULT_TEMP);
    assert_string_equal(err.status, "4.3.0");
    assert_non_null(strstr(err.text, "status 75"));
    assert_int_equal(pipe_deliver("/bin/sh -c 'exit 75'", &vars, NULL, msg, strlen(msg), &err),
                     RESULT_PERM);
    assert_string_equal(err.status, "5.3.0");
    /* exit 67: no such user */
    assert_int_equal(mda_deliver("/bin/sh -c 'exit 67'", &vars, NULL, msg, strlen(msg), 10, &err),
                     RESULT_PERM);
    assert_string_equal(err.status, "5.1.1");
    /* other exits are permanent, with the program's words */
    assert_int_equal(mda_deliver("/bin/sh -c 'echo \"mailbox is locked\" >&2; exit 1'", &vars, NULL,
                                 msg, strlen(msg), 10, &err),
                     RESULT_PERM);
    assert_string_equal(err.status, "5.3.0");
    assert_string_equal(err.text, "mda exited with status 1: mailbox is locked");
    assert_int_equal(
        pipe_deliver("/bin/sh -c 'echo oops; exit 2'", &vars, NULL, msg, strlen(msg), &err),
        RESULT_PERM);
    assert_string_equal(err.text, "pipe command exited with status 2: oops");
    /* a signal is permanent */
    assert_int_equal(
        mda_deliver("/bin/sh -c 'kill -SEGV $$'", &vars, NULL, msg, strlen(msg), 10, &err),
        RESULT_PERM);
    assert_non_null(strstr(err.text, "SIGSEGV"));
    /* a bare program name is found in the fixed PATH */
    assert_int_equal(mda_deliver("true", &vars, NULL, msg, strlen(msg), 10, &err), RESULT_OK);
    assert_no_children();
}

static void test_exec_failures(void **state)
{
    (void)state;
    struct rcpt_result err;

    assert_int_equal(
        mda_deliver("/nonexistent/lda -d %to_user%", &vars, NULL, msg, strlen(msg), 10, &err),
        RESULT_TEMP);
    assert_string_equal(err.status, "4.3.5");
    assert_non_null(strstr(err.text, "No such file"));
    assert_int_equal(pipe_deliver("/nonexistent/prog", &vars, NULL, msg, strlen(msg), &err),
                     RESULT_PERM);
    assert_string_equal(err.status, "5.3.5");
    assert_null(strstr(err.text, "/nonexistent")); /* a permanent text names no path */
    assert_int_equal(mda_deliver("/etc/passwd", &vars, NULL, msg, strlen(msg), 10, &err),
                     RESULT_TEMP); /* not executable */
    assert_int_equal(mda_deliver("no-such-program-tern", &vars, NULL, msg, strlen(msg), 10, &err),
                     RESULT_TEMP);
    /* a broken template is the administrator's to fix: the mail waits */
    assert_int_equal(mda_deliver("/bin/sh -c 'exit 0", &vars, NULL, msg, strlen(msg), 10, &err),
                     RESULT_TEMP);
    assert_string_equal(err.status, "4.3.5");
    assert_non_null(strstr(err.text, "column 12: unterminated single quote"));
    assert_int_equal(mda_deliver("bin/lda", &vars, NULL, msg, strlen(msg), 10, &err), RESULT_TEMP);
    assert_int_equal(pipe_deliver("|", &vars, NULL, msg, strlen(msg), &err), RESULT_PERM);
    assert_no_children();
}

static void test_timeout(void **state)
{
    (void)state;
    struct rcpt_result err;
    char cmd[256], pids[128];
    pid_t p1 = 0, p2 = 0;

    snprintf(pids, sizeof(pids), "%s/pids", dir);
    snprintf(cmd, sizeof(cmd),
             "/bin/sh -c 'echo $$ > \"$0\"; sleep 30 & echo $! >> \"$0\"; sleep 30; wait' %s",
             pids);
    for (int policy = 0; policy < 2; policy++) {
        double t0 = now_s();
        enum result_class r = mda_run(cmd, strlen(cmd), &vars, NULL, msg, strlen(msg), 1000,
                                      policy ? MDA_POLICY_PIPE : MDA_POLICY_MDA, &err);
        double dt = now_s() - t0;
        assert_true(dt >= 0.9);
        assert_true(dt < 1.0 + RUN_KILL_GRACE_MS / 1000.0 + 1.0);
        if (policy) {
            assert_int_equal(r, RESULT_PERM);
            assert_string_equal(err.status, "5.3.0");
        } else {
            assert_int_equal(r, RESULT_TEMP);
            assert_string_equal(err.status, "4.3.0");
        }
        assert_string_equal(err.text, policy ? "pipe command did not finish within 1 s and was "
                                               "killed"
                                             : "mda did not finish within 1 s and was killed");
        FILE *fp = fopen(pids, "r");
        assert_non_null(fp);
        assert_int_equal(fscanf(fp, "%d %d", &p1, &p2), 2);
        fclose(fp);
        assert_true(gone(p1));
        assert_true(gone(p2)); /* the background child too: the whole group was killed */
        assert_no_children();
    }
    /* a program that ignores SIGTERM gets SIGKILL after the grace period */
    double t0 = now_s();
    assert_int_equal(mda_deliver("/bin/sh -c 'trap \"\" TERM; sleep 30 & wait; sleep 30'", &vars,
                                 NULL, msg, strlen(msg), 1, &err),
                     RESULT_TEMP);
    assert_true(now_s() - t0 < 1.0 + RUN_KILL_GRACE_MS / 1000.0 + 1.0);
    assert_no_children();
}

/* A program that exits but leaves a child holding its output: OK, quickly, and the child killed. */
static void test_leftovers_killed(void **state)
{
    (void)state;
    struct rcpt_result err;
    char cmd[256], pids[128];
    pid_t p1 = 0;

    snprintf(pids, sizeof(pids), "%s/left", dir);
    snprintf(cmd, sizeof(cmd), "/bin/sh -c 'sleep 30 & echo $! > \"$0\"; exit 0' %s", pids);
    double t0 = now_s();
    assert_int_equal(mda_deliver(cmd, &vars, NULL, msg, strlen(msg), 10, &err), RESULT_OK);
    assert_true(now_s() - t0 < 2.0);
    FILE *fp = fopen(pids, "r");
    assert_non_null(fp);
    assert_int_equal(fscanf(fp, "%d", &p1), 1);
    fclose(fp);
    assert_true(gone(p1));
    assert_no_children();
}

static void test_stdin_not_read(void **state)
{
    (void)state;
    struct rcpt_result err;
    size_t n = 8u << 20;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, 'x', n);

    /* exits without reading: EPIPE is not an error, the exit status decides */
    double t0 = now_s();
    assert_int_equal(mda_deliver("/bin/sh -c 'sleep 0.2; exit 0'", &vars, NULL, big, n, 10, &err),
                     RESULT_OK);
    assert_int_equal(
        mda_deliver("/bin/sh -c 'exec 0<&-; sleep 0.2; exit 3'", &vars, NULL, big, n, 10, &err),
        RESULT_PERM);
    assert_true(now_s() - t0 < 5.0);
    /* neither reads nor exits: the deadline still holds */
    t0 = now_s();
    assert_int_equal(mda_deliver("/bin/sh -c 'sleep 30'", &vars, NULL, big, n, 1, &err),
                     RESULT_TEMP);
    assert_true(now_s() - t0 < 1.0 + RUN_KILL_GRACE_MS / 1000.0 + 1.0);
    /* reads everything: all 8 MiB arrive */
    char cmd[256], out[128];
    size_t len = 0;
    snprintf(out, sizeof(out), "%s/wc", dir);
    snprintf(cmd, sizeof(cmd), "/bin/sh -c 'wc -c > \"$0\"' %s", out);
    assert_int_equal(mda_deliver(cmd, &vars, NULL, big, n, 10, &err), RESULT_OK);
    char *got = tu_slurp(out, &len);
    assert_int_equal(strtoul(got, NULL, 10), n);
    free(got);
    free(big);
    assert_no_children();
}

static void test_output_bounded(void **state)
{
    (void)state;
    struct rcpt_result err;

    assert_int_equal(mda_deliver("/bin/sh -c 'head -c 300000 /dev/zero | tr \"\\\\0\" x; exit 1'",
                                 &vars, NULL, msg, strlen(msg), 10, &err),
                     RESULT_PERM);
    assert_true(strlen(err.text) < RESULT_TEXT_MAX);
    assert_non_null(strstr(err.text, "xxxxxxxx"));
    /* control characters and 8-bit octets never reach the text */
    assert_int_equal(mda_deliver("/bin/sh -c 'printf \"a\\033[31mb\\r\\nc\\t\\303\\251\"; exit 1'",
                                 &vars, NULL, msg, strlen(msg), 10, &err),
                     RESULT_PERM);
    assert_string_equal(err.text, "mda exited with status 1: a [31mb c ??");

    struct run_result res;
    char *argv[] = {"/bin/sh", "-c", "head -c 100000 /dev/zero; exit 4", NULL};
    struct run_spec spec = {.argv = argv, .timeout_ms = 5000};
    assert_int_equal(run_program(&spec, &res), RUN_EXITED);
    assert_int_equal(res.code, 4);
    assert_int_equal(res.output_total, 100000);
    assert_int_equal(res.output_len, RUN_OUTPUT_MAX);
    assert_true(res.input_complete);
    assert_no_children();
}

static void test_substitution(void **state)
{
    (void)state;
    struct rcpt_result err;
    char cmd[512], out[128];
    struct courier_vars v = vars;

    snprintf(out, sizeof(out), "%s/args", dir);
    snprintf(cmd, sizeof(cmd),
             "/bin/sh -c 'printf \"[%%s]\" \"$@\" > \"$0\"' %s -f %%from%% %%to%% "
             "--user=%%to_user%% %%to_domain%% %%orig_to%% 100%%",
             out);
    v.from = "\"a b; touch /tmp/pwned `id` $(id)\"@example.org";
    assert_int_equal(mda_deliver(cmd, &v, NULL, msg, strlen(msg), 10, &err), RESULT_OK);
    char *got = tu_slurp(out, NULL);
    assert_string_equal(got, "[-f][\"a b; touch /tmp/pwned `id` $(id)\"@example.org]"
                             "[bob@example.com][--user=bob][example.com][Bob@Example.com][100%]");
    free(got);
    assert_int_equal(unlink(out), 0);

    /* a value that would start an option is refused before anything runs */
    v = vars;
    v.to_user = "-oQ/tmp/x";
    assert_int_equal(mda_deliver(cmd, &v, NULL, msg, strlen(msg), 10, &err), RESULT_PERM);
    assert_string_equal(err.status, "5.1.3");
    assert_int_equal(access(out, F_OK), -1);
    v = vars;
    v.from = "-x@example.org";
    assert_int_equal(pipe_deliver(cmd, &v, NULL, msg, strlen(msg), &err), RESULT_PERM);
    assert_string_equal(err.status, "5.1.7");
    assert_int_equal(access(out, F_OK), -1);
    /* control characters in any envelope value: refused even if unused */
    v = vars;
    v.orig_to = "x@y\nz";
    assert_int_equal(mda_deliver("/bin/true", &v, NULL, msg, strlen(msg), 10, &err), RESULT_PERM);
    assert_string_equal(err.status, "5.1.3");
    assert_no_children();
}

static void test_environment(void **state)
{
    (void)state;
    struct rcpt_result err;
    char cmd[256], out[128];

    assert_int_equal(setenv("TERN_TEST_SECRET", "leak", 1), 0);
    snprintf(out, sizeof(out), "%s/env", dir);
    snprintf(cmd, sizeof(cmd), "/bin/sh -c '{ env; echo cwd=$(pwd); } > \"$0\"' %s", out);
    assert_int_equal(mda_deliver(cmd, &vars, NULL, msg, strlen(msg), 10, &err), RESULT_OK);
    char *file = tu_slurp(out, NULL), got[4096];
    snprintf(got, sizeof(got), "\n%s", file); /* every line starts after a newline */
    free(file);
    assert_non_null(strstr(got, "\nSENDER=alice@example.org\n"));
    assert_non_null(strstr(got, "\nRECIPIENT=bob@example.com\n"));
    assert_non_null(strstr(got, "\nORIGINAL_RECIPIENT=Bob@Example.com\n"));
    assert_non_null(strstr(got, "\nHOME=/\n"));
    assert_non_null(strstr(got, "PATH=/usr/local/bin:/usr/bin:/bin\n"));
    assert_non_null(strstr(got, "\ncwd=/\n"));
    assert_null(strstr(got, "TERN_TEST_SECRET"));
    assert_int_equal(unsetenv("TERN_TEST_SECRET"), 0);
}

static void test_no_leaks(void **state)
{
    (void)state;
    struct rcpt_result err;
    int before = count_fds();

    /* descriptors opened without O_CLOEXEC never reach the program */
    int fd = open("/dev/null", O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(dup2(fd, 77), 77);
    assert_int_equal(
        mda_deliver("/bin/sh -c 'ls /proc/$$/fd; exit 1'", &vars, NULL, msg, strlen(msg), 10, &err),
        RESULT_PERM);
    assert_string_equal(err.text, "mda exited with status 1: 0 1 2");
    close(77);
    close(fd);
    /* and none of ours stay open here, whatever the outcome */
    for (int i = 0; i < 20; i++) {
        mda_deliver("/bin/sh -c 'exit 75'", &vars, NULL, msg, strlen(msg), 10, &err);
        mda_deliver("/nonexistent", &vars, NULL, msg, strlen(msg), 10, &err);
        pipe_deliver("/bin/cat", &vars, NULL, msg, strlen(msg), &err);
    }
    assert_int_equal(count_fds(), before);
    assert_no_children();
    /* SIGPIPE caused by our writes was consumed, not left pending */
    sigset_t pending;
    sigpending(&pending);
    assert_int_equal(sigismember(&pending, SIGPIPE), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stdin_bytes),      cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_exec_failures),    cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_leftovers_killed), cmocka_unit_test(test_stdin_not_read),
        cmocka_unit_test(test_output_bounded),   cmocka_unit_test(test_substitution),
        cmocka_unit_test(test_environment),      cmocka_unit_test(test_no_leaks),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
