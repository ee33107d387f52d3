/*
 * mtasts.c - RFC 8461 MTA-STS: TXT record, policy parser, MX patterns,
 * HTTPS fetch (libcurl) and the policy cache (see mtasts.h).
 *
 * Everything from the network is bounded: a policy of at most
 * MTASTS_POLICY_MAX octets (libcurl is stopped past it), at most
 * MTASTS_MX_MAX patterns, names of at most DNS_NAME_MAX octets.  libcurl
 * is told to speak HTTPS only, to verify the certificate and the name, to
 * follow no redirect, to use no proxy and no signal (it runs on delivery
 * threads), and to connect only to the addresses our own resolver gave.
 * The cache's mutex guards only the in-memory table: DNS, HTTP and file
 * writes happen outside it (two threads may fetch the same domain at the
 * same time; the later store wins, both are valid).
 */
#include "mailauth/mtasts.h"

#include <ares.h>
#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fdio.h"
#include "core/log.h"
#include "core/taglist.h"

const char *mtasts_mode_name(enum mtasts_mode m)
{
    return m == MTASTS_MODE_ENFORCE ? "enforce" : m == MTASTS_MODE_TESTING ? "testing" : "none";
}

/* ---- TXT record ------------------------------------------------------------------ */

int mtasts_txt_parse(const char *rec, size_t len, char id[MTASTS_ID_MAX + 1], char *why,
                     size_t whylen)
{
    struct taglist tl;
    char reason[128];
    id[0] = '\0';
    if (taglist_parse(rec, len, &tl, reason, sizeof(reason)) < 0) {
        snprintf(why, whylen, "bad TXT record: %s", reason);
        return -1;
    }
    if (tl.n == 0 || tl.tags[0].namelen != 1 || tl.tags[0].name[0] != 'v' ||
        !tag_is(&tl.tags[0], "STSv1")) {
        snprintf(why, whylen, "TXT record does not start with v=STSv1");
        return -1;
    }
    const struct tag *t = taglist_get(&tl, "id");
    if (!t) {
        snprintf(why, whylen, "TXT record has no id");
        return -1;
    }
    if (t->valuelen < 1 || t->valuelen > MTASTS_ID_MAX) {
        snprintf(why, whylen, "TXT record id of %zu characters (1 to %d)", t->valuelen,
                 MTASTS_ID_MAX);
        return -1;
    }
    for (size_t i = 0; i < t->valuelen; i++) {
        if (!isalnum((unsigned char)t->value[i])) {
            snprintf(why, whylen, "TXT record id has a character other than letters and digits");
            return -1;
        }
    }
    memcpy(id, t->value, t->valuelen);
    id[t->valuelen] = '\0';
    return 0;
}

/* ---- policy file ----------------------------------------------------------------- */

static bool pol_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Lower-case name[0..n) into out (size DNS_NAME_MAX + 1) if it is an mx pattern:
 * a host name, or "*." followed by one; no final dot. */
static int pol_mx_pattern(const char *v, size_t n, char *out)
{
    const char *name = v;
    size_t nl = n;
    if (n >= 2 && v[0] == '*' && v[1] == '.') {
        name += 2;
        nl -= 2;
    }
    if (nl == 0 || n > DNS_NAME_MAX || name[nl - 1] == '.' || !dns_name_valid(name, nl))
        return -1;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)tolower((unsigned char)v[i]);
    out[n] = '\0';
    return 0;
}

/* v[0..vl) for a reason: at most 60 octets, anything but printable ASCII as '?'. */
static const char *pol_quote(char q[64], const char *v, size_t vl)
{
    size_t n = vl > 60 ? 60 : vl;
    for (size_t i = 0; i < n; i++)
        q[i] = v[i] >= 0x20 && v[i] < 0x7f ? v[i] : '?';
    q[n] = '\0';
    return q;
}

static bool pol_key_is(const char *k, size_t kl, const char *s)
{
    return kl == strlen(s) && memcmp(k, s, kl) == 0;
}

static bool pol_value_is(const char *v, size_t vl, const char *s)
{
    return vl == strlen(s) && memcmp(v, s, vl) == 0;
}

