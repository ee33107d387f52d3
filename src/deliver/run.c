/*
 * run.c - run one delivery program (see run.h for what the program gets).
 *
 * Sequence: resolve the program and build argv/envp in the parent (nothing
 * but async-signal-safe calls happen between fork and execve); three pipes,
 * all O_CLOEXEC and moved above descriptor 2 (stdin, stdout+stderr, and an
 * exec-error pipe that tells "could not execute" apart from "exited 127");
 * fork with every signal blocked, so no handler of ours runs in the child;
 * the child makes its own process group, resets signals, closes every other
 * descriptor and execs.  The parent feeds stdin and drains output in one
 * poll() loop against the deadline, notices the exit with waitid(WNOWAIT),
 * which leaves the child a zombie, so that its pid, and with it the
 * process group id, cannot be reused while we kill the rest of the group;
 * then reaps it.  Invariant: every path through run_program() reaps the
 * child and closes every descriptor it opened.  SIGPIPE is blocked in the
 * calling thread while feeding and a SIGPIPE that our write caused is
 * consumed.  Nothing is allocated; nothing is logged except a failed close.
 */
#include "deliver/run.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

#define RUN_ENV_MAX 1100 /* one "NAME=value" of the environment */
#define RUN_DRAIN_MAX (1u << 20)

static uint64_t run_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void run_close(int *fd)
{
    if (*fd < 0)
        return;
    /* a failed close of a pipe end loses nothing; say so and go on */
    if (close(*fd) != 0 && errno != EINTR)
        log_warn("run: close(%d): %s", *fd, strerror(errno));
    *fd = -1;
}

/* Move a descriptor above 2 (so that dup2 onto 0..2 in the child always clears CLOEXEC). */
static int run_high(int *fd)
{
    if (*fd > 2)
        return 0;
    int n = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
    if (n < 0)
        return -1;
    run_close(fd);
    *fd = n;
    return 0;
}

static int run_pipe(int p[2])
{
    if (pipe2(p, O_CLOEXEC) != 0) {
        p[0] = p[1] = -1;
        return -1;
    }
    if (run_high(&p[0]) != 0 || run_high(&p[1]) != 0) {
        int e = errno;
        run_close(&p[0]);
        run_close(&p[1]);
        errno = e;
        return -1;
    }
    return 0;
}

/* The program's path: absolute as given, or a bare name found in RUN_PATH.  0 or an errno. */
static int run_resolve(const char *prog, char *path, size_t size)
{
    if (!prog || !*prog)
        return ENOENT;
    if (prog[0] == '/') {
        if (strlen(prog) >= size)
            return ENAMETOOLONG;
        memcpy(path, prog, strlen(prog) + 1);
        return 0;
    }
    if (strchr(prog, '/'))
        return EINVAL; /* relative paths depend on a working directory: never */
    const char *dir = RUN_PATH;
    while (*dir) {
        size_t n = strcspn(dir, ":");
        int w = snprintf(path, size, "%.*s/%s", (int)n, dir, prog);
        struct stat st;
        if (w > 0 && (size_t)w < size && stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
            access(path, X_OK) == 0)
            return 0;
        dir += n;
        if (*dir == ':')
            dir++;
    }
    return ENOENT;
}

__attribute__((noreturn)) static void run_child(const char *path, char *const argv[],
                                                char *const envp[], int in_r, int out_w, int err_w)
{
    struct sigaction sa;
    sigset_t none;
    int e;

    /* only async-signal-safe calls from here on */
    (void)setpgid(0, 0);
    if (dup2(in_r, 0) < 0 || dup2(out_w, 1) < 0 || dup2(out_w, 2) < 0)
        goto fail;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    for (int sig = 1; sig < NSIG; sig++)
        (void)sigaction(sig, &sa, NULL); /* SIGKILL, SIGSTOP refuse: fine */
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) != 0)
        goto fail;
    if (chdir("/") != 0)
        goto fail;
    /* descriptors that someone opened without O_CLOEXEC: gone too (keep err_w until exec) */
    if (err_w > 3)
        (void)close_range(3, (unsigned)err_w - 1, 0);
    (void)close_range((unsigned)err_w + 1, ~0u, 0);
    execve(path, argv, envp);
fail:
    e = errno;
    if (write(err_w, &e, sizeof(e)) != (ssize_t)sizeof(e))
        _exit(126); /* nothing more can be said from here */
    _exit(127);
}

/* True once the child has exited; it stays a zombie (WNOWAIT) until run_reap(). */
static int run_exited(pid_t pid)
{
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0)
        return errno != EINTR; /* ECHILD: someone else reaped it; treat as gone */
    return si.si_pid == pid;
}

static int run_reap(pid_t pid, int *status)
{
    for (;;) {
        pid_t r = waitpid(pid, status, 0);
        if (r == pid)
            return 0;
        if (r < 0 && errno == EINTR)
            continue;
        return -1;
    }
}

static void run_kill_group(pid_t pid, int sig)
{
    if (kill(-pid, sig) != 0 && errno == ESRCH)
        (void)kill(pid, sig); /* setpgid failed: at least the program itself */
}

