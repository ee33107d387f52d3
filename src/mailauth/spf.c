/*
 * spf.c - RFC 7208 check_host(): record parser, macro expander and the
 * evaluation over tern's c-ares resolver (src/dns).
 *
 * Why not libspf2: it runs its own resolver, which cannot be pointed at a
 * private DNS server (the tests' dnsmasq, a configured dns_servers list)
 * nor share our per-query deadlines.
 *
 * Invariants: a record is parsed whole before any term is evaluated (a
 * syntax error anywhere is permerror, 4.6); the parser copies the record
 * into struct spf_record and points into that copy; the evaluation keeps
 * one heap-allocated record per recursion level (include/redirect, at most
 * SPF_MAX_LOOKUPS + 1 deep) and frees it before returning.  Every DNS
 * query goes through spf_query(), which enforces the overall time budget.
 * Choices where the RFC leaves room: a void lookup is counted once per
 * term (the term's own query: A/AAAA of a, MX of mx, A of exists, PTR of
 * ptr), not for each MX host's address lookup; explanations (exp=) are
 * fetched only on fail at the top level and never count as lookups.
 */
#include "mailauth/spf.h"

#include <ares.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/clock.h"
#include "dns/dns.h"

#define SPF_QTYPE_A 1
#define SPF_QTYPE_PTR 12
#define SPF_QTYPE_MX 15
#define SPF_QTYPE_TXT 16
#define SPF_QTYPE_AAAA 28
#define SPF_MAX_DEPTH (SPF_MAX_LOOKUPS + 2) /* include/redirect nesting */
#define SPF_VALUE_MAX 512                   /* octets of one macro value used */

const char *spf_result_name(enum spf_result r)
{
    switch (r) {
    case SPF_NONE:
        return "none";
    case SPF_NEUTRAL:
        return "neutral";
    case SPF_PASS:
        return "pass";
    case SPF_FAIL:
        return "fail";
    case SPF_SOFTFAIL:
        return "softfail";
    case SPF_TEMPERROR:
        return "temperror";
    case SPF_PERMERROR:
        return "permerror";
    }
    return "permerror";
}

static void say(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    if (!why || whylen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    /* keep one printable line whatever went into it */
    for (char *p = why; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            *p = '?';
}

static bool is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static bool is_alnum(int c)
{
    return is_alpha(c) || is_digit(c);
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

bool spf_is_record(const char *txt, size_t len)
{
    return len >= 6 && strncasecmp(txt, "v=spf1", 6) == 0 && (len == 6 || txt[6] == ' ');
}

/* ---- macro syntax (7.1) ---- */

static bool is_delim(int c)
{
    return c == '.' || c == '-' || c == '+' || c == ',' || c == '/' || c == '_' || c == '=';
}

/*
 * One macro at s (s[0] == '%').  Returns its length, or 0 if malformed.
 * The letter, digits (0: none), reverse flag and delimiters go to the
 * out-parameters when not NULL.  exp: c, r, t allowed.
 */
static size_t macro_scan(const char *s, bool exp, char *letter, unsigned *digits, bool *rev,
                         const char **delims, size_t *ndelims)
{
    size_t i = 2;
    unsigned n = 0;
    if (s[1] == '%' || s[1] == '_' || s[1] == '-') {
        if (letter)
            *letter = s[1];
        return 2;
    }
    if (s[1] != '{')
        return 0;
    int l = lower((unsigned char)s[2]);
    if (!strchr("slodiphv", l) || l == 0) {
        if (!(exp && l != 0 && strchr("crt", l)))
            return 0;
    }
    i = 3;
    size_t nd = 0;
    while (is_digit((unsigned char)s[i])) {
        if (++nd > 3)
            return 0;
        n = n * 10 + (unsigned)(s[i] - '0');
        i++;
    }
    if (nd > 0 && n == 0)
        return 0; /* 7.3: the DIGIT transformer MUST be nonzero */
    bool r = false;
    if (s[i] == 'r' || s[i] == 'R') {
        r = true;
        i++;
    }
    size_t d0 = i;
    while (is_delim((unsigned char)s[i]))
        i++;
    if (s[i] != '}')
        return 0;
    if (letter)
        *letter = s[2];
    if (digits)
        *digits = n;
    if (rev)
        *rev = r;
    if (delims)
        *delims = s + d0;
    if (ndelims)
        *ndelims = i - d0;
    return i + 1;
}

/* A toplabel of the ABNF: alphanumerics and hyphens, not starting or ending
 * with a hyphen, not all digits. */
static bool toplabel_ok(const char *s, size_t n)
{
    bool alpha = false, hyphen = false;
    if (n == 0 || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '-')
            hyphen = true;
        else if (is_alpha((unsigned char)s[i]))
            alpha = true;
        else if (!is_digit((unsigned char)s[i]))
            return false;
    }
    return alpha || hyphen;
}

/*
 * Check a macro-string (domain false: any; domain true: a domain-spec
 * that must end in "." toplabel ["."] or a macro-expand).  Returns 0 or
 * -1 with a reason.
 */
static int spec_check(const char *s, bool domain, const char *what, char *why, size_t whylen)
{
    size_t len = strlen(s), last_macro_end = (size_t)-1;
    if (domain && len == 0) {
        say(why, whylen, "%s: empty domain-spec", what);
        return -1;
    }
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            size_t n = macro_scan(s + i, !domain, NULL, NULL, NULL, NULL, NULL);
            if (n == 0) {
                say(why, whylen, "%s: bad macro at \"%.20s\"", what, s + i);
                return -1;
            }
            i += n;
            last_macro_end = i;
            continue;
        }
        if (c < 0x21 || c > 0x7e) {
            say(why, whylen, "%s: octet 0x%02x in a domain-spec", what, c);
            return -1;
        }
        i++;
    }
    if (!domain || last_macro_end == len)
        return 0;
    size_t end = len;
    if (s[end - 1] == '.')
        end--;
    size_t dot = end;
    while (dot > 0 && s[dot - 1] != '.')
        dot--;
    if (dot == 0 || !toplabel_ok(s + dot, end - dot) ||
        (last_macro_end != (size_t)-1 && last_macro_end > dot)) {
        say(why, whylen, "%s: \"%.40s\" does not end in a top-level label or a macro", what, s);
        return -1;
    }
    return 0;
}

