/*
 * dns.c - MX routing through c-ares (see dns.h).
 *
 * One lookup: the domain is checked (syntax, length), then one MX query;
 * its answer decides everything (NXDOMAIN -> permanent, NODATA -> implicit
 * MX, a failure of any other kind -> transient, never an A/AAAA fallback).
 * The MX records are sorted by preference, equal preferences shuffled
 * with a getrandom(2)-seeded generator, duplicates and invalid exchanges
 * dropped, the list cut at DNS_MAX_HOSTS; then the AAAA and A queries of
 * all hosts run at once on the same channel.
 *
 * Waiting is poll(2) on the sockets c-ares names (never select, whose
 * FD_SETSIZE a busy server exceeds), bounded by c-ares' own timeouts and
 * by an overall deadline derived from timeout_ms, tries and the number of
 * servers, after which every query is cancelled.  Every callback writes
 * only into the struct dns_lookup of its call, and the channel is
 * destroyed before that struct goes away.  Allocations: the resolver, the
 * channel, and the sorted MX array (bounded by the answer's size); all
 * freed before return.  Nothing here logs: skipped hosts go to
 * route->notes, failures to why.
 */
#include "dns/dns.h"

#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define DNS_TIMEOUT_MAX_MS 60000
#define DNS_TRIES_MAX 8
#define DNS_SLACK_MS 1000

struct dns_resolver {
    ares_channel ch;
    unsigned timeout_ms, tries, nservers, max_hosts;
};

struct dns_mx {
    unsigned pref;
    const char *host; /* into the c-ares reply list */
};

/* One outstanding address query. */
struct dns_aq {
    struct dns_lookup *lk;
    size_t host;
    int family;
    int status;   /* ARES_* of the query, then of the parse */
    size_t count; /* addresses stored */
    struct dns_addr addrs[DNS_MAX_PER_FAMILY];
};

/* State of one dns_resolver_route() call; callbacks write only here. */
struct dns_lookup {
    int pending;
    int mx_status;
    struct ares_mx_reply *mx; /* owned, ares_free_data */
    struct dns_aq aq[DNS_MAX_HOSTS][2];
};

static pthread_once_t dns_once = PTHREAD_ONCE_INIT;
static int dns_lib_status = ARES_SUCCESS;

static void dns_lib_init(void)
{
    dns_lib_status = ares_library_init(ARES_LIB_INIT_ALL);
}

static void dns_say(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Format into buf and replace every non-printable octet with '?'. */
static void dns_say(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    if (!buf || size == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    for (char *p = buf; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            *p = '?';
}

/* Append "; text" (or "text") to the route's notes, cut at the limit. */
static void dns_note(struct dns_route *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void dns_note(struct dns_route *r, const char *fmt, ...)
{
    char line[DNS_NOTES_MAX];
    va_list ap;
    size_t used = strlen(r->notes);

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    for (char *p = line; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            *p = '?';
    if (used + 3 >= sizeof(r->notes))
        return;
    snprintf(r->notes + used, sizeof(r->notes) - used, "%s%.500s", used ? "; " : "", line);
}

bool dns_name_valid(const char *name, size_t len)
{
    size_t label = 0;

    if (len > 0 && name[len - 1] == '.')
        len--;
    if (len == 0 || len > DNS_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '.') {
            if (label == 0 || name[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (c == '-') {
            if (label == 0)
                return false;
        } else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) {
            return false;
        }
        if (++label > 63)
            return false;
    }
    return label > 0 && name[len - 1] != '-';
}

bool dns_is_null_mx(size_t nmx, const char *first_exchange)
{
    return nmx == 1 && first_exchange &&
           (first_exchange[0] == '\0' || strcmp(first_exchange, ".") == 0);
}

/* ---- servers string ---------------------------------------------------- */

static int dns_port(const char *p, size_t n, unsigned *port)
{
    unsigned v = 0;
    if (n == 0 || n > 5)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v == 0 || v > 65535)
        return -1;
    *port = v;
    return 0;
}

/* One item s[0..n): "ADDR", "ADDR:PORT", "[ADDR6]", "[ADDR6]:PORT", "ADDR6". */
static int dns_server_item(const char *s, size_t n, struct dns_addr *out, const char **why)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *hp = s;
    size_t hl = n;
    unsigned port = 53;
    int v6 = 0;

    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close) {
            *why = "missing ']'";
            return -1;
        }
        hp = s + 1;
        hl = (size_t)(close - hp);
        size_t rest = n - (size_t)(close + 1 - s);
        if (rest > 0 && (close[1] != ':' || dns_port(close + 2, rest - 1, &port) < 0)) {
            *why = "expected [IPV6]:PORT with a port from 1 to 65535";
            return -1;
        }
        v6 = 1;
    } else {
        const char *c1 = memchr(s, ':', n);
        if (c1 && memchr(c1 + 1, ':', n - (size_t)(c1 + 1 - s))) {
            v6 = 1; /* bare IPv6 address, no port */
        } else if (c1) {
            hl = (size_t)(c1 - s);
            if (dns_port(c1 + 1, n - hl - 1, &port) < 0) {
                *why = "port must be a number from 1 to 65535";
                return -1;
            }
        }
    }
    if (hl == 0 || hl >= sizeof(host)) {
        *why = "expected a numeric IP address";
        return -1;
    }
    memcpy(host, hp, hl);
    host[hl] = '\0';
    memset(out, 0, sizeof(*out));
    if (v6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
            *why = "not a numeric IPv6 address";
            return -1;
        }
        out->len = sizeof(*sin6);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
            *why = "not a numeric IPv4 address";
            return -1;
        }
        out->len = sizeof(*sin);
    }
    return 0;
}

