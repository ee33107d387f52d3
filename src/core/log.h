/*
 * log.h - one-line log records to standard error.
 *
 * Every record is formatted into one buffer and written with a single
 * write(2), so lines from one process never interleave.  fatal() is for a
 * broken environment (cannot bind, cannot allocate): it logs and exits 1.
 * Peer-caused problems are never fatal: they are logged as warnings.
 */
#ifndef TERN_CORE_LOG_H
#define TERN_CORE_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(enum log_level level);
void log_set_prefix(const char *prefix); /* e.g. "sink" (the string must outlive logging) */

__attribute__((format(printf, 2, 3))) void log_msg(enum log_level level, const char *fmt, ...);
__attribute__((format(printf, 1, 2), noreturn)) void fatal(const char *fmt, ...);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
