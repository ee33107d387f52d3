/*
 * fuzz_session.c - drive a whole server session from fuzz input.
 *
 * The input is the client's side of a connection, sent through a
 * socketpair in pieces (a 0xff octet splits it, to vary how reads are
 * cut).  Invariants: the server never crashes or leaks, every line it
 * writes is a well-formed SMTP reply (checked with the reply parser), and
 * the session always ends when the client closes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/support/dialogue.h"
#include "core/log.h"
#include "core/reply.h"

static void fz_auth(void *ctx, struct smtp_session *s, const char *user, const char *pass,
                    struct smtp_verdict *v)
{
    (void)ctx;
    (void)s;
    if (strcmp(user, "u") == 0 && strcmp(pass, "p") == 0)
        smtp_verdict_set(v, 235, "2.7.0", "ok");
}

static void fz_rcpt(void *ctx, struct smtp_session *s, const struct rcpt_params *p,
                    struct smtp_verdict *v)
{
    (void)ctx;
    (void)s;
    if (p->to.local[0] == 'x')
        smtp_verdict_set(v, 550, "5.1.1", "no such user");
}

static const struct smtp_hooks fz_hooks = {.on_auth = fz_auth, .on_rcpt = fz_rcpt};

static void check_replies(const char *out, size_t n)
{
    struct reply_parser rp;
    reply_parser_init(&rp);
    size_t start = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (out[i] == '\r' && out[i + 1] == '\n') {
            enum reply_status st = reply_parser_line(&rp, out + start, i - start);
            if (st == REPLY_ERROR) {
                fprintf(stderr, "bad reply line: %.*s (%s)\n", (int)(i - start), out + start,
                        rp.error);
                abort();
            }
            if (st == REPLY_DONE)
                reply_parser_init(&rp);
            start = i + 2;
            i++;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char out[1 << 20];
    static int inited;
    struct dialogue d;
    struct smtp_server_conf c = {
        .hostname = "fuzz.example",
        .max_size = 4096,
        .max_rcpts = 5,
        .max_errors = 50,
        .idle_timeout = 60,
        .max_line = 1000,
        .auth = true,
        .auth_plaintext = true,
        .ext = EXT_8BITMIME | EXT_SMTPUTF8 | EXT_DSN,
        .hooks = &fz_hooks,
    };
    if (!inited) {
        log_set_level(LOG_ERROR);
        inited = 1;
    }
    if (size > 65536)
        return 0;
    dlg_start(&d, &c);
    size_t got = dlg_exchange(&d, "", 0, out, sizeof(out));
    const char *p = (const char *)data, *end = p + size;
    while (p < end) {
        const char *cut = memchr(p, 0xff, (size_t)(end - p));
        size_t n = cut ? (size_t)(cut - p) : (size_t)(end - p);
        got += dlg_exchange(&d, p, n, out + got, sizeof(out) - got);
        p += n + (cut ? 1 : 0);
        if (got > sizeof(out) / 2)
            break;
    }
    check_replies(out, got);
    dlg_end(&d);
    return 0;
}