/* Read what is there (non-blocking); close at EOF or error. */
static void run_read(int *fd, struct run_result *res, size_t limit)
{
    char tmp[4096];
    size_t got = 0;

    while (*fd >= 0 && got < limit) {
        ssize_t r = read(*fd, tmp, sizeof(tmp));
        if (r > 0) {
            size_t k = (size_t)r;
            if (res->output_len < sizeof(res->output)) {
                size_t room = sizeof(res->output) - res->output_len;
                memcpy(res->output + res->output_len, tmp, k < room ? k : room);
                res->output_len += k < room ? k : room;
            }
            res->output_total += k;
            got += k;
        } else if (r < 0 && errno == EINTR) {
            continue;
        } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        } else {
            run_close(fd); /* EOF, or an error that ends the output */
        }
    }
}

struct run_feed {
    struct courier_lf src;
    char stage[16384];
    size_t len, off;
    bool epipe;
};

/* Write what the pipe takes (non-blocking); close when done or refused. */
static void run_write(int *fd, struct run_feed *f, struct run_result *res)
{
    while (*fd >= 0) {
        if (f->off == f->len) {
            f->len = courier_lf_read(&f->src, f->stage, sizeof(f->stage));
            f->off = 0;
            if (f->len == 0) {
                res->input_complete = true;
                run_close(fd); /* EOF for the program */
                return;
            }
        }
        ssize_t w = write(*fd, f->stage + f->off, f->len - f->off);
        if (w > 0) {
            f->off += (size_t)w;
            res->written += (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        } else {
            if (w < 0 && errno == EPIPE)
                f->epipe = true; /* the program closed its stdin: its choice */
            run_close(fd);
        }
    }
}

static void run_env(char *dst, const char *name, const char *value, bool *ok)
{
    int n = snprintf(dst, RUN_ENV_MAX, "%s=%s", name, value ? value : "");
    if (n < 0 || n >= RUN_ENV_MAX || courier_has_ctl(value))
        *ok = false;
}

enum run_status run_program(const struct run_spec *spec, struct run_result *res)
{
    static const struct courier_vars novars;
    const struct courier_vars *v = spec->vars ? spec->vars : &novars;
    uint64_t t0 = run_now_ms();
    uint64_t timeout = spec->timeout_ms ? spec->timeout_ms : RUN_DEFAULT_TIMEOUT_MS;
    uint64_t deadline = t0 + timeout;
    char path[PATH_MAX];
    char env_sender[RUN_ENV_MAX], env_rcpt[RUN_ENV_MAX], env_orig[RUN_ENV_MAX];
    char *envp[] = {"PATH=" RUN_PATH, "HOME=/", env_sender, env_rcpt, env_orig, NULL};
    int in[2] = {-1, -1}, out[2] = {-1, -1}, ep[2] = {-1, -1};
    struct run_feed *feed = NULL;
    struct run_feed feed_storage;
    sigset_t all, old, pipe_set, pending;
    bool was_pending, timed_out = false, ok = true;
    int e, wstatus = 0, child_errno = 0;
    bool reaped;
    unsigned step = 1;
    pid_t pid;

    memset(res, 0, sizeof(*res));
    run_env(env_sender, "SENDER", v->from, &ok);
    run_env(env_rcpt, "RECIPIENT", v->to, &ok);
    run_env(env_orig, "ORIGINAL_RECIPIENT", v->orig_to, &ok);
    if (!ok) {
        res->status = RUN_EXEC_FAILED;
        res->code = E2BIG;
        return res->status;
    }
    if (!spec->argv || !spec->argv[0]) {
        res->status = RUN_EXEC_FAILED;
        res->code = ENOENT;
        return res->status;
    }
    e = run_resolve(spec->argv[0], path, sizeof(path));
    if (e != 0) {
        res->status = RUN_EXEC_FAILED;
        res->code = e;
        return res->status;
    }
    if (run_pipe(in) != 0 || run_pipe(out) != 0 || run_pipe(ep) != 0) {
        res->status = RUN_START_FAILED;
        res->code = errno;
        goto close_all;
    }

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid = fork();
    if (pid == 0)
        run_child(path, spec->argv, envp, in[0], out[1], ep[1]);
    e = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        res->status = RUN_START_FAILED;
        res->code = e;
        goto close_all;
    }
    (void)setpgid(pid, pid); /* both sides try: whichever runs first wins the race */
    run_close(&in[0]);
    run_close(&out[1]);
    run_close(&ep[1]);

    /* exec succeeded (EOF: the CLOEXEC write end went away) or the child reports errno */
    for (;;) {
        ssize_t r = read(ep[0], &child_errno, sizeof(child_errno));
        if (r < 0 && errno == EINTR)
            continue;
        if (r == (ssize_t)sizeof(child_errno)) {
            run_close(&ep[0]);
            run_close(&in[1]);
            run_close(&out[0]);
            (void)run_reap(pid, &wstatus);
            res->status = RUN_EXEC_FAILED;
            res->code = child_errno;
            res->elapsed_ms = (unsigned)(run_now_ms() - t0);
            return res->status;
        }
        break;
    }
    run_close(&ep[0]);

    if (fcntl(in[1], F_SETFL, O_NONBLOCK) != 0 || fcntl(out[0], F_SETFL, O_NONBLOCK) != 0) {
        /* cannot happen on a fresh pipe; never leave the child behind */
        res->status = RUN_START_FAILED;
        res->code = errno;
        run_kill_group(pid, SIGKILL);
        run_close(&in[1]);
        run_close(&out[0]);
        (void)run_reap(pid, &wstatus);
        return res->status;
    }

    feed = &feed_storage;
    feed->len = feed->off = 0;
    feed->epipe = false;
    courier_lf_init(&feed->src, spec->prefix, spec->prefix_len, spec->input, spec->input_len,
                    spec->crlf_to_lf);
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigemptyset(&pending);
    sigpending(&pending);
    was_pending = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);

    for (;;) {
        if (run_exited(pid))
            break;
        uint64_t now = run_now_ms();
        if (now >= deadline) {
            timed_out = true;
            break;
        }
        struct pollfd pfd[2];
        int n = 0, iw = -1, ir = -1;
        if (in[1] >= 0) {
            pfd[n] = (struct pollfd){.fd = in[1], .events = POLLOUT};
            iw = n++;
        }
        if (out[0] >= 0) {
            pfd[n] = (struct pollfd){.fd = out[0], .events = POLLIN};
            ir = n++;
        }
        uint64_t wait = deadline - now;
        if (n > 0) {
            if (wait > 100)
                wait = 100; /* also notice an exit while a leftover holds the pipes */
        } else {
            if (wait > step)
                wait = step;
            step = step < 32 ? step * 2 : 50;
        }
        int pr = poll(pfd, (nfds_t)n, (int)wait);
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            timed_out = true; /* cannot watch it any more: stop it */
            break;
        }
        if (iw >= 0 && pfd[iw].revents)
            run_write(&in[1], feed, res);
        if (ir >= 0 && pfd[ir].revents)
            run_read(&out[0], res, RUN_DRAIN_MAX);
    }
    run_close(&in[1]);

    if (timed_out) {
        uint64_t grace = run_now_ms() + RUN_KILL_GRACE_MS;
        run_kill_group(pid, SIGTERM);
        step = 1;
        while (!run_exited(pid)) {
            uint64_t now = run_now_ms();
            if (now >= grace)
                break;
            struct pollfd pfd = {.fd = out[0], .events = POLLIN};
            uint64_t wait = grace - now;
            if (wait > step)
                wait = step;
            step = step < 32 ? step * 2 : 50;
            if (poll(&pfd, out[0] >= 0 ? 1 : 0, (int)wait) > 0)
                run_read(&out[0], res, RUN_DRAIN_MAX);
        }
    }
    if (out[0] >= 0)
        run_read(&out[0], res, RUN_DRAIN_MAX);
    /* whatever is left in the group (or the program itself after the grace period) */
    run_kill_group(pid, SIGKILL);
    run_close(&out[0]);
    reaped = run_reap(pid, &wstatus) == 0;

    if (feed->epipe && !was_pending) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    if (timed_out) {
        res->status = RUN_TIMEOUT;
        res->code = 0;
    } else if (!reaped) {
        res->status = RUN_START_FAILED; /* someone else reaped it: its outcome is unknown */
        res->code = ECHILD;
    } else if (WIFEXITED(wstatus)) {
        res->status = RUN_EXITED;
        res->code = WEXITSTATUS(wstatus);
    } else if (WIFSIGNALED(wstatus)) {
        res->status = RUN_SIGNALED;
        res->code = WTERMSIG(wstatus);
    } else {
        res->status = RUN_SIGNALED;
        res->code = 0;
    }
    res->elapsed_ms = (unsigned)(run_now_ms() - t0);
    return res->status;

close_all:
    run_close(&in[0]);
    run_close(&in[1]);
    run_close(&out[0]);
    run_close(&out[1]);
    run_close(&ep[0]);
    run_close(&ep[1]);
    return res->status;
}

void run_describe(const struct run_result *res, char *buf, size_t size)
{
    const char *sig;

    if (size == 0)
        return;
    switch (res->status) {
    case RUN_EXITED:
        snprintf(buf, size, "exited with status %d", res->code);
        break;
    case RUN_SIGNALED:
        sig = sigabbrev_np(res->code);
        if (sig)
            snprintf(buf, size, "killed by signal SIG%s", sig);
        else
            snprintf(buf, size, "killed by signal %d", res->code);
        break;
    case RUN_TIMEOUT:
        snprintf(buf, size, "timed out after %u ms and was killed", res->elapsed_ms);
        break;
    case RUN_EXEC_FAILED:
        snprintf(buf, size, "could not be executed: %s",
                 strerrordesc_np(res->code) ? strerrordesc_np(res->code) : "unknown error");
        break;
    case RUN_START_FAILED:
        snprintf(buf, size, "could not be started: %s",
                 strerrordesc_np(res->code) ? strerrordesc_np(res->code) : "unknown error");
        break;
    }
}
