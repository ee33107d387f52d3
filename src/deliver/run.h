/*
 * run.h - run one delivery program: no shell, a message on its standard
 * input, its output captured, a deadline, and nothing left behind.
 *
 * The program gets: argv as given (argv[0] an absolute path, or a bare name
 * looked up in RUN_PATH); a small clean environment (PATH=RUN_PATH, HOME=/,
 * SENDER, RECIPIENT, ORIGINAL_RECIPIENT from the envelope); "/" as working
 * directory; default signal dispositions and an empty signal mask; only
 * descriptors 0, 1 and 2 (stdin a pipe carrying the message, stdout and
 * stderr one pipe back to us); its own process group.
 *
 * The parent feeds stdin with a poll() loop, so a program that never reads
 * cannot block us (EPIPE only ends the feeding; SIGPIPE is never delivered
 * to the caller); it keeps the first RUN_OUTPUT_MAX octets of output and
 * drains the rest.  At the deadline the whole process group gets SIGTERM,
 * then SIGKILL after a grace period.  When the program exits, whatever it
 * left running in its process group is killed.  The child is always
 * reaped.  Callers must not reap children with waitpid(-1, ...) elsewhere
 * in the process while this runs.  Every descriptor is O_CLOEXEC and
 * closed before return.  Blocking: call it from a delivery worker thread.
 */
#ifndef TERN_DELIVER_RUN_H
#define TERN_DELIVER_RUN_H

#include <stdbool.h>
#include <stddef.h>

#include "deliver/courier.h"

#define RUN_PATH "/usr/local/bin:/usr/bin:/bin"
#define RUN_OUTPUT_MAX 512      /* octets of stdout+stderr kept */
#define RUN_KILL_GRACE_MS 2000u /* between SIGTERM and SIGKILL */

struct run_spec {
    char *const *argv;               /* NULL-terminated, argv[0] the program */
    const struct courier_vars *vars; /* for the environment; may be NULL */
    const char *prefix;              /* written before input (may be NULL) */
    size_t prefix_len;
    const char *input; /* the message (may be NULL with input_len 0) */
    size_t input_len;
    bool crlf_to_lf;     /* write every CRLF of prefix and input as LF */
    unsigned timeout_ms; /* whole run; 0 means RUN_DEFAULT_TIMEOUT_MS */
};

#define RUN_DEFAULT_TIMEOUT_MS 30000u

enum run_status {
    RUN_EXITED,       /* code: exit status */
    RUN_SIGNALED,     /* code: the signal that ended it */
    RUN_TIMEOUT,      /* deadline passed; the process group was killed */
    RUN_EXEC_FAILED,  /* code: errno of execve (or ENOENT: not found in RUN_PATH) */
    RUN_START_FAILED, /* code: errno of pipe/fork/...: our side, not the program */
};

struct run_result {
    enum run_status status;
    int code;
    size_t written;      /* octets written into its stdin pipe (after conversion) */
    bool input_complete; /* all of it */
    size_t output_total; /* octets it wrote to stdout+stderr */
    size_t output_len;   /* octets kept in output */
    char output[RUN_OUTPUT_MAX];
    unsigned elapsed_ms;
};

/* Run spec, fill res, return res->status. */
enum run_status run_program(const struct run_spec *spec, struct run_result *res);

/* "exited with status 1", "killed by signal SIGSEGV", "timed out", ... into buf. */
void run_describe(const struct run_result *res, char *buf, size_t size);

#endif
