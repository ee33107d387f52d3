/*
 * dmarc.c - DMARC (RFC 7489) and the Public Suffix List (see dmarc.h).
 *
 * The PSL is kept as one block: the rules' text followed by an open-addressing
 * hash table of offsets into it, each entry flagged normal / wildcard ("*."
 * stripped) / exception ("!" stripped).  Lookup walks the name's suffixes from
 * the longest: the first exception or match decides (an exception rule is
 * always longer than the wildcard it cuts a hole in).
 */
#include "mailauth/dmarc.h"

#include <arpa/nameser.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/addrlist.h"
#include "core/header.h"
#include "core/taglist.h"
#include "dns/dns.h"

/* ---- the record ---------------------------------------------------------- */

static int dmarc_policy_word(const struct tag *t, enum dmarc_policy *out)
{
    static const char *const w[] = {"none", "quarantine", "reject"};
    for (int i = 0; i < 3; i++)
        if (t->valuelen == strlen(w[i]) && strncasecmp(t->value, w[i], t->valuelen) == 0) {
            *out = (enum dmarc_policy)i;
            return 0;
        }
    return -1;
}

static void dmarc_copy(char *out, size_t size, const struct tag *t)
{
    size_t n = t->valuelen < size - 1 ? t->valuelen : size - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t->value[i];
        out[i] = c >= 0x21 && c < 0x7f ? (char)c : '?';
    }
    out[n] = '\0';
}

int dmarc_record_parse(const char *txt, size_t len, struct dmarc_record *out, char *why,
                       size_t whylen)
{
    struct taglist tl;
    char tw[128];
    memset(out, 0, sizeof(*out));
    out->pct = 100;
    if (len > 8192) {
        snprintf(why, whylen, "record longer than 8192 octets");
        return -1;
    }
    if (taglist_parse(txt, len, &tl, tw, sizeof(tw)) < 0) {
        snprintf(why, whylen, "not a tag list: %s", tw);
        return -1;
    }
    if (tl.n == 0 || tl.tags[0].namelen != 1 || tl.tags[0].name[0] != 'v' ||
        !tag_is(&tl.tags[0], "DMARC1")) {
        snprintf(why, whylen, "does not begin with v=DMARC1");
        return -1;
    }
    const struct tag *t = taglist_get(&tl, "p");
    bool have_p = t && dmarc_policy_word(t, &out->p) == 0;
    if ((t = taglist_get(&tl, "rua")) != NULL)
        dmarc_copy(out->rua, sizeof(out->rua), t);
    if ((t = taglist_get(&tl, "ruf")) != NULL)
        dmarc_copy(out->ruf, sizeof(out->ruf), t);
    if (!have_p) {
        if (!out->rua[0]) {
            snprintf(why, whylen, "no valid p= tag");
            return -1;
        }
        out->p = DMARC_P_NONE; /* 6.6.3: a record with rua= but a bad p= is p=none */
    }
    out->sp = out->p;
    if ((t = taglist_get(&tl, "sp")) != NULL) {
        enum dmarc_policy sp;
        if (dmarc_policy_word(t, &sp) == 0)
            out->sp = sp;
    }
    if ((t = taglist_get(&tl, "adkim")) != NULL && t->valuelen == 1)
        out->adkim_strict = t->value[0] == 's' || t->value[0] == 'S';
    if ((t = taglist_get(&tl, "aspf")) != NULL && t->valuelen == 1)
        out->aspf_strict = t->value[0] == 's' || t->value[0] == 'S';
    if ((t = taglist_get(&tl, "pct")) != NULL && t->valuelen >= 1 && t->valuelen <= 3) {
        unsigned v = 0;
        size_t i;
        for (i = 0; i < t->valuelen && isdigit((unsigned char)t->value[i]); i++)
            v = v * 10 + (unsigned)(t->value[i] - '0');
        if (i == t->valuelen && v <= 100)
            out->pct = v;
    }
    return 0;
}

/* ---- the From domain ------------------------------------------------------- */

struct from_ctx {
    int n, bad;
    char domain[DMARC_DOMAIN_MAX + 1];
};

static void from_addr(void *ctx, const char *addr)
{
    struct from_ctx *f = ctx;
    if (f->n++ == 0) {
        const char *at = strrchr(addr, '@');
        snprintf(f->domain, sizeof(f->domain), "%s", at ? at + 1 : "");
    }
}

static void from_bad(void *ctx, const char *addr)
{
    (void)addr;
    ((struct from_ctx *)ctx)->bad++;
}

