/*
 * addrlist.c - address lists of RFC 5322 headers (see addrlist.h).
 *
 * One pass splits the value at top-level ',' and ';' (and ends a group's
 * display name at a top-level ':'), tracking quotes, comments and angle
 * brackets; each element is then reduced to its address: the text inside
 * <...> when there is one, else the element without comments and outer
 * white space.  Elements are copied into a bounded buffer; longer ones are
 * reported as bad.
 */
#include "core/addrlist.h"

#include <stdbool.h>
#include <string.h>

#include "core/address.h"

static bool addrlist_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Reduce s[0..n) to an address and hand it on.  Returns 1 if an address was given to fn. */
static int addrlist_element(const char *s, size_t n, addrlist_fn fn, addrlist_fn bad, void *ctx)
{
    char out[ADDR_PATH_MAX + 1];
    size_t o = 0;
    const char *lt = NULL, *gt = NULL;
    int depth = 0;
    bool quoted = false;

    for (size_t i = 0; i < n; i++) { /* a top-level <...> wins */
        char c = s[i];
        if (quoted) {
            if (c == '\\')
                i++;
            else if (c == '"')
                quoted = false;
        } else if (depth) {
            if (c == '\\')
                i++;
            else if (c == '(')
                depth++;
            else if (c == ')')
                depth--;
        } else if (c == '"') {
            quoted = true;
        } else if (c == '(') {
            depth++;
        } else if (c == '<' && !lt) {
            lt = s + i;
        } else if (c == '>' && lt && !gt) {
            gt = s + i;
        }
    }
    if (lt && gt) {
        s = lt + 1;
        n = (size_t)(gt - lt - 1);
        const char *colon = memchr(s, ':', n); /* obsolete route: <@a,@b:x@y> */
        if (n && s[0] == '@' && colon) {
            n -= (size_t)(colon + 1 - s);
            s = colon + 1;
        }
    }
    depth = 0;
    quoted = false;
    for (size_t i = 0; i < n; i++) { /* drop comments, keep quoted local parts */
        char c = s[i];
        if (!quoted && c == '(') {
            depth++;
            continue;
        }
        if (depth) {
            if (c == '\\')
                i++;
            else if (c == ')')
                depth--;
            continue;
        }
        if (c == '"')
            quoted = !quoted;
        if (o + 1 >= sizeof(out)) {
            if (bad)
                bad(ctx, "(address too long)");
            return 0;
        }
        out[o++] = c;
    }
    while (o && addrlist_space(out[o - 1]))
        o--;
    size_t start = 0;
    while (start < o && addrlist_space(out[start]))
        start++;
    out[o] = '\0';
    if (start == o)
        return 0; /* an empty element (",,", an empty group) */
    struct mailaddr a;
    if (addr_parse_mailbox(out + start, o - start, ADDR_ALLOW_UTF8, &a) != ADDR_OK) {
        if (bad)
            bad(ctx, out + start);
        return 0;
    }
    char norm[ADDR_PATH_MAX + 1];
    addr_format(&a, norm, sizeof(norm));
    fn(ctx, norm);
    return 1;
}

int addrlist_parse(const char *s, size_t len, addrlist_fn fn, addrlist_fn bad, void *ctx)
{
    size_t start = 0;
    int depth = 0, found = 0;
    bool quoted = false, angle = false;

    for (size_t i = 0; i <= len; i++) {
        char c = i < len ? s[i] : ',';
        if (i < len && quoted) {
            if (c == '\\')
                i++;
            else if (c == '"')
                quoted = false;
            continue;
        }
        if (i < len && depth) {
            if (c == '\\')
                i++;
            else if (c == '(')
                depth++;
            else if (c == ')')
                depth--;
            continue;
        }
        if (i < len && angle) {
            if (c == '>')
                angle = false;
            continue;
        }
        if (c == '"') {
            quoted = true;
        } else if (c == '(') {
            depth++;
        } else if (c == '<') {
            angle = true;
        } else if (c == ':') {
            start = i + 1; /* a group's display name */
        } else if (c == ',' || c == ';') {
            found += addrlist_element(s + start, i - start, fn, bad, ctx);
            if (found > ADDRLIST_MAX)
                return -1;
            start = i + 1;
        }
    }
    if (quoted || depth || angle)
        return -1;
    return found;
}
