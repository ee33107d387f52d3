/*
 * unsub.c - tokens, patterns, List-Unsubscribe, suppression (see unsub.h).
 *
 * A pattern is parsed once into literal text and {{name}} parts; every name
 * must be a built-in (token, rcpt_verp, campaign, email) or a column of the
 * list, checked before anything is sent.  Expansion writes into a bounded
 * buffer and fails instead of truncating.  The suppression list is a sorted
 * array of lower-cased addresses searched with bsearch.  Nothing here
 * prints; errors come back in why.  The struct bulk owns its copies.
 */
#include "send/unsub.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#define PAT_MAX_PARTS 32

enum pat_mode { PAT_URL, PAT_ADDR };

struct pat_part {
    bool var;
    char *s;
};

struct pattern {
    const char *opt; /* "--return-path", for messages */
    char *src;
    struct pat_part v[PAT_MAX_PARTS];
    size_t n;
};

struct suppress {
    char **addrs;
    size_t n;
};

struct bulk {
    struct pattern rp, url, mailto;
    bool has_rp, has_url, has_mailto, uses_token;
    int token_col;
    unsigned char secret[32];
    size_t secret_len;
    struct suppress *sup;
};

static void fail(char *why, size_t whysize, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(char *why, size_t whysize, const char *fmt, ...)
{
    va_list ap;
    if (whysize == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(why, whysize, fmt, ap);
    va_end(ap);
}

static void lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

/* ---- the token ------------------------------------------------------------ */

void unsub_token(const unsigned char *secret, size_t slen, const char *campaign, const char *rcpt,
                 char out[UNSUB_TOKEN_LEN + 1])
{
    static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    size_t cl = strlen(campaign), rl = strlen(rcpt);
    unsigned char *in = malloc(cl + 1 + rl + 1);

    if (!in)
        abort();
    memcpy(in, campaign, cl);
    in[cl] = '\0';
    for (size_t i = 0; i < rl; i++) {
        char c = rcpt[i];
        in[cl + 1 + i] = (unsigned char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
    if (!HMAC(EVP_sha256(), secret, (int)slen, in, cl + 1 + rl, mac, &maclen) || maclen < 17)
        abort(); /* SHA-256 is always there */
    free(in);
    for (size_t i = 0; i < UNSUB_TOKEN_LEN; i++) {
        size_t bit = i * 5, byte = bit / 8, shift = bit % 8;
        unsigned v = ((unsigned)mac[byte] << 8 | mac[byte + 1]) >> (11 - shift);
        out[i] = b32[v & 31];
    }
    out[UNSUB_TOKEN_LEN] = '\0';
}

/* ---- patterns --------------------------------------------------------------- */

static bool builtin(const char *name)
{
    return strcmp(name, "token") == 0 || strcmp(name, "rcpt_verp") == 0 ||
           strcmp(name, "campaign") == 0 || strcmp(name, "email") == 0;
}

static void pat_free(struct pattern *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->v[i].s);
    free(p->src);
    p->n = 0;
}

static int pat_add(struct pattern *p, bool var, const char *s, size_t n, char *why, size_t whysize)
{
    if (p->n == PAT_MAX_PARTS) {
        fail(why, whysize, "%s %s: more than %d parts", p->opt, p->src, PAT_MAX_PARTS);
        return -1;
    }
    if (!(p->v[p->n].s = strndup(s, n))) {
        fail(why, whysize, "out of memory");
        return -1;
    }
    p->v[p->n++].var = var;
    return 0;
}

static int pat_parse(struct pattern *p, const char *opt, const char *src, const struct csv_table *t,
                     char *why, size_t whysize)
{
    p->opt = opt;
    p->n = 0;
    if (!(p->src = strdup(src))) {
        fail(why, whysize, "out of memory");
        return -1;
    }
    if (strlen(src) > UNSUB_URL_MAX) {
        fail(why, whysize, "%s: longer than %d octets", opt, UNSUB_URL_MAX);
        return -1;
    }
    for (const char *s = src; *s; s++)
        if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e) {
            fail(why, whysize, "%s %s: white space, a control or a non-ASCII octet", opt, src);
            return -1;
        }
    const char *s = src;
    while (*s) {
        const char *open = strstr(s, "{{");
        size_t tl = open ? (size_t)(open - s) : strlen(s);
        if (tl && pat_add(p, false, s, tl, why, whysize) < 0)
            return -1;
        if (!open)
            break;
        const char *close = strstr(open + 2, "}}");
        if (!close) {
            fail(why, whysize, "%s %s: '{{' without '}}'", opt, src);
            return -1;
        }
        const char *a = open + 2, *b = close;
        while (a < b && *a == ' ')
            a++;
        while (b > a && b[-1] == ' ')
            b--;
        if (a == b || memchr(a, '{', (size_t)(b - a)) || memchr(a, '}', (size_t)(b - a))) {
            fail(why, whysize, "%s %s: malformed placeholder", opt, src);
            return -1;
        }
        if (pat_add(p, true, a, (size_t)(b - a), why, whysize) < 0)
            return -1;
        const char *name = p->v[p->n - 1].s;
        if (!builtin(name) && csv_col(t, name) < 0) {
            fail(why, whysize,
                 "%s %s: no column '%s' in %s (built-in: token, rcpt_verp, campaign, email)", opt,
                 src, name, t->name ? t->name : "the list");
            return -1;
        }
        s = close + 2;
    }
    return 0;
}

static bool pat_uses(const struct pattern *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->v[i].var && strcmp(p->v[i].s, name) == 0)
            return true;
    return false;
}

static bool addr_safe(const char *v)
{
    if (!*v)
        return false;
    for (; *v; v++) {
        char c = *v;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '=' || c == '+' || c == '-'))
            return false;
    }
    return true;
}

