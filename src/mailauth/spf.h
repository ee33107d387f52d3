/*
 * spf.h - Sender Policy Framework (RFC 7208): check_host() for the client
 * address of an SMTP session against the MAIL FROM (or HELO) domain.
 *
 * Our own implementation over tern's c-ares resolver (src/dns): libspf2
 * brings its own resolver, which cannot be pointed at a private DNS server
 * (the tests' dnsmasq) or share our deadlines.
 *
 * Two layers:
 *   spf_record_parse()  pure: one "v=spf1 ..." record into a struct of
 *                       terms, no DNS (fuzzed, unit tested);
 *   spf_macro_expand()  pure: the macro language of RFC 7208 section 7;
 *   spf_check()         evaluation with DNS through a caller-owned resolver.
 *
 * Limits (RFC 7208 4.6.4, 11.1), each past its limit a permerror: 10
 * DNS-querying terms (include, a, mx, ptr, exists, redirect) in the whole
 * check_host() tree (so include/redirect loops end there), 2 void lookups
 * (NXDOMAIN or no data), 10 MX names per mx, one "v=spf1" record of at
 * most SPF_RECORD_MAX octets.  Only the first 10 PTR names are looked at
 * (5.5).  Time: SPF_BUDGET_MS for the whole check, checked before each
 * query (a query under way keeps the resolver's own bound), then
 * temperror, as is any DNS failure.  Nothing is kept between calls.
 */
#ifndef TERN_MAILAUTH_SPF_H
#define TERN_MAILAUTH_SPF_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct dns_resolver;

enum spf_result {
    SPF_NONE,
    SPF_NEUTRAL,
    SPF_PASS,
    SPF_FAIL,
    SPF_SOFTFAIL,
    SPF_TEMPERROR,
    SPF_PERMERROR,
};

struct spf_verdict {
    enum spf_result result;
    char domain[256]; /* the domain checked */
    char why[200];    /* one printable line: which term matched or what went wrong */
    unsigned lookups, void_lookups;
    char explanation[256]; /* on fail: the exp= text, expanded (RFC 7208 6.2), or "" */
};

/*
 * check_host() of RFC 7208 for the MAIL FROM address (or postmaster@helo
 * when mail_from is "" or NULL); ip: the client's address (AF_INET or
 * AF_INET6; a v4-mapped IPv6 address is checked as IPv4).  receiver_host
 * is %{r} (NULL: "unknown").  out may be NULL.
 */
enum spf_result spf_check(struct dns_resolver *r, const struct sockaddr *ip, const char *helo,
                          const char *mail_from, const char *receiver_host,
                          struct spf_verdict *out);

/* spf_check() with a time budget other than SPF_BUDGET_MS (milliseconds for
 * the whole check; 0: no query is made, temperror). */
enum spf_result spf_check_within(struct dns_resolver *r, const struct sockaddr *ip,
                                 const char *helo, const char *mail_from, const char *receiver_host,
                                 unsigned budget_ms, struct spf_verdict *out);

/* "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror"
 * (RFC 8601 2.7.2). */
const char *spf_result_name(enum spf_result r);

/* ---- the pure layers (exposed for tests and the fuzzer) ---- */

#define SPF_RECORD_MAX 4096  /* octets of one record; longer: permerror */
#define SPF_MAX_TERMS 64     /* terms in one record; more: permerror */
#define SPF_MAX_LOOKUPS 10   /* RFC 7208 4.6.4 */
#define SPF_MAX_VOID 2       /* RFC 7208 4.6.4 */
#define SPF_MAX_NAMES 10     /* MX names per mx, PTR names per ptr */
#define SPF_BUDGET_MS 20000  /* one whole check */
#define SPF_EXPANDED_MAX 253 /* octets of an expanded domain-spec (7.3) */

enum spf_mech {
    SPF_M_ALL,
    SPF_M_INCLUDE,
    SPF_M_A,
    SPF_M_MX,
    SPF_M_PTR,
    SPF_M_IP4,
    SPF_M_IP6,
    SPF_M_EXISTS,
};

struct spf_term {
    enum spf_mech mech;
    char qualifier;         /* '+', '-', '~', '?' */
    const char *domain;     /* domain-spec (unexpanded), NUL-terminated in the record copy;
                             * NULL when absent */
    int cidr4, cidr6;       /* prefix lengths; -1 when absent */
    unsigned char addr[16]; /* ip4 (first 4 octets) / ip6 network */
};

struct spf_record {
    char buf[SPF_RECORD_MAX + 1]; /* a copy of the record, cut into pieces */
    struct spf_term terms[SPF_MAX_TERMS];
    size_t nterms;
    const char *redirect; /* redirect= domain-spec or NULL */
    const char *exp;      /* exp= domain-spec or NULL */
};

/*
 * True if txt[0..len) is an SPF record: "v=spf1" (no case) alone or
 * followed by a space (RFC 7208 4.5).
 */
bool spf_is_record(const char *txt, size_t len);

/*
 * Parse an SPF record (starting with "v=spf1").  Returns 0, or -1 with a
 * reason in why (permerror): bad syntax, bad macro, bad CIDR, too long,
 * too many terms, redirect= or exp= twice.
 */
int spf_record_parse(const char *txt, size_t len, struct spf_record *out, char *why, size_t whylen);

/* What the macros of RFC 7208 section 7 expand to. */
struct spf_macro_ctx {
    const char *sender;    /* s: local-part@domain */
    const char *domain;    /* d: the current domain */
    const char *ip;        /* i: dotted IPv4 or nibble-dotted IPv6 (from spf_macro_ip) */
    const char *helo;      /* h */
    const char *v;         /* "in-addr" or "ip6" */
    const char *validated; /* p: a validated name, or "unknown" */
    const char *cip;       /* c: the address in its ordinary text form (exp only) */
    const char *receiver;  /* r (exp only) */
    long long now;         /* t (exp only) */
};

/*
 * Expand spec (a domain-spec, or with exp true an explanation string,
 * which allows c, r, t and literal spaces).  For a domain-spec the result
 * is cut from the left, whole labels at a time, to at most
 * SPF_EXPANDED_MAX octets (7.3).  Returns 0, or -1 with a reason (bad
 * macro syntax, result too long for out).
 */
int spf_macro_expand(const char *spec, const struct spf_macro_ctx *ctx, bool exp, char *out,
                     size_t outlen, char *why, size_t whylen);

/*
 * The %{i} and %{c} forms and %{v} of an address: "192.0.2.3" /
 * "2.0.0.1.0.d.b.8...", "192.0.2.3" / "2001:db8::cb01", "in-addr" / "ip6".
 * af is AF_INET (addr 4 octets) or AF_INET6 (16).  i needs 73 octets,
 * c INET6_ADDRSTRLEN.
 */
void spf_macro_ip(int af, const unsigned char *addr, char *i, size_t ilen, char *c, size_t clen);

#endif
