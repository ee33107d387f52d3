/*
 * listen.c - listening sockets for SMTP (see listen.h).
 *
 * Sockets are non-blocking, close-on-exec, SO_REUSEADDR, IPV6_V6ONLY for
 * IPv6, with a deep backlog (load tests open many connections at once).
 * Accept errors such as EMFILE are logged and the listener keeps going.
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

struct smtp_listener {
    struct evconnlistener *evl;
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
    if (listen(fd, 1024) < 0) {
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

static void listener_error_cb(struct evconnlistener *evl, void *arg)
{
    struct smtp_listener *l = arg;
    (void)evl;
    log_warn("accept on %s: %s", l->addr, strerror(errno));
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
    l->evl = evconnlistener_new(base, listener_accept_cb, l, LEV_OPT_CLOSE_ON_FREE, -1, fd);
    if (!l->evl) {
        snprintf(why, whysize, "%s: cannot watch the socket", addr);
        close(fd);
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
    evconnlistener_free(l->evl);
    free(l);
}