int dns_servers_parse(const char *s, struct dns_addr *out, size_t max, char *why, size_t whylen)
{
    size_t count = 0, len = strlen(s);
    const char *p = s, *end = s + len;

    if (len > DNS_SERVERS_MAX) {
        dns_say(why, whylen, "DNS servers: list longer than %d octets", DNS_SERVERS_MAX);
        return -1;
    }
    while (p <= end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end, *b = p;
        const char *err = NULL;
        while (b < e && (*b == ' ' || *b == '\t'))
            b++;
        while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (b == e) {
            err = "empty entry";
        } else if (count >= max) {
            dns_say(why, whylen, "DNS servers: more than %zu", max);
            return -1;
        } else if (dns_server_item(b, (size_t)(e - b), &out[count], &err) == 0) {
            count++;
        }
        if (err) {
            dns_say(why, whylen, "DNS servers: entry %zu \"%.*s\": %s", count + 1,
                    (int)((size_t)(e - b) > 64 ? 64 : (size_t)(e - b)), b, err);
            return -1;
        }
        if (!comma)
            break;
        p = comma + 1;
    }
    return (int)count;
}

/* ---- resolver ----------------------------------------------------------- */

struct dns_resolver *dns_resolver_new(const struct dns_conf *c, char *why, size_t whylen)
{
    struct ares_options opt;
    struct dns_addr srv[DNS_MAX_SERVERS];
    struct ares_addr_port_node nodes[DNS_MAX_SERVERS];
    struct ares_addr_port_node *list = NULL;
    int nsrv = 0, rc;
    struct dns_resolver *r;

    if (why && whylen)
        why[0] = '\0';
    pthread_once(&dns_once, dns_lib_init);
    if (dns_lib_status != ARES_SUCCESS) {
        dns_say(why, whylen, "c-ares: %s", ares_strerror(dns_lib_status));
        return NULL;
    }
    if (c->servers && c->servers[0]) {
        nsrv = dns_servers_parse(c->servers, srv, DNS_MAX_SERVERS, why, whylen);
        if (nsrv < 0)
            return NULL;
    }
    r = calloc(1, sizeof(*r));
    if (!r) {
        dns_say(why, whylen, "out of memory");
        return NULL;
    }
    r->timeout_ms = c->timeout_ms ? c->timeout_ms : DNS_DEFAULT_TIMEOUT_MS;
    if (r->timeout_ms > DNS_TIMEOUT_MAX_MS)
        r->timeout_ms = DNS_TIMEOUT_MAX_MS;
    r->max_hosts = c->max_hosts && c->max_hosts < DNS_MAX_HOSTS ? c->max_hosts : DNS_MAX_HOSTS;
    r->tries = c->tries ? c->tries : DNS_DEFAULT_TRIES;
    if (r->tries > DNS_TRIES_MAX)
        r->tries = DNS_TRIES_MAX;

