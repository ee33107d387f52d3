/*
 * fuzz_address.c - libFuzzer harness for core/address.c.
 *
 * The first byte gives the flags; the rest is parsed as a path and as a bare
 * mailbox.  Invariants: used <= len and <= 256; the parts respect their
 * limits and hold no control octet (and no octet >= 0x80 without
 * ADDR_ALLOW_UTF8, valid UTF-8 with it); a formatted address re-parses to
 * the same address; a parsed bare mailbox formats back to its input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/address.h"

static void check_part(const char *s, size_t max, int flags)
{
    size_t n = strlen(s);
    if (n > max)
        abort();
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            abort();
        if (c >= 0x80 && !(flags & ADDR_ALLOW_UTF8))
            abort();
    }
    if (!utf8_valid(s, n))
        abort();
}

static void check_addr(const struct mailaddr *a, int flags)
{
    char buf[ADDR_PATH_MAX + 8];
    struct mailaddr b;

    if (a->is_null) {
        if (!(flags & ADDR_ALLOW_NULL) || a->local[0] || a->domain[0])
            abort();
        if (addr_format(a, buf, sizeof(buf)) != 0 || buf[0] != '\0')
            abort();
        return;
    }
    check_part(a->local, ADDR_LOCAL_MAX, flags);
    check_part(a->domain, ADDR_DOMAIN_MAX, flags);
    if (a->local[0] == '\0' || a->domain[0] == '\0')
        abort();
    size_t n = addr_format(a, buf, sizeof(buf));
    if (n + 2 > ADDR_PATH_MAX || strlen(buf) != n)
        abort();
    if (addr_parse_mailbox(buf, n, flags, &b) != ADDR_OK)
        abort();
    if (strcmp(a->local, b.local) != 0 || strcmp(a->domain, b.domain) != 0 ||
        a->is_quoted != b.is_quoted || a->is_literal != b.is_literal || a->has_utf8 != b.has_utf8 ||
        b.had_route || b.is_null)
        abort();
    /* and as a path */
    char path[ADDR_PATH_MAX + 8];
    size_t used;
    path[0] = '<';
    memcpy(path + 1, buf, n);
    path[n + 1] = '>';
    if (addr_parse_path(path, n + 2, flags, &b, &used) != ADDR_OK || used != n + 2)
        abort();
    if (strcmp(a->local, b.local) != 0 || strcmp(a->domain, b.domain) != 0)
        abort();
    /* truncated formatting is a prefix */
    char small[8];
    size_t m = addr_format(a, small, sizeof(small));
    if (m != n || strncmp(small, buf, sizeof(small) - 1) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mailaddr a;
    size_t used = 12345;
    int flags, e;

    if (size < 1)
        return 0;
    flags = data[0] & (ADDR_ALLOW_UTF8 | ADDR_ALLOW_NULL);
    const char *s = (const char *)data + 1;
    size_t len = size - 1;

    e = addr_parse_path(s, len, flags, &a, &used);
    if (e < ADDR_OK || e > ADDR_ELITERAL || addr_strerror(e) == NULL)
        abort();
    if (e == ADDR_OK) {
        if (used < 2 || used > len || used > ADDR_PATH_MAX || s[0] != '<' || s[used - 1] != '>')
            abort();
        check_addr(&a, flags);
    } else if (used != 0) {
        abort();
    }

    e = addr_parse_mailbox(s, len, flags, &a);
    if (e == ADDR_OK) {
        char buf[ADDR_PATH_MAX + 8];
        if (a.is_null || a.had_route)
            abort();
        check_addr(&a, flags);
        size_t n = addr_format(&a, buf, sizeof(buf));
        if (n != len || memcmp(buf, s, len) != 0)
            abort();
    }
    (void)utf8_valid(s, len);
    return 0;
}
