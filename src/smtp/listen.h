/*
 * listen.h - listening sockets that hand accepted connections to an SMTP
 * server (or to any accept callback).  IPv4 and IPv6 (v6-only sockets, so
 * "[::]:25" and "0.0.0.0:25" can both be bound); port 0 picks a free port,
 * which smtp_listener_addr() then reports.
 */
#ifndef TERN_SMTP_LISTEN_H
#define TERN_SMTP_LISTEN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct event_base;
struct smtp_server;
struct smtp_listener;

/* Bind addr ("127.0.0.1:25", "[::1]:25").  On failure returns NULL and writes the
 * reason to why (size whysize). */
struct smtp_listener *smtp_listen(struct event_base *base, const char *addr,
                                  struct smtp_server *srv, bool implicit_tls, char *why,
                                  size_t whysize);

/* Bind a plain socket (used by the HTTP API too); returns the fd or -1 with why. */
int listen_socket(const char *addr, char *why, size_t whysize);

/* The bound address as "host:port". */
const char *smtp_listener_addr(const struct smtp_listener *l);
void smtp_listener_free(struct smtp_listener *l);

#endif
