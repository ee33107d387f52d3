/*
 * fuzz_spf.c - libFuzzer harness for the pure layers of mailauth/spf.c:
 * the record parser and the macro expander (fixed sender, IPv4 and IPv6
 * client, HELO).
 *
 * Invariants: on success every term is one of the eight mechanisms with a
 * qualifier of "+-~?", prefix lengths within 0..32 / 0..128 (or -1), and
 * every domain-spec, redirect= and exp= lies inside the record copy; each
 * domain-spec then expands (or fails cleanly) to at most 253 octets; on
 * failure why is a non-empty line of printable text.  The input is also
 * expanded as a domain-spec and as explanation text.  It is copied into a
 * heap block of its size plus a NUL, so ASan catches reads past its end.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mailauth/spf.h"

static void check_why(const char *why, size_t cap)
{
    size_t n = strlen(why);
    if (n == 0 || n >= cap)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)why[i] < 0x20 || (unsigned char)why[i] > 0x7e)
            abort();
}

static void expand_all(const char *spec, bool exp, const struct spf_macro_ctx *m)
{
    char out[SPF_EXPANDED_MAX + 1], big[1024], why[160];
    why[0] = '\0';
    if (spf_macro_expand(spec, m, exp, out, sizeof(out), why, sizeof(why)) == 0) {
        if (!exp && strlen(out) > SPF_EXPANDED_MAX)
            abort();
    } else {
        check_why(why, sizeof(why));
    }
    if (spf_macro_expand(spec, m, exp, big, sizeof(big), why, sizeof(why)) < 0)
        check_why(why, sizeof(why));
}

static bool inside(const struct spf_record *r, const char *p)
{
    return p >= r->buf && p < r->buf + sizeof(r->buf) &&
           memchr(p, '\0', (size_t)(r->buf + sizeof(r->buf) - p));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct spf_record rec;
    char *text = malloc(size + 1);
    char why[160];
    char ip4[80], c4[64], ip6[80], c6[64];
    unsigned char a4[4] = {192, 0, 2, 3}, a6[16];

    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    inet_pton(AF_INET6, "2001:db8::cb01", a6);
    spf_macro_ip(AF_INET, a4, ip4, sizeof(ip4), c4, sizeof(c4));
    spf_macro_ip(AF_INET6, a6, ip6, sizeof(ip6), c6, sizeof(c6));
    struct spf_macro_ctx m4 = {.sender = "strong-bad@email.example.com",
                               .domain = "email.example.com",
                               .ip = ip4,
                               .helo = "mx.example.org",
                               .v = "in-addr",
                               .validated = "mx.example.org",
                               .cip = c4,
                               .receiver = "mx.example.net",
                               .now = 1700000000};
    struct spf_macro_ctx m6 = m4;
    m6.ip = ip6;
    m6.cip = c6;
    m6.v = "ip6";

    why[0] = '\0';
    if (spf_record_parse(text, size, &rec, why, sizeof(why)) == 0) {
        if (rec.nterms > SPF_MAX_TERMS)
            abort();
        for (size_t i = 0; i < rec.nterms; i++) {
            const struct spf_term *t = &rec.terms[i];
            if (t->mech > SPF_M_EXISTS || !strchr("+-~?", t->qualifier) || t->qualifier == 0)
                abort();
            if (t->cidr4 < -1 || t->cidr4 > 32 || t->cidr6 < -1 || t->cidr6 > 128)
                abort();
            if (t->domain) {
                if (!inside(&rec, t->domain))
                    abort();
                expand_all(t->domain, false, &m4);
                expand_all(t->domain, false, &m6);
            }
        }
        if (rec.redirect && !inside(&rec, rec.redirect))
            abort();
        if (rec.exp && !inside(&rec, rec.exp))
            abort();
    } else {
        check_why(why, sizeof(why));
    }
    /* the raw input as a domain-spec and as explanation text */
    expand_all(text, false, &m4);
    expand_all(text, true, &m6);
    free(text);
    return 0;
}
