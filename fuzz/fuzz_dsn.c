/*
 * fuzz_dsn.c - libFuzzer harness for queue/dsn.c (the bounce builder and
 * its status-code reader).
 *
 * Input: two flag octets (kind, RET, NOTIFY, status, smtputf8, size limit),
 * then NUL-separated fields: sender, recipient, original recipient, ORCPT,
 * error text, ENVID, host name, and the original message (the rest).
 * Invariants: dsn_build() reports a recipient exactly when dsn_wanted() says
 * so; the output is CRLF-only, ends in CRLF, its boundary occurs exactly five
 * times (Content-Type, three delimiters, the close), no line of the
 * generated parts exceeds 998 octets, and dsn_status_code() always gives
 * "c.s.d" with c in 2, 4, 5.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue/dsn.h"

static const char *next_field(const uint8_t **p, const uint8_t *end, char *out, size_t size)
{
    size_t n = 0;
    while (*p < end && **p != 0) {
        if (n + 1 < size)
            out[n++] = (char)**p;
        (*p)++;
    }
    if (*p < end)
        (*p)++; /* the NUL */
    out[n] = '\0';
    return out;
}

static void check_code(const char *s)
{
    size_t n = strlen(s);
    if (n < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
        abort();
    for (size_t i = 2, dots = 0; i < n; i++) {
        if (s[i] == '.')
            dots++;
        else if (s[i] < '0' || s[i] > '9')
            abort();
        if (dots > 1)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t f0 = data[0], f1 = data[1];
    const uint8_t *p = data + 2, *end = data + size;
    char sender[300], rcpt[300], orig[300], orcpt[600], error[5000], envid[200], host[300];
    next_field(&p, end, sender, sizeof(sender));
    next_field(&p, end, rcpt, sizeof(rcpt));
    next_field(&p, end, orig, sizeof(orig));
    next_field(&p, end, orcpt, sizeof(orcpt));
    next_field(&p, end, error, sizeof(error));
    next_field(&p, end, envid, sizeof(envid));
    next_field(&p, end, host, sizeof(host));
    size_t mlen = (size_t)(end - p);
    char *msg = malloc(mlen ? mlen : 1);
    if (!msg)
        abort();
    memcpy(msg, p, mlen);

    char code[16];
    check_code(dsn_status_code(error, "5.0.0", code, sizeof(code)));

    struct envelope env;
    envelope_init(&env);
    strcpy(env.id, "1712345678-00000001-0123456789abcdef");
    envelope_set(&env.sender, sender);
    envelope_set(&env.envid, envid);
    env.created = 1712345678;
    env.ret = (f0 & 1) ? RET_HDRS : RET_FULL;
    env.smtputf8 = (f0 & 2) != 0;
    env.delay_warned = (f0 & 4) != 0;
    struct env_rcpt *r = envelope_add_rcpt(&env, rcpt[0] ? rcpt : "x@y", orig, NULL);
    envelope_set(&r->orcpt, orcpt);
    static const unsigned notifies[] = {0,
                                        NOTIFY_NEVER,
                                        NOTIFY_FAILURE,
                                        NOTIFY_DELAY,
                                        NOTIFY_FAILURE | NOTIFY_DELAY,
                                        NOTIFY_SUCCESS};
    r->notify = notifies[(f0 >> 3) % 6];
    /* f1 bit 5: a success report about a recipient just delivered (f1 bit 6: relayed) */
    bool success = (f1 & 32) != 0;
    envelope_rcpt_result(r,
                         success    ? ENV_RCPT_SENT
                         : (f1 & 1) ? ENV_RCPT_PENDING
                                    : ENV_RCPT_FAILED,
                         (f1 >> 1) & 1, error);
    if (success && (f1 & 64))
        envelope_set(&r->target, "smtp");
    bool pick[1] = {true};
    struct dsn_info info = {.hostname = host,
                            .kind = success       ? DSN_SUCCESS
                                    : (f0 & 0x80) ? DSN_DELAYED
                                                  : DSN_FAILED,
                            .now = 1712400000,
                            .retry_until = (f1 & 4) ? 1712500000 : 0,
                            .max_full = (f1 & 8) ? 64 : 0,
                            .default_notify = (f1 & 16) ? NOTIFY_FAILURE | NOTIFY_DELAY : 0,
                            .pick = pick};

    struct buf out = {0};
    size_t n = dsn_build(&info, &env, msg, mlen, &out);
    if ((n > 0) != dsn_wanted(&info, &env))
        abort();
    if (n == 0 && out.len != 0)
        abort();
    if (n > 0) {
        if (out.len < 2 || out.p[out.len - 2] != '\r' || out.p[out.len - 1] != '\n')
            abort();
        for (size_t i = 0; i < out.len; i++) {
            if (out.p[i] == '\r' && (i + 1 >= out.len || out.p[i + 1] != '\n'))
                abort();
            if (out.p[i] == '\n' && (i == 0 || out.p[i - 1] != '\r'))
                abort();
        }
        /* the parameter as the builder folds it (input cannot forge a TAB) */
        static const char key[] = "delivery-status;\r\n\tboundary=\"";
        const char *b = memmem(out.p, out.len, key, sizeof(key) - 1);
        if (!b)
            abort();
        b += sizeof(key) - 1;
        const char *be = memchr(b, '"', out.len - (size_t)(b - out.p));
        if (!be)
            abort();
        size_t bl = (size_t)(be - b), count = 0;
        const char *last = NULL;
        for (const char *q = out.p; (q = memmem(q, out.len - (size_t)(q - out.p), b, bl)); q++) {
            count++;
            if (count == 4)
                last = q; /* the delimiter before the original */
        }
        if (count != 5 || !last)
            abort();
        size_t col = 0;
        for (const char *q = out.p; q < last; q++) {
            col = *q == '\n' ? 0 : col + 1;
            if (col > 999)
                abort();
        }
    }
    buf_free(&out);
    envelope_free(&env);
    free(msg);
    return 0;
}