int dmarc_from_domain(const char *msg, size_t len, char *domain, size_t size, char *why,
                      size_t whylen)
{
    char value[4096];
    domain[0] = '\0';
    unsigned n = header_count(msg, len, "From");
    if (n == 0) {
        snprintf(why, whylen, "no From field");
        return -1;
    }
    if (n > 1) {
        snprintf(why, whylen, "%u From fields", n);
        return -1;
    }
    long vl = header_get(msg, len, "From", value, sizeof(value));
    if (vl < 0 || (size_t)vl >= sizeof(value) - 1) {
        snprintf(why, whylen, "From field too long");
        return -1;
    }
    struct from_ctx f = {0};
    int k = addrlist_parse(value, (size_t)vl, from_addr, from_bad, &f);
    if (k < 0 || f.bad) {
        snprintf(why, whylen, "From field cannot be parsed");
        return -1;
    }
    if (f.n != 1) {
        snprintf(why, whylen, "From field holds %d addresses", f.n);
        return -1;
    }
    size_t dl = strlen(f.domain);
    if (dl && f.domain[dl - 1] == '.')
        f.domain[--dl] = '\0';
    if (!dl || !dns_name_valid(f.domain, dl)) {
        snprintf(why, whylen, "From domain is not a domain name");
        return -1;
    }
    if (dl >= size) {
        snprintf(why, whylen, "From domain too long");
        return -1;
    }
    for (size_t i = 0; i <= dl; i++)
        domain[i] = (char)tolower((unsigned char)f.domain[i]);
    return 0;
}

/* ---- Public Suffix List ---------------------------------------------------- */

enum { PSL_NORMAL = 1, PSL_WILD = 2, PSL_EXC = 4 };

struct psl_slot {
    uint32_t off; /* into text; 0 = empty (text[0] is a NUL never used by a rule) */
    uint16_t len;
    uint8_t flags;
};

struct psl {
    char *text;
    size_t textlen, nrules, cap; /* cap: slots, a power of two */
    struct psl_slot *slots;
};

static uint32_t psl_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)tolower((unsigned char)s[i]);
        h *= 16777619u;
    }
    return h;
}

static struct psl_slot *psl_find(const struct psl *p, const char *s, size_t n)
{
    if (!p || !p->cap)
        return NULL;
    for (uint32_t i = psl_hash(s, n) & (uint32_t)(p->cap - 1);;
         i = (i + 1) & (uint32_t)(p->cap - 1)) {
        struct psl_slot *sl = &p->slots[i];
        if (!sl->off)
            return NULL;
        if (sl->len == n && strncasecmp(p->text + sl->off, s, n) == 0)
            return sl;
    }
}

/* A rule line: its first blank-delimited word; "//" comments and blank lines are none. */
static bool psl_rule(const char *line, size_t n, const char **r, size_t *rl)
{
    size_t i = 0;
    while (i < n && (line[i] == ' ' || line[i] == '\t'))
        i++;
    if (i == n || (n - i >= 2 && line[i] == '/' && line[i + 1] == '/'))
        return false;
    size_t j = i;
    while (j < n && line[j] != ' ' && line[j] != '\t' && line[j] != '\r')
        j++;
    *r = line + i;
    *rl = j - i;
    return *rl > 0;
}

struct psl *psl_load_text(const char *text, size_t len, char *why, size_t whylen)
{
    size_t nrules = 0;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - text) : len;
        const char *r;
        size_t rl;
        if (psl_rule(text + i, e - i, &r, &rl))
            nrules++;
        i = e + 1;
    }
    if (nrules > PSL_RULES_MAX) {
        snprintf(why, whylen, "more than %u rules", PSL_RULES_MAX);
        return NULL;
    }
    if (len > PSL_FILE_MAX) {
        snprintf(why, whylen, "larger than %u octets", PSL_FILE_MAX);
        return NULL;
    }
    struct psl *p = calloc(1, sizeof(*p));
    size_t cap = 16;
    while (cap < nrules * 2 + 2)
        cap *= 2;
    if (p) {
        p->text = malloc(len + 2);
        p->slots = calloc(cap, sizeof(*p->slots));
    }
    if (!p || !p->text || !p->slots) {
        psl_free(p);
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    p->cap = cap;
    p->text[0] = '\0';
    size_t o = 1;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - text) : len;
        const char *r;
        size_t rl;
        bool ok = psl_rule(text + i, e - i, &r, &rl);
        i = e + 1;
        if (!ok)
            continue;
        uint8_t flag = PSL_NORMAL;
        if (rl > 1 && r[0] == '!') {
            flag = PSL_EXC;
            r++, rl--;
        } else if (rl > 2 && r[0] == '*' && r[1] == '.') {
            flag = PSL_WILD;
            r += 2, rl -= 2;
        }
        if (rl > DMARC_DOMAIN_MAX || memchr(r, '\0', rl))
            continue;
        struct psl_slot *sl = psl_find(p, r, rl);
        if (sl) {
            sl->flags |= flag;
            continue;
        }
        memcpy(p->text + o, r, rl);
        for (uint32_t h = psl_hash(r, rl) & (uint32_t)(cap - 1);; h = (h + 1) & (uint32_t)(cap - 1))
            if (!p->slots[h].off) {
                p->slots[h] =
                    (struct psl_slot){.off = (uint32_t)o, .len = (uint16_t)rl, .flags = flag};
                break;
            }
        o += rl;
        p->nrules++;
    }
    p->textlen = o;
    return p;
}