int mtasts_policy_parse(const char *text, size_t len, struct mtasts_policy *out, char *why,
                        size_t whylen)
{
    bool seen_version = false, seen_mode = false, seen_age = false;
    char q[64];
    unsigned line = 0;
    size_t pos = 0;

    memset(out, 0, sizeof(*out));
    if (len > MTASTS_POLICY_MAX) {
        snprintf(why, whylen, "policy larger than %d octets", MTASTS_POLICY_MAX);
        return -1;
    }
    while (pos < len) {
        const char *p = text + pos;
        const char *nl = memchr(p, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - p) : len - pos;
        pos += n + (nl ? 1 : 0);
        line++;
        if (n > 0 && p[n - 1] == '\r')
            n--;
        for (size_t i = 0; i < n; i++) {
            unsigned char ch = (unsigned char)p[i];
            if ((ch < 0x20 && ch != '\t') || ch >= 0x7f) {
                snprintf(why, whylen, "line %u: octet 0x%02x", line, ch);
                return -1;
            }
        }
        while (n > 0 && pol_blank(p[n - 1]))
            n--;
        if (n == 0)
            continue; /* an empty line (a final newline, say) */
        const char *colon = memchr(p, ':', n);
        if (!colon || colon == p) {
            snprintf(why, whylen, "line %u: not 'key: value'", line);
            return -1;
        }
        const char *k = p, *v = colon + 1;
        size_t kl = (size_t)(colon - p);
        for (size_t i = 0; i < kl; i++) {
            char ch = k[i];
            if (!isalnum((unsigned char)ch) && ch != '_' && ch != '-' && ch != '.') {
                snprintf(why, whylen, "line %u: bad key", line);
                return -1;
            }
        }
        while (v < p + n && pol_blank(*v))
            v++;
        size_t vl = (size_t)(p + n - v);
        if (pol_key_is(k, kl, "version")) {
            if (seen_version)
                continue; /* RFC 8461 3.2: the first instance counts */
            if (!pol_value_is(v, vl, "STSv1")) {
                snprintf(why, whylen, "line %u: version '%s' is not STSv1", line,
                         pol_quote(q, v, vl));
                return -1;
            }
            seen_version = true;
        } else if (pol_key_is(k, kl, "mode")) {
            if (seen_mode)
                continue;
            if (pol_value_is(v, vl, "enforce"))
                out->mode = MTASTS_MODE_ENFORCE;
            else if (pol_value_is(v, vl, "testing"))
                out->mode = MTASTS_MODE_TESTING;
            else if (pol_value_is(v, vl, "none"))
                out->mode = MTASTS_MODE_NONE;
            else {
                snprintf(why, whylen, "line %u: mode '%s' is not enforce, testing or none", line,
                         pol_quote(q, v, vl));
                return -1;
            }
            seen_mode = true;
        } else if (pol_key_is(k, kl, "max_age")) {
            if (seen_age)
                continue;
            uint64_t age = 0;
            if (vl == 0 || vl > 10) {
                snprintf(why, whylen, "line %u: max_age is not 1 to 10 digits", line);
                return -1;
            }
            for (size_t i = 0; i < vl; i++) {
                if (!isdigit((unsigned char)v[i])) {
                    snprintf(why, whylen, "line %u: max_age is not a number", line);
                    return -1;
                }
                age = age * 10 + (uint64_t)(v[i] - '0');
            }
            if (age > MTASTS_MAX_AGE_MAX) {
                snprintf(why, whylen, "line %u: max_age %" PRIu64 " is over %d", line, age,
                         MTASTS_MAX_AGE_MAX);
                return -1;
            }
            out->max_age = (uint32_t)age;
            seen_age = true;
        } else if (pol_key_is(k, kl, "mx")) {
            if (out->nmx == MTASTS_MX_MAX) {
                snprintf(why, whylen, "line %u: more than %d mx patterns", line, MTASTS_MX_MAX);
                return -1;
            }
            if (pol_mx_pattern(v, vl, out->mx[out->nmx]) < 0) {
                snprintf(why, whylen, "line %u: mx '%s' is not a host name or *.name", line,
                         pol_quote(q, v, vl));
                return -1;
            }
            out->nmx++;
        }
        /* other keys: ignored (RFC 8461 3.2) */
    }
    if (!seen_version || !seen_mode || !seen_age) {
        snprintf(why, whylen, "policy without %s",
                 !seen_version ? "version"
                 : !seen_mode  ? "mode"
                               : "max_age");
        return -1;
    }
    if (out->nmx == 0 && out->mode != MTASTS_MODE_NONE) {
        snprintf(why, whylen, "policy in mode %s without mx", mtasts_mode_name(out->mode));
        return -1;
    }
    return 0;
}