struct row_ctx {
    const struct bulk *b;
    const char *campaign, *rcpt;
    const struct csv_table *t;
    const struct csv_row *row;
    char token[80], verp[ADDR_PATH_MAX + 1];
};

static const char *row_value(struct row_ctx *c, const char *name)
{
    int col = csv_col(c->t, name);
    if (col >= 0)
        return c->row->fields[col];
    if (strcmp(name, "token") == 0)
        return c->token;
    if (strcmp(name, "campaign") == 0)
        return c->campaign;
    if (strcmp(name, "email") == 0)
        return c->rcpt;
    if (strcmp(name, "rcpt_verp") == 0)
        return c->verp;
    return "";
}

static int pat_expand(const struct pattern *p, enum pat_mode mode, struct row_ctx *c, char *out,
                      size_t size, char *why, size_t whysize)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    const char *list = c->t->name ? c->t->name : "list";
    for (size_t i = 0; i < p->n; i++) {
        const char *v = p->v[i].var ? row_value(c, p->v[i].s) : p->v[i].s;
        if (p->v[i].var && mode == PAT_ADDR && !addr_safe(v)) {
            fail(why, whysize,
                 "%s:%lu: %s: the value of {{%s}} is empty or holds characters other than "
                 "letters, digits and . _ = + -",
                 list, c->row->line, p->opt, p->v[i].s);
            return -1;
        }
        for (; *v; v++) {
            unsigned char ch = (unsigned char)*v;
            bool plain = !p->v[i].var || mode == PAT_ADDR || (ch >= 'a' && ch <= 'z') ||
                         (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
                         ch == '.' || ch == '_' || ch == '~';
            if (n + 4 >= size) {
                fail(why, whysize, "%s:%lu: %s: the result is longer than %zu octets", list,
                     c->row->line, p->opt, size - 4);
                return -1;
            }
            if (plain) {
                out[n++] = (char)ch;
            } else {
                out[n++] = '%';
                out[n++] = hex[ch >> 4];
                out[n++] = hex[ch & 15];
            }
        }
    }
    out[n] = '\0';
    return 0;
}

/* ---- the suppression list ------------------------------------------------------ */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void suppress_free(struct suppress *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        free(s->addrs[i]);
    free(s->addrs);
    free(s);
}