    memset(&opt, 0, sizeof(opt));
    opt.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES | ARES_FLAG_EDNS;
    opt.timeout = (int)r->timeout_ms;
    opt.tries = (int)r->tries;
    opt.ednspsz = 1232;
    rc = ares_init_options(&r->ch, &opt,
                           ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_EDNSPSZ);
    if (rc != ARES_SUCCESS) {
        dns_say(why, whylen, "c-ares: %s", ares_strerror(rc));
        free(r);
        return NULL;
    }
    if (nsrv > 0) {
        memset(nodes, 0, sizeof(nodes));
        for (int i = 0; i < nsrv; i++) {
            struct ares_addr_port_node *n = &nodes[i];
            n->next = i + 1 < nsrv ? &nodes[i + 1] : NULL;
            if (srv[i].ss.ss_family == AF_INET6) {
                const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&srv[i].ss;
                n->family = AF_INET6;
                memcpy(&n->addr.addr6, &s6->sin6_addr, sizeof(s6->sin6_addr));
                n->udp_port = n->tcp_port = ntohs(s6->sin6_port);
            } else {
                const struct sockaddr_in *s4 = (const struct sockaddr_in *)&srv[i].ss;
                n->family = AF_INET;
                memcpy(&n->addr.addr4, &s4->sin_addr, sizeof(s4->sin_addr));
                n->udp_port = n->tcp_port = ntohs(s4->sin_port);
            }
        }
        list = &nodes[0];
        rc = ares_set_servers_ports(r->ch, list);
        if (rc != ARES_SUCCESS) {
            dns_say(why, whylen, "c-ares: setting DNS servers: %s", ares_strerror(rc));
            ares_destroy(r->ch);
            free(r);
            return NULL;
        }
        r->nservers = (unsigned)nsrv;
    } else {
        struct ares_addr_port_node *got = NULL, *n;
        r->nservers = 0;
        if (ares_get_servers_ports(r->ch, &got) == ARES_SUCCESS) {
            for (n = got; n && r->nservers < 64; n = n->next)
                r->nservers++;
            ares_free_data(got);
        }
        if (r->nservers == 0)
            r->nservers = 1;
    }
    return r;
}

void dns_resolver_free(struct dns_resolver *r)
{
    if (!r)
        return;
    ares_destroy(r->ch);
    free(r);
}

/* ---- lookup ------------------------------------------------------------- */

static const char *dns_status_text(int status)
{
    switch (status) {
    case ARES_ENOTFOUND:
        return "NXDOMAIN";
    case ARES_ENODATA:
        return "no records";
    case ARES_ESERVFAIL:
        return "SERVFAIL";
    case ARES_EREFUSED:
        return "REFUSED";
    case ARES_ETIMEOUT:
        return "timeout";
    case ARES_ECONNREFUSED:
        return "DNS server failed (SERVFAIL), refused or unreachable";
    case ARES_ECANCELLED:
        return "timeout (cancelled)";
    default:
        return ares_strerror(status);
    }
}

static void dns_mx_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct dns_lookup *lk = arg;
    (void)timeouts;
    lk->pending--;
    if (status == ARES_SUCCESS) {
        status = ares_parse_mx_reply(abuf, alen, &lk->mx);
        if (status != ARES_SUCCESS)
            lk->mx = NULL;
        else if (!lk->mx)
            status = ARES_ENODATA;
    }
    lk->mx_status = status;
}

static void dns_addr_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct dns_aq *q = arg;
    (void)timeouts;
    q->lk->pending--;
    if (status == ARES_SUCCESS) {
        if (q->family == AF_INET6) {
            struct ares_addr6ttl t[DNS_MAX_PER_FAMILY];
            int n = DNS_MAX_PER_FAMILY;
            status = ares_parse_aaaa_reply(abuf, alen, NULL, t, &n);
            for (int i = 0; status == ARES_SUCCESS && i < n && i < DNS_MAX_PER_FAMILY; i++) {
                struct dns_addr *a = &q->addrs[q->count++];
                struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;
                memset(a, 0, sizeof(*a));
                s6->sin6_family = AF_INET6;
                memcpy(&s6->sin6_addr, &t[i].ip6addr, sizeof(s6->sin6_addr));
                a->len = sizeof(*s6);
            }
        } else {
            struct ares_addrttl t[DNS_MAX_PER_FAMILY];
            int n = DNS_MAX_PER_FAMILY;
            status = ares_parse_a_reply(abuf, alen, NULL, t, &n);
            for (int i = 0; status == ARES_SUCCESS && i < n && i < DNS_MAX_PER_FAMILY; i++) {
                struct dns_addr *a = &q->addrs[q->count++];
                struct sockaddr_in *s4 = (struct sockaddr_in *)&a->ss;
                memset(a, 0, sizeof(*a));
                s4->sin_family = AF_INET;
                memcpy(&s4->sin_addr, &t[i].ipaddr, sizeof(s4->sin_addr));
                a->len = sizeof(*s4);
            }
        }
        if (status == ARES_SUCCESS && q->count == 0)
            status = ARES_ENODATA;
    }
    q->status = status;
}

