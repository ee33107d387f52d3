/*
 * dkim.c - `tern dkim`: the operator's DKIM tools.
 *
 *   keygen DOMAIN SELECTOR [--algo rsa|ed25519] [--bits N] [--dir DIR] [-c FILE]
 *       writes a new private key (0600, never over an existing file) to
 *       DIR/SELECTOR.key, by default where `tern serve` looks for it:
 *       DATA_DIR/domains/DOMAIN/dkim/SELECTOR.key (given to [server] user
 *       when run as root), and prints the TXT record to publish.
 *   sign --key FILE --domain D --selector S < MSG      prints MSG signed
 *   verify [--record NAME=TXT]... [--dns-servers LIST] < MSG
 *       one line per signature; exit 0 when there is one and all pass.
 *
 * Signing and verifying are mailauth/dkim.c's; this file only handles
 * arguments, files and output.
 */
#include "cli/dkim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "conf/config.h"
#include "core/fdio.h"
#include "core/buf.h"
#include "core/num.h"
#include "mailauth/dkim.h"

#define CLI_DKIM_MSG_MAX (64u << 20) /* octets of a message on standard input */
#define CLI_DKIM_RECORDS_MAX 16

static const char dkim_usage[] =
    "usage: tern dkim keygen DOMAIN SELECTOR [--algo rsa|ed25519] [--bits N] [--dir DIR]\n"
    "                        [-c FILE]\n"
    "       tern dkim sign --key FILE --domain DOMAIN --selector SELECTOR < MESSAGE\n"
    "       tern dkim verify [--record NAME=TXT]... [--dns-servers LIST] < MESSAGE\n"
    "\n"
    "keygen   write a new private key (0600; never over an existing file) and print\n"
    "         the DNS TXT record to publish.  --algo rsa (default, --bits 2048) or\n"
    "         ed25519.  Without --dir the key goes where tern serve looks for it:\n"
    "         DATA_DIR/domains/DOMAIN/dkim/SELECTOR.key of the configuration (-c,\n"
    "         $TERN_CONFIG, /etc/tern/tern.conf), given to [server] user when run as root.\n"
    "sign     print the message from standard input with a DKIM-Signature prepended\n"
    "verify   check every DKIM-Signature (at most 5) of the message; keys from DNS\n"
    "         (the system's resolvers, or --dns-servers host:port,...) or --record\n"
    "         NAME=TXT (then DNS is not asked).  Exit 0 when all pass.\n";

static int read_stdin(struct buf *b)
{
    char tmp[65536];
    for (;;) {
        ssize_t r = read(0, tmp, sizeof(tmp));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fprintf(stderr, "tern dkim: standard input: %s\n", strerror(errno));
            return -1;
        }
        if (r == 0)
            return 0;
        if (b->len + (size_t)r > CLI_DKIM_MSG_MAX) {
            fprintf(stderr, "tern dkim: message larger than %u octets\n", CLI_DKIM_MSG_MAX);
            return -1;
        }
        buf_append(b, tmp, (size_t)r);
    }
}

/* ---- keygen ---------------------------------------------------------------------- */

