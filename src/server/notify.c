/*
 * notify.c - sd_notify(3) messages for systemd (see notify.h).
 *
 * libsystemd opens a datagram socket per message: cheap at this rate (a
 * handful at start, reload and stop; STATUS= only when it changes).  The
 * environment is left as it is (unset_environment = 0), so that every
 * later message still finds NOTIFY_SOCKET; couriers' programs get an
 * environment of their own (deliver/run.c), without it, and the unit's
 * NotifyAccess=main would ignore them anyway.
 */
#include "server/notify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "core/log.h"

static char notify_last_status[NOTIFY_MSG_MAX];
static bool notify_warned;

void notify_format_status(char *buf, size_t size, size_t queued, unsigned sessions)
{
    snprintf(buf, size, "STATUS=queue %zu %s, %u session%s", queued, queued == 1 ? "item" : "items",
             sessions, sessions == 1 ? "" : "s");
}

void notify_format_reloading(char *buf, size_t size, uint64_t now_usec)
{
    snprintf(buf, size, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)now_usec);
}

bool notify_enabled(void)
{
    const char *e = getenv("NOTIFY_SOCKET");
    return e && e[0];
}

static void notify_send(const char *msg)
{
    if (!notify_enabled())
        return;
    int rc = sd_notify(0, msg);
    if (rc < 0 && !notify_warned) {
        notify_warned = true; /* once: systemd may be gone for good (a restart of it) */
        log_warn("sd_notify: %s", strerror(-rc));
    }
}

void notify_ready(size_t queued, unsigned sessions)
{
    char st[NOTIFY_MSG_MAX], msg[NOTIFY_MSG_MAX + 16];
    notify_format_status(st, sizeof(st), queued, sessions);
    snprintf(msg, sizeof(msg), "READY=1\n%s", st);
    memcpy(notify_last_status, st, sizeof(st));
    notify_send(msg);
}

void notify_reloading(void)
{
    struct timespec ts;
    char msg[NOTIFY_MSG_MAX];
    if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
        ts.tv_sec = ts.tv_nsec = 0;
    notify_format_reloading(msg, sizeof(msg),
                            (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
    notify_send(msg);
}

void notify_status(size_t queued, unsigned sessions, bool force)
{
    char st[NOTIFY_MSG_MAX];
    notify_format_status(st, sizeof(st), queued, sessions);
    if (!force && strcmp(st, notify_last_status) == 0)
        return;
    memcpy(notify_last_status, st, sizeof(st));
    notify_send(st);
}

void notify_stopping(void)
{
    notify_send("STOPPING=1\nSTATUS=stopping");
}