/* ---- the record parser (4.6, 12) ---- */

/* "/N" with N in 0..max, no leading zero, at the end of s[0..*len): strip
 * it.  Returns the number, -1 if absent, -2 if out of range. */
static int cidr_strip(char *s, size_t *len, bool dual, int max)
{
    size_t e = *len, d = e;
    while (d > 0 && is_digit((unsigned char)s[d - 1]))
        d--;
    if (d == e || d == 0 || s[d - 1] != '/')
        return -1;
    if (dual && (d < 2 || s[d - 2] != '/'))
        return -1;
    if (e - d > 1 && s[d] == '0')
        return -1; /* a leading zero: not a cidr-length, stays in the spec */
    if (e - d > 3)
        return -2;
    int v = 0;
    for (size_t i = d; i < e; i++)
        v = v * 10 + (s[i] - '0');
    if (v > max)
        return -2;
    *len = d - 1 - (dual ? 1 : 0);
    s[*len] = '\0';
    return v;
}

static int parse_mechanism(char *t, struct spf_record *out, char *why, size_t whylen)
{
    static const struct {
        const char *name;
        enum spf_mech mech;
    } names[] = {{"all", SPF_M_ALL}, {"include", SPF_M_INCLUDE}, {"a", SPF_M_A},
                 {"mx", SPF_M_MX},   {"ptr", SPF_M_PTR},         {"ip4", SPF_M_IP4},
                 {"ip6", SPF_M_IP6}, {"exists", SPF_M_EXISTS}};
    struct spf_term term = {.qualifier = '+', .cidr4 = -1, .cidr6 = -1};
    char *orig = t;
    size_t len;
    int c4 = -1, c6 = -1;

    if (out->nterms >= SPF_MAX_TERMS) {
        say(why, whylen, "more than %d mechanisms", SPF_MAX_TERMS);
        return -1;
    }
    if (*t == '+' || *t == '-' || *t == '~' || *t == '?')
        term.qualifier = *t++;
    size_t nl = 0;
    while (t[nl] && t[nl] != ':' && t[nl] != '/')
        nl++;
    size_t k;
    for (k = 0; k < sizeof(names) / sizeof(names[0]); k++)
        if (strlen(names[k].name) == nl && strncasecmp(t, names[k].name, nl) == 0)
            break;
    if (k == sizeof(names) / sizeof(names[0])) {
        say(why, whylen, "unknown mechanism \"%.40s\"", orig);
        return -1;
    }
    term.mech = names[k].mech;
    char *rest = t + nl;
    len = strlen(rest);

    switch (term.mech) {
    case SPF_M_ALL:
        if (len) {
            say(why, whylen, "\"%.40s\": all takes no argument", orig);
            return -1;
        }
        break;
    case SPF_M_A:
    case SPF_M_MX:
        c6 = cidr_strip(rest, &len, true, 128);
        if (c6 == -2) {
            say(why, whylen, "\"%.40s\": bad IPv6 prefix length", orig);
            return -1;
        }
        c4 = cidr_strip(rest, &len, false, 32);
        if (c4 == -2) {
            say(why, whylen, "\"%.40s\": bad IPv4 prefix length", orig);
            return -1;
        }
        term.cidr4 = c4;
        term.cidr6 = c6;
        /* an optional ":domain-spec", as for ptr */
        __attribute__((fallthrough));
    case SPF_M_PTR:
        if (len == 0)
            break;
        if (rest[0] != ':') {
            say(why, whylen, "\"%.40s\": bad mechanism syntax", orig);
            return -1;
        }
        term.domain = rest + 1;
        if (spec_check(term.domain, true, orig, why, whylen) < 0)
            return -1;
        break;
    case SPF_M_INCLUDE:
    case SPF_M_EXISTS:
        if (rest[0] != ':') {
            say(why, whylen, "\"%.40s\": needs \":domain\"", orig);
            return -1;
        }
        term.domain = rest + 1;
        if (spec_check(term.domain, true, orig, why, whylen) < 0)
            return -1;
        break;
    case SPF_M_IP4:
    case SPF_M_IP6: {
        bool v6 = term.mech == SPF_M_IP6;
        if (rest[0] != ':') {
            say(why, whylen, "\"%.40s\": needs \":address\"", orig);
            return -1;
        }
        int c = cidr_strip(rest, &len, false, v6 ? 128 : 32);
        if (c == -2) {
            say(why, whylen, "\"%.40s\": bad prefix length", orig);
            return -1;
        }
        if (inet_pton(v6 ? AF_INET6 : AF_INET, rest + 1, term.addr) != 1) {
            say(why, whylen, "\"%.40s\": bad %s address", orig, v6 ? "IPv6" : "IPv4");
            return -1;
        }
        if (v6)
            term.cidr6 = c;
        else
            term.cidr4 = c;
        break;
    }
    }
    out->terms[out->nterms++] = term;
    return 0;
}

