/*
 * netaddr.h - "host:port" endpoints as written on command lines and in
 * config files: "127.0.0.1:25", "[::1]:25", "*:25" (all IPv4), "[::]:25".
 * Only numeric addresses: a listener never waits on DNS.
 */
#ifndef TERN_CORE_NETADDR_H
#define TERN_CORE_NETADDR_H

#include <stddef.h>
#include <sys/socket.h>

/* Parse s into *ss / *sslen.  Returns 0, or -1 with a static reason in *why. */
int netaddr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *sslen, const char **why);

/* "[::1]:25" / "127.0.0.1:25" into buf; returns buf. */
char *netaddr_format(const struct sockaddr *sa, char *buf, size_t size);

#endif
