/*
 * log.c - one-line log records to standard error (see log.h).
 *
 * A record is "YYYY-mm-ddTHH:MM:SS.mmmZ prefix level: text\n", cut at 2 KiB.
 * Text is the caller's; callers clean peer-supplied strings before logging.
 * A failed write to stderr is counted and otherwise ignored: logging must
 * never stop the mail flow.
 */
#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

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

static void log_vwrite(enum log_level level, const char *fmt, va_list ap)
{
    static const char *names[] = {"debug", "info", "warning", "error"};
    char buf[2048];
    struct timeval tv;
    struct tm tm;
    size_t n;
    int r;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    r = snprintf(buf + n, sizeof(buf) - n, ".%03ldZ %s %s: ", (long)(tv.tv_usec / 1000), log_prefix,
                 names[level]);
    if (r > 0)
        n += (size_t)r < sizeof(buf) - n ? (size_t)r : sizeof(buf) - n - 1;
    r = vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
    if (r > 0)
        n += (size_t)r < sizeof(buf) - n ? (size_t)r : sizeof(buf) - n - 1;
    if (n >= sizeof(buf) - 1)
        n = sizeof(buf) - 2;
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
