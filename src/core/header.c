/*
 * header.c - find RFC 5322 header fields in a raw message.
 *
 * The header section is read line by line (LF ends a line, a CR before it is
 * dropped) up to the first empty line or len.  A field "Name:" matches
 * case-insensitively (white space before the colon is tolerated, RFC 5322
 * obs-optional); its value runs on over the continuation lines that start
 * with SP or HTAB (unfolding keeps that WSP).  Output: every control octet
 * becomes a space, leading and trailing white space is trimmed, and the
 * result is NUL-terminated and truncated to size - 1 octets.
 *
 * Never: allocates, reads beyond the header section or len, writes more
 * than size octets.
 */
#include "core/header.h"

#include <stdbool.h>
#include <string.h>

/* The line at msg[pos..): its content ends at *ce, the next one starts at *next. */
static void header_line(const char *msg, size_t len, size_t pos, size_t *ce, size_t *next)
{
    const char *lf = memchr(msg + pos, '\n', len - pos);
    size_t e = lf != NULL ? (size_t)(lf - msg) : len;

    *next = lf != NULL ? e + 1 : len;
    if (lf != NULL && e > pos && msg[e - 1] == '\r')
        e--;
    *ce = e;
}

static unsigned char header_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Does the line s[0..n) start field name?  *value is the offset after ':'. */
static bool header_match(const char *s, size_t n, const char *name, size_t *value)
{
    size_t nl = strlen(name), i;

    if (nl == 0 || n <= nl)
        return false;
    for (i = 0; i < nl; i++)
        if (header_lower((unsigned char)s[i]) != header_lower((unsigned char)name[i]))
            return false;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    if (i >= n || s[i] != ':')
        return false;
    *value = i + 1;
    return true;
}

struct header_out {
    char *buf;
    size_t size;
    size_t n;    /* octets written */
    size_t keep; /* length up to the last non-space octet */
};

static void header_put(struct header_out *o, const char *s, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        unsigned char c = (unsigned char)s[k];
        if (c < 0x20 || c == 0x7f)
            c = ' ';
        if (c == ' ' && o->n == 0)
            continue; /* leading white space */
        if (o->n + 1 >= o->size)
            return;
        o->buf[o->n++] = (char)c;
        if (c != ' ')
            o->keep = o->n;
    }
}

long header_get(const char *msg, size_t len, const char *name, char *out, size_t size)
{
    size_t pos = 0, ce, next, v;

    while (pos < len) {
        header_line(msg, len, pos, &ce, &next);
        if (ce == pos)
            break; /* the empty line ending the header section */
        if (header_match(msg + pos, ce - pos, name, &v)) {
            struct header_out o = {out, size, 0, 0};
            header_put(&o, msg + pos + v, ce - pos - v);
            for (pos = next; pos < len && (msg[pos] == ' ' || msg[pos] == '\t'); pos = next) {
                header_line(msg, len, pos, &ce, &next);
                header_put(&o, msg + pos, ce - pos);
            }
            if (size > 0)
                out[o.keep] = '\0';
            return (long)o.keep;
        }
        pos = next;
    }
    if (size > 0)
        out[0] = '\0';
    return -1;
}

unsigned header_count(const char *msg, size_t len, const char *name)
{
    size_t pos = 0, ce, next, v;
    unsigned count = 0;

    while (pos < len) {
        header_line(msg, len, pos, &ce, &next);
        if (ce == pos)
            break;
        if (header_match(msg + pos, ce - pos, name, &v))
            count++;
        pos = next;
    }
    return count;
}
