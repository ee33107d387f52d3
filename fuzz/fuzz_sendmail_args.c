/*
 * fuzz_sendmail_args.c - the sendmail command line (src/cli/sendmail.c:
 * option parsing, bare-name qualification, -N lists) on arbitrary argv.
 * The input is the arguments separated by NUL octets (at most 32).
 * Invariants: parsing ends in 0 or EX_USAGE, the first recipient index is
 * within argv, a mode is one of the known ones; a qualified address always
 * parses as a mailbox and never holds a control character.  sendmail.c is
 * included whole so that its static functions can be reached; the two
 * functions it takes from queue.c are stubs here.
 */
#include "cli/sendmail.c"

int cli_queue(int argc, char **argv)
{
    (void)argc, (void)argv;
    return 0;
}

int queue_wake_server(const struct conf *c)
{
    (void)c;
    return 0;
}

#define FUZZ_ARGS 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char copy[65536];
    char *argv[FUZZ_ARGS + 2];
    int argc = 0;
    if (size >= sizeof(copy))
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    argv[argc++] = "sendmail";
    for (size_t i = 0; i <= size && argc <= FUZZ_ARGS;) {
        argv[argc++] = copy + i;
        i += strlen(copy + i) + 1;
    }
    argv[argc] = NULL;
    for (int k = 1; k < argc; k++)
        if (strcmp(argv[k], "--help") == 0)
            return 0; /* prints the usage: nothing to check */

    struct sm_opts o = {.dot_ends = true, .name = "sendmail"};
    int first = -1;
    bool done = false;
    int rc = sm_parse(argc, argv, &o, &first, &done);
    if (rc != 0 && rc != EX_USAGE)
        abort();
    if (rc == 0 && (first < 1 || first > argc || o.mode > SM_NOTHING))
        abort();

    char out[ADDR_PATH_MAX + 1];
    for (int k = 1; k < argc; k++) {
        if (sm_qualify(argv[k], "example.test", out, sizeof(out)) == 0) {
            struct mailaddr a;
            if (addr_parse_mailbox(out, strlen(out), ADDR_ALLOW_UTF8, &a) != ADDR_OK)
                abort();
            for (const char *p = out; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                    abort();
        }
        unsigned bits = 0;
        if (sm_dsn_notify(argv[k], &bits) == 0 &&
            (!bits || ((bits & NOTIFY_NEVER) && bits != NOTIFY_NEVER)))
            abort();
    }
    return 0;
}
