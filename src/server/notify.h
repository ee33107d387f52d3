/*
 * notify.h - telling systemd how `tern serve` is doing (sd_notify(3)).
 *
 * Under a unit with Type=notify, systemd passes NOTIFY_SOCKET; the server
 * says READY=1 once it listens and the queue is recovered, STATUS= with the
 * queue size and open sessions (on change, looked at every second, and at
 * least every 10 s), RELOADING=1 (with MONOTONIC_USEC=, as systemd 253+
 * wants for Type=notify-reload) then READY=1 around a SIGHUP reload, and
 * STOPPING=1 at shutdown.  Without NOTIFY_SOCKET every call does nothing.
 *
 * The notify_format_* functions are pure (unit-tested); the others send.
 * Sending never fails the server: a refused datagram is logged once.
 * Loop thread only.
 */
#ifndef TERN_SERVER_NOTIFY_H
#define TERN_SERVER_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NOTIFY_MSG_MAX 256

/* "STATUS=..." for a queue of queued items and sessions open. */
void notify_format_status(char *buf, size_t size, size_t queued, unsigned sessions);
/* "RELOADING=1\nMONOTONIC_USEC=N" (now_usec: CLOCK_MONOTONIC in microseconds). */
void notify_format_reloading(char *buf, size_t size, uint64_t now_usec);

bool notify_enabled(void); /* NOTIFY_SOCKET is set */
void notify_ready(size_t queued, unsigned sessions);
void notify_reloading(void);
/* STATUS= only if it differs from the last one sent, or force. */
void notify_status(size_t queued, unsigned sessions, bool force);
void notify_stopping(void);

#endif