/* ---- MX patterns ----------------------------------------------------------------- */

bool mtasts_mx_match(const char *pattern, const char *host)
{
    size_t hl = strlen(host), pl = strlen(pattern);
    if (hl > 0 && host[hl - 1] == '.')
        hl--;
    if (hl == 0 || pl == 0)
        return false;
    if (pl >= 2 && pattern[0] == '*' && pattern[1] == '.') {
        /* "*.rest": host is LABEL.rest with one non-empty label */
        const char *dot = memchr(host, '.', hl);
        if (!dot || dot == host)
            return false;
        size_t rest = hl - (size_t)(dot + 1 - host);
        return rest == pl - 2 && rest > 0 && strncasecmp(dot + 1, pattern + 2, rest) == 0;
    }
    return hl == pl && strncasecmp(host, pattern, hl) == 0;
}

bool mtasts_policy_match(const struct mtasts_policy *p, const char *host)
{
    for (size_t i = 0; i < p->nmx; i++)
        if (mtasts_mx_match(p->mx[i], host))
            return true;
    return false;
}

/* ---- TXT lookup ------------------------------------------------------------------ */

enum mtasts_txt_status mtasts_txt_lookup(struct dns_resolver *r, const char *domain,
                                         char id[MTASTS_ID_MAX + 1], char *why, size_t whylen)
{
    char name[DNS_NAME_MAX + 16], reason[256];
    struct dns_txt txt;
    id[0] = '\0';
    snprintf(name, sizeof(name), "_mta-sts.%s", domain);
    enum dns_qstatus q = dns_resolver_txt(r, name, &txt, reason, sizeof(reason));
    if (q == DNS_Q_TEMP) {
        snprintf(why, whylen, "%s TXT: %s", name, reason);
        return MTASTS_TXT_TEMP;
    }
    if (q != DNS_Q_OK) {
        snprintf(why, whylen, "%s TXT: %s", name, dns_qstatus_name(q));
        return MTASTS_TXT_NONE;
    }
    /* RFC 8461 3.1: records that do not begin with "v=STSv1;" are discarded; not
     * exactly one left: no policy */
    size_t found = 0, which = 0;
    for (size_t i = 0; i < txt.n; i++) {
        const char *s = txt.rec[i];
        size_t l = txt.len[i], k = 7;
        if (l < 7 || memcmp(s, "v=STSv1", 7) != 0)
            continue;
        while (k < l && (s[k] == ' ' || s[k] == '\t'))
            k++;
        if (k < l && s[k] != ';')
            continue;
        found++;
        which = i;
    }
    enum mtasts_txt_status st = MTASTS_TXT_OK;
    if (found == 0) {
        snprintf(why, whylen, "%s: no v=STSv1 TXT record", name);
        st = MTASTS_TXT_NONE;
    } else if (found > 1) {
        snprintf(why, whylen, "%s: %zu v=STSv1 TXT records (exactly one allowed)", name, found);
        st = MTASTS_TXT_BAD;
    } else if (mtasts_txt_parse(txt.rec[which], txt.len[which], id, reason, sizeof(reason)) < 0) {
        snprintf(why, whylen, "%s: %s", name, reason);
        st = MTASTS_TXT_BAD;
    }
    dns_txt_free(&txt);
    return st;
}

/* ---- HTTPS fetch ----------------------------------------------------------------- */

static pthread_once_t mtasts_curl_once = PTHREAD_ONCE_INIT;
static CURLcode mtasts_curl_init_rc;

