/*
 * fuzz_dns_servers.c - the hand-written parsers of dns/dns.c on
 * arbitrary strings: the DNS servers list ("127.0.0.1:5353,[::1]:53"), the
 * host name check and the address-literal routing ("[192.0.2.1]",
 * "[IPv6:...]").  Invariants: a parsed list has 1..max entries, each
 * AF_INET or AF_INET6 with a port from 1 to 65535, and formats and parses
 * back to the same addresses; a valid name has only letters, digits,
 * hyphens and dots and at most 254 octets; a literal or an invalid name is
 * decided without sending a query (the resolver's server is a closed port
 * and a routed literal has exactly one address).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns/dns.h"

static void fuzz_format(const struct dns_addr *a, int n, char *out, size_t size)
{
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        char ip[INET6_ADDRSTRLEN];
        unsigned port;
        if (a[i].ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a[i].ss;
            inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
            port = ntohs(s6->sin6_port);
            used += (size_t)snprintf(out + used, size - used, "%s[%s]:%u", i ? "," : "", ip, port);
        } else {
            const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a[i].ss;
            inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
            port = ntohs(s4->sin_port);
            used += (size_t)snprintf(out + used, size - used, "%s%s:%u", i ? "," : "", ip, port);
        }
        if (used >= size)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct dns_resolver *res;
    static struct dns_route route;
    char s[DNS_SERVERS_MAX + 2], again[DNS_MAX_SERVERS * 64], why[256];
    struct dns_addr a[DNS_MAX_SERVERS], b[DNS_MAX_SERVERS];
    int n, m;

    if (size > DNS_SERVERS_MAX + 1)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';

    n = dns_servers_parse(s, a, DNS_MAX_SERVERS, why, sizeof(why));
    if (n == 0 || n > DNS_MAX_SERVERS)
        abort();
    if (n > 0) {
        for (int i = 0; i < n; i++) {
            unsigned port;
            if (a[i].ss.ss_family == AF_INET6)
                port = ntohs(((const struct sockaddr_in6 *)&a[i].ss)->sin6_port);
            else if (a[i].ss.ss_family == AF_INET)
                port = ntohs(((const struct sockaddr_in *)&a[i].ss)->sin_port);
            else
                abort();
            if (port == 0)
                abort();
        }
        fuzz_format(a, n, again, sizeof(again));
        m = dns_servers_parse(again, b, DNS_MAX_SERVERS, why, sizeof(why));
        if (m != n)
            abort();
        for (int i = 0; i < n; i++)
            if (a[i].len != b[i].len || memcmp(&a[i].ss, &b[i].ss, a[i].len) != 0)
                abort();
    } else if (strlen(why) >= sizeof(why)) {
        abort();
    }

    size_t len = strlen(s);
    bool valid = dns_name_valid(s, len);
    if (valid) {
        if (len > DNS_NAME_MAX + 1)
            abort();
        for (size_t i = 0; i < len; i++)
            if (!(s[i] == '.' || s[i] == '-' || (s[i] >= '0' && s[i] <= '9') ||
                  (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')))
                abort();
    } else {
        if (!res) {
            struct dns_conf c = {.servers = "127.0.0.1:9", .timeout_ms = 50, .tries = 1};
            res = dns_resolver_new(&c, why, sizeof(why));
            if (!res)
                abort();
        }
        int rc = dns_resolver_route(res, s, &route, why, sizeof(why));
        if (rc == DNS_OK) {
            if (s[0] != '[' || route.nhosts != 1 || route.hosts[0].naddrs != 1 || !route.literal)
                abort();
        } else if (rc != DNS_PERMANENT || route.nhosts != 0) {
            abort();
        }
    }
    return 0;
}
