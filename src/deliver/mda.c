/*
 * mda.c - deliver through a program: the MDA command of the configuration
 * and (with MDA_POLICY_PIPE) pipe aliases.  See mda.h for the table of
 * outcomes.
 *
 * Steps: refuse envelope values with control characters (they would reach
 * the program's environment), split the command (cmdline.h), fill in the
 * placeholders, run it (run.h) with CRLF turned into LF, classify.  The
 * only text taken from the program is the first RUN_OUTPUT_MAX octets of
 * its output, cleaned by result_fail().  The program is never run by a
 * shell and an envelope value never becomes a word or an option of its
 * own.  Nothing is allocated (the argv lives on the stack).
 */
#include "deliver/mda.h"

#include <stdio.h>
#include <string.h>

#include "deliver/cmdline.h"
#include "deliver/run.h"

/* The status of a refused envelope value: the sender's (5.1.7) or the recipient's (5.1.3). */
static const char *mda_value_status(const char *var)
{
    return var && strcmp(var, "%from%") == 0 ? "5.1.7" : "5.1.3";
}

enum result_class mda_run(const char *command, size_t command_len, const struct courier_vars *vars,
                          const char *prefix, const char *msg, size_t len, unsigned timeout_ms,
                          enum mda_policy policy, struct rcpt_result *err)
{
    static const struct courier_vars novars;
    const bool pipe = policy == MDA_POLICY_PIPE;
    const char *who = pipe ? "pipe command" : "mda";
    struct cmdline tmpl, argv;
    struct cmdline_error ce;
    struct run_result res;
    char why[160], out[RUN_OUTPUT_MAX + 1];

    result_clear(err);
    if (!vars)
        vars = &novars;
    if (courier_has_ctl(vars->from))
        return result_fail(err, RESULT_PERM, "5.1.7",
                           "sender address has a control character; not run");
    if (courier_has_ctl(vars->to) || courier_has_ctl(vars->to_user) ||
        courier_has_ctl(vars->to_domain) || courier_has_ctl(vars->orig_to))
        return result_fail(err, RESULT_PERM, "5.1.3",
                           "recipient address has a control character; not run");

    if (cmdline_split(command ? command : "", command ? command_len : 0, &tmpl, &ce) != 0 ||
        cmdline_check_program(&tmpl, &ce) != 0) {
        cmdline_error_format(&ce, why, sizeof(why));
        if (pipe)
            return result_fail(err, RESULT_PERM, "5.3.5", "invalid pipe command: %s", why);
        return result_fail(err, RESULT_TEMP, "4.3.5", "invalid mda command \"%.*s\": %s",
                           (int)(command_len > 200 ? 200 : command_len), command ? command : "",
                           why);
    }
    if (cmdline_expand(&tmpl, vars, &argv, &ce) != 0) {
        cmdline_error_format(&ce, why, sizeof(why));
        if (ce.code == CMDLINE_EVALUE)
            return result_fail(err, RESULT_PERM, mda_value_status(ce.var), "%s not run: %s", who,
                               why);
        return result_fail(err, RESULT_PERM, "5.3.0", "%s not run: %s", who, why);
    }

    struct run_spec spec = {
        .argv = argv.argv,
        .vars = vars,
        .prefix = prefix,
        .prefix_len = prefix ? strlen(prefix) : 0,
        .input = msg,
        .input_len = msg ? len : 0,
        .crlf_to_lf = true,
        .timeout_ms = timeout_ms,
    };
    run_program(&spec, &res);
    run_describe(&res, why, sizeof(why));
    result_clean(out, sizeof(out), res.output, res.output_len);

    switch (res.status) {
    case RUN_START_FAILED:
        return result_fail(err, RESULT_TEMP, "4.3.0", "%s %s", who, why);
    case RUN_EXEC_FAILED:
        if (pipe)
            return result_fail(err, RESULT_PERM, "5.3.5", "%s %s", who, why);
        return result_fail(err, RESULT_TEMP, "4.3.5", "mda %s %s", argv.argv[0], why);
    case RUN_TIMEOUT:
        return result_fail(err, pipe ? RESULT_PERM : RESULT_TEMP, pipe ? "5.3.0" : "4.3.0",
                           "%s did not finish within %u s and was killed%s%s", who,
                           (timeout_ms + 999) / 1000, out[0] ? ": " : "", out);
    case RUN_SIGNALED:
        return result_fail(err, RESULT_PERM, "5.3.0", "%s %s%s%s", who, why, out[0] ? ": " : "",
                           out);
    case RUN_EXITED:
        break;
    }
    if (res.code == 0)
        return RESULT_OK;
    if (res.code == MDA_EX_TEMPFAIL && !pipe)
        return result_fail(err, RESULT_TEMP, "4.3.0", "%s %s (temporary failure)%s%s", who, why,
                           out[0] ? ": " : "", out);
    return result_fail(err, RESULT_PERM, res.code == MDA_EX_NOUSER ? "5.1.1" : "5.3.0", "%s %s%s%s",
                       who, why, out[0] ? ": " : "", out);
}

enum result_class mda_deliver(const char *command, const struct courier_vars *vars,
                              const char *prefix, const char *msg, size_t len, unsigned timeout_s,
                              struct rcpt_result *err)
{
    unsigned s = timeout_s ? timeout_s : MDA_DEFAULT_TIMEOUT_S;
    if (s > 86400)
        s = 86400;
    return mda_run(command, command ? strlen(command) : 0, vars, prefix, msg, len, s * 1000u,
                   MDA_POLICY_MDA, err);
}

static void mda_courier(const struct courier_job *j, struct rcpt_result *res)
{
    struct courier_local cl;
    courier_local_init(&cl, j, &res[0]);
    mda_deliver(j->mda_command, &cl.vars, cl.prefix, j->msg, j->len, j->mda_timeout_ms / 1000,
                &res[0]);
}

const struct courier_ops courier_mda = {.name = "mda", .deliver = mda_courier};