static void mtasts_curl_init(void)
{
    mtasts_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct fetch_body {
    char *p;
    size_t len;
    bool too_big;
};

static size_t fetch_write(char *data, size_t size, size_t nmemb, void *arg)
{
    struct fetch_body *b = arg;
    size_t n = size * nmemb;
    if (n > MTASTS_POLICY_MAX - b->len) {
        b->too_big = true;
        return 0; /* libcurl stops with CURLE_WRITE_ERROR */
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return n;
}

/* The addresses of host (AAAA, then A) as "[v6],v4,..." for CURLOPT_RESOLVE; 0 or -1. */
static int fetch_addresses(struct dns_resolver *r, const char *host, char *out, size_t size,
                           char *why, size_t whylen)
{
    static const int types[2] = {28, 1};
    size_t used = 0;
    char reason[256] = "";
    out[0] = '\0';
    for (int k = 0; k < 2; k++) {
        unsigned char *abuf = NULL;
        size_t alen = 0;
        enum dns_qstatus q =
            dns_resolver_query(r, host, types[k], &abuf, &alen, reason, sizeof(reason));
        if (q != DNS_Q_OK)
            continue;
        char text[INET6_ADDRSTRLEN];
        int n = 8;
        if (types[k] == 28) {
            struct ares_addr6ttl t[8];
            if (ares_parse_aaaa_reply(abuf, (int)alen, NULL, t, &n) != ARES_SUCCESS)
                n = 0;
            for (int i = 0; i < n; i++)
                if (inet_ntop(AF_INET6, &t[i].ip6addr, text, sizeof(text)) &&
                    used + strlen(text) + 4 < size)
                    used +=
                        (size_t)snprintf(out + used, size - used, "%s[%s]", used ? "," : "", text);
        } else {
            struct ares_addrttl t[8];
            if (ares_parse_a_reply(abuf, (int)alen, NULL, t, &n) != ARES_SUCCESS)
                n = 0;
            for (int i = 0; i < n; i++)
                if (inet_ntop(AF_INET, &t[i].ipaddr, text, sizeof(text)) &&
                    used + strlen(text) + 2 < size)
                    used +=
                        (size_t)snprintf(out + used, size - used, "%s%s", used ? "," : "", text);
        }
        free(abuf);
    }
    if (used == 0) {
        snprintf(why, whylen, "%s: no address%s%s", host, reason[0] ? ": " : "", reason);
        return -1;
    }
    return 0;
}

/* True if the Content-Type value ct is text/plain (parameters allowed). */
static bool fetch_text_plain(const char *ct)
{
    if (!ct)
        return false;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, "text/plain", 10) != 0)
        return false;
    ct += 10;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return *ct == '\0' || *ct == ';';
}