static uint64_t dns_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Drive the channel until no query of lk is pending or the deadline passes. */
static void dns_wait(struct dns_resolver *r, struct dns_lookup *lk, uint64_t deadline)
{
    while (lk->pending > 0) {
        ares_socket_t socks[ARES_GETSOCK_MAXNUM];
        struct pollfd pfd[ARES_GETSOCK_MAXNUM];
        struct timeval maxtv, tv, *tvp;
        nfds_t n = 0;
        uint64_t now = dns_now_ms();
        int bits, ms, rc;

        if (now >= deadline) {
            ares_cancel(r->ch); /* every callback runs with ARES_ECANCELLED */
            break;
        }
        bits = ares_getsock(r->ch, socks, ARES_GETSOCK_MAXNUM);
        for (int i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
            short ev = 0;
            /* not ARES_GETSOCK_WRITABLE: it shifts a signed 1 into the sign bit */
            if (((unsigned)bits >> i) & 1u)
                ev |= POLLIN;
            if (((unsigned)bits >> (i + ARES_GETSOCK_MAXNUM)) & 1u)
                ev |= POLLOUT;
            if (!ev)
                continue;
            pfd[n].fd = socks[i];
            pfd[n].events = ev;
            pfd[n].revents = 0;
            n++;
        }
        maxtv.tv_sec = (time_t)((deadline - now) / 1000u);
        maxtv.tv_usec = (suseconds_t)((deadline - now) % 1000u * 1000u);
        tvp = ares_timeout(r->ch, &maxtv, &tv);
        ms = tvp->tv_sec >= 3600 ? 3600 * 1000
                                 : (int)(tvp->tv_sec * 1000 + (tvp->tv_usec + 999) / 1000);
        rc = poll(pfd, n, ms);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            ares_cancel(r->ch);
            break;
        }
        if (rc == 0) {
            ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
            continue;
        }
        for (nfds_t i = 0; i < n; i++) {
            short re = pfd[i].revents;
            if (!re)
                continue;
            ares_process_fd(r->ch,
                            (re & (POLLIN | POLLERR | POLLHUP)) ? pfd[i].fd : ARES_SOCKET_BAD,
                            (re & (POLLOUT | POLLERR | POLLHUP)) ? pfd[i].fd : ARES_SOCKET_BAD);
        }
    }
}

/* splitmix64: enough for shuffling, seeded from getrandom(2). */
static uint64_t dns_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t dns_seed(void)
{
    uint64_t seed;
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) == (ssize_t)sizeof(seed))
        return seed;
    struct timespec ts; /* entropy pool not ready yet: unpredictability is not needed here */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)getpid();
}

static int dns_mx_cmp(const void *a, const void *b)
{
    const struct dns_mx *x = a, *y = b;
    return (x->pref > y->pref) - (x->pref < y->pref);
}

/* Sort by preference, shuffle each run of equal preferences. */
static void dns_mx_order(struct dns_mx *mx, size_t n)
{
    uint64_t s = dns_seed();
    qsort(mx, n, sizeof(*mx), dns_mx_cmp);
    for (size_t b = 0; b < n;) {
        size_t e = b + 1;
        while (e < n && mx[e].pref == mx[b].pref)
            e++;
        for (size_t i = e - 1; i > b; i--) { /* Fisher-Yates over [b, e) */
            size_t j = b + (size_t)(dns_rand(&s) % (uint64_t)(i - b + 1));
            struct dns_mx t = mx[i];
            mx[i] = mx[j];
            mx[j] = t;
        }
        b = e;
    }
}

/* "[192.0.2.1]" or "[IPv6:2001:db8::1]" */
static int dns_literal(const char *domain, size_t len, struct dns_route *out, char *why,
                       size_t whylen)
{
    char a[INET6_ADDRSTRLEN + 1];
    const char *in = domain + 1;
    size_t n = len - 2;
    struct dns_host *h = &out->hosts[0];
    struct dns_addr *ad = &h->addrs[0];

    out->literal = true;
    if (domain[len - 1] != ']' || n == 0)
        goto bad;
    if (n > 5 && strncasecmp(in, "IPv6:", 5) == 0) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ad->ss;
        if (n - 5 >= sizeof(a))
            goto bad;
        memcpy(a, in + 5, n - 5);
        a[n - 5] = '\0';
        s6->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, a, &s6->sin6_addr) != 1)
            goto bad;
        ad->len = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ad->ss;
        if (n >= sizeof(a))
            goto bad;
        memcpy(a, in, n);
        a[n] = '\0';
        s4->sin_family = AF_INET;
        if (inet_pton(AF_INET, a, &s4->sin_addr) != 1)
            goto bad;
        ad->len = sizeof(*s4);
    }
    memcpy(h->name, domain, len);
    h->name[len] = '\0';
    h->naddrs = 1;
    out->nhosts = 1;
    return DNS_OK;
