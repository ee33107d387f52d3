/*
 * fuzz_dkim.c - libFuzzer harness for mailauth/dkim.c: the DKIM-Signature
 * and key-record parsers, header split and selection, both
 * canonicalisations, and whole verification with a fixed in-memory key
 * lookup (no DNS): an Ed25519 and an RSA-1024 record for
 * football.example.com (selectors brisbane and test, tests/unit/test_dkim.c).
 *
 * Invariants: parsers fail with a non-empty printable why; relaxed body
 * output has no blank before a CRLF and ends with CRLF unless empty; the
 * count returned equals the octets emitted; at most DKIM_MAX_VERIFY
 * verdicts, each with a known status and printable text.  The input is
 * copied into an exact-size heap block, so ASan catches any read past it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mailauth/dkim.h"

static const char rsa_rec[] =
    "v=DKIM1; k=rsa; "
    "p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDL6rtF8Ia31OHDPARFLSWnFYaWyQLbc5bV6Ud43MGDCyN/"
    "H7M6V+r3HbRVEpGxr+4pZOyfAPP4llqEVleMFQ1YbGVMZMCkzncT6hmrdQqaFKi9XWVqpzBF8NnoQt7AVNONW8YIa87e"
    "wFQLnUwvf3yaGPBzXFerKdYMUinkN+iIcQIDAQAB";
static const char ed_rec[] = "v=DKIM1; k=ed25519; p=LZtn2643gLW1ZLtJCqTK/BKs573nTZl8Ky8vcu8yvyU=";

static enum dns_qstatus lookup(void *ctx, const char *qname, struct dns_txt *out, char *why,
                               size_t whylen)
{
    (void)ctx;
    (void)why;
    (void)whylen;
    memset(out, 0, sizeof(*out));
    const char *txt = strncmp(qname, "test.", 5) == 0       ? rsa_rec
                      : strncmp(qname, "brisbane.", 9) == 0 ? ed_rec
                      : strncmp(qname, "temp.", 5) == 0     ? NULL
                                                            : "";
    if (!txt)
        return DNS_Q_TEMP;
    if (!*txt)
        return DNS_Q_NXDOMAIN;
    out->rec[0] = strdup(txt);
    if (!out->rec[0])
        return DNS_Q_TEMP;
    out->len[0] = strlen(txt);
    out->n = 1;
    return DNS_Q_OK;
}

static void check_why(const char *why)
{
    size_t n = strlen(why);
    if (n == 0)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)why[i] < 0x20 || (unsigned char)why[i] > 0x7e)
            abort();
}

static void check_printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1);
    static struct dkim_sig sig;
    static struct dkim_keyrec kr;
    char why[256];

    if (!text)
        return 0;
    if (size)
        memcpy(text, data, size);

    if (dkim_sig_parse(text, size, &sig, why, sizeof(why)) < 0)
        check_why(why);
    else if (sig.nh == 0 || sig.bhlen != 32)
        abort();
    if (dkim_keyrec_parse(text, size, &kr, why, sizeof(why)) < 0)
        check_why(why);

    for (int c = 0; c < 2; c++) {
        struct buf b = {0};
        size_t n = dkim_canon_body((enum dkim_canon)c, text, size, buf_emit, &b);
        if (n != b.len)
            abort();
        if (c == DKIM_CANON_RELAXED) {
            if (b.len && (b.len < 2 || memcmp(b.p + b.len - 2, "\r\n", 2) != 0))
                abort();
            for (size_t i = 0; i + 2 < b.len; i++)
                if ((b.p[i] == ' ' || b.p[i] == '\t') && b.p[i + 1] == '\r' && b.p[i + 2] == '\n')
                    abort();
        } else if (b.len < 2) {
            abort();
        }
        buf_free(&b);
        dkim_canon_header((enum dkim_canon)c, text, size, size & 1, &b);
        buf_free(&b);
    }

    struct dkim_field *f = malloc(sizeof(*f) * 64);
    size_t off = 0;
    if (f) {
        long nf = dkim_split_header(text, size, f, 64, &off, why, sizeof(why));
        if (nf < 0) {
            check_why(why);
        } else {
            if (off > size)
                abort();
            for (long i = 0; i < nf; i++)
                if (f[i].p < text || f[i].p + f[i].len > text + size || f[i].namelen == 0 ||
                    f[i].namelen > f[i].len)
                    abort();
            static const char *const names[] = {"from", "to", "from", "subject"};
            static const size_t lens[] = {4, 2, 4, 7};
            long sel[4];
            dkim_select_fields(f, (size_t)nf, names, lens, 4, sel);
            for (int i = 0; i < 4; i++)
                if (sel[i] < -1 || sel[i] >= nf)
                    abort();
        }
        free(f);
    }

    struct dkim_verdict v[DKIM_MAX_VERIFY + 2];
    size_t nv = dkim_verify_with(lookup, NULL, text, size, 1795644600, v, DKIM_MAX_VERIFY + 2);
    if (nv > DKIM_MAX_VERIFY)
        abort();
    for (size_t i = 0; i < nv; i++) {
        if (v[i].status > DKIM_PERMERROR)
            abort();
        check_printable(v[i].why);
        check_printable(v[i].domain);
        check_printable(v[i].selector);
        check_printable(v[i].algo);
        check_printable(v[i].b8);
    }
    free(text);
    return 0;
}