int mtasts_fetch(const struct mtasts_fetch_conf *fc, const char *domain, char **body, size_t *len,
                 char *why, size_t whylen)
{
    char host[DNS_NAME_MAX + 16], url[DNS_NAME_MAX + 80], addrs[512], resolve[DNS_NAME_MAX + 600];
    char errbuf[CURL_ERROR_SIZE] = "";
    unsigned port = fc->port ? fc->port : 443;
    struct fetch_body b = {0};
    struct curl_slist *rl = NULL;
    CURL *h = NULL;
    int ret = -1;

    *body = NULL;
    *len = 0;
    snprintf(host, sizeof(host), "mta-sts.%s", domain);
    if (!dns_qname_valid(host, strlen(host))) {
        snprintf(why, whylen, "%s is not a host name", host);
        return -1;
    }
    pthread_once(&mtasts_curl_once, mtasts_curl_init);
    if (mtasts_curl_init_rc != CURLE_OK) {
        snprintf(why, whylen, "libcurl: %s", curl_easy_strerror(mtasts_curl_init_rc));
        return -1;
    }
    if (fetch_addresses(fc->resolver, host, addrs, sizeof(addrs), why, whylen) < 0)
        return -1;
    snprintf(url, sizeof(url), "https://%s:%u/.well-known/mta-sts.txt", host, port);
    snprintf(resolve, sizeof(resolve), "%s:%u:%s", host, port, addrs);
    b.p = malloc(MTASTS_POLICY_MAX + 1);
    if (!b.p || !(rl = curl_slist_append(NULL, resolve)) || !(h = curl_easy_init())) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    unsigned cms = fc->connect_ms ? fc->connect_ms : MTASTS_CONNECT_MS_DEFAULT;
    unsigned tms = fc->total_ms ? fc->total_ms : MTASTS_TOTAL_MS_DEFAULT;
    if (curl_easy_setopt(h, CURLOPT_URL, url) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_RESOLVE, rl) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https") != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "https") != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_MAXREDIRS, 0L) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_PROXY, "") != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_NOPROXY, "*") != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2) != CURLE_OK ||
        (fc->ca_file && curl_easy_setopt(h, CURLOPT_CAINFO, fc->ca_file) != CURLE_OK) ||
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)cms) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)tms) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)MTASTS_POLICY_MAX) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_USERAGENT, "tern (MTA-STS)") != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, fetch_write) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &b) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf) != CURLE_OK) {
        snprintf(why, whylen, "libcurl refused an option");
        goto out;
    }
    CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
        if (b.too_big || rc == CURLE_FILESIZE_EXCEEDED)
            snprintf(why, whylen, "%s: policy larger than %d octets", host, MTASTS_POLICY_MAX);
        else
            snprintf(why, whylen, "%s: %s", host, errbuf[0] ? errbuf : curl_easy_strerror(rc));
        goto out;
    }
    long status = 0;
    char *ct = NULL;
    if (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK || status != 200) {
        snprintf(why, whylen, "%s: HTTP status %ld (200 required, redirects not followed)", host,
                 status);
        goto out;
    }
    if (curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct) != CURLE_OK || !fetch_text_plain(ct)) {
        snprintf(why, whylen, "%s: content type '%.60s' is not text/plain", host,
                 ct ? ct : "(none)");
        goto out;
    }
    b.p[b.len] = '\0';
    *body = b.p;
    *len = b.len;
    b.p = NULL;
    ret = 0;
out:
    if (h)
        curl_easy_cleanup(h);
    curl_slist_free_all(rl);
    free(b.p);
    return ret;
}

/* ---- the network source ------------------------------------------------------------ */

static enum mtasts_txt_status net_txt(void *ctx, const char *domain, char id[MTASTS_ID_MAX + 1],
                                      char *why, size_t whylen)
{
    const struct mtasts_fetch_conf *fc = ctx;
    return mtasts_txt_lookup(fc->resolver, domain, id, why, whylen);
}

static int net_fetch(void *ctx, const char *domain, char **body, size_t *len, char *why,
                     size_t whylen)
{
    return mtasts_fetch(ctx, domain, body, len, why, whylen);
}

const struct mtasts_source mtasts_net_source_ops = {.txt = net_txt, .fetch = net_fetch};

/* ---- cache ------------------------------------------------------------------------- */

#define CACHE_MAGIC "tern-mta-sts-cache 1\n"

struct cache_entry {
    char domain[DNS_NAME_MAX + 1];
    struct mtasts_policy pol;
    int64_t fetched; /* when the policy was fetched (its max_age counts from there) */
    int64_t used;    /* for eviction */
};

struct mtasts_cache {
    pthread_mutex_t mu;
    char *dir; /* NULL: memory only */
    struct cache_entry **v;
    size_t n;
};

struct mtasts_cache *mtasts_cache_new(const char *dir)
{
    struct mtasts_cache *c = calloc(1, sizeof(*c));
    if (!c)
        fatal("out of memory");
    pthread_mutex_init(&c->mu, NULL);
    if (dir && *dir) {
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
            log_warn("mta-sts: cannot create %s (%s): policies are kept in memory only", dir,
                     strerror(errno));
        else if (!(c->dir = strdup(dir)))
            fatal("out of memory");
    }
    DIR *d = c->dir ? opendir(c->dir) : NULL;
    struct dirent *de;
    while (d && (de = readdir(d))) /* what a crash left in the middle of a store */
        if (strncmp(de->d_name, ".tmp.", 5) == 0 && unlinkat(dirfd(d), de->d_name, 0) < 0)
            log_warn("mta-sts: cannot remove %s/%s: %s", c->dir, de->d_name, strerror(errno));
    if (d)
        closedir(d);
    return c;
}