bad:
    memset(ad, 0, sizeof(*ad));
    dns_say(why, whylen, "%.*s: not a valid address literal", (int)(len > 64 ? 64 : len), domain);
    return DNS_PERMANENT;
}

/* Start the AAAA and A queries for host i of out. */
static void dns_addr_start(struct dns_resolver *r, struct dns_lookup *lk, struct dns_route *out,
                           size_t i)
{
    static const int fam[2] = {AF_INET6, AF_INET};
    for (int f = 0; f < 2; f++) {
        struct dns_aq *q = &lk->aq[i][f];
        q->lk = lk;
        q->host = i;
        q->family = fam[f];
        q->status = ARES_ECANCELLED;
        lk->pending++;
        ares_query(r->ch, out->hosts[i].name, 1 /* C_IN */, fam[f] == AF_INET6 ? 28 : 1,
                   dns_addr_cb, q);
    }
}

/* A lookup's failure that may go away: neither a clean NXDOMAIN nor NODATA. */
static bool dns_soft(int status)
{
    return status != ARES_SUCCESS && status != ARES_ENOTFOUND && status != ARES_ENODATA;
}

int dns_resolver_route(struct dns_resolver *r, const char *domain, struct dns_route *out, char *why,
                       size_t whylen)
{
    struct dns_lookup *lk;
    struct dns_mx *mx = NULL;
    size_t len = strlen(domain), nmx = 0, nh, kept, transient = 0;
    uint64_t budget;
    int result;

    memset(out, 0, sizeof(*out));
    if (why && whylen)
        why[0] = '\0';
    if (len > 0 && domain[0] == '[')
        return dns_literal(domain, len, out, why, whylen);
    if (!dns_name_valid(domain, len)) {
        dns_say(why, whylen, "%.*s%s: not a valid domain name", (int)(len > 64 ? 64 : len), domain,
                len > 64 ? "..." : "");
        return DNS_PERMANENT;
    }
    if (domain[len - 1] == '.')
        len--;
    lk = calloc(1, sizeof(*lk));
    if (!lk) {
        dns_say(why, whylen, "%.*s: out of memory", (int)len, domain);
        return DNS_TRANSIENT;
    }
    /* c-ares' own bound is timeout * (1 + 2 + ... ) over tries and servers */
    budget = DNS_SLACK_MS + (uint64_t)r->timeout_ms * (((uint64_t)1 << r->tries) - 1) * r->nservers;

    char qname[DNS_NAME_MAX + 1];
    memcpy(qname, domain, len);
    qname[len] = '\0';

    lk->mx_status = ARES_ECANCELLED;
    lk->pending = 1;
    ares_query(r->ch, qname, 1 /* C_IN */, 15 /* MX */, dns_mx_cb, lk);
    dns_wait(r, lk, dns_now_ms() + budget);

    if (lk->mx_status == ARES_ENOTFOUND) {
        dns_say(why, whylen, "%s: domain does not exist (NXDOMAIN)", qname);
        result = DNS_PERMANENT;
        goto done;
    }
    if (lk->mx_status == ARES_ENODATA) {
        /* RFC 5321 5.1: no MX at all, the domain is its own mail host */
        out->implicit_mx = true;
        memcpy(out->hosts[0].name, qname, len + 1);
        out->nhosts = 1;
    } else if (lk->mx_status != ARES_SUCCESS) {
        dns_say(why, whylen, "%s: MX lookup failed: %s", qname, dns_status_text(lk->mx_status));
        result = DNS_TRANSIENT;
        goto done;
    } else {
        struct ares_mx_reply *m;
        size_t i = 0;
        for (m = lk->mx; m; m = m->next)
            nmx++;
        if (dns_is_null_mx(nmx, lk->mx->host)) {
            dns_say(why, whylen, "%s: domain accepts no mail (null MX, RFC 7505)", qname);
            result = DNS_PERMANENT;
            goto done;
        }
        mx = calloc(nmx, sizeof(*mx));
        if (!mx) {
            dns_say(why, whylen, "%s: out of memory", qname);
            result = DNS_TRANSIENT;
            goto done;
        }
        for (m = lk->mx; m; m = m->next, i++) {
            mx[i].pref = m->priority;
            mx[i].host = m->host;
        }
        dns_mx_order(mx, nmx);
        for (i = 0; i < nmx && out->nhosts < r->max_hosts; i++) {
            size_t hl = strlen(mx[i].host);
            bool dup = false;
            if (hl > 0 && mx[i].host[hl - 1] == '.')
                hl--;
            if (!dns_name_valid(mx[i].host, hl)) {
                dns_note(out, "MX %u \"%.*s\": not a valid host name, skipped", mx[i].pref,
                         (int)(hl > 64 ? 64 : hl), mx[i].host);
                continue;
            }
            for (size_t k = 0; k < out->nhosts && !dup; k++)
                dup = strlen(out->hosts[k].name) == hl &&
                      strncasecmp(out->hosts[k].name, mx[i].host, hl) == 0;
            if (dup)
                continue;
            memcpy(out->hosts[out->nhosts].name, mx[i].host, hl);
            out->hosts[out->nhosts].name[hl] = '\0';
            out->hosts[out->nhosts].preference = mx[i].pref;
            out->nhosts++;
        }
        if (i < nmx)
            dns_note(out, "%zu more MX records ignored (limit %u hosts)", nmx - i, r->max_hosts);
        if (out->nhosts == 0) {
            dns_say(why, whylen, "%s: no usable MX host (%s)", qname, out->notes);
            result = DNS_TRANSIENT;
            goto done;
        }
    }

    /* addresses of every host, all queries at once */
    nh = out->nhosts;
    for (size_t i = 0; i < nh; i++)
        dns_addr_start(r, lk, out, i);
    dns_wait(r, lk, dns_now_ms() + budget);

    kept = 0;
    for (size_t i = 0; i < nh; i++) {
        struct dns_host h = out->hosts[i];
        h.naddrs = 0;
        for (int f = 0; f < 2; f++)
            for (size_t k = 0; k < lk->aq[i][f].count; k++)
                h.addrs[h.naddrs++] = lk->aq[i][f].addrs[k];
        int s6 = lk->aq[i][0].status, s4 = lk->aq[i][1].status;
        if (h.naddrs == 0) {
            bool soft = dns_soft(s6) || dns_soft(s4);
            if (soft)
                transient++;
            dns_note(out, "%s: no address (AAAA: %s, A: %s), skipped", h.name, dns_status_text(s6),
                     dns_status_text(s4));
            continue;
        }
        if (dns_soft(s6) || dns_soft(s4))
            dns_note(out, "%s: %s lookup failed: %s", h.name, dns_soft(s6) ? "AAAA" : "A",
                     dns_status_text(dns_soft(s6) ? s6 : s4));
        out->hosts[kept++] = h;
    }
    for (size_t i = kept; i < nh; i++)
        memset(&out->hosts[i], 0, sizeof(out->hosts[i]));
    out->nhosts = kept;

    if (kept > 0) {
        result = DNS_OK;
    } else if (out->implicit_mx && transient == 0) {
        dns_say(why, whylen, "%s: no MX and no address records", qname);
        result = DNS_PERMANENT;
    } else {
        /* explicit MX hosts without addresses: a fixable mistake, retry */
        dns_say(why, whylen, "%s: no mail host has an address (%s)", qname, out->notes);
        result = DNS_TRANSIENT;
    }

done:
    free(mx);
    if (lk->pending > 0)
        ares_cancel(r->ch); /* callbacks run now, while lk is alive */
    if (lk->pending != 0)
        abort(); /* a callback would later write into freed memory */
    if (lk->mx)
        ares_free_data(lk->mx);
    free(lk);
    if (result != DNS_OK)
        out->nhosts = 0;
    return result;
}

