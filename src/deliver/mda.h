/*
 * mda.h - delivery through a local delivery agent (procmail, maildrop,
 * dovecot-lda) named by a command template in the configuration, e.g.
 * "/usr/bin/procmail -d %to_user%" or
 * "/usr/lib/dovecot/dovecot-lda -f %from% -a %to%".
 *
 * The template is split without a shell and filled in with the envelope
 * (cmdline.h: a value is always exactly one argv element and may not start
 * with '-'), then run (run.h) with the message on stdin, CRLF turned into
 * LF.  Classification (DESIGN.md rule 2):
 *   exit 0                          OK
 *   exit 75 (EX_TEMPFAIL), timeout  TEMP 4.3.0
 *   exit 67 (EX_NOUSER)             PERM 5.1.1
 *   any other exit, any signal      PERM 5.3.0, with the program's output
 *   an envelope value refused       PERM 5.1.7 (sender) / 5.1.3 (recipient)
 *   bad template, program missing   TEMP 4.3.5 (a configuration problem the
 *                                   administrator can fix; mail waits)
 *   cannot fork / make pipes        TEMP 4.3.0 (our resources, not the mail)
 * Text of PERM results may reach the sender: it names no file path.
 */
#ifndef TERN_DELIVER_MDA_H
#define TERN_DELIVER_MDA_H

#include <stddef.h>

#include "deliver/courier.h"

#define MDA_DEFAULT_TIMEOUT_S 300u
#define MDA_EX_TEMPFAIL 75
#define MDA_EX_NOUSER 67

/*
 * Deliver msg[0..len) (CRLF line ends, as queued) for one recipient.
 * prefix (may be NULL) is written first, e.g. "Delivered-To: a@b\r\n".
 * timeout_s 0 means MDA_DEFAULT_TIMEOUT_S.  Blocks until the program is done.
 */
enum result_class mda_deliver(const char *command, const struct courier_vars *vars,
                              const char *prefix, const char *msg, size_t len, unsigned timeout_s,
                              struct rcpt_result *err);

/* How mda_run() classifies failures: MDA as above; PIPE: every failure of the program is PERM. */
enum mda_policy {
    MDA_POLICY_MDA,
    MDA_POLICY_PIPE,
};

/* The shared engine of mda_deliver() and pipe_deliver(). */
enum result_class mda_run(const char *command, size_t command_len, const struct courier_vars *vars,
                          const char *prefix, const char *msg, size_t len, unsigned timeout_ms,
                          enum mda_policy policy, struct rcpt_result *err);

#endif
