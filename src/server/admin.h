/*
 * admin.h - `tern serve`'s admin HTTP listener ([admin] listen): GET
 * /metrics in the Prometheus text format (core/metrics.h), on the server's
 * event loop, with the queue's gauges (items by state, the oldest item's
 * age) computed from the engine's schedule at each scrape.
 *
 * Off unless configured; config.c refuses a non-loopback address unless
 * [admin] allow_remote is set.  Bound with the SMTP listeners (as root,
 * before privileges are dropped); one per process.
 */
#ifndef TERN_SERVER_ADMIN_H
#define TERN_SERVER_ADMIN_H

struct serve;

/* Bind every [admin] listen address of the boot configuration.  0, or -1 after
 * printing why to stderr. */
int serve_admin_start(struct serve *sv);
/* Stop listening (at exit). */
void serve_admin_free(void);

#endif