void mtasts_cache_free(struct mtasts_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        free(c->v[i]);
    free(c->v);
    free(c->dir);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* Copy domain's entry out (true) or not. */
static bool cache_find(struct mtasts_cache *c, const char *domain, struct cache_entry *out,
                       time_t now)
{
    bool found = false;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->v[i]->domain, domain) == 0) {
            c->v[i]->used = now;
            *out = *c->v[i];
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return found;
}

static void cache_put(struct mtasts_cache *c, const struct cache_entry *e)
{
    pthread_mutex_lock(&c->mu);
    size_t i, oldest = 0;
    for (i = 0; i < c->n; i++) {
        if (strcmp(c->v[i]->domain, e->domain) == 0)
            break;
        if (c->v[i]->used < c->v[oldest]->used)
            oldest = i;
    }
    if (i == c->n && c->n == MTASTS_CACHE_MAX) {
        i = oldest; /* the least recently used goes */
    } else if (i == c->n) {
        struct cache_entry **nv = realloc(c->v, (c->n + 1) * sizeof(*nv));
        struct cache_entry *ne = malloc(sizeof(*ne));
        if (!nv || !ne)
            fatal("out of memory");
        c->v = nv;
        c->v[c->n++] = ne;
    }
    *c->v[i] = *e;
    pthread_mutex_unlock(&c->mu);
}

/* The file of domain in the cache folder. */
static void cache_path(const struct mtasts_cache *c, const char *domain, char *out, size_t size)
{
    snprintf(out, size, "%s/%s", c->dir, domain);
}

/* Read domain's file: 0 with *e filled, -1 (missing or damaged: ignored). */
static int cache_load(const struct mtasts_cache *c, const char *domain, struct cache_entry *e)
{
    char path[4096], why[200];
    cache_path(c, domain, path, sizeof(path));
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t cap = MTASTS_POLICY_MAX + 256, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf)
        fatal("out of memory");
    for (;;) {
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
        if (len == cap)
            break;
    }
    close(fd);
    buf[len] = '\0';
    /* CACHE_MAGIC, "id ID\n", "fetched SECONDS\n", then the policy as fetched */
    char id[MTASTS_ID_MAX + 2];
    long long fetched = 0;
    int off = 0;
    size_t ml = strlen(CACHE_MAGIC);
    int ok = len > ml && memcmp(buf, CACHE_MAGIC, ml) == 0 &&
             sscanf(buf + ml, "id %33[A-Za-z0-9]\nfetched %lld\n%n", id, &fetched, &off) == 2 &&
             off > 0 && strlen(id) <= MTASTS_ID_MAX;
    memset(e, 0, sizeof(*e));
    if (ok && mtasts_policy_parse(buf + ml + (size_t)off, len - ml - (size_t)off, &e->pol, why,
                                  sizeof(why)) == 0) {
        snprintf(e->domain, sizeof(e->domain), "%s", domain);
        snprintf(e->pol.id, sizeof(e->pol.id), "%s", id);
        e->fetched = fetched;
        free(buf);
        return 0;
    }
    log_warn("mta-sts: %s: damaged cache file ignored", path);
    free(buf);
    return -1;
}

