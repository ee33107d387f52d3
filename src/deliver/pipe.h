/*
 * pipe.h - delivery to a pipe alias ("user: | /usr/local/bin/ticket --queue
 * support"): the command is split without a shell, filled in like an MDA
 * template (%from%, %to%, ...; values are one argv element each and never
 * start with '-'), and run with the message on stdin (LF line ends) under a
 * fixed PIPE_TIMEOUT_S timeout.
 *
 * DESIGN.md rule 2: any failure of the command is permanent, exit 75 and
 * the timeout included: a pipe alias is the alias owner's program, and the
 * sender learns at once.  The one exception is a failure on our side
 * before the command runs (cannot fork, no descriptors): TEMP 4.3.0, since
 * that says nothing about the command or the message.
 */
#ifndef TERN_DELIVER_PIPE_H
#define TERN_DELIVER_PIPE_H

#include <stddef.h>

#include "deliver/courier.h"

#define PIPE_TIMEOUT_S 30u

/*
 * command: the alias target, with or without its leading '|'.  prefix (may
 * be NULL) is written before msg (CRLF line ends, as queued).
 */
enum result_class pipe_deliver(const char *command, const struct courier_vars *vars,
                               const char *prefix, const char *msg, size_t len,
                               struct rcpt_result *err);

#endif
