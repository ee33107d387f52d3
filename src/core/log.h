/*
 * log.h - one-line log records to standard error.
 *
 * Every record is formatted into one buffer and written with a single
 * write(2), so lines from one process never interleave.  fatal() is for a
 * broken environment (cannot bind, cannot allocate): it logs and exits 1.
 * Peer-caused problems are never fatal: they are logged as warnings.
 *
 * The text of every record is escaped (log_escape), so a string from a peer
 * can be logged as it is: it cannot end the line or forge another record.
 */
#ifndef TERN_CORE_LOG_H
#define TERN_CORE_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(enum log_level level);
void log_set_prefix(const char *prefix); /* e.g. "sink" (the string must outlive logging) */

/*
 * Escape in[0..n) into out (NUL-terminated, at most size - 1 octets; returns
 * the length): control characters (C0, DEL, C1), bytes that are not part of
 * valid UTF-8 (overlong forms, surrogates, stray continuation bytes), and the
 * line/paragraph separators and bidirectional overrides become \xNN per
 * octet; a backslash becomes \\, so the escaping can be undone.  Valid
 * UTF-8 text stays readable.  Stops before an escape or a character that
 * would not fit whole.
 */
size_t log_escape(const char *in, size_t n, char *out, size_t size);

__attribute__((format(printf, 2, 3))) void log_msg(enum log_level level, const char *fmt, ...);
__attribute__((format(printf, 1, 2), noreturn)) void fatal(const char *fmt, ...);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