int dns_route(const struct dns_conf *c, const char *domain, struct dns_route *out, char *why,
              size_t whylen)
{
    struct dns_resolver *r = dns_resolver_new(c, why, whylen);
    if (!r) {
        memset(out, 0, sizeof(*out));
        return DNS_TRANSIENT;
    }
    int rc = dns_resolver_route(r, domain, out, why, whylen);
    dns_resolver_free(r);
    return rc;
}

int dns_route_drop_self(struct dns_route *r, const char *myname)
{
    size_t ml = strlen(myname), n;
    if (ml > 0 && myname[ml - 1] == '.')
        ml--;
    if (r->implicit_mx || r->literal)
        return 0;
    for (size_t i = 0; i < r->nhosts; i++) {
        if (strlen(r->hosts[i].name) == ml && strncasecmp(r->hosts[i].name, myname, ml) == 0) {
            unsigned pref = r->hosts[i].preference;
            n = 0;
            for (size_t k = 0; k < r->nhosts; k++)
                if (r->hosts[k].preference < pref)
                    r->hosts[n++] = r->hosts[k];
            for (size_t k = n; k < r->nhosts; k++)
                memset(&r->hosts[k], 0, sizeof(r->hosts[k]));
            r->nhosts = n;
            return n > 0 ? 0 : -1;
        }
    }
    return 0;
}

