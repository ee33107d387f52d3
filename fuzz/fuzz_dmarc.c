/*
 * fuzz_dmarc.c - libFuzzer harness for mailauth/dmarc.c: the record parser,
 * the RFC5322.From extractor and the organizational-domain lookup (over a
 * small Public Suffix List with wildcard and exception rules).
 *
 * Invariants: a parsed record has pct <= 100, policies in range and rua/ruf
 * of printable ASCII; a From domain is a valid lower-case name; an
 * organizational domain is a suffix of the (lower-cased) input name, never
 * longer; why is a non-empty printable line on failure.  The input is
 * copied into an exact-size heap block so that ASan sees reads past it.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dns/dns.h"
#include "mailauth/dmarc.h"

static const char psl_text[] = "com\nuk\nco.uk\n*.ck\n!www.ck\njp\n*.kobe.jp\n!city.kobe.jp\n"
                               "blogspot.com\n";
static struct psl *psl;

static void printable(const char *s, int empty_ok)
{
    size_t n = strlen(s);
    if (!empty_ok && n == 0)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[256];
    if (!psl && !(psl = psl_load_text(psl_text, sizeof(psl_text) - 1, why, sizeof(why))))
        abort();
    char *text = malloc(size ? size : 1);
    if (!text)
        return 0;
    if (size)
        memcpy(text, data, size);

    struct dmarc_record r;
    if (dmarc_record_parse(text, size, &r, why, sizeof(why)) == 0) {
        if (r.pct > 100 || r.p > DMARC_P_REJECT || r.sp > DMARC_P_REJECT)
            abort();
        printable(r.rua, 1);
        printable(r.ruf, 1);
    } else {
        printable(why, 0);
    }

    char d[DMARC_DOMAIN_MAX + 1];
    if (dmarc_from_domain(text, size, d, sizeof(d), why, sizeof(why)) == 0) {
        if (!dns_name_valid(d, strlen(d)))
            abort();
        for (const char *p = d; *p; p++)
            if (isupper((unsigned char)*p))
                abort();
    } else {
        printable(why, 0);
    }

    /* the input as a domain name (up to the first NUL) */
    char name[300], org[DMARC_DOMAIN_MAX + 1];
    size_t n = size < sizeof(name) - 1 ? size : sizeof(name) - 1;
    memcpy(name, text, n);
    name[n] = '\0';
    if (psl_org_domain(psl, name, org, sizeof(org)) == 0) {
        size_t nl = strlen(name), ol = strlen(org);
        if (nl && name[nl - 1] == '.')
            nl--;
        if (ol == 0 || ol > nl || strncasecmp(name + nl - ol, org, ol) != 0)
            abort();
        if (!dmarc_aligned(psl, name, org, false))
            abort();
    }
    free(text);
    return 0;
}
