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
#ifndef TERN_DNS_DNS_H
#define TERN_DNS_DNS_H

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

/* ---- single queries: TXT (and the raw answer) for mail authentication ----
 *
 * SPF, DKIM, DMARC and MTA-STS must tell "the name does not exist" from "no
 * record of that type" from "try again": one query of one type, one
 * enum dns_qstatus.  Names may hold underscores ("sel._domainkey.example.org",
 * "_dmarc.example.org"): see dns_qname_valid(). */

enum dns_qstatus {
    DNS_Q_OK = 0,   /* at least one record of the type */
    DNS_Q_NXDOMAIN, /* the name does not exist */
    DNS_Q_NODATA,   /* the name exists, no record of that type */
    DNS_Q_TEMP,     /* SERVFAIL, REFUSED, timeout, malformed answer, out of memory */
    DNS_Q_BADNAME,  /* not a valid query name: nothing was asked */
};

#define DNS_TXT_MAX_RECORDS 32 /* TXT records kept per answer (more: truncated) */
#define DNS_TXT_MAX_LEN 8192   /* octets of one record, its strings joined (longer: dropped) */
#define DNS_ANSWER_MAX 65536   /* octets of a raw answer kept (DNS over TCP's maximum) */

struct dns_txt {
    size_t n;                       /* records in rec[] */
    char *rec[DNS_TXT_MAX_RECORDS]; /* each one record, its character-strings joined
                                     * with nothing between (RFC 7208 3.3, RFC 6376
                                     * 3.6.2.2), NUL-terminated; may hold NUL octets:
                                     * use len[] */
    size_t len[DNS_TXT_MAX_RECORDS];
    bool truncated; /* records were dropped: too many or too long */
};

/* A valid query name: 1..DNS_NAME_MAX octets (one final dot allowed on top),
 * labels of 1..63 letters, digits, hyphens and underscores. */
bool dns_qname_valid(const char *name, size_t len);

/*
 * The TXT records of name.  On DNS_Q_OK out->n >= 1 (free with
 * dns_txt_free()); otherwise out->n == 0 and why says what happened in one
 * printable line.  out is always initialised.
 */
enum dns_qstatus dns_resolver_txt(struct dns_resolver *r, const char *name, struct dns_txt *out,
                                  char *why, size_t whylen);
void dns_txt_free(struct dns_txt *t);

/*
 * One query of any type (1 A, 28 AAAA, 15 MX, 12 PTR, 16 TXT ...), class IN:
 * the raw answer (at most DNS_ANSWER_MAX octets, malloc'ed, *abuf NULL
 * unless DNS_Q_OK) for a c-ares ares_parse_*_reply().  DNS_Q_OK means the
 * server answered NOERROR with at least one answer record; the caller's
 * parse may still find none of the type it wants (a CNAME only): treat
 * that as DNS_Q_NODATA.
 */
enum dns_qstatus dns_resolver_query(struct dns_resolver *r, const char *name, int type,
                                    unsigned char **abuf, size_t *alen, char *why, size_t whylen);

/* "ok", "NXDOMAIN", "no records", "temporary failure", "bad name". */
const char *dns_qstatus_name(enum dns_qstatus s);

/* Null MX (RFC 7505): exactly one MX record and its exchange is the root. */
bool dns_is_null_mx(size_t nmx, const char *first_exchange);

/* ---- SPF target names (appended for mailauth/spf.c) ----
 *
 * SPF builds query names from a record's text and the sender's local part
 * (RFC 7208 7.1: a domain-spec may hold any visible character but '%'), so
 * "foo:bar/baz.example.com" or "first+tag._spf.example.org" must still be
 * asked.  dns_qname_valid_any(): 1..DNS_NAME_MAX octets (one final dot
 * allowed on top), labels of 1..63 octets of visible ASCII or space, no
 * backslash (c-ares' escape).  dns_resolver_query_any(): dns_resolver_query()
 * for such names. */
bool dns_qname_valid_any(const char *name, size_t len);
enum dns_qstatus dns_resolver_query_any(struct dns_resolver *r, const char *name, int type,
                                        unsigned char **abuf, size_t *alen, char *why,
                                        size_t whylen);

#endif
