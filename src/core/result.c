/*
 * result.c - the per-recipient delivery result (see result.h).
 *
 * Invariant: after result_fail() the text is one NUL-terminated line of
 * printable ASCII no longer than RESULT_TEXT_MAX - 1 octets, whatever the
 * formatted arguments contained (a program's output, an errno text, a
 * server's reply).  The status is copied bounded too.  Nothing is
 * allocated; nothing is logged.
 */
#include "core/result.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void result_clear(struct rcpt_result *r)
{
    if (!r)
        return;
    r->cls = RESULT_OK;
    r->code = 0;
    r->dsn_passed = false;
    r->status[0] = '\0';
    r->text[0] = '\0';
}

size_t result_clean(char *dst, size_t size, const char *src, size_t len)
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

enum result_class result_fail(struct rcpt_result *r, enum result_class cls, const char *status,
                              const char *fmt, ...)
{
    char raw[RESULT_TEXT_MAX * 2];
    va_list ap;
    int n;

    if (!r)
        return cls;
    r->cls = cls;
    r->code = 0;
    r->dsn_passed = false;
    result_clean(r->status, sizeof(r->status), status ? status : "", strlen(status ? status : ""));
    va_start(ap, fmt);
    n = vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(raw))
        n = sizeof(raw) - 1;
    result_clean(r->text, sizeof(r->text), raw, (size_t)n);
    return cls;
}

const char *result_class_name(enum result_class c)
{
    switch (c) {
    case RESULT_OK:
        return "ok";
    case RESULT_TEMP:
        return "temporary";
    case RESULT_PERM:
        return "permanent";
    }
    return "unknown";
}