struct suppress *suppress_parse(const char *name, const char *text, size_t len, char *why,
                                size_t whysize)
{
    struct suppress *s = calloc(1, sizeof(*s));
    size_t cap = 0;
    unsigned long line = 0;
    const char *p = text, *end = text + len;

    if (!s) {
        fail(why, whysize, "%s: out of memory", name);
        return NULL;
    }
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        line++;
        if ((size_t)(le - p) > SUPPRESS_LINE_MAX) {
            fail(why, whysize, "%s:%lu: line longer than %d octets", name, line, SUPPRESS_LINE_MAX);
            goto bad;
        }
        const char *a = p, *b = le;
        p = nl ? nl + 1 : end;
        while (a < b && (*a == ' ' || *a == '\t' || *a == '\r'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\r'))
            b--;
        if (a == b || *a == '#')
            continue;
        struct mailaddr ma;
        const char *hash = memchr(a, '#', (size_t)(b - a)); /* "addr  # why" */
        if (hash && hash > a && (hash[-1] == ' ' || hash[-1] == '\t')) {
            b = hash;
            while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
                b--;
        }
        if (addr_parse_mailbox(a, (size_t)(b - a), ADDR_ALLOW_UTF8, &ma) != ADDR_OK) {
            fail(why, whysize, "%s:%lu: '%.*s' is not an address", name, line,
                 (int)((b - a) > 80 ? 80 : (b - a)), a);
            goto bad;
        }
        if (s->n == SUPPRESS_MAX_LINES) {
            fail(why, whysize, "%s:%lu: more than %d addresses", name, line, SUPPRESS_MAX_LINES);
            goto bad;
        }
        if (s->n == cap) {
            cap = cap ? cap * 2 : 64;
            char **na = realloc(s->addrs, cap * sizeof(*na));
            if (!na) {
                fail(why, whysize, "%s: out of memory", name);
                goto bad;
            }
            s->addrs = na;
        }
        if (!(s->addrs[s->n] = strndup(a, (size_t)(b - a)))) {
            fail(why, whysize, "%s: out of memory", name);
            goto bad;
        }
        lower(s->addrs[s->n++]);
    }
    if (s->n)
        qsort(s->addrs, s->n, sizeof(*s->addrs), cmp_str);
    return s;
bad:
    suppress_free(s);
    return NULL;
}

struct suppress *suppress_load(const char *path, char *why, size_t whysize)
{
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    size_t len = 0, cap = 0;

    if (!f) {
        fail(why, whysize, "%s: %s", path, strerror(errno));
        return NULL;
    }
    for (;;) {
        if (len == cap) {
            if (cap >= (size_t)SUPPRESS_MAX_LINES * 64) {
                fail(why, whysize, "%s: too large", path);
                goto bad;
            }
            cap = cap ? cap * 2 : 65536;
            char *nt = realloc(text, cap);
            if (!nt) {
                fail(why, whysize, "%s: out of memory", path);
                goto bad;
            }
            text = nt;
        }
        size_t n = fread(text + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        fail(why, whysize, "%s: read error: %s", path, strerror(errno));
        goto bad;
    }
    fclose(f);
    struct suppress *s = suppress_parse(path, text ? text : "", len, why, whysize);
    free(text);
    return s;
bad:
    fclose(f);
    free(text);
    return NULL;
}

bool suppress_has(const struct suppress *s, const char *addr)
{
    char key[ADDR_PATH_MAX + 1];
    const char *k = key;
    if (!s || !s->n || strlen(addr) >= sizeof(key))
        return false;
    snprintf(key, sizeof(key), "%s", addr);
    lower(key);
    return bsearch(&k, s->addrs, s->n, sizeof(*s->addrs), cmp_str) != NULL;
}

size_t suppress_count(const struct suppress *s)
{
    return s ? s->n : 0;
}

/* ---- the run ------------------------------------------------------------------------ */

static int read_secret(const char *path, unsigned char *out, size_t *outlen, char *why,
                       size_t whysize)
{
    char line[1024];
    FILE *f = fopen(path, "r");
    if (!f) {
        fail(why, whysize, "--token-secret %s: %s", path, strerror(errno));
        return -1;
    }
    bool got = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    if (!got) {
        fail(why, whysize, "%s:1: empty secret file", path);
        return -1;
    }
    line[strcspn(line, "\r\n")] = '\0';
    size_t n = strlen(line);
    if (n < 16) {
        fail(why, whysize, "%s:1: the secret is shorter than 16 octets", path);
        explicit_bzero(line, sizeof(line));
        return -1;
    }
    /* longer secrets are hashed down (as HMAC itself would) */
    unsigned int ml = 0;
    if (!EVP_Digest(line, n, out, &ml, EVP_sha256(), NULL) || ml != 32) {
        fail(why, whysize, "%s: cannot hash the secret", path);
        explicit_bzero(line, sizeof(line));
        return -1;
    }
    *outlen = 32;
    explicit_bzero(line, sizeof(line));
    return 0;
}

void bulk_free(struct bulk *b)
{
    if (!b)
        return;
    pat_free(&b->rp);
    pat_free(&b->url);
    pat_free(&b->mailto);
    suppress_free(b->sup);
    explicit_bzero(b->secret, sizeof(b->secret));
    free(b);
}

struct bulk *bulk_new(const struct bulk_opts *o, const struct csv_table *t, struct ledger *l,
                      char *why, size_t whysize)
{
    struct bulk *b = calloc(1, sizeof(*b));
    if (!b) {
        fail(why, whysize, "out of memory");
        return NULL;
    }
    b->token_col = csv_col(t, "token");
    if (o->return_path) {
        b->has_rp = true;
        if (pat_parse(&b->rp, "--return-path", o->return_path, t, why, whysize) < 0)
            goto bad;
    }
    if (o->unsub_url) {
        b->has_url = true;
        if (pat_parse(&b->url, "--unsubscribe-url", o->unsub_url, t, why, whysize) < 0)
            goto bad;
        if (strncasecmp(o->unsub_url, "https://", 8) != 0 || !o->unsub_url[8]) {
            fail(why, whysize, "--unsubscribe-url %s: must be an https:// URL (RFC 8058 one-click)",
                 o->unsub_url);
            goto bad;
        }
    }
    if (o->unsub_mailto) {
        b->has_mailto = true;
        const char *m = o->unsub_mailto;
        if (strncasecmp(m, "mailto:", 7) == 0)
            m += 7;
        if (pat_parse(&b->mailto, "--unsubscribe-mailto", m, t, why, whysize) < 0)
            goto bad;
        if (!strchr(m, '@') || strpbrk(m, "?<>\",")) {
            fail(why, whysize,
                 "--unsubscribe-mailto %s: expected an address such as "
                 "unsubscribe+{{token}}@example.org",
                 o->unsub_mailto);
            goto bad;
        }
    }
    b->uses_token =
        pat_uses(&b->rp, "token") || pat_uses(&b->url, "token") || pat_uses(&b->mailto, "token");
    if (b->uses_token && b->token_col < 0) {
        if (o->token_secret) {
            if (read_secret(o->token_secret, b->secret, &b->secret_len, why, whysize) < 0)
                goto bad;
        } else {
            if (ledger_secret(l, b->secret) < 0) {
                fail(why, whysize, "ledger: cannot read or make the token secret");
                goto bad;
            }
            b->secret_len = 32;
        }
    }
    if (o->suppress && !(b->sup = suppress_load(o->suppress, why, whysize)))
        goto bad;
    return b;
bad:
    bulk_free(b);
    return NULL;
}

bool bulk_uses_token(const struct bulk *b)
{
    return b && b->uses_token;
}

bool bulk_has_unsub(const struct bulk *b)
{
    return b && (b->has_url || b->has_mailto);
}

static void row_init(struct row_ctx *c, const struct bulk *b, const char *campaign,
                     const struct csv_table *t, const struct csv_row *row, const char *rcpt)
{
    memset(c, 0, sizeof(*c));
    c->b = b;
    c->campaign = campaign;
    c->rcpt = rcpt;
    c->t = t;
    c->row = row;
    if (b->token_col >= 0)
        snprintf(c->token, sizeof(c->token), "%s", row->fields[b->token_col]);
    else if (b->uses_token)
        unsub_token(b->secret, b->secret_len, campaign, rcpt, c->token);
    const char *at = strrchr(rcpt, '@');
    if (at && (size_t)(at - rcpt) < sizeof(c->verp)) {
        snprintf(c->verp, sizeof(c->verp), "%.*s=%s", (int)(at - rcpt), rcpt, at + 1);
        lower(c->verp);
    }
}

int bulk_plan(struct bulk *b, struct ledger *l, const char *campaign, const struct csv_table *t,
              const struct csv_row *row, const char *key, enum bulk_skip *skip)
{
    enum ledger_bounce bk;
    *skip = BULK_SEND;
    if (suppress_has(b->sup, key)) {
        *skip = BULK_SUPPRESSED;
        return 0;
    }
    if (ledger_bounce_get(l, key, &bk) < 0)
        return -1;
    if (bk == LEDGER_BOUNCE_HARD) {
        *skip = BULK_HARD_BOUNCE;
        return 0;
    }
    if (b->uses_token) {
        struct row_ctx c;
        row_init(&c, b, campaign, t, row, key);
        if (c.token[0] && strlen(c.token) <= 64 && ledger_token_put(l, c.token, campaign, key) < 0)
            return -1;
    }
    return 0;
}

static bool url_ok(const char *u)
{
    if (strncasecmp(u, "https://", 8) != 0 || strlen(u) > UNSUB_URL_MAX)
        return false;
    for (; *u; u++)
        if ((unsigned char)*u <= 0x20 || (unsigned char)*u >= 0x7f || strchr("<>\"", *u))
            return false;
    return true;
}

int bulk_message(const struct bulk *b, const char *campaign, const struct csv_table *t,
                 const struct csv_row *row, const char *rcpt, struct bulk_msg *m, char *why,
                 size_t whysize)
{
    struct row_ctx c;
    struct mailaddr ma;
    char url[UNSUB_URL_MAX + 8], mail[ADDR_PATH_MAX + 1];
    const char *list = t->name ? t->name : "list";

    memset(m, 0, sizeof(*m));
    row_init(&c, b, campaign, t, row, rcpt);
    if (b->uses_token && c.token[0] && strlen(c.token) <= 64 &&
        strspn(c.token, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") ==
            strlen(c.token)) /* xtext without escapes */
        snprintf(m->envid, sizeof(m->envid), "%s", c.token);
    if (b->has_rp) {
        if (pat_expand(&b->rp, PAT_ADDR, &c, m->return_path, sizeof(m->return_path), why, whysize) <
            0)
            return -1;
        if (addr_parse_mailbox(m->return_path, strlen(m->return_path), 0, &ma) != ADDR_OK) {
            fail(why, whysize, "%s:%lu: --return-path: '%s' is not a valid address", list,
                 row->line, m->return_path);
            return -1;
        }
    }
    size_t n = 0;
    if (b->has_url) {
        if (pat_expand(&b->url, PAT_URL, &c, url, sizeof(url), why, whysize) < 0)
            return -1;
        if (!url_ok(url)) {
            fail(why, whysize,
                 "%s:%lu: --unsubscribe-url: '%.100s' is not an https URL of printable ASCII "
                 "(at most %d octets)",
                 list, row->line, url, UNSUB_URL_MAX);
            return -1;
        }
        n +=
            (size_t)snprintf(m->list_unsubscribe + n, sizeof(m->list_unsubscribe) - n, "<%s>", url);
        m->one_click = true;
    }
    if (b->has_mailto) {
        if (pat_expand(&b->mailto, PAT_ADDR, &c, mail, sizeof(mail), why, whysize) < 0)
            return -1;
        if (addr_parse_mailbox(mail, strlen(mail), 0, &ma) != ADDR_OK) {
            fail(why, whysize, "%s:%lu: --unsubscribe-mailto: '%s' is not a valid address", list,
                 row->line, mail);
            return -1;
        }
        snprintf(m->list_unsubscribe + n, sizeof(m->list_unsubscribe) - n,
                 "%s<mailto:%s?subject=unsubscribe>", n ? ", " : "", mail);
    }
    return 0;
}
