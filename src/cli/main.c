/*
 * main.c - the `tern` command: one binary, one subcommand per job.
 *
 * It only dispatches; each subcommand lives in its own module.
 */
#include <stdio.h>
#include <string.h>

#include "cli/admin.h"
#include "cli/dkim.h"
#include "cli/spf.h"
#include "send/send.h"
#include "server/serve.h"
#include "sink/sink.h"

#define TERN_VERSION "0.1.0"

static const char usage[] = "usage: tern COMMAND [options]\n"
                            "\n"
                            "commands:\n"
                            "  sink       SMTP test server with an HTTP API and fault injection\n"
                            "  serve      the mail server (see docs/CONFIG.md)\n"
                            "  send       bulk and reminder mailer: one message per CSV row\n"
                            "  user       add, remove, list or check the users of local domains\n"
                            "  alias      resolve an address through the aliases\n"
                            "  queue      list, show, retry or delete queued mail\n"
                            "  sendmail   submit a message from standard input (also as argv[0])\n"
                            "  check-config  report every problem of tern.conf, users, aliases\n"
                            "  dkim       DKIM keys (keygen), sign or verify a message\n"
                            "  spf        check the SPF policy of a sender for a client address\n"
                            "  version    print the version\n"
                            "\n"
                            "`tern COMMAND --help` documents each command.\n";

int main(int argc, char **argv)
{
    const char *base = argc > 0 ? strrchr(argv[0], '/') : NULL;
    base = base ? base + 1 : (argc > 0 ? argv[0] : "");
    if (strcmp(base, "sendmail") == 0)
        return cli_sendmail(argc, argv);
    if (strcmp(base, "mailq") == 0)
        return cli_mailq(argc, argv);
    if (strcmp(base, "newaliases") == 0)
        return cli_newaliases(argc, argv);
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    if (strcmp(argv[1], "sink") == 0)
        return sink_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "serve") == 0)
        return serve_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "send") == 0)
        return send_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "user") == 0)
        return cli_user(argc - 1, argv + 1);
    if (strcmp(argv[1], "alias") == 0)
        return cli_alias(argc - 1, argv + 1);
    if (strcmp(argv[1], "sendmail") == 0)
        return cli_sendmail(argc - 1, argv + 1);
    if (strcmp(argv[1], "queue") == 0)
        return cli_queue(argc - 1, argv + 1);
    if (strcmp(argv[1], "check-config") == 0)
        return cli_check_config(argc - 1, argv + 1);
    if (strcmp(argv[1], "dkim") == 0)
        return cli_dkim(argc - 1, argv + 1);
    if (strcmp(argv[1], "spf") == 0)
        return cli_spf(argc - 1, argv + 1);
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("tern %s\n", TERN_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    fprintf(stderr, "tern: unknown command '%s'\n%s", argv[1], usage);
    return 2;
}
