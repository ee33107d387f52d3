/*
 * admin.h - the administration subcommands of `tern`: users, aliases and
 * the configuration check.  Each takes the argument vector that starts at
 * its own name (argv[0] is "user", "alias" or "check-config") and returns
 * the process exit status (0 success, 1 failure, 2 usage error).
 */
#ifndef TERN_CLI_ADMIN_H
#define TERN_CLI_ADMIN_H

/* tern user add|remove|list|check [--config FILE] [--password-file FILE] [--replace] ARG */
int cli_user(int argc, char **argv);

/* tern alias resolve [--config FILE] ADDRESS */
int cli_alias(int argc, char **argv);

/* tern check-config [--config FILE] */
int cli_check_config(int argc, char **argv);

/* queue.c: `tern queue list|show|retry|delete` */
int cli_queue(int argc, char **argv);

/* sendmail.c: the sendmail command-line convention */
int cli_sendmail(int argc, char **argv);
/* sendmail.c: tern invoked as "mailq" (sendmail -bp) and "newaliases" (sendmail -bi) */
int cli_mailq(int argc, char **argv);
int cli_newaliases(int argc, char **argv);
struct conf;
/* Ask the running server (DATA_DIR/tern.pid) to look at its queue now; 0 or -1. */
int queue_wake_server(const struct conf *c);

#endif
