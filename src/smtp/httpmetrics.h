/*
 * httpmetrics.h - an HTTP listener that shows the process's metrics
 * (core/metrics.h) at GET /metrics in the Prometheus text format, on
 * libevent's evhttp.
 *
 * It runs either on the caller's event loop (tern serve's admin listener,
 * tern sink), where collectors may then read that loop's state without
 * locks, or on a thread of its own with its own loop (tern send, whose
 * workers block).  It serves only GET and HEAD of /metrics (and / with a
 * pointer to it); anything else is 404 or 405.  Requests are small and
 * bounded (headers 8 KiB, no body) and time out after 10 s; a scrape is
 * answered in one go from one buffer.
 */
#ifndef TERN_SMTP_HTTPMETRICS_H
#define TERN_SMTP_HTTPMETRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct event_base;
struct httpmetrics;

/*
 * Bind addr ("127.0.0.1:9425", port 0 = a free one) and show the families
 * of programs (METRICS_* bits).  base NULL: a thread of its own.  The bound
 * address goes into bound.  Returns NULL with a reason in why.
 */
struct httpmetrics *httpmetrics_start(struct event_base *base, const char *addr, unsigned programs,
                                      char *bound, size_t boundsize, char *why, size_t whysize);
/* Stop listening (and join the thread); NULL is fine. */
void httpmetrics_free(struct httpmetrics *hm);

/* 1 if sa is a loopback address (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104), else 0. */
int httpmetrics_loopback(const struct sockaddr *sa);

#endif
