/*
 * pipe.c - pipe aliases (see pipe.h).  A thin policy over mda_run(): the
 * fixed timeout, and every failure of the command permanent.  It strips the
 * alias's leading '|' and the blanks after it; nothing else is interpreted
 * here.  Nothing is allocated.
 */
#include "deliver/pipe.h"

#include <string.h>

#include "deliver/mda.h"

enum result_class pipe_deliver(const char *command, const struct courier_vars *vars,
                               const char *prefix, const char *msg, size_t len,
                               struct rcpt_result *err)
{
    const char *p = command ? command : "";

    if (*p == '|') {
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
    }
    return mda_run(p, strlen(p), vars, prefix, msg, len, PIPE_TIMEOUT_S * 1000u, MDA_POLICY_PIPE,
                   err);
}

static void pipe_courier(const struct courier_job *j, struct rcpt_result *res)
{
    struct courier_local cl;
    courier_local_init(&cl, j, &res[0]);
    pipe_deliver(j->arg, &cl.vars, cl.prefix, j->msg, j->len, &res[0]);
}

const struct courier_ops courier_pipe = {.name = "pipe", .deliver = pipe_courier};
