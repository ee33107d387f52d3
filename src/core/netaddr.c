/*
 * netaddr.c - parse and format numeric "host:port" endpoints (see netaddr.h).
 *
 * IPv6 addresses must be in brackets so that the port is never ambiguous.
 * The port must be 1..65535 in decimal with no sign or junk.  Nothing is
 * allocated and no name is ever resolved.
 */
#include "core/netaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static int netaddr_port(const char *p, unsigned *port)
{
    unsigned v = 0;
    if (*p == '\0')
        return -1;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (unsigned)(*p - '0');
        if (v > 65535)
            return -1;
    }
    *port = v;
    return 0;
}

int netaddr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *sslen, const char **why)
{
    char host[64];
    const char *colon;
    unsigned port;
    size_t hl;

    memset(ss, 0, sizeof(*ss));
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') {
            *why = "IPv6 address must be written as [ADDR]:PORT";
            return -1;
        }
        hl = (size_t)(close - s - 1);
        if (hl >= sizeof(host)) {
            *why = "address too long";
            return -1;
        }
        memcpy(host, s + 1, hl);
        host[hl] = '\0';
        if (netaddr_port(close + 2, &port) < 0) {
            *why = "port must be a number from 0 to 65535";
            return -1;
        }
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
            *why = "not a numeric IPv6 address";
            return -1;
        }
        *sslen = sizeof(*sin6);
        return 0;
    }
    colon = strrchr(s, ':');
    if (!colon) {
        *why = "expected ADDR:PORT";
        return -1;
    }
    hl = (size_t)(colon - s);
    if (hl >= sizeof(host)) {
        *why = "address too long";
        return -1;
    }
    memcpy(host, s, hl);
    host[hl] = '\0';
    if (netaddr_port(colon + 1, &port) < 0) {
        *why = "port must be a number from 0 to 65535";
        return -1;
    }
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    if (strcmp(host, "*") == 0 || host[0] == '\0') {
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (strcmp(host, "localhost") == 0) {
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
        *why = strchr(host, ':') ? "IPv6 address must be written as [ADDR]:PORT"
                                 : "not a numeric IPv4 address";
        return -1;
    }
    *sslen = sizeof(*sin);
    return 0;
}

char *netaddr_format(const struct sockaddr *sa, char *buf, size_t size)
{
    char host[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        if (!inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host)))
            strcpy(host, "?");
        snprintf(buf, size, "[%s]:%u", host, ntohs(sin6->sin6_port));
    } else if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        if (!inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host)))
            strcpy(host, "?");
        snprintf(buf, size, "%s:%u", host, ntohs(sin->sin_port));
    } else {
        snprintf(buf, size, "unix");
    }
    return buf;
}
