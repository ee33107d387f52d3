/*
 * arh.c - the Authentication-Results header field (see arh.h).
 *
 * Building: one line per resinfo, folded with CRLF TAB, so no line comes
 * near 998 octets whatever the values (each value and comment is bounded).
 * Stripping: the header section is walked field by field (a field is its
 * first line plus every following line that begins with SP or TAB); for an
 * Authentication-Results field the authserv-id is read after any CFWS as a
 * token or a quoted-string, and compared without case.
 */
#include "mailauth/arh.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Characters written bare: letters, digits and a few that are neither
 * tspecials of RFC 2045 nor special to RFC 8601 parsers; '@' is allowed
 * between a local-part and a domain (pvalue). */
static bool arh_plain(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_' || c == '+' || c == '=' || c == '/' || c == '!' || c == '#' ||
           c == '$' || c == '%' || c == '&' || c == '\'' || c == '*' || c == '^' || c == '`' ||
           c == '{' || c == '|' || c == '}' || c == '~';
}

size_t arh_value(const char *value, char *out, size_t size)
{
    size_t n = strlen(value);
    if (n > ARH_VALUE_MAX)
        n = ARH_VALUE_MAX;
    bool bare = n > 0;
    size_t ats = 0;
    for (size_t i = 0; i < n && bare; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c == '@')
            ats++;
        else if (!arh_plain(c))
            bare = false;
    }
    /* "@" only as local-part@domain: once, with a domain after it */
    if (bare && ats && (ats > 1 || value[n - 1] == '@'))
        bare = false;
    size_t o = 0;
    if (size == 0)
        return 0;
    if (!bare && o + 1 < size)
        out[o++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c < 0x20 || c >= 0x7f)
            c = '?';
        if (!bare && (c == '"' || c == '\\')) {
            if (o + 2 >= size)
                break;
            out[o++] = '\\';
        }
        if (o + 1 + !bare >= size)
            break;
        out[o++] = (char)c;
    }
    if (!bare && o + 1 < size)
        out[o++] = '"';
    out[o] = '\0';
    return o;
}

/* " (text)" with printable ASCII only, '(' ')' '\' escaped. */
static void arh_comment(struct buf *out, const char *text)
{
    char c[ARH_COMMENT_MAX * 2 + 4];
    size_t o = 0;
    c[o++] = ' ';
    c[o++] = '(';
    for (size_t i = 0; text[i] && i < ARH_COMMENT_MAX; i++) {
        unsigned char ch = (unsigned char)text[i];
        if (ch < 0x20 || ch >= 0x7f)
            ch = '?';
        if (ch == '(' || ch == ')' || ch == '\\')
            c[o++] = '\\';
        c[o++] = (char)ch;
    }
    c[o++] = ')';
    buf_append(out, c, o);
}

static bool arh_id_ok(const char *id)
{
    if (!id || !id[0] || strlen(id) > 255)
        return false;
    for (const char *p = id; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_'))
            return false;
    }
    return true;
}

int arh_build(struct buf *out, const char *authserv_id, const struct arh_result *res, size_t n)
{
    char v[ARH_VALUE_MAX * 2 + 4];
    if (!arh_id_ok(authserv_id))
        return -1;
    buf_append(out, "Authentication-Results: ", 24);
    buf_append(out, authserv_id, strlen(authserv_id));
    if (n == 0) {
        buf_append(out, "; none\r\n", 8);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        const struct arh_result *r = &res[i];
        buf_append(out, ";\r\n\t", 4);
        buf_append(out, r->method, strlen(r->method));
        buf_append(out, "=", 1);
        buf_append(out, r->result, strlen(r->result));
        if (r->reason && r->reason[0])
            arh_comment(out, r->reason);
        for (size_t k = 0; k < r->nprops && k < ARH_PROPS_MAX; k++) {
            if (!r->props[k].value || !r->props[k].value[0])
                continue;
            size_t vl = arh_value(r->props[k].value, v, sizeof(v));
            const char *nl = out->p + out->len;
            while (nl > out->p && nl[-1] != '\n')
                nl--;
            /* fold before a property that would make the line long */
            if ((size_t)(out->p + out->len - nl) + strlen(r->props[k].name) + vl + 2 > 78)
                buf_append(out, "\r\n\t", 3);
            else
                buf_append(out, " ", 1);
            buf_append(out, r->props[k].name, strlen(r->props[k].name));
            buf_append(out, "=", 1);
            buf_append(out, v, vl);
        }
    }
    buf_append(out, "\r\n", 2);
    return 0;
}

/* ---- stripping ------------------------------------------------------------- */

/* Skip CFWS from p (comments nested, with quoted-pairs). */
static size_t arh_skip_cfws(const char *s, size_t i, size_t n)
{
    int depth = 0;
    while (i < n) {
        char c = s[i];
        if (depth) {
            if (c == '\\')
                i++;
            else if (c == '(')
                depth++;
            else if (c == ')')
                depth--;
            i++;
        } else if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            i++;
        } else if (c == '(') {
            depth = 1;
            i++;
        } else {
            break;
        }
    }
    return i;
}

/* Does the field value s[0..n) begin with authserv-id id (token or quoted-string)? */
static bool arh_is_ours(const char *s, size_t n, const char *id)
{
    char got[300];
    size_t g = 0;
    size_t i = arh_skip_cfws(s, 0, n);
    if (i < n && s[i] == '"') {
        for (i++; i < n && s[i] != '"'; i++) {
            if (s[i] == '\\' && i + 1 < n)
                i++;
            if (g + 1 >= sizeof(got))
                return false;
            got[g++] = s[i];
        }
        if (i >= n)
            return false; /* unterminated: cannot be read, kept */
    } else {
        /* token: up to a tspecial, blank or control */
        for (; i < n; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c <= ' ' || c >= 0x7f || strchr("()<>@,;:\\\"/[]?=", c))
                break;
            if (g + 1 >= sizeof(got))
                return false;
            got[g++] = (char)c;
        }
    }
    got[g] = '\0';
    return g > 0 && strcasecmp(got, id) == 0;
}

size_t arh_strip(char *msg, size_t *len, const char *authserv_id)
{
    static const char name[] = "Authentication-Results";
    const size_t nl = sizeof(name) - 1;
    size_t n = *len, i = 0, removed = 0;
    if (!authserv_id || !authserv_id[0])
        return 0;
    while (i < n) {
        /* the end of the header section: an empty line */
        if (msg[i] == '\n' || (msg[i] == '\r' && i + 1 < n && msg[i + 1] == '\n'))
            break;
        /* the field: this line and its continuation lines */
        size_t e = i;
        for (;;) {
            const char *lf = memchr(msg + e, '\n', n - e);
            e = lf ? (size_t)(lf - msg) + 1 : n;
            if (e >= n || (msg[e] != ' ' && msg[e] != '\t'))
                break;
        }
        bool drop = false;
        if (e - i > nl && strncasecmp(msg + i, name, nl) == 0) {
            size_t c = i + nl;
            while (c < e && (msg[c] == ' ' || msg[c] == '\t'))
                c++;
            if (c < e && msg[c] == ':')
                drop = arh_is_ours(msg + c + 1, e - c - 1, authserv_id);
        }
        if (drop) {
            memmove(msg + i, msg + e, n - e);
            n -= e - i;
            removed++;
        } else {
            i = e;
        }
    }
    *len = n;
    return removed;
}
