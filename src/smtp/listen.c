/*
 * listen.c - listening sockets for SMTP (see listen.h).
 *
 * Sockets are non-blocking, close-on-exec, SO_REUSEADDR, IPV6_V6ONLY for
 * IPv6, with a deep backlog (LISTEN_BACKLOG: load tests open many
 * connections at once; libevent is told it, or it would listen again with
 * its own 128).  An accept error (EMFILE, ENFILE, ENOBUFS, ENOMEM) pauses
 * the listener for ACCEPT_PAUSE_MS with one log line, instead of spinning
 * on a connection that cannot be taken; pending clients wait in the backlog.
 */
#include "smtp/listen.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/netaddr.h"
#include "smtp/session.h"

#define LISTEN_BACKLOG 1024
#define ACCEPT_PAUSE_MS 1000

struct smtp_listener {
    struct evconnlistener *evl;
    struct event *resume_ev; /* re-enables the listener after an accept error */
    unsigned long pauses;
    struct smtp_server *srv;
    bool implicit_tls;
    char addr[80];
};

int listen_socket(const char *addr, char *why, size_t whysize)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    const char *reason;
    int fd, one = 1;

    if (netaddr_parse(addr, &ss, &sslen, &reason) < 0) {
        snprintf(why, whysize, "%s: %s", addr, reason);
        return -1;
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, whysize, "%s: socket: %s", addr, strerror(errno));
        return -1;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        (ss.ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)) {
        snprintf(why, whysize, "%s: setsockopt: %s", addr, strerror(errno));
        close(fd);
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&ss, sslen) < 0) {
        snprintf(why, whysize, "%s: bind: %s", addr, strerror(errno));
        close(fd);
        return -1;
    }
    if (listen(fd, LISTEN_BACKLOG) < 0) {
        snprintf(why, whysize, "%s: listen: %s", addr, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void listener_accept_cb(struct evconnlistener *evl, evutil_socket_t fd,
                               struct sockaddr *peer, int peerlen, void *arg)
{
    struct smtp_listener *l = arg;
    (void)evl;
    (void)peerlen;
    smtp_server_accept(l->srv, fd, peer, l->implicit_tls);
}

static void listener_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smtp_listener *l = arg;
    (void)fd;
    (void)what;
    if (evconnlistener_enable(l->evl) < 0)
        log_warn("accept on %s: cannot resume listening", l->addr);
}

static void listener_error_cb(struct evconnlistener *evl, void *arg)
{
    struct smtp_listener *l = arg;
    int err = errno;
    struct timeval tv = {ACCEPT_PAUSE_MS / 1000, (ACCEPT_PAUSE_MS % 1000) * 1000};
    if (err == EINTR || err == EAGAIN || err == ECONNABORTED)
        return; /* libevent retries these itself */
    l->pauses++;
    log_warn("accept on %s: %s; pausing for %d ms (pause %lu)", l->addr, strerror(err),
             ACCEPT_PAUSE_MS, l->pauses);
    if (evconnlistener_disable(evl) < 0 || evtimer_add(l->resume_ev, &tv) < 0)
        fatal("cannot pause the listener on %s", l->addr);
}

struct smtp_listener *smtp_listen(struct event_base *base, const char *addr,
                                  struct smtp_server *srv, bool implicit_tls, char *why,
                                  size_t whysize)
{
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    int fd = listen_socket(addr, why, whysize);
    if (fd < 0)
        return NULL;
    struct smtp_listener *l = calloc(1, sizeof(*l));
    if (!l)
        fatal("out of memory");
    l->srv = srv;
    l->implicit_tls = implicit_tls;
    if (getsockname(fd, (struct sockaddr *)&ss, &sslen) == 0)
        netaddr_format((struct sockaddr *)&ss, l->addr, sizeof(l->addr));
    else
        snprintf(l->addr, sizeof(l->addr), "%s", addr);
    l->evl =
        evconnlistener_new(base, listener_accept_cb, l, LEV_OPT_CLOSE_ON_FREE, LISTEN_BACKLOG, fd);
    l->resume_ev = evtimer_new(base, listener_resume_cb, l);
    if (!l->evl || !l->resume_ev) {
        if (l->resume_ev)
            event_free(l->resume_ev);
        if (l->evl)
            evconnlistener_free(l->evl);
        else
            close(fd);
        snprintf(why, whysize, "%s: cannot watch the socket", addr);
        free(l);
        return NULL;
    }
    evconnlistener_set_error_cb(l->evl, listener_error_cb);
    return l;
}

const char *smtp_listener_addr(const struct smtp_listener *l)
{
    return l->addr;
}

void smtp_listener_free(struct smtp_listener *l)
{
    if (!l)
        return;
    event_free(l->resume_ev);
    evconnlistener_free(l->evl);
    free(l);
}
