/*
 * spf.c - `tern spf check IP SENDER [HELO] [--dns-servers LIST]
 * [--receiver HOST] [--timeout MS]`: the SPF result of mailauth/spf.c for
 * one client address, MAIL FROM address ("" for the null sender: then
 * postmaster@HELO is checked) and HELO name.
 *
 * Output, one line each: "spf=RESULT domain=D lookups=N void=N", "why: ...",
 * and "explanation: ..." on fail when the domain publishes one.  Every
 * value is printable ASCII (mailauth/spf.c makes it so).  Exit 0 on pass,
 * 1 on any other result, 2 on bad usage.
 */
#include "cli/spf.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "core/num.h"
#include "dns/dns.h"
#include "mailauth/spf.h"

static const char spf_usage[] =
    "usage: tern spf check IP SENDER [HELO] [--dns-servers LIST] [--receiver HOST]\n"
    "                      [--timeout MS]\n"
    "\n"
    "check    evaluate the SPF policy (RFC 7208) of SENDER's domain for a client at IP\n"
    "         (IPv4 or IPv6).  SENDER \"\" is the null sender: postmaster@HELO is\n"
    "         checked.  DNS: the system's resolvers, or --dns-servers host:port,...\n"
    "         (--timeout: milliseconds per query try, default 5000).  Prints\n"
    "         spf=RESULT domain=D lookups=N void=N, then why: and explanation:.\n"
    "         Exit 0 on pass, 1 on any other result.\n";

static int spf_cmd_check(int argc, char **argv)
{
    const char *pos[3] = {NULL, NULL, NULL};
    const char *servers = NULL, *receiver = NULL;
    unsigned timeout = 0;
    int npos = 0;

    for (int i = 0; i < argc; i++) {
        if ((strcmp(argv[i], "--dns-servers") == 0 || strcmp(argv[i], "--receiver") == 0 ||
             strcmp(argv[i], "--timeout") == 0) &&
            i + 1 >= argc) {
            fprintf(stderr, "tern spf check: %s needs a value\n%s", argv[i], spf_usage);
            return 2;
        }
        if (strcmp(argv[i], "--dns-servers") == 0) {
            servers = argv[++i];
        } else if (strcmp(argv[i], "--receiver") == 0) {
            receiver = argv[++i];
        } else if (strcmp(argv[i], "--timeout") == 0) {
            const char *v = argv[++i];
            uint64_t n;
            if (num_parse_u64(v, 60000, &n) < 0 || n == 0) {
                fprintf(stderr, "tern spf check: --timeout '%.40s': not 1..60000\n", v);
                return 2;
            }
            timeout = (unsigned)n;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(spf_usage, stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1] == '-') {
            fprintf(stderr, "tern spf check: unknown option '%.40s'\n%s", argv[i], spf_usage);
            return 2;
        } else if (npos < 3) {
            pos[npos++] = argv[i];
        } else {
            fprintf(stderr, "tern spf check: too many arguments\n%s", spf_usage);
            return 2;
        }
    }
    if (npos < 2) {
        fprintf(stderr, "tern spf check: needs IP and SENDER\n%s", spf_usage);
        return 2;
    }

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, pos[0], &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
    } else if (inet_pton(AF_INET6, pos[0], &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
    } else {
        fprintf(stderr, "tern spf check: '%.60s' is not an IPv4 or IPv6 address\n", pos[0]);
        return 2;
    }
    if (strlen(pos[1]) > 512 || (pos[2] && strlen(pos[2]) > 255)) {
        fprintf(stderr, "tern spf check: SENDER or HELO too long\n");
        return 2;
    }

    char why[256];
    struct dns_conf dc = {.servers = servers, .timeout_ms = timeout};
    struct dns_resolver *r = dns_resolver_new(&dc, why, sizeof(why));
    if (!r) {
        fprintf(stderr, "tern spf check: DNS: %s\n", why);
        return 2;
    }
    struct spf_verdict v;
    enum spf_result res = spf_check(r, (struct sockaddr *)&ss, pos[2], pos[1], receiver, &v);
    dns_resolver_free(r);
    /* domain comes from the command line: print only its printable octets */
    for (char *p = v.domain; *p; p++)
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
            *p = '?';
    printf("spf=%s domain=%s lookups=%u void=%u\n", spf_result_name(res), v.domain, v.lookups,
           v.void_lookups);
    printf("why: %s\n", v.why);
    if (v.explanation[0])
        printf("explanation: %s\n", v.explanation);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        perror("tern spf check: standard output");
        return 2;
    }
    return res == SPF_PASS ? 0 : 1;
}

int cli_spf(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "check") == 0)
        return spf_cmd_check(argc - 2, argv + 2);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
                      strcmp(argv[1], "help") == 0)) {
        fputs(spf_usage, stdout);
        return 0;
    }
    fputs(spf_usage, stderr);
    return 2;
}
