/*
 * log.c - one-line log records to standard error (see log.h).
 *
 * A record is "YYYY-mm-ddTHH:MM:SS.mmmZ prefix level: text\n"; the text is
 * cut at 2 KiB before escaping.  The text is escaped here, for every call
 * site at once (log_escape): a peer-supplied string can never start a new
 * line, move the cursor or forge a record, whatever the caller forgot.
 * A failed write to stderr is counted and otherwise ignored: logging must
 * never stop the mail flow.
 */
#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/utf8.h"

#define LOG_TEXT_MAX 2048

static enum log_level log_min = LOG_INFO;
static const char *log_prefix = "tern";
static unsigned long log_write_failures;

void log_set_level(enum log_level level)
{
    log_min = level;
}

void log_set_prefix(const char *prefix)
{
    log_prefix = prefix;
}

/* Length of the valid UTF-8 sequence at p[0..n) (2 to 4) for a non-ASCII
 * octet, or 0 if there is none. */
static size_t log_utf8_len(const unsigned char *p, size_t n)
{
    return p[0] < 0x80 ? 0 : utf8_seq_len(p, n);
}

/* Code points that are valid but act on the display: C1 controls, the line and
 * paragraph separators, bidirectional overrides and isolates. */
static bool log_utf8_hidden(const unsigned char *p, size_t len)
{
    if (len == 2)
        return p[0] == 0xc2 && p[1] < 0xa0;
    if (len == 3 && p[0] == 0xe2 && p[1] == 0x80)
        return p[2] >= 0xa8 && p[2] <= 0xae; /* U+2028..U+202E */
    if (len == 3 && p[0] == 0xe2 && p[1] == 0x81)
        return p[2] >= 0xa6 && p[2] <= 0xa9; /* U+2066..U+2069 */
    return false;
}

size_t log_escape(const char *in, size_t n, char *out, size_t size)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)in;
    size_t o = 0;

    if (size == 0)
        return 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        size_t len = 1;
        bool esc;
        if (c >= 0x80) {
            len = log_utf8_len(p + i, n - i);
            esc = len == 0 || log_utf8_hidden(p + i, len);
            if (len == 0)
                len = 1;
        } else {
            esc = c < 0x20 || c == 0x7f;
        }
        size_t need = esc ? 4 * len : c == '\\' ? 2 : len;
        if (o + need >= size)
            break; /* never half an escape or half a character */
        if (esc) {
            for (size_t k = 0; k < len; k++) {
                out[o++] = '\\';
                out[o++] = 'x';
                out[o++] = hex[p[i + k] >> 4];
                out[o++] = hex[p[i + k] & 15];
            }
        } else if (c == '\\') {
            out[o++] = '\\';
            out[o++] = '\\';
        } else {
            for (size_t k = 0; k < len; k++)
                out[o++] = (char)p[i + k];
        }
        i += len;
    }
    out[o] = '\0';
    return o;
}

static void log_vwrite(enum log_level level, const char *fmt, va_list ap)
{
    static const char *names[] = {"debug", "info", "warning", "error"};
    char text[LOG_TEXT_MAX];
    char buf[128 + 4 * LOG_TEXT_MAX];
    struct timeval tv;
    struct tm tm;
    size_t n;
    int r;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(buf, 64, "%Y-%m-%dT%H:%M:%S", &tm);
    r = snprintf(buf + n, 128 - n, ".%03ldZ %s %s: ", (long)(tv.tv_usec / 1000), log_prefix,
                 names[level]);
    if (r > 0)
        n += (size_t)r < 128 - n ? (size_t)r : 128 - n - 1;
    r = vsnprintf(text, sizeof(text), fmt, ap);
    size_t tn = r < 0 ? 0 : (size_t)r < sizeof(text) ? (size_t)r : sizeof(text) - 1;
    n += log_escape(text, tn, buf + n, sizeof(buf) - n - 1);
    buf[n++] = '\n';
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(STDERR_FILENO, buf + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            log_write_failures++;
            return;
        }
        off += (size_t)w;
    }
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;
    if (level < log_min)
        return;
    va_start(ap, fmt);
    log_vwrite(level, fmt, ap);
    va_end(ap);
}

void fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(LOG_ERROR, fmt, ap);
    va_end(ap);
    exit(1);
}
