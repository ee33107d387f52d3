/*
 * fuzz_mtasts.c - libFuzzer harness for the pure parts of
 * mailauth/mtasts.c.  The first octet picks the function: 'T' the TXT
 * record, 'M' MX matching ("pattern\0host"), anything else the policy file.
 *
 * Invariants: a parsed policy has a known mode, max_age <= 31557600, at
 * most MTASTS_MX_MAX patterns (at least one unless mode none), each lower
 * case, non-empty, and matching a host made from it ("*." replaced by
 * "x."); a TXT id is 1..32 letters and digits; a failure leaves a
 * non-empty printable reason.  Inputs are copied into exact-size heap
 * blocks so that ASan sees any read past their end.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mailauth/mtasts.h"

static void check_why(const char *why, size_t size)
{
    size_t n = strlen(why);
    if (n == 0 || n >= size)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)why[i] < 0x20 || (unsigned char)why[i] > 0x7e)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    char kind = (char)data[0];
    size_t n = size - 1;
    char *text = malloc(n ? n : 1);
    char why[300];
    if (!text)
        return 0;
    if (n)
        memcpy(text, data + 1, n);
    if (kind == 'T') {
        char id[MTASTS_ID_MAX + 1];
        if (mtasts_txt_parse(text, n, id, why, sizeof(why)) == 0) {
            size_t l = strlen(id);
            if (l < 1 || l > MTASTS_ID_MAX)
                abort();
            for (size_t i = 0; i < l; i++)
                if (!isalnum((unsigned char)id[i]))
                    abort();
        } else {
            check_why(why, sizeof(why));
        }
    } else if (kind == 'M') {
        /* "pattern\0host": both NUL-terminated copies */
        char *nul = memchr(text, '\0', n);
        if (nul) {
            size_t pl = (size_t)(nul - text), hl = n - pl - 1;
            char *pat = malloc(pl + 1), *host = malloc(hl + 1);
            if (pat && host) {
                memcpy(pat, text, pl);
                pat[pl] = '\0';
                memcpy(host, nul + 1, hl);
                host[hl] = '\0';
                bool m = mtasts_mx_match(pat, host);
                if (m && hl == 0)
                    abort();
            }
            free(pat);
            free(host);
        }
    } else {
        struct mtasts_policy *p = malloc(sizeof(*p));
        if (p && mtasts_policy_parse(text, n, p, why, sizeof(why)) == 0) {
            if (p->mode != MTASTS_MODE_NONE && p->mode != MTASTS_MODE_TESTING &&
                p->mode != MTASTS_MODE_ENFORCE)
                abort();
            if (p->max_age > MTASTS_MAX_AGE_MAX || p->nmx > MTASTS_MX_MAX)
                abort();
            if (p->nmx == 0 && p->mode != MTASTS_MODE_NONE)
                abort();
            for (size_t i = 0; i < p->nmx; i++) {
                const char *mx = p->mx[i];
                char host[DNS_NAME_MAX + 2];
                if (!mx[0])
                    abort();
                for (const char *c = mx; *c; c++)
                    if (isupper((unsigned char)*c))
                        abort();
                snprintf(host, sizeof(host), "%s%s", mx[0] == '*' ? "x" : "",
                         mx[0] == '*' ? mx + 1 : mx);
                if (!mtasts_mx_match(mx, host) || !mtasts_policy_match(p, host))
                    abort();
            }
        } else if (p) {
            check_why(why, sizeof(why));
        }
        free(p);
    }
    free(text);
    return 0;
}