/* Write domain's file atomically: tmp, fsync, rename, fsync of the folder. */
static void cache_store(const struct mtasts_cache *c, const char *domain, const char *id,
                        int64_t fetched, const char *body, size_t len)
{
    char path[4096], tmp[4200], head[128];
    cache_path(c, domain, path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s/.tmp.%ld.%s", c->dir, (long)gettid(), domain);
    int hl = snprintf(head, sizeof(head), CACHE_MAGIC "id %s\nfetched %" PRId64 "\n", id, fetched);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_warn("mta-sts: cannot write %s: %s", tmp, strerror(errno));
        return;
    }
    int bad = write_all(fd, head, (size_t)hl) < 0 || write_all(fd, body, len) < 0 || fsync(fd) < 0;
    int err = errno;
    if (close(fd) < 0 && !bad) {
        bad = 1;
        err = errno;
    }
    if (!bad && rename(tmp, path) < 0) {
        bad = 1;
        err = errno;
    }
    if (bad) {
        log_warn("mta-sts: cannot write %s: %s", path, strerror(err));
        unlink(tmp);
        return;
    }
    int dfd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) < 0)
        log_warn("mta-sts: cannot sync %s: %s", c->dir, strerror(errno));
    if (dfd >= 0)
        close(dfd);
}

enum mtasts_outcome mtasts_cache_get(struct mtasts_cache *c, const struct mtasts_source *src,
                                     const char *domain, time_t now, struct mtasts_policy *out,
                                     char *note, size_t notelen)
{
    struct cache_entry *e = malloc(sizeof(*e));
    char id[MTASTS_ID_MAX + 1], why[300], perr[200];
    char *body = NULL;
    size_t blen = 0;
    enum mtasts_outcome res = MTASTS_NO_POLICY;

    if (!e)
        fatal("out of memory");
    note[0] = '\0';
    memset(out, 0, sizeof(*out));
    if (!dns_name_valid(domain, strlen(domain)) || domain[strlen(domain) - 1] == '.') {
        snprintf(note, notelen, "not a domain name");
        free(e);
        return MTASTS_NO_POLICY;
    }
    bool have = cache_find(c, domain, e, now);
    if (!have && c->dir && cache_load(c, domain, e) == 0) {
        e->used = now;
        cache_put(c, e);
        have = true;
    }
    bool fresh = have && (int64_t)now < e->fetched + (int64_t)e->pol.max_age;

    enum mtasts_txt_status ts = src->txt(src->ctx, domain, id, why, sizeof(why));
    if (ts != MTASTS_TXT_OK) {
        /* RFC 8461 5.1: no valid TXT record, but a policy in the cache: use it */
        if (fresh) {
            *out = e->pol;
            snprintf(note, notelen, "%s; using the cached policy id=%s", why, e->pol.id);
            res = MTASTS_CACHED;
        } else {
            snprintf(note, notelen, "%s", why);
            res = ts == MTASTS_TXT_NONE ? MTASTS_NO_POLICY : MTASTS_FAILED;
        }
        goto done;
    }
    if (fresh && strcmp(e->pol.id, id) == 0) {
        *out = e->pol;
        snprintf(note, notelen, "cached id=%s", id);
        res = MTASTS_CACHED;
        goto done;
    }
    struct mtasts_policy *np = malloc(sizeof(*np));
    if (!np)
        fatal("out of memory");
    int fr = src->fetch(src->ctx, domain, &body, &blen, why, sizeof(why));
    if (fr == 0 && mtasts_policy_parse(body, blen, np, perr, sizeof(perr)) < 0) {
        snprintf(why, sizeof(why), "invalid policy: %s", perr);
        fr = -1;
    }
    if (fr < 0) {
        if (fresh) {
            *out = e->pol;
            snprintf(note, notelen, "policy fetch for id=%s failed: %s; keeping the cached id=%s",
                     id, why, e->pol.id);
            res = MTASTS_STALE_KEPT;
        } else {
            snprintf(note, notelen, "policy fetch failed: %s", why);
            res = MTASTS_FAILED;
        }
        free(np);
        goto done;
    }
    snprintf(np->id, sizeof(np->id), "%s", id);
    memset(e, 0, sizeof(*e));
    snprintf(e->domain, sizeof(e->domain), "%s", domain);
    e->pol = *np;
    e->fetched = now;
    e->used = now;
    cache_put(c, e);
    if (c->dir)
        cache_store(c, domain, id, now, body, blen);
    *out = *np;
    free(np);
    snprintf(note, notelen, "fetched id=%s mode=%s max_age=%u", id, mtasts_mode_name(out->mode),
             (unsigned)out->max_age);
    res = MTASTS_FETCHED;
done:
    free(body);
    free(e);
    return res;
}