static int mkdir_owned(const char *path, uid_t uid, gid_t gid, bool chown_it)
{
    if (mkdir(path, 0700) < 0 && errno != EEXIST) {
        fprintf(stderr, "tern dkim: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (chown_it && chown(path, uid, gid) < 0) {
        fprintf(stderr, "tern dkim: %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void print_record(const char *domain, const char *selector, const char *rec)
{
    size_t n = strlen(rec);
    printf("%s._domainkey.%s. IN TXT (", selector, domain);
    for (size_t i = 0; i < n; i += 250) {
        size_t k = n - i < 250 ? n - i : 250;
        printf(" \"%.*s\"", (int)k, rec + i);
    }
    printf(" )\n");
}

static int dkim_keygen_cmd(int argc, char **argv)
{
    const char *domain = NULL, *selector = NULL, *dir = NULL, *config = NULL;
    enum dkim_algo algo = DKIM_ALGO_RSA_SHA256;
    uint64_t bits = 2048;
    char path[CONF_STR_MAX + 600], why[512], ddir[CONF_STR_MAX + 600];
    uid_t uid = 0;
    gid_t gid = 0;
    bool give = false;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((strcmp(a, "--algo") == 0 || strcmp(a, "--bits") == 0 || strcmp(a, "--dir") == 0 ||
             strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) &&
            i + 1 >= argc) {
            fprintf(stderr, "tern dkim keygen: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--algo") == 0) {
            const char *v = argv[++i];
            if (strcmp(v, "rsa") == 0)
                algo = DKIM_ALGO_RSA_SHA256;
            else if (strcmp(v, "ed25519") == 0)
                algo = DKIM_ALGO_ED25519_SHA256;
            else {
                fprintf(stderr, "tern dkim keygen: --algo '%s': rsa or ed25519\n", v);
                return 2;
            }
        } else if (strcmp(a, "--bits") == 0) {
            if (num_parse_u64(argv[++i], DKIM_MAX_RSA_BITS, &bits) < 0 ||
                bits < DKIM_MIN_RSA_BITS) {
                fprintf(stderr, "tern dkim keygen: --bits '%s': %d..%d\n", argv[i],
                        DKIM_MIN_RSA_BITS, DKIM_MAX_RSA_BITS);
                return 2;
            }
        } else if (strcmp(a, "--dir") == 0) {
            dir = argv[++i];
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            config = argv[++i];
        } else if (a[0] == '-') {
            fprintf(stderr, "tern dkim keygen: unknown option '%s'\n%s", a, dkim_usage);
            return 2;
        } else if (!domain) {
            domain = a;
        } else if (!selector) {
            selector = a;
        } else {
            fprintf(stderr, "tern dkim keygen: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (!domain || !selector) {
        fputs(dkim_usage, stderr);
        return 2;
    }
    if (!dns_qname_valid(domain, strlen(domain)) || strchr(domain, '_') || domain[0] == '.') {
        fprintf(stderr, "tern dkim keygen: '%s' is not a domain name\n", domain);
        return 2;
    }
    if (strlen(selector) > DKIM_SELECTOR_MAX || !dns_qname_valid(selector, strlen(selector)) ||
        selector[0] == '.' || selector[strlen(selector) - 1] == '.') {
        fprintf(stderr,
                "tern dkim keygen: '%s' is not a selector (labels of letters, digits, '-', '_')\n",
                selector);
        return 2;
    }
    if (!dir) {
        struct conf *c = malloc(sizeof(*c));
        struct conf_errors e = {0};
        const char *cpath = conf_default_path(config);
        char lower[256];
        size_t dl = strlen(domain);
        if (!c) {
            fprintf(stderr, "tern dkim keygen: out of memory\n");
            return 1;
        }
        if (conf_load(cpath, c, &e) < 0 || e.n) {
            for (size_t k = 0; k < e.n; k++)
                fprintf(stderr, "%s\n", e.v[k]);
            conf_errors_free(&e);
            free(c);
            return 2;
        }
        conf_errors_free(&e);
        for (size_t k = 0; k <= dl && k < sizeof(lower); k++)
            lower[k] = (char)((domain[k] >= 'A' && domain[k] <= 'Z') ? domain[k] + 32 : domain[k]);
        lower[sizeof(lower) - 1] = '\0';
        give = geteuid() == 0 && conf_user_ids(c, &uid, &gid) == 0;
        snprintf(ddir, sizeof(ddir), "%s/domains/%s", c->data_dir, lower);
        if (access(ddir, F_OK) < 0) {
            fprintf(stderr, "tern dkim keygen: %s: no such local domain folder (%s)\n", ddir,
                    strerror(errno));
            free(c);
            return 1;
        }
        snprintf(ddir, sizeof(ddir), "%s/domains/%s/dkim", c->data_dir, lower);
        free(c);
        if (mkdir_owned(ddir, uid, gid, give) < 0)
            return 1;
        dir = ddir;
    }
    if (snprintf(path, sizeof(path), "%s/%s.key", dir, selector) >= (int)sizeof(path)) {
        fprintf(stderr, "tern dkim keygen: --dir: path too long\n");
        return 2;
    }

    struct buf pem = {0};
    if (dkim_keygen(algo, (unsigned)bits, &pem, why, sizeof(why)) < 0) {
        fprintf(stderr, "tern dkim keygen: %s\n", why);
        return 1;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "tern dkim keygen: %s: %s%s\n", path, strerror(errno),
                errno == EEXIST ? " (refusing to overwrite a key)" : "");
        buf_free(&pem);
        return 1;
    }
    if (write_all(fd, pem.p, pem.len) < 0 || fsync(fd) < 0 || (give && fchown(fd, uid, gid) < 0)) {
        fprintf(stderr, "tern dkim keygen: %s: %s\n", path, strerror(errno));
        close(fd);
        unlink(path);
        buf_free(&pem);
        return 1;
    }
    if (close(fd) < 0) {
        fprintf(stderr, "tern dkim keygen: %s: %s\n", path, strerror(errno));
        unlink(path);
        buf_free(&pem);
        return 1;
    }
    struct dkim_key *k =
        dkim_key_from_pem(pem.p, pem.len, path, domain, selector, why, sizeof(why));
    buf_free(&pem);
    struct buf rec = {0};
    if (!k || dkim_key_record(k, &rec, why, sizeof(why)) < 0) {
        fprintf(stderr, "tern dkim keygen: %s\n", why);
        dkim_key_free(k);
        return 1;
    }
    fprintf(stderr, "wrote %s (%s); publish:\n", path,
            algo == DKIM_ALGO_RSA_SHA256 ? "rsa" : "ed25519");
    print_record(k->domain, k->selector, rec.p);
    buf_free(&rec);
    dkim_key_free(k);
    return 0;
}

/* ---- sign -------------------------------------------------------------------------- */

static int dkim_sign_cmd(int argc, char **argv)
{
    const char *keyfile = NULL, *domain = NULL, *selector = NULL;
    char why[512];

    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) {
            fprintf(stderr, "tern dkim sign: %s needs a value\n%s", argv[i], dkim_usage);
            return 2;
        }
        if (strcmp(argv[i], "--key") == 0)
            keyfile = argv[++i];
        else if (strcmp(argv[i], "--domain") == 0)
            domain = argv[++i];
        else if (strcmp(argv[i], "--selector") == 0)
            selector = argv[++i];
        else {
            fprintf(stderr, "tern dkim sign: unknown option '%s'\n%s", argv[i], dkim_usage);
            return 2;
        }
    }
    if (!keyfile || !domain || !selector) {
        fputs(dkim_usage, stderr);
        return 2;
    }
    struct dkim_key *k = dkim_key_load(keyfile, domain, selector, why, sizeof(why));
    if (!k) {
        fprintf(stderr, "tern dkim sign: %s\n", why);
        return 1;
    }
    struct buf msg = {0}, hdr = {0};
    int rc = 1;
    if (read_stdin(&msg) == 0) {
        if (dkim_sign(k, msg.p ? msg.p : "", msg.len, time(NULL), &hdr, why, sizeof(why)) < 0)
            fprintf(stderr, "tern dkim sign: %s\n", why);
        else if (write_all(1, hdr.p, hdr.len) < 0 || write_all(1, msg.p, msg.len) < 0)
            fprintf(stderr, "tern dkim sign: standard output: %s\n", strerror(errno));
        else
            rc = 0;
    }
    buf_free(&msg);
    buf_free(&hdr);
    dkim_key_free(k);
    return rc;
}

/* ---- verify -------------------------------------------------------------------------- */

struct records {
    const char *name[CLI_DKIM_RECORDS_MAX], *txt[CLI_DKIM_RECORDS_MAX];
    size_t namelen[CLI_DKIM_RECORDS_MAX];
    size_t n;
};

static enum dns_qstatus records_lookup(void *ctx, const char *qname, struct dns_txt *out, char *why,
                                       size_t whylen)
{
    struct records *r = ctx;
    size_t ql = strlen(qname);
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < r->n; i++) {
        if (r->namelen[i] == ql && strncasecmp(r->name[i], qname, ql) == 0) {
            size_t n = strlen(r->txt[i]);
            out->rec[0] = malloc(n + 1);
            if (!out->rec[0])
                return DNS_Q_TEMP;
            memcpy(out->rec[0], r->txt[i], n + 1);
            out->len[0] = n;
            out->n = 1;
            return DNS_Q_OK;
        }
    }
    snprintf(why, whylen, "%s: no such record given", qname);
    return DNS_Q_NXDOMAIN;
}

static int dkim_verify_cmd(int argc, char **argv)
{
    struct records recs = {0};
    const char *servers = NULL;
    char why[512];

    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) {
            fprintf(stderr, "tern dkim verify: %s needs a value\n%s", argv[i], dkim_usage);
            return 2;
        }
        if (strcmp(argv[i], "--record") == 0) {
            const char *v = argv[++i], *eq = strchr(v, '=');
            if (!eq || eq == v || recs.n == CLI_DKIM_RECORDS_MAX) {
                fprintf(stderr, "tern dkim verify: --record '%s': NAME=TXT (at most %d)\n", v,
                        CLI_DKIM_RECORDS_MAX);
                return 2;
            }
            recs.name[recs.n] = v;
            recs.namelen[recs.n] = (size_t)(eq - v);
            if (recs.namelen[recs.n] > 0 && v[recs.namelen[recs.n] - 1] == '.')
                recs.namelen[recs.n]--;
            recs.txt[recs.n++] = eq + 1;
        } else if (strcmp(argv[i], "--dns-servers") == 0) {
            servers = argv[++i];
        } else {
            fprintf(stderr, "tern dkim verify: unknown option '%s'\n%s", argv[i], dkim_usage);
            return 2;
        }
    }
    struct buf msg = {0};
    if (read_stdin(&msg) < 0) {
        buf_free(&msg);
        return 1;
    }
    struct dkim_verdict v[DKIM_MAX_VERIFY];
    size_t n;
    if (recs.n) {
        n = dkim_verify_with(records_lookup, &recs, msg.p ? msg.p : "", msg.len, time(NULL), v,
                             DKIM_MAX_VERIFY);
    } else {
        struct dns_conf dc = {.servers = servers};
        struct dns_resolver *r = dns_resolver_new(&dc, why, sizeof(why));
        if (!r) {
            fprintf(stderr, "tern dkim verify: %s\n", why);
            buf_free(&msg);
            return 2;
        }
        n = dkim_verify(r, msg.p ? msg.p : "", msg.len, time(NULL), v, DKIM_MAX_VERIFY);
        dns_resolver_free(r);
    }
    buf_free(&msg);
    int rc = n ? 0 : 1;
    if (n == 0)
        printf("none: no DKIM-Signature\n");
    for (size_t i = 0; i < n; i++) {
        printf("%s d=%s s=%s a=%s b=%s%s%s\n", dkim_status_name(v[i].status), v[i].domain,
               v[i].selector, v[i].algo, v[i].b8, v[i].why[0] ? ": " : "", v[i].why);
        if (v[i].status != DKIM_PASS)
            rc = 1;
    }
    return rc;
}

int cli_dkim(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(dkim_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "keygen") == 0)
        return dkim_keygen_cmd(argc - 1, argv + 1);
    if (strcmp(argv[1], "sign") == 0)
        return dkim_sign_cmd(argc - 1, argv + 1);
    if (strcmp(argv[1], "verify") == 0)
        return dkim_verify_cmd(argc - 1, argv + 1);
    fprintf(stderr, "tern dkim: unknown command '%s'\n%s", argv[1], dkim_usage);
    return 2;
}