/* ---- single queries ------------------------------------------------------ */

/* Letters, digits, '-' and '_': what DNS names of mail authentication hold. */
static bool dns_octet_ldh(unsigned char c)
{
    return c == '-' || c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z');
}

/* Any visible octet or a space, but not a backslash (c-ares' escape character). */
static bool dns_octet_any(unsigned char c)
{
    return c != '\\' && ((c >= 0x21 && c <= 0x7e) || c == ' ');
}

/* 1..DNS_NAME_MAX octets (one final dot on top), labels of 1..63 octets that ok() takes. */
static bool dns_name_walk(const char *name, size_t len, bool (*ok)(unsigned char))
{
    size_t label = 0;
    if (len > 0 && name[len - 1] == '.')
        len--;
    if (len == 0 || len > DNS_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        if (!ok(c) || ++label > 63)
            return false;
    }
    return label > 0;
}

bool dns_qname_valid(const char *name, size_t len)
{
    return dns_name_walk(name, len, dns_octet_ldh);
}

const char *dns_qstatus_name(enum dns_qstatus s)
{
    switch (s) {
    case DNS_Q_OK:
        return "ok";
    case DNS_Q_NXDOMAIN:
        return "NXDOMAIN";
    case DNS_Q_NODATA:
        return "no records";
    case DNS_Q_TEMP:
        return "temporary failure";
    case DNS_Q_BADNAME:
        return "bad name";
    }
    return "?";
}

/* State of one dns_resolver_query() call; the callback writes only here. */
struct dns_raw {
    struct dns_lookup lk; /* only .pending is used: dns_wait() drives it */
    int status;
    unsigned char *abuf;
    size_t alen;
};

static void dns_raw_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct dns_raw *q = arg;
    (void)timeouts;
    q->lk.pending--;
    q->status = status;
    if (status == ARES_SUCCESS && abuf && alen > 0) {
        size_t n = (size_t)alen > DNS_ANSWER_MAX ? DNS_ANSWER_MAX : (size_t)alen;
        q->abuf = malloc(n);
        if (!q->abuf)
            q->status = ARES_ENOMEM;
        else
            memcpy(q->abuf, abuf, n);
        q->alen = n;
    }
}

/* One query of name[0..len) (already checked; an optional final dot) and type:
 * the raw answer on DNS_Q_OK, else why says what happened. */
static enum dns_qstatus dns_ask(struct dns_resolver *r, const char *name, size_t len, int type,
                                unsigned char **abuf, size_t *alen, char *why, size_t whylen)
{
    char qname[DNS_NAME_MAX + 1];
    struct dns_raw *q;
    enum dns_qstatus st;
    uint64_t budget;

    if (name[len - 1] == '.')
        len--;
    memcpy(qname, name, len);
    qname[len] = '\0';
    q = calloc(1, sizeof(*q));
    if (!q) {
        dns_say(why, whylen, "%s: out of memory", qname);
        return DNS_Q_TEMP;
    }
    budget = DNS_SLACK_MS + (uint64_t)r->timeout_ms * (((uint64_t)1 << r->tries) - 1) * r->nservers;
    q->status = ARES_ECANCELLED;
    q->lk.pending = 1;
    ares_query(r->ch, qname, 1 /* C_IN */, type, dns_raw_cb, q);
    dns_wait(r, &q->lk, dns_now_ms() + budget);
    if (q->lk.pending > 0)
        ares_cancel(r->ch); /* the callback runs now, while q is alive */
    if (q->lk.pending != 0)
        abort();

    switch (q->status) {
    case ARES_SUCCESS:
        st = DNS_Q_OK;
        break;
    case ARES_ENOTFOUND:
        st = DNS_Q_NXDOMAIN;
        break;
    case ARES_ENODATA:
        st = DNS_Q_NODATA;
        break;
    default:
        st = DNS_Q_TEMP;
        break;
    }
    if (st == DNS_Q_OK) {
        *abuf = q->abuf;
        *alen = q->alen;
    } else {
        free(q->abuf);
        dns_say(why, whylen, "%s: type %d lookup: %s", qname, type, dns_status_text(q->status));
    }
    free(q);
    return st;
}

