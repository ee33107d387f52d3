/*
 * dialogue.h - drive a real server session (src/smtp/session.c) through a
 * socketpair, without the network: write client bytes, run the event loop
 * until the server is quiet, collect what it answered.  Shared by the
 * dialogue unit tests and the session fuzzer; header-only on purpose.
 */
#ifndef TERN_TESTS_DIALOGUE_H
#define TERN_TESTS_DIALOGUE_H

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "smtp/session.h"

struct dialogue {
    struct event_base *base;
    struct smtp_server *srv;
    int fd; /* the client's end */
};

static inline void dlg_fail(const char *what)
{
    (void)!write(2, what, strlen(what));
    abort();
}

static inline void dlg_open(struct dialogue *d)
{
    int sv[2];
    struct sockaddr_storage peer;
    memset(&peer, 0, sizeof(peer));
    peer.ss_family = AF_UNIX;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        dlg_fail("socketpair failed\n");
    d->fd = sv[0];
    smtp_server_accept(d->srv, sv[1], (struct sockaddr *)&peer, false);
}

static inline void dlg_start(struct dialogue *d, const struct smtp_server_conf *conf)
{
    d->base = event_base_new();
    if (!d->base)
        dlg_fail("event_base_new failed\n");
    d->srv = smtp_server_new(d->base, conf);
    dlg_open(d);
}

/* Send in[0..n) (all of it, interleaved with the loop), then collect output until the
 * server has been quiet for a few rounds.  Returns bytes written to out (NUL-terminated). */
static inline size_t dlg_exchange(struct dialogue *d, const char *in, size_t n, char *out,
                                  size_t outsize)
{
    size_t sent = 0, got = 0;
    int quiet = 0;
    for (int round = 0; round < 100000 && quiet < 4; round++) {
        int progress = 0;
        if (sent < n) {
            ssize_t w = send(d->fd, in + sent, n - sent, MSG_NOSIGNAL);
            if (w > 0) {
                sent += (size_t)w;
                progress = 1;
            } else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                sent = n; /* the server closed: nothing more can be sent */
            }
        }
        event_base_loop(d->base, EVLOOP_NONBLOCK);
        for (;;) {
            char buf[4096];
            ssize_t r = recv(d->fd, buf, sizeof(buf), 0);
            if (r <= 0)
                break;
            size_t take = (size_t)r;
            if (got + take >= outsize)
                take = outsize - got - 1;
            memcpy(out + got, buf, take);
            got += take;
            progress = 1;
        }
        quiet = progress || sent < n ? 0 : quiet + 1;
    }
    out[got] = '\0';
    return got;
}

/* Close the client's end and let the server free the session. */
static inline void dlg_close(struct dialogue *d)
{
    close(d->fd);
    d->fd = -1;
    for (int i = 0; i < 1000 && smtp_server_sessions(d->srv) > 0; i++)
        event_base_loop(d->base, EVLOOP_NONBLOCK);
}

static inline void dlg_end(struct dialogue *d)
{
    if (d->fd >= 0)
        dlg_close(d);
    smtp_server_free(d->srv);
    event_base_free(d->base);
}

#endif
