/*
 * ingest.h - the bounces that come back to `tern send`, into its ledger.
 *
 *   tern send ingest-bounce --ledger FILE        one message on standard input
 *                                                (a `| pipe` alias of tern serve)
 *   tern send ingest-bounces --ledger FILE DIR   every message of a Maildir
 *   tern send --bounces DIR ...                  the same before a run
 *   tern send report --ledger FILE [--campaign C]  the ledger's counts
 *
 * Which recipient a bounce is about: first the VERP token in the address it
 * was sent to (the pipe's ORIGINAL_RECIPIENT/RECIPIENT, then To,
 * Delivered-To, X-Original-To, Envelope-To), looked up in the ledger's
 * tokens; then a {{rcpt_verp}} local=domain the ledger has sent to; then
 * the report's Original-Envelope-Id (tern send gives the token as ENVID,
 * for a return path rewritten on the way, e.g. by SRS); only
 * when the return path carries neither, the recipients the report names,
 * if the ledger has sent to them.  A token names one recipient: the
 * report's group for that address (or its first failure) gives the kind;
 * a message that names none is a soft bounce (never a suppression without
 * evidence).  Maildir: processed messages are moved from new/ to cur/ with
 * the S (seen) flag; a message in cur/ without S is processed and flagged;
 * one with S is left alone, so a second run reads nothing twice.
 */
#ifndef TERN_SEND_INGEST_H
#define TERN_SEND_INGEST_H

#include <stddef.h>

#include "send/ledger.h"

#define INGEST_MSG_MAX (2 * 1024 * 1024) /* octets read of one message; the rest is drained */

struct ingest_stats {
    unsigned long messages, hard, soft, unmatched;
};

/* One message; env_rcpts: addresses from the delivery environment (may be NULL).
 * -1 on a ledger error (why says so). */
int ingest_message(struct ledger *l, const char *msg, size_t len, const char *const *env_rcpts,
                   size_t nenv, struct ingest_stats *st, int verbose, char *why, size_t whysize);
/* Every unseen message of the Maildir dir.  -1 on an error (why). */
int ingest_maildir(struct ledger *l, const char *dir, struct ingest_stats *st, int verbose,
                   char *why, size_t whysize);

/* The subcommands; argv[0] is the subcommand's name. */
int ingest_main(int argc, char **argv);
int ingest_report_main(int argc, char **argv);

#endif
