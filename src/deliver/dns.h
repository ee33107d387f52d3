/*
 * dns.h - where mail for a domain goes: MX lookup and host addresses
 * (RFC 5321 section 5.1, RFC 7505 null MX) through c-ares.
 *
 * Calls block the calling thread (they wait in poll(2) for c-ares) and
 * are thread-safe: every struct dns_resolver owns its own c-ares channel,
 * and one resolver is used by one thread at a time; dns_route() makes a
 * resolver for a single call.  Results are copied into fixed-size arrays
 * (maxima below); nothing returned points into c-ares memory.  A
 * struct dns_route is about 14 KiB: keep it on the heap or a thread stack.
 *
 * Classification (the caller turns it into per-recipient status):
 *   DNS_OK         hosts[0..nhosts) to try in order, each with >= 1 address
 *   DNS_PERMANENT  never retry: NXDOMAIN, null MX, no MX and no address for
 *                  the domain itself, bad domain syntax
 *   DNS_TRANSIENT  retry later: SERVFAIL, REFUSED, timeout, any other
 *                  failure, or MX hosts of which none has an address.
 *                  There is never a fallback to A/AAAA after a failed MX
 *                  query.
 */
#ifndef TERN_DELIVER_DNS_H
#define TERN_DELIVER_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#define DNS_NAME_MAX 253     /* octets of a domain name, without the final dot */
#define DNS_MAX_HOSTS 10     /* hosts in a route */
#define DNS_MAX_PER_FAMILY 4 /* addresses per host and address family */
#define DNS_MAX_ADDRS (2 * DNS_MAX_PER_FAMILY)
#define DNS_MAX_SERVERS 8    /* entries in dns_conf.servers */
#define DNS_SERVERS_MAX 1024 /* octets of dns_conf.servers */
#define DNS_NOTES_MAX 512    /* octets of dns_route.notes, NUL included */
#define DNS_DEFAULT_TIMEOUT_MS 5000
#define DNS_DEFAULT_TRIES 2

enum dns_result {
    DNS_OK = 0,
    DNS_TRANSIENT,
    DNS_PERMANENT,
};

struct dns_conf {
    /* "127.0.0.1:5353,[::1]:53,192.0.2.53" (port 53 when left out), or
     * NULL / "" for the system's resolv.conf. */
    const char *servers;
    unsigned timeout_ms; /* first-try timeout per query; 0: DNS_DEFAULT_TIMEOUT_MS */
    unsigned tries;      /* attempts per server; 0: DNS_DEFAULT_TRIES */
    unsigned max_hosts;  /* hosts in a route; 0 or more than DNS_MAX_HOSTS: DNS_MAX_HOSTS */
};

struct dns_addr {
    struct sockaddr_storage ss; /* AF_INET6 or AF_INET, port 0 */
    socklen_t len;
};

struct dns_host {
    char name[DNS_NAME_MAX + 3];          /* the MX exchange, the domain, or "[literal]" */
    unsigned preference;                  /* MX preference; 0 for implicit MX and literals */
    struct dns_addr addrs[DNS_MAX_ADDRS]; /* IPv6 first, then IPv4 */
    size_t naddrs;                        /* 1..DNS_MAX_ADDRS */
};

struct dns_route {
    struct dns_host hosts[DNS_MAX_HOSTS];
    size_t nhosts;
    bool implicit_mx; /* no MX records: the domain itself is the host */
    bool literal;     /* the domain was an address literal */
    /* What was skipped and why ("mx9.example.org: no address (NXDOMAIN); ..."),
     * printable ASCII, "" if nothing; cut at DNS_NOTES_MAX. */
    char notes[DNS_NOTES_MAX];
};

struct dns_resolver;

/*
 * A resolver for one thread.  Returns NULL with a reason in why (bad
 * servers string, c-ares cannot start).  Free with dns_resolver_free().
 */
struct dns_resolver *dns_resolver_new(const struct dns_conf *c, char *why, size_t whylen);
void dns_resolver_free(struct dns_resolver *r);

/*
 * Route mail for domain (an RFC 5321 domain with an optional final dot, or
 * an address literal "[192.0.2.1]" / "[IPv6:2001:db8::1]", which needs no
 * DNS).  Returns an enum dns_result; on TRANSIENT and PERMANENT why holds
 * one line of printable text, e.g. "example.org: domain does not exist
 * (NXDOMAIN)"; on OK why is "".  *out is always initialised.
 */
int dns_resolver_route(struct dns_resolver *r, const char *domain, struct dns_route *out, char *why,
                       size_t whylen);

/* dns_resolver_new + dns_resolver_route + dns_resolver_free. */
int dns_route(const struct dns_conf *c, const char *domain, struct dns_route *out, char *why,
              size_t whylen);

/*
 * RFC 5321 5.1 loop check: if a host of r is named myname (no case),
 * remove it and every host of the same or a higher preference.  Returns 0,
 * or -1 if this leaves no host (the caller fails with 5.4.6).  An implicit
 * MX or a literal pointing at ourselves is left alone: the caller compares
 * addresses for those.
 */
int dns_route_drop_self(struct dns_route *r, const char *myname);

/*
 * Parse a servers string (see struct dns_conf) into at most max addresses
 * with their ports.  Items are separated by commas, blanks around them are
 * ignored.  Returns the count (>= 1), or -1 with a reason in why.
 */
int dns_servers_parse(const char *s, struct dns_addr *out, size_t max, char *why, size_t whylen);

/*
 * True if name[0..len) is a syntactically valid host name for a query:
 * 1..DNS_NAME_MAX octets (one final dot allowed on top), labels of 1..63
 * letters, digits and hyphens, not starting or ending with a hyphen.
 */
bool dns_name_valid(const char *name, size_t len);

/* Null MX (RFC 7505): exactly one MX record and its exchange is the root. */
bool dns_is_null_mx(size_t nmx, const char *first_exchange);

#endif