static int parse_term(char *t, struct spf_record *out, char *why, size_t whylen)
{
    if (is_alpha((unsigned char)t[0])) {
        size_t n = 1;
        while (is_alnum((unsigned char)t[n]) || t[n] == '-' || t[n] == '_' || t[n] == '.')
            n++;
        if (t[n] == '=') {
            char *value = t + n + 1;
            const char **slot = NULL;
            if (n == 8 && strncasecmp(t, "redirect", 8) == 0)
                slot = &out->redirect;
            else if (n == 3 && strncasecmp(t, "exp", 3) == 0)
                slot = &out->exp;
            if (!slot) /* unknown modifier: ignored, but its macro-string must parse (6) */
                return spec_check(value, false, t, why, whylen);
            if (*slot) {
                say(why, whylen, "%.*s= given twice", (int)n, t);
                return -1;
            }
            if (spec_check(value, true, t, why, whylen) < 0)
                return -1;
            *slot = value;
            return 0;
        }
    }
    return parse_mechanism(t, out, why, whylen);
}

int spf_record_parse(const char *txt, size_t len, struct spf_record *out, char *why, size_t whylen)
{
    out->nterms = 0;
    out->redirect = out->exp = NULL;
    out->buf[0] = '\0';
    if (why && whylen)
        why[0] = '\0';
    if (len > SPF_RECORD_MAX) {
        say(why, whylen, "record of %zu octets, more than %d", len, SPF_RECORD_MAX);
        return -1;
    }
    if (!spf_is_record(txt, len)) {
        say(why, whylen, "not an SPF record (no \"v=spf1\")");
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)txt[i];
        if (c != ' ' && (c < 0x21 || c > 0x7e)) {
            say(why, whylen, "octet 0x%02x at offset %zu of the record", c, i);
            return -1;
        }
    }
    memcpy(out->buf, txt, len);
    out->buf[len] = '\0';
    char *p = out->buf + 6;
    for (;;) {
        while (*p == ' ')
            *p++ = '\0';
        if (!*p)
            break;
        char *t = p;
        while (*p && *p != ' ')
            p++;
        if (*p)
            *p++ = '\0';
        if (parse_term(t, out, why, whylen) < 0)
            return -1;
    }
    return 0;
}

/* ---- macro expansion (7.3) ---- */

void spf_macro_ip(int af, const unsigned char *addr, char *i, size_t ilen, char *c, size_t clen)
{
    if (c && clen)
        c[0] = '\0';
    if (i && ilen)
        i[0] = '\0';
    if (af == AF_INET) {
        if (i && ilen)
            snprintf(i, ilen, "%u.%u.%u.%u", addr[0], addr[1], addr[2], addr[3]);
        if (c && clen)
            snprintf(c, clen, "%u.%u.%u.%u", addr[0], addr[1], addr[2], addr[3]);
        return;
    }
    static const char hex[] = "0123456789abcdef";
    if (i && ilen >= 64) {
        size_t k = 0;
        for (int b = 0; b < 16; b++) {
            i[k++] = hex[addr[b] >> 4];
            i[k++] = '.';
            i[k++] = hex[addr[b] & 15];
            i[k++] = b == 15 ? '\0' : '.';
        }
    }
    if (c && clen && !inet_ntop(AF_INET6, addr, c, (socklen_t)clen))
        c[0] = '\0';
}

struct outbuf {
    char *p;
    size_t len, cap;
    bool over;
};