/* "NAME: not a valid domain name" (cut at 64 octets) and DNS_Q_BADNAME. */
static enum dns_qstatus dns_badname(const char *name, size_t len, char *why, size_t whylen)
{
    dns_say(why, whylen, "%.*s%s: not a valid domain name", (int)(len > 64 ? 64 : len), name,
            len > 64 ? "..." : "");
    return DNS_Q_BADNAME;
}

enum dns_qstatus dns_resolver_query(struct dns_resolver *r, const char *name, int type,
                                    unsigned char **abuf, size_t *alen, char *why, size_t whylen)
{
    size_t len = strlen(name);

    *abuf = NULL;
    *alen = 0;
    if (why && whylen)
        why[0] = '\0';
    if (!dns_qname_valid(name, len))
        return dns_badname(name, len, why, whylen);
    return dns_ask(r, name, len, type, abuf, alen, why, whylen);
}

void dns_txt_free(struct dns_txt *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        free(t->rec[i]);
    memset(t, 0, sizeof(*t));
}

enum dns_qstatus dns_resolver_txt(struct dns_resolver *r, const char *name, struct dns_txt *out,
                                  char *why, size_t whylen)
{
    unsigned char *abuf;
    size_t alen;
    struct ares_txt_ext *txt = NULL;
    enum dns_qstatus st;

    memset(out, 0, sizeof(*out));
    st = dns_resolver_query(r, name, 16 /* TXT */, &abuf, &alen, why, whylen);
    if (st != DNS_Q_OK)
        return st;
    int prc = ares_parse_txt_reply_ext(abuf, (int)alen, &txt);
    free(abuf);
    if (prc == ARES_ENODATA || (prc == ARES_SUCCESS && !txt)) {
        dns_say(why, whylen, "%.200s: no TXT records", name);
        return DNS_Q_NODATA;
    }
    if (prc != ARES_SUCCESS) {
        dns_say(why, whylen, "%.200s: malformed TXT answer: %s", name, ares_strerror(prc));
        return DNS_Q_TEMP;
    }
    /* join the character-strings of each record; record_start marks a new one */
    char *cur = NULL;
    size_t curlen = 0;
    bool drop = false;
    for (struct ares_txt_ext *t = txt;; t = t->next) {
        if (!t || t->record_start) {
            if (cur && !drop && out->n < DNS_TXT_MAX_RECORDS) {
                out->rec[out->n] = cur;
                out->len[out->n++] = curlen;
            } else if (cur) {
                free(cur);
                out->truncated = true;
            }
            cur = NULL;
            curlen = 0;
            drop = false;
            if (!t)
                break;
            cur = malloc(1);
            if (!cur) {
                ares_free_data(txt);
                dns_txt_free(out);
                dns_say(why, whylen, "%.200s: out of memory", name);
                return DNS_Q_TEMP;
            }
            cur[0] = '\0';
        }
        if (!cur || drop)
            continue;
        if (curlen + t->length > DNS_TXT_MAX_LEN) {
            drop = true;
            continue;
        }
        char *n = realloc(cur, curlen + t->length + 1);
        if (!n) {
            free(cur);
            ares_free_data(txt);
            dns_txt_free(out);
            dns_say(why, whylen, "%.200s: out of memory", name);
            return DNS_Q_TEMP;
        }
        cur = n;
        memcpy(cur + curlen, t->txt, t->length);
        curlen += t->length;
        cur[curlen] = '\0';
    }
    ares_free_data(txt);
    if (out->n == 0) {
        dns_say(why, whylen, "%.200s: no usable TXT record (all longer than %d octets)", name,
                DNS_TXT_MAX_LEN);
        return DNS_Q_NODATA;
    }
    return DNS_Q_OK;
}

/* ---- SPF target names (appended for mailauth/spf.c) ---- */

bool dns_qname_valid_any(const char *name, size_t len)
{
    return dns_name_walk(name, len, dns_octet_any);
}

enum dns_qstatus dns_resolver_query_any(struct dns_resolver *r, const char *name, int type,
                                        unsigned char **abuf, size_t *alen, char *why,
                                        size_t whylen)
{
    size_t len = strlen(name);

    *abuf = NULL;
    *alen = 0;
    if (why && whylen)
        why[0] = '\0';
    if (!dns_qname_valid_any(name, len))
        return dns_badname(name, len, why, whylen);
    return dns_ask(r, name, len, type, abuf, alen, why, whylen);
}