struct psl *psl_load(const char *path, char *why, size_t whylen)
{
    if (!path)
        path = PSL_FILE_DEFAULT;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, whylen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)PSL_FILE_MAX) {
        snprintf(why, whylen, "%s: not a regular file of at most %u octets", path, PSL_FILE_MAX);
        close(fd);
        return NULL;
    }
    size_t size = (size_t)st.st_size, got = 0;
    char *text = malloc(size + 1);
    if (!text) {
        close(fd);
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    while (got < size) {
        ssize_t k = read(fd, text + got, size - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    struct psl *p = NULL;
    if (got != size)
        snprintf(why, whylen, "%s: short read", path);
    else if ((p = psl_load_text(text, size, why, whylen)) == NULL) {
        char w[200];
        snprintf(w, sizeof(w), "%s", why);
        snprintf(why, whylen, "%s: %s", path, w);
    }
    free(text);
    return p;
}

void psl_free(struct psl *p)
{
    if (!p)
        return;
    free(p->text);
    free(p->slots);
    free(p);
}

size_t psl_rules(const struct psl *p)
{
    return p ? p->nrules : 0;
}

int psl_org_domain(const struct psl *p, const char *domain, char *out, size_t size)
{
    char d[DMARC_DOMAIN_MAX + 2];
    size_t n = strlen(domain);
    if (n && domain[n - 1] == '.')
        n--;
    if (n == 0 || n > DMARC_DOMAIN_MAX || domain[n - 1] == '.' || !dns_qname_valid(domain, n))
        return -1;
    for (size_t i = 0; i < n; i++)
        d[i] = (char)tolower((unsigned char)domain[i]);
    d[n] = '\0';
    /* label starts, leftmost first */
    size_t starts[DMARC_DOMAIN_MAX / 2 + 2], nl = 0;
    starts[nl++] = 0;
    for (size_t i = 0; i < n; i++)
        if (d[i] == '.')
            starts[nl++] = i + 1;
    size_t ps = nl - 1; /* the public suffix starts at label ps: default rule "*" */
    for (size_t i = 0; i < nl; i++) {
        const struct psl_slot *sl = psl_find(p, d + starts[i], n - starts[i]);
        if (sl && (sl->flags & PSL_EXC)) {
            ps = i + 1 < nl ? i + 1 : i;
            break;
        }
        const struct psl_slot *up =
            i + 1 < nl ? psl_find(p, d + starts[i + 1], n - starts[i + 1]) : NULL;
        if ((sl && (sl->flags & PSL_NORMAL)) || (up && (up->flags & PSL_WILD))) {
            ps = i;
            break;
        }
    }
    size_t org = ps > 0 ? ps - 1 : 0; /* one label more, or the suffix itself */
    size_t len = n - starts[org];
    if (len + 1 > size)
        return -1;
    memcpy(out, d + starts[org], len + 1);
    return 0;
}

bool dmarc_aligned(const struct psl *p, const char *a, const char *b, bool strict)
{
    if (!a || !b || !a[0] || !b[0])
        return false;
    size_t la = strlen(a), lb = strlen(b);
    if (la && a[la - 1] == '.')
        la--;
    if (lb && b[lb - 1] == '.')
        lb--;
    if (la == lb && strncasecmp(a, b, la) == 0)
        return true;
    if (strict)
        return false;
    char oa[DMARC_DOMAIN_MAX + 1], ob[DMARC_DOMAIN_MAX + 1];
    return psl_org_domain(p, a, oa, sizeof(oa)) == 0 && psl_org_domain(p, b, ob, sizeof(ob)) == 0 &&
           strcmp(oa, ob) == 0;
}

/* ---- evaluation -------------------------------------------------------------- */

void dmarc_decide(const struct psl *p, const struct dmarc_record *rec, bool subdomain,
                  const char *from_domain, const struct dmarc_auth *auth, unsigned sample,
                  struct dmarc_verdict *out)
{
    out->have_record = true;
    out->rec = *rec;
    out->policy = subdomain ? rec->sp : rec->p;
    out->spf_aligned =
        auth->spf_pass && dmarc_aligned(p, auth->spf_domain, from_domain, rec->aspf_strict);
    out->dkim_aligned = false;
    for (size_t i = 0; i < auth->ndkim && !out->dkim_aligned; i++)
        out->dkim_aligned = dmarc_aligned(p, auth->dkim_domains[i], from_domain, rec->adkim_strict);
    if (out->spf_aligned || out->dkim_aligned) {
        out->result = DMARC_PASS;
        out->apply = DMARC_P_NONE;
        snprintf(out->why, sizeof(out->why), "%s aligned",
                 out->spf_aligned ? (out->dkim_aligned ? "SPF and DKIM" : "SPF") : "DKIM");
        return;
    }
    out->result = DMARC_FAIL;
    out->apply = out->policy;
    if (sample >= rec->pct && out->apply > DMARC_P_NONE) /* 6.6.4: not sampled: one step lower */
        out->apply = (enum dmarc_policy)(out->apply - 1);
    snprintf(out->why, sizeof(out->why), "neither SPF nor DKIM aligned");
}

/* One name: DMARC_PASS = found a record (in *rec), NONE = no record, TEMPERROR. */
static enum dmarc_result dmarc_lookup(struct dns_resolver *r, const char *domain,
                                      struct dmarc_record *rec, char *why, size_t whylen)
{
    char name[DMARC_DOMAIN_MAX + 16];
    struct dns_txt txt;
    char w[160];
    snprintf(name, sizeof(name), "_dmarc.%s", domain);
    enum dns_qstatus st = dns_resolver_txt(r, name, &txt, w, sizeof(w));
    if (st == DNS_Q_TEMP) {
        snprintf(why, whylen, "%.100s: %.90s", name, w);
        return DMARC_TEMPERROR;
    }
    if (st != DNS_Q_OK) {
        snprintf(why, whylen, "%.100s: %s", name, dns_qstatus_name(st));
        return DMARC_NONE;
    }
    int found = 0;
    for (size_t i = 0; i < txt.n; i++) {
        struct dmarc_record one;
        char pw[128];
        /* only records that begin with v=DMARC1 count; 6.6.3: more than one: none */
        if (txt.len[i] < 8 || strncmp(txt.rec[i], "v=DMARC1", 8) != 0)
            continue;
        if (dmarc_record_parse(txt.rec[i], txt.len[i], &one, pw, sizeof(pw)) == 0) {
            if (found++ == 0)
                *rec = one;
        } else {
            snprintf(why, whylen, "%.100s: bad record: %.80s", name, pw);
        }
    }
    dns_txt_free(&txt);
    if (found == 1)
        return DMARC_PASS;
    if (found > 1)
        snprintf(why, whylen, "%.100s: %d DMARC records", name, found);
    else if (!why[0])
        snprintf(why, whylen, "%.100s: no DMARC record", name);
    return DMARC_NONE;
}

enum dmarc_result dmarc_check(struct dns_resolver *r, const struct psl *p, const char *from_domain,
                              const struct dmarc_auth *auth, unsigned sample,
                              struct dmarc_verdict *out)
{
    struct dmarc_record rec;
    memset(out, 0, sizeof(*out));
    snprintf(out->from_domain, sizeof(out->from_domain), "%s", from_domain);
    if (psl_org_domain(p, from_domain, out->org_domain, sizeof(out->org_domain)) < 0) {
        out->result = DMARC_PERMERROR;
        snprintf(out->why, sizeof(out->why), "From domain is not a domain name");
        return out->result;
    }
    enum dmarc_result lr = dmarc_lookup(r, out->from_domain, &rec, out->why, sizeof(out->why));
    bool sub = false;
    if (lr == DMARC_NONE && strcasecmp(out->org_domain, out->from_domain) != 0) {
        out->why[0] = '\0';
        lr = dmarc_lookup(r, out->org_domain, &rec, out->why, sizeof(out->why));
        sub = true;
    }
    if (lr == DMARC_TEMPERROR || lr == DMARC_NONE) {
        out->result = lr;
        return out->result;
    }
    out->why[0] = '\0';
    dmarc_decide(p, &rec, sub, out->from_domain, auth, sample, out);
    return out->result;
}

const char *dmarc_result_name(enum dmarc_result r)
{
    static const char *const n[] = {"none", "pass", "fail", "temperror", "permerror"};
    return (unsigned)r < 5 ? n[r] : "permerror";
}

const char *dmarc_policy_name(enum dmarc_policy p)
{
    static const char *const n[] = {"none", "quarantine", "reject"};
    return (unsigned)p < 3 ? n[p] : "none";
}