static void put(struct outbuf *o, const char *s, size_t n)
{
    if (o->over || n >= o->cap - o->len) {
        o->over = true;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

/* The value of a macro letter (lower case), or NULL (treated as ""). */
static const char *macro_value(const struct spf_macro_ctx *ctx, int l, char *tmp, size_t tmplen)
{
    const char *s = ctx->sender ? ctx->sender : "";
    const char *at = strrchr(s, '@');
    switch (l) {
    case 's':
        return s;
    case 'l':
        if (!at)
            return "postmaster";
        if (at == s)
            return "postmaster";
        snprintf(tmp, tmplen, "%.*s", (int)(at - s), s);
        return tmp;
    case 'o':
        return at ? at + 1 : s;
    case 'd':
        return ctx->domain;
    case 'i':
        return ctx->ip;
    case 'p':
        return ctx->validated ? ctx->validated : "unknown";
    case 'h':
        return ctx->helo;
    case 'v':
        return ctx->v;
    case 'c':
        return ctx->cip;
    case 'r':
        return ctx->receiver ? ctx->receiver : "unknown";
    case 't':
        snprintf(tmp, tmplen, "%lld", ctx->now);
        return tmp;
    }
    return NULL;
}

static void expand_one(struct outbuf *o, const char *value, unsigned digits, bool rev,
                       const char *delims, size_t ndelims, bool escape)
{
    size_t vlen = strnlen(value, SPF_VALUE_MAX);
    uint16_t start[SPF_VALUE_MAX + 1], plen[SPF_VALUE_MAX + 1];
    size_t np = 0, s = 0;
    char part_out[3 * SPF_VALUE_MAX + 1];
    size_t pk = 0;

    /* split into parts */
    for (size_t i = 0; i <= vlen; i++) {
        bool d = false;
        if (i < vlen) {
            if (ndelims == 0)
                d = value[i] == '.';
            else
                d = memchr(delims, value[i], ndelims) != NULL;
        }
        if (i == vlen || d) {
            start[np] = (uint16_t)s;
            plen[np++] = (uint16_t)(i - s);
            s = i + 1;
        }
    }
    size_t first = 0;
    if (digits && digits < np)
        first = np - digits; /* keep the right-most digits parts (after reversal) */
    for (size_t k = first; k < np; k++) {
        size_t idx = rev ? np - 1 - k : k;
        if (k > first)
            part_out[pk++] = '.';
        for (size_t j = 0; j < plen[idx]; j++) {
            unsigned char c = (unsigned char)value[start[idx] + j];
            if (escape && !(is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~')) {
                static const char hex[] = "0123456789ABCDEF";
                part_out[pk++] = '%';
                part_out[pk++] = hex[c >> 4];
                part_out[pk++] = hex[c & 15];
            } else {
                part_out[pk++] = (char)c;
            }
        }
    }
    put(o, part_out, pk);
}

int spf_macro_expand(const char *spec, const struct spf_macro_ctx *ctx, bool exp, char *out,
                     size_t outlen, char *why, size_t whylen)
{
    char work[SPF_RECORD_MAX + 1];
    struct outbuf o = {.p = work, .cap = sizeof(work)};
    work[0] = '\0';
    if (why && whylen)
        why[0] = '\0';
    if (!out || outlen == 0)
        return -1;
    out[0] = '\0';
    for (size_t i = 0; spec[i];) {
        if (spec[i] != '%') {
            unsigned char c = (unsigned char)spec[i];
            if ((c < 0x21 || c > 0x7e) && !(exp && c == ' ')) {
                say(why, whylen, "octet 0x%02x in a macro-string", c);
                return -1;
            }
            size_t n = 1;
            while (spec[i + n] && spec[i + n] != '%')
                n++;
            for (size_t j = 1; j < n; j++) {
                c = (unsigned char)spec[i + j];
                if ((c < 0x21 || c > 0x7e) && !(exp && c == ' ')) {
                    say(why, whylen, "octet 0x%02x in a macro-string", c);
                    return -1;
                }
            }
            put(&o, spec + i, n);
            i += n;
            continue;
        }
        char letter = 0;
        unsigned digits = 0;
        bool rev = false;
        const char *delims = NULL;
        size_t ndelims = 0;
        size_t n = macro_scan(spec + i, exp, &letter, &digits, &rev, &delims, &ndelims);
        if (n == 0) {
            say(why, whylen, "bad macro at \"%.20s\"", spec + i);
            return -1;
        }
        i += n;
        if (n == 2) {
            if (letter == '%')
                put(&o, "%", 1);
            else if (letter == '_')
                put(&o, " ", 1);
            else
                put(&o, "%20", 3);
            continue;
        }
        char tmp[SPF_VALUE_MAX + 1];
        const char *v = macro_value(ctx, lower((unsigned char)letter), tmp, sizeof(tmp));
        expand_one(&o, v ? v : "", digits, rev, delims, ndelims, !(letter >= 'a' && letter <= 'z'));
    }
    if (o.over) {
        say(why, whylen, "macro expansion longer than %d octets", SPF_RECORD_MAX);
        return -1;
    }
    const char *res = work;
    size_t rlen = o.len;
    if (!exp) {
        if (rlen > 0 && res[rlen - 1] == '.')
            rlen--;
        /* 7.3: drop left-hand labels until it fits in 253 octets */
        while (rlen > SPF_EXPANDED_MAX) {
            const char *dot = memchr(res, '.', rlen);
            if (!dot) {
                say(why, whylen, "expanded domain longer than %d octets", SPF_EXPANDED_MAX);
                return -1;
            }
            rlen -= (size_t)(dot + 1 - res);
            res = dot + 1;
        }
    }
    if (rlen >= outlen) {
        say(why, whylen, "macro expansion longer than %zu octets", outlen - 1);
        return -1;
    }
    memcpy(out, res, rlen);
    out[rlen] = '\0';
    return 0;
}

/* ---- evaluation (4, 5) ---- */

struct spf_eval {
    struct dns_resolver *r;
    int af;               /* AF_INET or AF_INET6 */
    unsigned char ip[16]; /* 4 or 16 octets */
    char istr[80], cstr[INET6_ADDRSTRLEN];
    char sender[600];
    const char *helo, *receiver;
    unsigned lookups, voids;
    uint64_t deadline; /* clock_mono_ms() */
    bool have_ptrs;    /* ptrs[] computed */
    char ptrs[SPF_MAX_NAMES][DNS_NAME_MAX + 1];
    size_t nptrs;  /* validated names of ip */
    bool ptr_void; /* the PTR query found nothing (NXDOMAIN, no records) */
    char why[200];
    char explanation[256];
};

/* One DNS query with the overall budget. */
static enum dns_qstatus spf_query(struct spf_eval *e, const char *name, int type,
                                  unsigned char **abuf, size_t *alen)
{
    char why[160];
    *abuf = NULL;
    *alen = 0;
    if (clock_mono_ms() >= e->deadline) {
        say(e->why, sizeof(e->why), "time budget used up");
        return DNS_Q_TEMP;
    }
    enum dns_qstatus st = dns_resolver_query_any(e->r, name, type, abuf, alen, why, sizeof(why));
    if (st == DNS_Q_TEMP)
        say(e->why, sizeof(e->why), "DNS: %s", why);
    return st;
}

/* Count a DNS-querying term (4.6.4).  -1 when over the limit. */
static int count_lookup(struct spf_eval *e, const char *what)
{
    if (++e->lookups > SPF_MAX_LOOKUPS) {
        say(e->why, sizeof(e->why), "more than %d DNS lookups (at %.60s)", SPF_MAX_LOOKUPS, what);
        return -1;
    }
    return 0;
}

/* Count a void lookup.  -1 when over the limit. */
static int count_void(struct spf_eval *e, const char *name)
{
    if (++e->voids > SPF_MAX_VOID) {
        say(e->why, sizeof(e->why), "more than %d void lookups (at %.60s)", SPF_MAX_VOID, name);
        return -1;
    }
    return 0;
}

static bool prefix_match(const unsigned char *a, const unsigned char *b, int bits)
{
    int full = bits / 8, rem = bits % 8;
    if (memcmp(a, b, (size_t)full) != 0)
        return false;
    if (rem == 0)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rem));
    return (a[full] & mask) == (b[full] & mask);
}

/*
 * The addresses of name in the client's family.  Returns the count (may
 * be 0: NXDOMAIN / NODATA / BADNAME, *status tells), or -1 on a temporary
 * failure.
 */
static int addrs_of(struct spf_eval *e, const char *name, int af, unsigned char (*out)[16],
                    size_t max, enum dns_qstatus *status)
{
    unsigned char *abuf;
    size_t alen;
    enum dns_qstatus st =
        spf_query(e, name, af == AF_INET ? SPF_QTYPE_A : SPF_QTYPE_AAAA, &abuf, &alen);
    *status = st;
    if (st == DNS_Q_TEMP)
        return -1;
    if (st != DNS_Q_OK)
        return 0;
    int n = (int)max, rc;
    if (af == AF_INET) {
        struct ares_addrttl t[64];
        n = (int)(max < 64 ? max : 64);
        rc = ares_parse_a_reply(abuf, (int)alen, NULL, t, &n);
        if (rc == ARES_SUCCESS)
            for (int k = 0; k < n; k++)
                memcpy(out[k], &t[k].ipaddr, 4);
    } else {
        struct ares_addr6ttl t[64];
        n = (int)(max < 64 ? max : 64);
        rc = ares_parse_aaaa_reply(abuf, (int)alen, NULL, t, &n);
        if (rc == ARES_SUCCESS)
            for (int k = 0; k < n; k++)
                memcpy(out[k], &t[k].ip6addr, 16);
    }
    free(abuf);
    if (rc == ARES_ENODATA || (rc == ARES_SUCCESS && n == 0)) {
        *status = DNS_Q_NODATA;
        return 0;
    }
    if (rc != ARES_SUCCESS) {
        say(e->why, sizeof(e->why), "%.100s: malformed address answer", name);
        *status = DNS_Q_TEMP;
        return -1;
    }
    return n;
}

/* The PTR names of the client address, validated by a forward lookup (5.5),
 * computed once per check. */
static void validate_ptrs(struct spf_eval *e)
{
    char qname[80];
    unsigned char *abuf;
    size_t alen;
    struct hostent *he = NULL;

    if (e->have_ptrs)
        return;
    e->have_ptrs = true;
    e->nptrs = 0;
    if (e->af == AF_INET)
        snprintf(qname, sizeof(qname), "%u.%u.%u.%u.in-addr.arpa", e->ip[3], e->ip[2], e->ip[1],
                 e->ip[0]);
    else {
        static const char hex[] = "0123456789abcdef";
        size_t k = 0;
        for (int b = 15; b >= 0; b--) {
            qname[k++] = hex[e->ip[b] & 15];
            qname[k++] = '.';
            qname[k++] = hex[e->ip[b] >> 4];
            qname[k++] = '.';
        }
        memcpy(qname + k, "ip6.arpa", 9);
    }
    enum dns_qstatus st = spf_query(e, qname, SPF_QTYPE_PTR, &abuf, &alen);
    if (st != DNS_Q_OK) {
        /* a DNS error here is no match, never temperror (5.5) */
        e->ptr_void = st == DNS_Q_NXDOMAIN || st == DNS_Q_NODATA;
        return;
    }
    int rc = ares_parse_ptr_reply(abuf, (int)alen, e->ip, e->af == AF_INET ? 4 : 16, e->af, &he);
    free(abuf);
    if (rc == ARES_ENODATA)
        e->ptr_void = true;
    if (rc != ARES_SUCCESS || !he)
        return;
    /* c-ares puts every PTR name in h_aliases (h_name is the last one) */
    const char *names[SPF_MAX_NAMES];
    size_t nn = 0;
    if (he->h_aliases)
        for (char **a = he->h_aliases; *a && nn < SPF_MAX_NAMES; a++)
            names[nn++] = *a;
    if (nn == 0 && he->h_name)
        names[nn++] = he->h_name;
    for (size_t k = 0; k < nn; k++) {
        unsigned char addrs[16][16];
        enum dns_qstatus st;
        int n = addrs_of(e, names[k], e->af, addrs, 16, &st);
        for (int j = 0; j < n; j++)
            if (memcmp(addrs[j], e->ip, e->af == AF_INET ? 4 : 16) == 0) {
                snprintf(e->ptrs[e->nptrs++], DNS_NAME_MAX + 1, "%s", names[k]);
                break;
            }
    }
    ares_free_hostent(he);
}

/* name equals domain or ends in "." domain, without case */
static bool domain_within(const char *name, const char *domain)
{
    size_t nl = strlen(name), dl = strlen(domain);
    if (nl && name[nl - 1] == '.')
        nl--;
    if (dl && domain[dl - 1] == '.')
        dl--;
    if (nl < dl || dl == 0)
        return false;
    if (strncasecmp(name + nl - dl, domain, dl) != 0)
        return false;
    return nl == dl || name[nl - dl - 1] == '.';
}

/* %{p} (7.3): the target itself if validated, else a subdomain of it,
 * else any validated name, else "unknown". */
static const char *validated_name(struct spf_eval *e, const char *domain)
{
    validate_ptrs(e);
    for (size_t k = 0; k < e->nptrs; k++)
        if (strcasecmp(e->ptrs[k], domain) == 0)
            return e->ptrs[k];
    for (size_t k = 0; k < e->nptrs; k++)
        if (domain_within(e->ptrs[k], domain))
            return e->ptrs[k];
    return e->nptrs ? e->ptrs[0] : "unknown";
}

static int expand(struct spf_eval *e, const char *spec, const char *domain, bool exp, char *out,
                  size_t outlen)
{
    struct spf_macro_ctx m = {
        .sender = e->sender,
        .domain = domain,
        .ip = e->istr,
        .helo = e->helo ? e->helo : "",
        .v = e->af == AF_INET ? "in-addr" : "ip6",
        .validated = "unknown",
        .cip = e->cstr,
        .receiver = e->receiver,
        .now = (long long)time(NULL),
    };
    char why[160];
    if (strstr(spec, "%{p") || strstr(spec, "%{P"))
        m.validated = validated_name(e, domain);
    if (spf_macro_expand(spec, &m, exp, out, outlen, why, sizeof(why)) < 0) {
        say(e->why, sizeof(e->why), "%s", why);
        return -1;
    }
    return 0;
}

/* The one SPF record of domain.  Returns SPF_PASS with *rec set (free it),
 * or SPF_NONE / SPF_TEMPERROR / SPF_PERMERROR with e->why. */
static enum spf_result fetch_record(struct spf_eval *e, const char *domain, struct spf_record **rec)
{
    unsigned char *abuf;
    size_t alen;
    struct ares_txt_ext *txt = NULL;
    size_t len = strlen(domain);

    *rec = NULL;
    /* 4.3: a malformed or single-label domain (or an address literal) gives
     * none: visible octets, labels of 1..63, a top-level label of letters,
     * digits and hyphens */
    size_t end = len > 0 && domain[len - 1] == '.' ? len - 1 : len, top = end;
    while (top > 0 && domain[top - 1] != '.')
        top--;
    if (!dns_qname_valid_any(domain, len) || top == 0 || !toplabel_ok(domain + top, end - top)) {
        say(e->why, sizeof(e->why), "%.100s: not a valid multi-label domain", domain);
        return SPF_NONE;
    }
    enum dns_qstatus st = spf_query(e, domain, SPF_QTYPE_TXT, &abuf, &alen);
    if (st == DNS_Q_TEMP)
        return SPF_TEMPERROR;
    if (st != DNS_Q_OK) {
        say(e->why, sizeof(e->why), "%.100s: no SPF record (%s)", domain, dns_qstatus_name(st));
        return SPF_NONE;
    }
    int rc = ares_parse_txt_reply_ext(abuf, (int)alen, &txt);
    free(abuf);
    if (rc == ARES_ENODATA || (rc == ARES_SUCCESS && !txt)) {
        say(e->why, sizeof(e->why), "%.100s: no SPF record (no TXT records)", domain);
        return SPF_NONE;
    }
    if (rc != ARES_SUCCESS) {
        say(e->why, sizeof(e->why), "%.100s: malformed TXT answer", domain);
        return SPF_TEMPERROR;
    }
    /* join each record's strings; keep those that are SPF records */
    size_t nspf = 0, biglen = 0;
    char *buf = malloc(SPF_RECORD_MAX + 1);
    size_t blen = 0;
    bool cur_big = false, in_rec = false;
    enum spf_result res = SPF_PASS;
    if (!buf) {
        ares_free_data(txt);
        say(e->why, sizeof(e->why), "out of memory");
        return SPF_TEMPERROR;
    }
    char *found = NULL;
    size_t foundlen = 0;
    bool found_big = false;
    for (struct ares_txt_ext *t = txt;; t = t->next) {
        if (!t || t->record_start) {
            if (in_rec) {
                bool is =
                    cur_big ? spf_is_record(buf, blen < 7 ? blen : 7) : spf_is_record(buf, blen);
                if (is) {
                    nspf++;
                    if (!found) {
                        found = malloc(blen + 1);
                        if (found) {
                            memcpy(found, buf, blen);
                            found[blen] = '\0';
                        }
                        foundlen = blen;
                        found_big = cur_big;
                    }
                }
            }
            if (!t)
                break;
            in_rec = true;
            blen = 0;
            biglen = 0;
            cur_big = false;
        }
        biglen += t->length;
        if (biglen > SPF_RECORD_MAX) {
            /* keep the first octets for the version check only */
            size_t room = SPF_RECORD_MAX - blen;
            memcpy(buf + blen, t->txt, room);
            blen += room;
            cur_big = true;
        } else {
            memcpy(buf + blen, t->txt, t->length);
            blen += t->length;
        }
    }
    ares_free_data(txt);
    free(buf);
    if (nspf == 0) {
        say(e->why, sizeof(e->why), "%.100s: no SPF record among its TXT records", domain);
        res = SPF_NONE;
    } else if (nspf > 1) {
        say(e->why, sizeof(e->why), "%.100s: %zu SPF records", domain, nspf);
        res = SPF_PERMERROR;
    } else if (found_big) {
        say(e->why, sizeof(e->why), "%.100s: SPF record longer than %d octets", domain,
            SPF_RECORD_MAX);
        res = SPF_PERMERROR;
    } else if (!found) {
        say(e->why, sizeof(e->why), "out of memory");
        res = SPF_TEMPERROR;
    } else {
        *rec = malloc(sizeof(**rec));
        char why[160];
        if (!*rec) {
            say(e->why, sizeof(e->why), "out of memory");
            res = SPF_TEMPERROR;
        } else if (spf_record_parse(found, foundlen, *rec, why, sizeof(why)) < 0) {
            say(e->why, sizeof(e->why), "%.60s: %s", domain, why);
            free(*rec);
            *rec = NULL;
            res = SPF_PERMERROR;
        }
    }
    free(found);
    return res;
}

static enum spf_result qualifier_result(char q)
{
    switch (q) {
    case '-':
        return SPF_FAIL;
    case '~':
        return SPF_SOFTFAIL;
    case '?':
        return SPF_NEUTRAL;
    default:
        return SPF_PASS;
    }
}

static const char *mech_name(enum spf_mech m)
{
    static const char *n[] = {"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"};
    return n[m];
}

/* RFC 6.2: the explanation of a fail; any problem: none. */
static void explain(struct spf_eval *e, const struct spf_record *rec, const char *domain)
{
    char name[DNS_NAME_MAX + 1], text[256];
    struct dns_txt txt;
    char savewhy[sizeof(e->why)];
    memcpy(savewhy, e->why, sizeof(savewhy));
    if (!rec->exp || expand(e, rec->exp, domain, false, name, sizeof(name)) < 0)
        goto out;
    if (clock_mono_ms() >= e->deadline)
        goto out;
    char why[160];
    if (dns_resolver_txt(e->r, name, &txt, why, sizeof(why)) != DNS_Q_OK)
        goto out;
    if (txt.n == 1 && strlen(txt.rec[0]) == txt.len[0] &&
        expand(e, txt.rec[0], domain, true, text, sizeof(text)) == 0) {
        bool ok = true;
        for (const char *p = text; *p; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
                ok = false;
        if (ok)
            snprintf(e->explanation, sizeof(e->explanation), "%s", text);
    }
    dns_txt_free(&txt);
out:
    memcpy(e->why, savewhy, sizeof(savewhy));
}

static enum spf_result check_host(struct spf_eval *e, const char *domain, int depth, bool top);

/* Evaluate one term: 1 match, 0 no match, -1 error with *err set. */
static int eval_term(struct spf_eval *e, const struct spf_term *t, const char *domain, int depth,
                     enum spf_result *err)
{
    char target[DNS_NAME_MAX + 8];
    const char *what = mech_name(t->mech);
    enum dns_qstatus st;

    *err = SPF_PERMERROR;
    if (t->mech == SPF_M_ALL)
        return 1;
    if (t->mech == SPF_M_IP4 || t->mech == SPF_M_IP6) {
        if ((t->mech == SPF_M_IP4) != (e->af == AF_INET))
            return 0;
        int bits =
            t->mech == SPF_M_IP4 ? (t->cidr4 < 0 ? 32 : t->cidr4) : (t->cidr6 < 0 ? 128 : t->cidr6);
        return prefix_match(e->ip, t->addr, bits);
    }
    if (count_lookup(e, what) < 0)
        return -1;
    if (expand(e, t->domain ? t->domain : domain, domain, false, target, sizeof(target)) < 0)
        return -1;
    int bits = e->af == AF_INET ? (t->cidr4 < 0 ? 32 : t->cidr4) : (t->cidr6 < 0 ? 128 : t->cidr6);

    switch (t->mech) {
    case SPF_M_INCLUDE: {
        enum spf_result r = check_host(e, target, depth + 1, false);
        switch (r) {
        case SPF_PASS:
            return 1;
        case SPF_FAIL:
        case SPF_SOFTFAIL:
        case SPF_NEUTRAL:
            return 0;
        case SPF_TEMPERROR:
            *err = SPF_TEMPERROR;
            return -1;
        case SPF_NONE:
            say(e->why, sizeof(e->why), "include:%.100s has no SPF record", target);
            return -1;
        case SPF_PERMERROR:
            return -1;
        }
        return -1;
    }
    case SPF_M_A: {
        unsigned char addrs[64][16];
        int n = addrs_of(e, target, e->af, addrs, 64, &st);
        if (n < 0) {
            *err = SPF_TEMPERROR;
            return -1;
        }
        if (n == 0)
            return count_void(e, target) < 0 ? -1 : 0;
        for (int k = 0; k < n; k++)
            if (prefix_match(e->ip, addrs[k], bits))
                return 1;
        return 0;
    }
    case SPF_M_MX: {
        unsigned char *abuf;
        size_t alen;
        struct ares_mx_reply *mx = NULL;
        st = spf_query(e, target, SPF_QTYPE_MX, &abuf, &alen);
        if (st == DNS_Q_TEMP) {
            *err = SPF_TEMPERROR;
            return -1;
        }
        if (st != DNS_Q_OK)
            return count_void(e, target) < 0 ? -1 : 0;
        int rc = ares_parse_mx_reply(abuf, (int)alen, &mx);
        free(abuf);
        if (rc == ARES_ENODATA || (rc == ARES_SUCCESS && !mx))
            return count_void(e, target) < 0 ? -1 : 0;
        if (rc != ARES_SUCCESS) {
            say(e->why, sizeof(e->why), "%.100s: malformed MX answer", target);
            *err = SPF_TEMPERROR;
            return -1;
        }
        size_t nmx = 0;
        for (struct ares_mx_reply *m = mx; m; m = m->next)
            nmx++;
        if (nmx > SPF_MAX_NAMES) {
            ares_free_data(mx);
            say(e->why, sizeof(e->why), "mx:%.100s: more than %d MX names", target, SPF_MAX_NAMES);
            return -1;
        }
        int result = 0;
        for (struct ares_mx_reply *m = mx; m && result == 0; m = m->next) {
            unsigned char addrs[64][16];
            if (!m->host || !m->host[0] || strcmp(m->host, ".") == 0)
                continue; /* null MX */
            int n = addrs_of(e, m->host, e->af, addrs, 64, &st);
            if (n < 0) {
                *err = SPF_TEMPERROR;
                result = -1;
                break;
            }
            for (int k = 0; k < n; k++)
                if (prefix_match(e->ip, addrs[k], bits)) {
                    result = 1;
                    break;
                }
        }
        ares_free_data(mx);
        return result;
    }
    case SPF_M_PTR: {
        validate_ptrs(e);
        if (e->ptr_void)
            return count_void(e, "the PTR lookup") < 0 ? -1 : 0;
        for (size_t k = 0; k < e->nptrs; k++)
            if (domain_within(e->ptrs[k], target))
                return 1;
        return 0;
    }
    case SPF_M_EXISTS: {
        unsigned char addrs[4][16];
        int n = addrs_of(e, target, AF_INET, addrs, 4, &st);
        if (n < 0) {
            *err = SPF_TEMPERROR;
            return -1;
        }
        if (n == 0)
            return count_void(e, target) < 0 ? -1 : 0;
        return 1;
    }
    default:
        return 0;
    }
}

/*
 * check_host(): depth counts include/redirect nesting; top: the result is
 * the final one (the top level or a redirect from it), so exp= applies.
 */
static enum spf_result check_host(struct spf_eval *e, const char *domain, int depth, bool top)
{
    struct spf_record *rec;
    enum spf_result res;
    char dom[DNS_NAME_MAX + 8];

    if (depth > SPF_MAX_DEPTH) {
        say(e->why, sizeof(e->why), "include/redirect nested more than %d deep", SPF_MAX_DEPTH);
        return SPF_PERMERROR;
    }
    snprintf(dom, sizeof(dom), "%s", domain);
    res = fetch_record(e, dom, &rec);
    if (res != SPF_PASS)
        return res;
    for (size_t k = 0; k < rec->nterms; k++) {
        const struct spf_term *t = &rec->terms[k];
        enum spf_result err;
        int m = eval_term(e, t, dom, depth, &err);
        if (m < 0) {
            free(rec);
            return err;
        }
        if (m > 0) {
            res = qualifier_result(t->qualifier);
            say(e->why, sizeof(e->why), "%.100s: matched %c%s%s%.80s", dom, t->qualifier,
                mech_name(t->mech), t->domain ? ":" : "", t->domain ? t->domain : "");
            if (res == SPF_FAIL && top)
                explain(e, rec, dom);
            free(rec);
            return res;
        }
    }
    if (rec->redirect) {
        char target[DNS_NAME_MAX + 8];
        if (count_lookup(e, "redirect") < 0 ||
            expand(e, rec->redirect, dom, false, target, sizeof(target)) < 0) {
            free(rec);
            return SPF_PERMERROR;
        }
        free(rec);
        res = check_host(e, target, depth + 1, top);
        if (res == SPF_NONE) {
            say(e->why, sizeof(e->why), "redirect=%.100s has no SPF record", target);
            return SPF_PERMERROR;
        }
        return res;
    }
    say(e->why, sizeof(e->why), "%.100s: no mechanism matched (neutral)", dom);
    free(rec);
    return SPF_NEUTRAL;
}

enum spf_result spf_check(struct dns_resolver *r, const struct sockaddr *ip, const char *helo,
                          const char *mail_from, const char *receiver_host, struct spf_verdict *out)
{
    return spf_check_within(r, ip, helo, mail_from, receiver_host, SPF_BUDGET_MS, out);
}

enum spf_result spf_check_within(struct dns_resolver *r, const struct sockaddr *ip,
                                 const char *helo, const char *mail_from, const char *receiver_host,
                                 unsigned budget_ms, struct spf_verdict *out)
{
    struct spf_eval *e = calloc(1, sizeof(*e));
    struct spf_verdict dummy;
    enum spf_result res;
    const char *domain;

    if (!out)
        out = &dummy;
    memset(out, 0, sizeof(*out));
    if (!e) {
        out->result = SPF_TEMPERROR;
        say(out->why, sizeof(out->why), "out of memory");
        return SPF_TEMPERROR;
    }
    e->r = r;
    e->helo = helo;
    e->receiver = receiver_host;
    e->deadline = clock_mono_ms() + budget_ms;

    res = SPF_NONE;
    if (ip && ip->sa_family == AF_INET) {
        e->af = AF_INET;
        memcpy(e->ip, &((const struct sockaddr_in *)ip)->sin_addr, 4);
    } else if (ip && ip->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)ip)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            e->af = AF_INET;
            memcpy(e->ip, a6->s6_addr + 12, 4);
        } else {
            e->af = AF_INET6;
            memcpy(e->ip, a6->s6_addr, 16);
        }
    } else {
        say(out->why, sizeof(out->why), "no client IP address");
        goto done;
    }
    spf_macro_ip(e->af, e->ip, e->istr, sizeof(e->istr), e->cstr, sizeof(e->cstr));

    if (mail_from && mail_from[0]) {
        const char *at = strrchr(mail_from, '@');
        if (!at)
            snprintf(e->sender, sizeof(e->sender), "postmaster@%s", mail_from);
        else if (at == mail_from)
            snprintf(e->sender, sizeof(e->sender), "postmaster%s", mail_from);
        else
            snprintf(e->sender, sizeof(e->sender), "%s", mail_from);
    } else if (helo && helo[0]) {
        snprintf(e->sender, sizeof(e->sender), "postmaster@%s", helo);
    } else {
        say(out->why, sizeof(out->why), "no MAIL FROM domain and no HELO name");
        goto done;
    }
    domain = strrchr(e->sender, '@') + 1;
    snprintf(out->domain, sizeof(out->domain), "%s", domain);
    res = check_host(e, domain, 0, true);
    snprintf(out->why, sizeof(out->why), "%s", e->why);
    snprintf(out->explanation, sizeof(out->explanation), "%s", e->explanation);
done:
    out->result = res;
    out->lookups = e->lookups;
    out->void_lookups = e->voids;
    free(e);
    return res;
}
