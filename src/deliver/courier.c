/*
 * courier.c - the result and error text shared by the local couriers (see
 * courier.h).
 *
 * Invariant: after courier_fail() the text is one NUL-terminated line of
 * printable ASCII no longer than COURIER_TEXT_MAX - 1 octets, whatever the
 * formatted arguments contained (a program's output, an errno text).  The
 * status is copied bounded too.  Nothing is allocated; nothing is logged.
 */
#include "deliver/courier.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void courier_error_clear(struct courier_error *e)
{
    if (!e)
        return;
    e->status[0] = '\0';
    e->text[0] = '\0';
}

size_t courier_clean(char *dst, size_t size, const char *src, size_t len)
{
    size_t n = 0;
    bool space = true; /* drops leading spaces and collapses runs */
    bool cut = false;

    if (size == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c < 0x20 || c == 0x7f || c == ' ') {
            if (space)
                continue;
            c = ' ';
            space = true;
        } else {
            if (c >= 0x80)
                c = '?';
            space = false;
        }
        if (n + 1 >= size) {
            cut = true;
            break;
        }
        dst[n++] = (char)c;
    }
    while (n > 0 && dst[n - 1] == ' ')
        n--;
    if (cut) {
        static const char dots[] = "...";
        if (size < sizeof(dots)) {
            n = 0;
        } else {
            if (n + sizeof(dots) > size)
                n = size - sizeof(dots);
            memcpy(dst + n, dots, sizeof(dots) - 1);
            n += sizeof(dots) - 1;
        }
    }
    dst[n] = '\0';
    return n;
}

enum courier_result courier_fail(struct courier_error *e, enum courier_result r, const char *status,
                                 const char *fmt, ...)
{
    char raw[COURIER_TEXT_MAX * 2];
    va_list ap;
    int n;

    if (!e)
        return r;
    courier_clean(e->status, sizeof(e->status), status ? status : "", strlen(status ? status : ""));
    va_start(ap, fmt);
    n = vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(raw))
        n = sizeof(raw) - 1;
    courier_clean(e->text, sizeof(e->text), raw, (size_t)n);
    return r;
}

const char *courier_result_name(enum courier_result r)
{
    switch (r) {
    case COURIER_OK:
        return "ok";
    case COURIER_TEMP:
        return "temporary";
    case COURIER_PERM:
        return "permanent";
    }
    return "unknown";
}

bool courier_has_ctl(const char *s)
{
    if (!s)
        return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            return true;
    }
    return false;
}

void courier_lf_init(struct courier_lf *r, const char *prefix, size_t prefix_len, const char *msg,
                     size_t len, bool convert)
{
    r->seg[0] = prefix ? prefix : "";
    r->len[0] = prefix ? prefix_len : 0;
    r->seg[1] = msg ? msg : "";
    r->len[1] = msg ? len : 0;
    r->idx = 0;
    r->pos = 0;
    r->convert = convert;
}

size_t courier_lf_read(struct courier_lf *r, char *dst, size_t size)
{
    size_t n = 0;

    while (n < size && r->idx < 2) {
        const char *s = r->seg[r->idx];
        size_t len = r->len[r->idx];
        if (r->pos >= len) {
            r->idx++;
            r->pos = 0;
            continue;
        }
        if (!r->convert) {
            size_t k = len - r->pos;
            if (k > size - n)
                k = size - n;
            memcpy(dst + n, s + r->pos, k);
            n += k;
            r->pos += k;
            continue;
        }
        /* copy up to the next CR, then decide about the CR itself */
        size_t k = len - r->pos;
        if (k > size - n)
            k = size - n;
        const char *cr = memchr(s + r->pos, '\r', k);
        if (cr)
            k = (size_t)(cr - (s + r->pos));
        memcpy(dst + n, s + r->pos, k);
        n += k;
        r->pos += k;
        if (cr) {
            if (r->pos + 1 < len && s[r->pos + 1] == '\n') {
                r->pos++; /* drop the CR of a CRLF; the LF is copied next */
            } else if (n < size) {
                dst[n++] = '\r';
                r->pos++;
            }
        }
    }
    return n;
}
