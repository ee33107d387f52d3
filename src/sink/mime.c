/*
 * mime.c - a bounded MIME parser for the sink (see mime.h).
 *
 * One walk over the entities, depth first, numbers every entity it meets
 * (containers too) in order; mime_part_data() repeats the same walk and
 * stops at the wanted number, so a part's index needs no stored offsets.
 * Every output string goes through sb_utf8() (invalid octets become U+FFFD)
 * or iconv to UTF-8, so it is valid UTF-8.  Charset names reach iconv only
 * when made of [A-Za-z0-9._:-] (at most 40 octets).  Nothing here does I/O;
 * memory grows only with the message (decoded octets <= its size).
 */
#include "sink/mime.h"

#include "core/base64.h"

#include <ctype.h>
#include <errno.h>
#include <iconv.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/address.h"
#include "core/utf8.h"
#include "sink/store.h"

#define MIME_MAX_PARAMS 64
#define MIME_MAX_ADDRS 1000
#define MIME_BOUNDARY_MAX 200

/* ---- a growing string; oom is sticky ---------------------------------- */

struct sb {
    char *p;
    size_t len, cap;
    bool oom;
};

static void sb_grow(struct sb *b, size_t more)
{
    if (b->oom || b->len + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return;
    }
    b->p = p;
    b->cap = cap;
}

static void sb_add(struct sb *b, const char *s, size_t n)
{
    sb_grow(b, n);
    if (b->oom)
        return;
    if (n)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_addc(struct sb *b, char c)
{
    sb_add(b, &c, 1);
}

/* Takes the string (never NULL unless out of memory). */
static char *sb_take(struct sb *b)
{
    sb_grow(b, 0);
    if (b->oom) {
        free(b->p);
        b->p = NULL;
        return NULL;
    }
    char *p = b->p;
    p[b->len] = '\0';
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

/* Appends s as UTF-8: valid sequences as they are, each other octet as U+FFFD.
 * ctl: control characters (and DEL) become spaces. */
static void sb_utf8(struct sb *b, const char *s, size_t n, bool ctl)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            char c = (char)u[i];
            if (ctl && (u[i] < 0x20 || u[i] == 0x7f))
                c = ' ';
            else if (u[i] == 0)
                c = ' ';
            sb_addc(b, c);
            i++;
            continue;
        }
        size_t l = utf8_seq_len(u + i, n - i);
        if (l) {
            sb_add(b, s + i, l);
            i += l;
        } else {
            sb_add(b, "\xef\xbf\xbd", 3);
            i++;
        }
    }
}

bool mime_utf8_valid(const char *s, size_t len)
{
    return utf8_valid(s, len);
}

/* ---- charsets ----------------------------------------------------------- */

static bool cs_is_utf8ish(const char *cs)
{
    return !cs[0] || strcasecmp(cs, "utf-8") == 0 || strcasecmp(cs, "utf8") == 0 ||
           strcasecmp(cs, "us-ascii") == 0 || strcasecmp(cs, "ascii") == 0;
}

static bool cs_safe(const char *cs)
{
    size_t n = strlen(cs);
    if (n == 0 || n > 40)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)cs[i]) && !strchr("._:-", cs[i]))
            return false;
    return true;
}

/* Appends s[0..n) in charset cs as UTF-8.  Returns false when cs is unknown
 * (then the octets are appended as UTF-8 if valid, else as Latin-1). */
static bool sb_conv(struct sb *b, const char *cs, const char *s, size_t n)
{
    if (cs_is_utf8ish(cs)) {
        sb_utf8(b, s, n, false);
        return true;
    }
    bool latin1 = strcasecmp(cs, "iso-8859-1") == 0 || strcasecmp(cs, "latin1") == 0 ||
                  strcasecmp(cs, "iso_8859-1") == 0 || strcasecmp(cs, "iso8859-1") == 0;
    iconv_t cd = !latin1 && cs_safe(cs) ? iconv_open("UTF-8", cs) : (iconv_t)-1;
    if (cd == (iconv_t)-1) {
        if (!latin1 && utf8_valid(s, n)) {
            sb_utf8(b, s, n, false);
        } else {
            for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c < 0x80) {
                    sb_addc(b, c ? (char)c : ' ');
                } else {
                    char u[2] = {(char)(0xc0 | (c >> 6)), (char)(0x80 | (c & 0x3f))};
                    sb_add(b, u, 2);
                }
            }
        }
        return latin1; /* Latin-1 is done here: no gconv module to load */
    }
    char *in = (char *)s;
    size_t inleft = n;
    size_t start = b->len;
    while (inleft && !b->oom) {
        char tmp[4096];
        char *op = tmp;
        size_t oleft = sizeof(tmp);
        size_t r = iconv(cd, &in, &inleft, &op, &oleft);
        int err = errno;
        sb_add(b, tmp, (size_t)(op - tmp));
        if (r == (size_t)-1) {
            if (err == E2BIG)
                continue;
            /* EILSEQ or EINVAL (cut short): one replacement, skip one octet */
            sb_add(b, "\xef\xbf\xbd", 3);
            in++;
            inleft--;
            iconv(cd, NULL, NULL, NULL, NULL);
        }
    }
    {
        char tmp[64];
        char *op = tmp;
        size_t oleft = sizeof(tmp);
        iconv(cd, NULL, NULL, &op, &oleft); /* flush shift state */
        sb_add(b, tmp, (size_t)(op - tmp));
    }
    iconv_close(cd);
    /* iconv's output is UTF-8, but be certain (NULs become spaces too) */
    if (!b->oom) {
        size_t i;
        for (i = start; i < b->len; i++)
            if (b->p[i] == '\0')
                b->p[i] = ' ';
        if (!utf8_valid(b->p + start, b->len - start)) {
            char *copy = malloc(b->len - start + 1);
            if (!copy) {
                b->oom = true;
                return true;
            }
            size_t cl = b->len - start;
            memcpy(copy, b->p + start, cl);
            b->len = start;
            sb_utf8(b, copy, cl, false);
            free(copy);
        }
    }
    return true;
}

/* ---- transfer encodings ------------------------------------------------- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Lenient base64: skips what is not in the alphabet, stops at '='. */
static void dec_base64(struct sb *b, const char *s, size_t n)
{
    unsigned acc = 0;
    int bits = 0;
    sb_grow(b, n / 4 * 3 + 3);
    for (size_t i = 0; i < n && !b->oom; i++) {
        if (s[i] == '=')
            break;
        int v = base64_digit((unsigned char)s[i]);
        if (v < 0)
            continue;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            sb_addc(b, (char)((acc >> bits) & 0xff));
        }
    }
}

/* Quoted-printable (RFC 2045 6.7): soft line breaks, =XX, trailing blanks
 * on a line dropped; a malformed '=' is kept as it is. */
static void dec_qp(struct sb *b, const char *s, size_t n)
{
    size_t i = 0;
    sb_grow(b, n);
    while (i < n && !b->oom) {
        /* one line, without its end */
        size_t e = i;
        while (e < n && s[e] != '\n')
            e++;
        size_t le = e;
        bool nl = e < n;
        if (le > i && s[le - 1] == '\r')
            le--;
        size_t t = le;
        while (t > i && (s[t - 1] == ' ' || s[t - 1] == '\t'))
            t--;
        bool soft = t > i && s[t - 1] == '=';
        if (soft)
            t--;
        for (size_t k = i; k < t; k++) {
            if (s[k] == '=' && k + 2 < t && hexval((unsigned char)s[k + 1]) >= 0 &&
                hexval((unsigned char)s[k + 2]) >= 0) {
                sb_addc(b, (char)(hexval((unsigned char)s[k + 1]) * 16 +
                                  hexval((unsigned char)s[k + 2])));
                k += 2;
            } else {
                sb_addc(b, s[k]);
            }
        }
        if (nl && !soft)
            sb_add(b, s + le, e + 1 - le); /* the line end as it was */
        i = e + 1;
    }
}

enum cte { CTE_NONE, CTE_QP, CTE_B64 };

static void dec_body(struct sb *b, enum cte cte, const char *s, size_t n)
{
    if (cte == CTE_B64)
        dec_base64(b, s, n);
    else if (cte == CTE_QP)
        dec_qp(b, s, n);
    else
        sb_add(b, s, n);
}

/* ---- RFC 2047 encoded words --------------------------------------------- */

/* Parses an encoded word at s[0..n); on success sets the pieces and returns
 * its length, else 0. */
static size_t ew_parse(const char *s, size_t n, char *cs, size_t cssize, char *enc,
                       const char **text, size_t *tlen)
{
    if (n < 8 || s[0] != '=' || s[1] != '?')
        return 0;
    size_t i = 2, c0 = 2;
    while (i < n && s[i] != '?' && (unsigned char)s[i] > ' ' && i - c0 < 80)
        i++;
    if (i >= n || s[i] != '?' || i == c0 || i - c0 >= cssize)
        return 0;
    size_t cl = i - c0;
    memcpy(cs, s + c0, cl);
    cs[cl] = '\0';
    char *star = strchr(cs, '*'); /* RFC 2231 language */
    if (star)
        *star = '\0';
    i++;
    if (i + 2 >= n || s[i + 1] != '?')
        return 0;
    *enc = (char)toupper((unsigned char)s[i]);
    if (*enc != 'B' && *enc != 'Q')
        return 0;
    i += 2;
    size_t t0 = i;
    while (i + 1 < n && !(s[i] == '?' && s[i + 1] == '=')) {
        if ((unsigned char)s[i] <= ' ' || s[i] == '?')
            return 0;
        i++;
    }
    if (i + 1 >= n)
        return 0;
    *text = s + t0;
    *tlen = i - t0;
    return i + 2;
}

static void ew_decode(struct sb *b, char enc, const char *t, size_t n)
{
    if (enc == 'B') {
        dec_base64(b, t, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (t[i] == '_') {
            sb_addc(b, ' ');
        } else if (t[i] == '=' && i + 2 < n && hexval((unsigned char)t[i + 1]) >= 0 &&
                   hexval((unsigned char)t[i + 2]) >= 0) {
            sb_addc(b,
                    (char)(hexval((unsigned char)t[i + 1]) * 16 + hexval((unsigned char)t[i + 2])));
            i += 2;
        } else {
            sb_addc(b, t[i]);
        }
    }
}

/* Decoded octets of consecutive encoded words in one charset, waiting to be
 * converted together (a character may be split across words). */
struct ew_pending {
    struct sb raw;
    char cs[48];
};

static void ew_flush(struct sb *out, struct ew_pending *pd)
{
    if (pd->raw.oom)
        out->oom = true;
    if (pd->raw.len)
        sb_conv(out, pd->cs, pd->raw.p, pd->raw.len);
    pd->raw.len = 0;
    pd->cs[0] = '\0';
}

static void sb_words(struct sb *out, const char *s, size_t n)
{
    struct ew_pending pd = {{0}, {0}};
    size_t i = 0;
    size_t lit = 0; /* start of literal text not yet appended */
    bool after_word = false;
    while (i < n) {
        char cs[48], enc;
        const char *t;
        size_t tl;
        size_t wl = (s[i] == '=' && i + 1 < n && s[i + 1] == '?')
                        ? ew_parse(s + i, n - i, cs, sizeof(cs), &enc, &t, &tl)
                        : 0;
        if (!wl) {
            i++;
            continue;
        }
        /* literal text between lit and i: dropped if only blanks after a word */
        bool blanks = true;
        for (size_t k = lit; k < i; k++)
            if (s[k] != ' ' && s[k] != '\t' && s[k] != '\r' && s[k] != '\n')
                blanks = false;
        if (!(after_word && blanks)) {
            ew_flush(out, &pd);
            sb_utf8(out, s + lit, i - lit, true);
        }
        if (pd.raw.len && strcasecmp(pd.cs, cs) != 0)
            ew_flush(out, &pd);
        snprintf(pd.cs, sizeof(pd.cs), "%s", cs);
        ew_decode(&pd.raw, enc, t, tl);
        i += wl;
        lit = i;
        after_word = true;
    }
    ew_flush(out, &pd);
    sb_utf8(out, s + lit, n - lit, true);
    free(pd.raw.p);
}

char *mime_decode_words(const char *s, size_t len)
{
    struct sb b = {0};
    sb_words(&b, s, len);
    /* control characters that came out of encoded words become spaces too */
    if (!b.oom)
        for (size_t i = 0; i < b.len; i++)
            if ((unsigned char)b.p[i] < 0x20 || b.p[i] == 0x7f)
                b.p[i] = ' ';
    return sb_take(&b);
}

/* ---- header sections ---------------------------------------------------- */

struct hdr {
    const char *name;
    size_t nlen;
    const char *val; /* raw, folded */
    size_t vlen;
};

/* Reads the header field at *p; false at the end of the header section,
 * leaving *p at the body's first octet. */
static bool hdr_next(const char **p, const char *end, struct hdr *h)
{
    const char *s = *p;
    if (s >= end)
        return false;
    if (*s == '\n' || (*s == '\r' && s + 1 < end && s[1] == '\n')) {
        *p = s + (*s == '\r' ? 2 : 1);
        return false;
    }
    const char *colon = s;
    while (colon < end && *colon != ':' && *colon != '\n' && (unsigned char)*colon > ' ')
        colon++;
    if (colon >= end || *colon != ':' || colon == s)
        return false; /* not a header: the body starts here */
    h->name = s;
    h->nlen = (size_t)(colon - s);
    const char *v = colon + 1, *e = v;
    for (;;) {
        while (e < end && *e != '\n')
            e++;
        if (e + 1 < end && (e[1] == ' ' || e[1] == '\t')) {
            e++;
            continue;
        }
        break;
    }
    h->val = v;
    h->vlen = (size_t)(e - v);
    *p = e < end ? e + 1 : end;
    return true;
}

/* Unfolded value: line ends removed (RFC 5322 2.2.3), ends trimmed; raw octets. */
static char *hdr_unfold(const struct hdr *h)
{
    struct sb b = {0};
    for (size_t i = 0; i < h->vlen; i++) {
        char c = h->val[i];
        if (c == '\n' || (c == '\r' && i + 1 < h->vlen && h->val[i + 1] == '\n'))
            continue;
        if (c == '\r' && i + 1 == h->vlen)
            continue;
        sb_addc(&b, c);
    }
    char *s = sb_take(&b);
    if (!s)
        return NULL;
    size_t a = 0, n = strlen(s);
    while (a < n && (s[a] == ' ' || s[a] == '\t'))
        a++;
    while (n > a && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        n--;
    memmove(s, s + a, n - a);
    s[n - a] = '\0';
    return s;
}

static bool hdr_is(const struct hdr *h, const char *name)
{
    return strlen(name) == h->nlen && strncasecmp(h->name, name, h->nlen) == 0;
}

/* ---- parameters (RFC 2045 5.1, RFC 2231) -------------------------------- */

struct param {
    char name[64]; /* lower case, with any "*N*" suffix */
    char *value;   /* raw octets, quotes removed */
};

struct params {
    struct param p[MIME_MAX_PARAMS];
    size_t n;
};

static void params_free(struct params *ps)
{
    for (size_t i = 0; i < ps->n; i++)
        free(ps->p[i].value);
    ps->n = 0;
}

static const char *skip_cfws(const char *s)
{
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
            s++;
        if (*s != '(')
            return s;
        int depth = 0;
        while (*s) {
            if (*s == '\\' && s[1])
                s++;
            else if (*s == '(')
                depth++;
            else if (*s == ')' && --depth == 0) {
                s++;
                break;
            }
            s++;
        }
    }
}

/* "type/subtype; a=b; c="d"" into lower-case main value and params. */
static int params_parse(const char *v, char **main, struct params *ps)
{
    struct sb b = {0};
    ps->n = 0;
    const char *s = skip_cfws(v);
    while (*s && *s != ';' && *s != ' ' && *s != '\t' && *s != '(')
        sb_addc(&b, (char)tolower((unsigned char)*s++));
    *main = sb_take(&b);
    if (!*main)
        return -1;
    for (;;) {
        s = skip_cfws(s);
        while (*s && *s != ';') /* junk before the next ';' */
            s++;
        if (!*s)
            return 0;
        s = skip_cfws(s + 1);
        char name[64];
        size_t nl = 0;
        while (*s && *s != '=' && *s != ';' && *s != ' ' && *s != '\t' && *s != '(') {
            if (nl + 1 < sizeof(name))
                name[nl++] = (char)tolower((unsigned char)*s);
            s++;
        }
        name[nl] = '\0';
        s = skip_cfws(s);
        if (*s != '=')
            continue;
        s = skip_cfws(s + 1);
        if (*s == '"') {
            s++;
            while (*s && *s != '"') {
                if (*s == '\\' && s[1])
                    s++;
                sb_addc(&b, *s++);
            }
            if (*s == '"')
                s++;
        } else {
            while (*s && *s != ';' && *s != ' ' && *s != '\t' && *s != '(')
                sb_addc(&b, *s++);
        }
        char *val = sb_take(&b);
        if (!val)
            return -1;
        if (nl == 0 || ps->n >= MIME_MAX_PARAMS) {
            free(val);
            continue;
        }
        memcpy(ps->p[ps->n].name, name, nl + 1);
        ps->p[ps->n].value = val;
        ps->n++;
    }
}

static const char *param_raw(const struct params *ps, const char *name)
{
    for (size_t i = 0; i < ps->n; i++)
        if (strcmp(ps->p[i].name, name) == 0)
            return ps->p[i].value;
    return NULL;
}

static void pct_decode(struct sb *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '%' && hexval((unsigned char)s[1]) >= 0 && hexval((unsigned char)s[2]) >= 0) {
            sb_addc(b, (char)(hexval((unsigned char)s[1]) * 16 + hexval((unsigned char)s[2])));
            s += 2;
        } else {
            sb_addc(b, *s);
        }
    }
}

/* A parameter's value as UTF-8: RFC 2231 (name*, name*0, name*0*, ...) first,
 * then the plain one with RFC 2047 words decoded; "" when absent; NULL: no memory. */
static char *param_get(const struct params *ps, const char *name)
{
    char key[80];
    char cs[48] = "";
    struct sb raw = {0};
    bool any = false;
    snprintf(key, sizeof(key), "%s*", name);
    const char *ext = param_raw(ps, key);
    if (ext) {
        const char *q1 = strchr(ext, '\''), *q2 = q1 ? strchr(q1 + 1, '\'') : NULL;
        if (q2 && (size_t)(q1 - ext) < sizeof(cs)) {
            memcpy(cs, ext, (size_t)(q1 - ext));
            cs[q1 - ext] = '\0';
            ext = q2 + 1;
        }
        pct_decode(&raw, ext);
        any = true;
    } else {
        for (int sec = 0; sec < MIME_MAX_PARAMS; sec++) {
            snprintf(key, sizeof(key), "%s*%d", name, sec);
            const char *v = param_raw(ps, key);
            if (v) {
                sb_add(&raw, v, strlen(v));
                any = true;
                continue;
            }
            snprintf(key, sizeof(key), "%s*%d*", name, sec);
            v = param_raw(ps, key);
            if (!v)
                break;
            if (sec == 0) {
                const char *q1 = strchr(v, '\''), *q2 = q1 ? strchr(q1 + 1, '\'') : NULL;
                if (q2 && (size_t)(q1 - v) < sizeof(cs)) {
                    memcpy(cs, v, (size_t)(q1 - v));
                    cs[q1 - v] = '\0';
                    v = q2 + 1;
                }
            }
            pct_decode(&raw, v);
            any = true;
        }
    }
    if (any) {
        struct sb out = {0};
        if (raw.oom)
            out.oom = true;
        sb_conv(&out, cs, raw.p ? raw.p : "", raw.len);
        free(raw.p);
        char *r = sb_take(&out);
        if (r)
            for (char *c = r; *c; c++)
                if ((unsigned char)*c < 0x20 || *c == 0x7f)
                    *c = ' ';
        return r;
    }
    free(raw.p);
    const char *plain = param_raw(ps, name);
    return plain ? mime_decode_words(plain, strlen(plain)) : strdup("");
}

/* ---- addresses ---------------------------------------------------------- */

struct addrs {
    struct mime_addr *a;
    size_t n, cap;
    bool oom;
};

static void addrs_add(struct addrs *as, const char *name, size_t nl, const char *addr, size_t al)
{
    if (as->oom || as->n >= MIME_MAX_ADDRS)
        return;
    if (as->n == as->cap) {
        size_t cap = as->cap ? as->cap * 2 : 4;
        struct mime_addr *a = realloc(as->a, cap * sizeof(*a));
        if (!a) {
            as->oom = true;
            return;
        }
        as->a = a;
        as->cap = cap;
    }
    char *n = mime_decode_words(name, nl);
    struct sb b = {0};
    sb_utf8(&b, addr, al, true);
    char *ad = sb_take(&b);
    if (!n || !ad) {
        free(n);
        free(ad);
        as->oom = true;
        return;
    }
    /* trim and collapse blanks in the name */
    size_t w = 0;
    for (size_t r = 0; n[r]; r++) {
        if (n[r] == ' ' && (w == 0 || n[w - 1] == ' '))
            continue;
        n[w++] = n[r];
    }
    while (w && n[w - 1] == ' ')
        w--;
    n[w] = '\0';
    as->a[as->n].name = n;
    as->a[as->n].address = ad;
    as->n++;
}

/* One mailbox s[0..n): "phrase <addr>", "addr (comment)" or "addr". */
static void addr_one(struct addrs *as, const char *s, size_t n)
{
    struct sb phrase = {0}, spec = {0}, comment = {0}, angle = {0};
    bool have_angle = false;
    size_t i = 0;
    while (i < n) {
        char c = s[i];
        if (c == '"') {
            i++;
            while (i < n && s[i] != '"') {
                if (s[i] == '\\' && i + 1 < n)
                    i++;
                sb_addc(&phrase, s[i]);
                i++;
            }
            i++;
            sb_addc(&spec, '"');
        } else if (c == '(') {
            int depth = 0;
            size_t start = comment.len;
            for (; i < n; i++) {
                if (s[i] == '\\' && i + 1 < n) {
                    sb_addc(&comment, s[++i]);
                    continue;
                }
                if (s[i] == '(' && depth++ == 0)
                    continue;
                if (s[i] == ')' && --depth == 0)
                    break;
                sb_addc(&comment, s[i]);
            }
            i++;
            if (comment.len > start)
                sb_addc(&comment, ' ');
            sb_addc(&phrase, ' ');
        } else if (c == '<' && !have_angle) {
            have_angle = true;
            i++;
            while (i < n && s[i] != '>') {
                if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
                    sb_addc(&angle, s[i]);
                i++;
            }
            i++;
        } else {
            if (!have_angle)
                sb_addc(&phrase, c == '\t' || c == '\r' || c == '\n' ? ' ' : c);
            if (c != ' ' && c != '\t' && c != '\r' && c != '\n')
                sb_addc(&spec, c);
            i++;
        }
    }
    if (have_angle) {
        const char *a = angle.p ? angle.p : "";
        const char *colon = a[0] == '@' ? strchr(a, ':') : NULL; /* route */
        if (colon)
            a = colon + 1;
        addrs_add(as, phrase.p ? phrase.p : "", phrase.len, a, strlen(a));
    } else if (spec.len) {
        /* no angle brackets: the whole is the address (quoted local parts kept
           as they were), a comment is the name */
        struct sb addr = {0};
        size_t k = 0;
        while (k < n) {
            if (s[k] == '(') {
                int depth = 0;
                for (; k < n; k++) {
                    if (s[k] == '\\' && k + 1 < n) {
                        k++;
                        continue;
                    }
                    if (s[k] == '(')
                        depth++;
                    if (s[k] == ')' && --depth == 0)
                        break;
                }
                k++;
                continue;
            }
            if (s[k] == '"') {
                sb_addc(&addr, s[k++]);
                while (k < n && s[k] != '"') {
                    if (s[k] == '\\' && k + 1 < n)
                        sb_addc(&addr, s[k++]);
                    sb_addc(&addr, s[k++]);
                }
                if (k < n)
                    sb_addc(&addr, s[k++]);
                continue;
            }
            if (s[k] != ' ' && s[k] != '\t' && s[k] != '\r' && s[k] != '\n')
                sb_addc(&addr, s[k]);
            k++;
        }
        if (addr.len)
            addrs_add(as, comment.p ? comment.p : "", comment.len, addr.p, addr.len);
        if (addr.oom)
            as->oom = true;
        free(addr.p);
    }
    if (phrase.oom || spec.oom || comment.oom || angle.oom)
        as->oom = true;
    free(phrase.p);
    free(spec.p);
    free(comment.p);
    free(angle.p);
}

/* An address list (RFC 5322 3.4): mailboxes separated by ',', groups
 * "name: a, b;" give their members. */
static void addr_list(struct addrs *as, const char *s, size_t n)
{
    size_t start = 0, i = 0;
    int paren = 0;
    bool quote = false, angle = false;
    for (; i <= n; i++) {
        char c = i < n ? s[i] : ',';
        if (i < n && c == '\\' && (quote || paren) && i + 1 < n) {
            i++;
            continue;
        }
        if (quote) {
            if (c == '"' && i < n)
                quote = false;
            if (i < n)
                continue;
        }
        if (paren) {
            if (c == '(' && i < n)
                paren++;
            else if (c == ')')
                paren--;
            if (i < n)
                continue;
            paren = 0;
        }
        if (c == '"')
            quote = true;
        else if (c == '(')
            paren = 1;
        else if (c == '<')
            angle = true;
        else if (c == '>')
            angle = false;
        else if (c == ':' && !angle)
            start = i + 1; /* a group's name: dropped */
        else if ((c == ',' && !angle) || c == ';' || i == n) {
            if (i > start)
                addr_one(as, s + start, i - start);
            start = i + 1;
            angle = false;
        }
    }
}

/* ---- the walk ------------------------------------------------------------ */

struct walk {
    const char *raw;
    size_t len;
    struct mime_msg *out; /* NULL when looking for one part */
    size_t nent;
    /* looking for one part */
    size_t target;
    bool found;
    struct sb data;
    /* building out */
    bool text_done, html_done, fallback;
    struct sb text, html;
    struct mime_part *parts;
    size_t nparts, pcap;
    bool oom;
};

struct entity {
    char *ctype; /* lower case */
    struct params ctp;
    char *disp; /* lower case */
    struct params dp;
    char *cid;
    enum cte cte;
    const char *body, *end;
};

static void entity_free(struct entity *e)
{
    free(e->ctype);
    free(e->disp);
    free(e->cid);
    params_free(&e->ctp);
    params_free(&e->dp);
}

static bool valid_ctype(const char *t)
{
    const char *slash = strchr(t, '/');
    if (!slash || slash == t || !slash[1] || strlen(t) > 127)
        return false;
    for (const char *p = t; *p; p++)
        if (*p != '/' && !isalnum((unsigned char)*p) && !strchr("!#$%&'*+-.^_`{|}~", *p))
            return false;
    return strchr(slash + 1, '/') == NULL;
}

static int entity_read(struct walk *w, const char *p, const char *end, const char *dflt,
                       struct entity *e, bool top)
{
    struct hdr h;
    size_t nh = 0;
    memset(e, 0, sizeof(*e));
    while (hdr_next(&p, end, &h)) {
        if (++nh > MIME_MAX_HEADERS)
            continue;
        bool ct = hdr_is(&h, "Content-Type"), cd = hdr_is(&h, "Content-Disposition"),
             te = hdr_is(&h, "Content-Transfer-Encoding"), id = hdr_is(&h, "Content-ID");
        bool keep = top && w->out;
        if (!(ct || cd || te || id || keep))
            continue;
        char *v = hdr_unfold(&h);
        if (!v)
            return -1;
        if (keep) {
            struct mime_msg *m = w->out;
            if (m->nheaders % 16 == 0) {
                char **nn = realloc(m->hnames, (m->nheaders + 16) * sizeof(char *));
                if (nn)
                    m->hnames = nn;
                char **nv = realloc(m->hvalues, (m->nheaders + 16) * sizeof(char *));
                if (nv)
                    m->hvalues = nv;
                if (!nn || !nv) {
                    free(v);
                    return -1;
                }
            }
            struct sb nb = {0};
            sb_utf8(&nb, h.name, h.nlen, true);
            char *name = sb_take(&nb);
            char *dv = mime_decode_words(v, strlen(v));
            if (!name || !dv) {
                free(name);
                free(dv);
                free(v);
                return -1;
            }
            m->hnames[m->nheaders] = name;
            m->hvalues[m->nheaders] = dv;
            m->nheaders++;
        }
        if (ct && !e->ctype) {
            if (params_parse(v, &e->ctype, &e->ctp) < 0) {
                free(v);
                return -1;
            }
        } else if (cd && !e->disp) {
            if (params_parse(v, &e->disp, &e->dp) < 0) {
                free(v);
                return -1;
            }
        } else if (te) {
            char *t = v;
            while (*t == ' ' || *t == '\t')
                t++;
            e->cte = strncasecmp(t, "base64", 6) == 0              ? CTE_B64
                     : strncasecmp(t, "quoted-printable", 16) == 0 ? CTE_QP
                                                                   : CTE_NONE;
        } else if (id && !e->cid) {
            char *t = v;
            while (*t == ' ' || *t == '<')
                t++;
            size_t n = strlen(t);
            while (n && (t[n - 1] == '>' || t[n - 1] == ' '))
                n--;
            struct sb b = {0};
            sb_utf8(&b, t, n, true);
            e->cid = sb_take(&b);
            if (!e->cid) {
                free(v);
                return -1;
            }
        }
        free(v);
    }
    if (!e->ctype || !valid_ctype(e->ctype)) {
        free(e->ctype);
        params_free(&e->ctp);
        e->ctype = strdup(dflt);
        if (!e->ctype)
            return -1;
    }
    e->body = p;
    e->end = end;
    return 0;
}

/* Lines "--boundary" (then "--" or blanks) split body[0..end): calls back
 * with each part's range; returns the number of parts. */
static bool delim_at(const char *s, const char *end, const char *bd, size_t bl, bool *close)
{
    if ((size_t)(end - s) < bl + 2 || s[0] != '-' || s[1] != '-' || memcmp(s + 2, bd, bl) != 0)
        return false;
    const char *t = s + 2 + bl;
    *close = end - t >= 2 && t[0] == '-' && t[1] == '-';
    if (*close)
        t += 2;
    while (t < end && (*t == ' ' || *t == '\t' || *t == '\r'))
        t++;
    return t == end || *t == '\n';
}

static void walk_entity(struct walk *w, const char *p, const char *end, int depth, const char *dflt,
                        bool top);

static void walk_multipart(struct walk *w, struct entity *e, int depth)
{
    const char *bd = param_raw(&e->ctp, "boundary");
    size_t bl = strlen(bd);
    const char *dflt = strcmp(e->ctype, "multipart/digest") == 0 ? "message/rfc822" : "text/plain";
    const char *s = e->body, *end = e->end;
    const char *part = NULL; /* start of the current part */
    while (s < end && !w->oom && !w->found) {
        const char *eol = memchr(s, '\n', (size_t)(end - s));
        const char *next = eol ? eol + 1 : end;
        bool close;
        if (delim_at(s, eol ? eol : end, bd, bl, &close)) {
            if (part) {
                /* the line end before the delimiter belongs to it */
                const char *pe = s;
                if (pe > part && pe[-1] == '\n')
                    pe--;
                if (pe > part && pe[-1] == '\r')
                    pe--;
                walk_entity(w, part, pe, depth + 1, dflt, false);
            }
            if (close)
                return; /* the epilogue is ignored */
            part = next;
        }
        s = next;
    }
    if (part && !w->oom && !w->found) /* no closing delimiter: the last part runs to the end */
        walk_entity(w, part, end, depth + 1, dflt, false);
}

static void add_part(struct walk *w, struct entity *e, size_t index)
{
    if (w->nparts == w->pcap) {
        size_t cap = w->pcap ? w->pcap * 2 : 8;
        struct mime_part *np = realloc(w->parts, cap * sizeof(*np));
        if (!np) {
            w->oom = true;
            return;
        }
        w->parts = np;
        w->pcap = cap;
    }
    struct mime_part *pt = &w->parts[w->nparts];
    memset(pt, 0, sizeof(*pt));
    pt->index = index;
    pt->content_type = strdup(e->ctype);
    pt->charset = param_get(&e->ctp, "charset");
    pt->filename = param_get(&e->dp, "filename");
    if (pt->filename && !pt->filename[0]) {
        free(pt->filename);
        pt->filename = param_get(&e->ctp, "name");
    }
    pt->content_id = strdup(e->cid ? e->cid : "");
    const char *d = e->disp ? e->disp : "";
    pt->disposition = strdup(strcmp(d, "inline") == 0       ? "inline"
                             : strcmp(d, "attachment") == 0 ? "attachment"
                             : d[0]                         ? "attachment"
                                                            : "");
    if (pt->charset)
        for (char *c = pt->charset; *c; c++)
            *c = (char)tolower((unsigned char)*c);
    struct sb b = {0};
    dec_body(&b, e->cte, e->body, (size_t)(e->end - e->body));
    pt->size = b.len;
    if (b.oom)
        w->oom = true;
    free(b.p);
    pt->inline_part = strcmp(d, "inline") == 0 || (!d[0] && e->cid && e->cid[0]);
    w->nparts++;
    if (!pt->content_type || !pt->charset || !pt->filename || !pt->content_id || !pt->disposition)
        w->oom = true;
}

static void take_body(struct walk *w, struct entity *e, struct sb *dst)
{
    struct sb b = {0};
    dec_body(&b, e->cte, e->body, (size_t)(e->end - e->body));
    char *cs = param_get(&e->ctp, "charset");
    if (!cs || b.oom) {
        w->oom = true;
    } else if (!sb_conv(dst, cs, b.p ? b.p : "", b.len)) {
        if (!utf8_valid(b.p ? b.p : "", b.len))
            w->fallback = true;
    }
    if (dst->oom)
        w->oom = true;
    free(cs);
    free(b.p);
}

static void walk_entity(struct walk *w, const char *p, const char *end, int depth, const char *dflt,
                        bool top)
{
    struct entity e;
    if (w->nent >= MIME_MAX_PARTS || w->oom || w->found)
        return;
    size_t index = w->nent++;
    if (entity_read(w, p, end, dflt, &e, top) < 0) {
        entity_free(&e);
        w->oom = true;
        return;
    }
    const char *bd = param_raw(&e.ctp, "boundary");
    bool multi = strncmp(e.ctype, "multipart/", 10) == 0 && bd && bd[0] &&
                 strlen(bd) <= MIME_BOUNDARY_MAX && depth < MIME_MAX_DEPTH;
    if (!multi && depth < MIME_MAX_DEPTH && strncmp(e.ctype, "multipart/", 10) == 0) {
        /* no usable boundary: read it as text (depth alone leaves it whole) */
        free(e.ctype);
        e.ctype = strdup("text/plain");
        if (!e.ctype) {
            entity_free(&e);
            w->oom = true;
            return;
        }
    }
    if (!w->out) {
        if (index == w->target && !multi) {
            dec_body(&w->data, e.cte, e.body, (size_t)(e.end - e.body));
            w->found = true;
            if (w->data.oom)
                w->oom = true;
        } else if (multi) {
            walk_multipart(w, &e, depth);
        }
        entity_free(&e);
        return;
    }
    if (multi) {
        walk_multipart(w, &e, depth);
        entity_free(&e);
        return;
    }
    bool attach = e.disp && strcmp(e.disp, "attachment") == 0;
    char *fn = NULL;
    if (!attach) {
        fn = param_get(&e.dp, "filename");
        if (fn && !fn[0]) {
            free(fn);
            fn = param_get(&e.ctp, "name");
        }
        if (!fn) {
            entity_free(&e);
            w->oom = true;
            return;
        }
    }
    bool body = !attach && !fn[0];
    free(fn);
    if (body && strcmp(e.ctype, "text/plain") == 0 && !w->text_done) {
        take_body(w, &e, &w->text);
        w->text_done = true;
    } else if (body && strcmp(e.ctype, "text/html") == 0 && !w->html_done) {
        take_body(w, &e, &w->html);
        w->html_done = true;
    } else {
        add_part(w, &e, index);
    }
    entity_free(&e);
}

/* ---- the snippet ---------------------------------------------------------- */

static void snippet_make(struct sb *b, const char *s, size_t n, bool html)
{
    size_t chars = 0;
    bool space = true; /* collapse blanks, none leading */
    size_t i = 0;
    while (i < n && chars < MIME_SNIPPET_CHARS && !b->oom) {
        unsigned char c = (unsigned char)s[i];
        if (html && c == '<') {
            /* skip a tag; skip <style> and <script> elements whole */
            bool style = strncasecmp(s + i, "<style", n - i < 6 ? n - i : 6) == 0 && n - i >= 6;
            bool script = strncasecmp(s + i, "<script", n - i < 7 ? n - i : 7) == 0 && n - i >= 7;
            const char *gt = memchr(s + i, '>', n - i);
            i = gt ? (size_t)(gt - s) + 1 : n;
            if (style || script) {
                const char *want = style ? "</style" : "</script";
                size_t wl = strlen(want);
                while (i + wl <= n && strncasecmp(s + i, want, wl) != 0)
                    i++;
                if (i + wl > n)
                    i = n;
            }
            if (!space) {
                sb_addc(b, ' ');
                chars++;
                space = true;
            }
            continue;
        }
        if (html && c == '&') {
            static const struct {
                const char *ent, *rep;
            } ents[] = {{"&amp;", "&"}, {"&lt;", "<"},   {"&gt;", ">"},   {"&quot;", "\""},
                        {"&#39;", "'"}, {"&apos;", "'"}, {"&nbsp;", " "}, {"&#160;", " "}};
            bool hit = false;
            for (size_t k = 0; k < sizeof(ents) / sizeof(ents[0]); k++) {
                size_t el = strlen(ents[k].ent);
                if (n - i >= el && strncasecmp(s + i, ents[k].ent, el) == 0) {
                    if (ents[k].rep[0] == ' ') {
                        if (!space) {
                            sb_addc(b, ' ');
                            chars++;
                        }
                        space = true;
                    } else {
                        sb_add(b, ents[k].rep, 1);
                        chars++;
                        space = false;
                    }
                    i += el;
                    hit = true;
                    break;
                }
            }
            if (hit)
                continue;
            /* &#NNN; and &#xHH; : a Unicode scalar value, not a control */
            if (i + 3 < n && s[i + 1] == '#') {
                size_t k = i + 2;
                bool hex = s[k] == 'x' || s[k] == 'X';
                unsigned long cp = 0;
                if (hex)
                    k++;
                size_t d0 = k;
                while (k < n && k - d0 < 8 &&
                       (hex ? hexval((unsigned char)s[k]) >= 0 : (s[k] >= '0' && s[k] <= '9'))) {
                    cp = cp * (hex ? 16 : 10) + (unsigned long)hexval((unsigned char)s[k]);
                    k++;
                }
                if (k > d0 && k < n && s[k] == ';' && cp >= 0x20 && cp <= 0x10ffff &&
                    !(cp >= 0xd800 && cp <= 0xdfff) && !(cp >= 0x7f && cp < 0xa0)) {
                    char u[4];
                    size_t ul;
                    if (cp < 0x80) {
                        u[0] = (char)cp;
                        ul = 1;
                    } else if (cp < 0x800) {
                        u[0] = (char)(0xc0 | (cp >> 6));
                        u[1] = (char)(0x80 | (cp & 0x3f));
                        ul = 2;
                    } else if (cp < 0x10000) {
                        u[0] = (char)(0xe0 | (cp >> 12));
                        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
                        u[2] = (char)(0x80 | (cp & 0x3f));
                        ul = 3;
                    } else {
                        u[0] = (char)(0xf0 | (cp >> 18));
                        u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
                        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
                        u[3] = (char)(0x80 | (cp & 0x3f));
                        ul = 4;
                    }
                    bool blank = cp == 0x20 || cp == 0xa0;
                    if (!blank || !space) {
                        sb_add(b, blank ? " " : u, blank ? 1 : ul);
                        chars++;
                    }
                    space = blank;
                    i = k + 1;
                    continue;
                }
            }
        }
        if (c <= ' ' || c == 0x7f) {
            if (!space) {
                sb_addc(b, ' ');
                chars++;
            }
            space = true;
            i++;
            continue;
        }
        size_t l = c < 0x80 ? 1 : utf8_seq_len((const unsigned char *)s + i, n - i);
        if (!l)
            l = 1; /* cannot happen: s is valid UTF-8 */
        sb_add(b, s + i, l);
        i += l;
        chars++;
        space = false;
    }
    while (b->len && b->p[b->len - 1] == ' ')
        b->p[--b->len] = '\0';
}

/* ---- the public functions ---------------------------------------------- */

void mime_free(struct mime_msg *m)
{
    if (!m)
        return;
    free(m->subject);
    free(m->date);
    free(m->message_id);
    struct mime_addr *lists[] = {m->from, m->to, m->cc, m->reply_to, m->bcc};
    size_t counts[] = {m->nfrom, m->nto, m->ncc, m->nreply_to, m->nbcc};
    for (int l = 0; l < 5; l++) {
        for (size_t i = 0; i < counts[l]; i++) {
            free(lists[l][i].name);
            free(lists[l][i].address);
        }
        free(lists[l]);
    }
    for (size_t i = 0; i < m->nheaders; i++) {
        free(m->hnames[i]);
        free(m->hvalues[i]);
    }
    free(m->hnames);
    free(m->hvalues);
    free(m->text);
    free(m->html);
    free(m->snippet);
    for (size_t i = 0; i < m->nparts; i++) {
        free(m->parts[i].content_type);
        free(m->parts[i].charset);
        free(m->parts[i].filename);
        free(m->parts[i].content_id);
        free(m->parts[i].disposition);
    }
    free(m->parts);
    free(m->charset_fallback);
    memset(m, 0, sizeof(*m));
}

static const char *hdr_value(const struct mime_msg *m, const char *name)
{
    for (size_t i = 0; i < m->nheaders; i++)
        if (strcasecmp(m->hnames[i], name) == 0)
            return m->hvalues[i];
    return NULL;
}

/* Addresses from the raw (undecoded) header: encoded words are decoded per
 * display name, so a decoded ',' or '<' cannot change the list. */
static int addrs_from_raw(const char *raw, size_t len, const char *name, struct mime_addr **out,
                          size_t *n)
{
    const char *p = raw, *end = raw + len;
    struct hdr h;
    struct addrs as = {0};
    size_t nh = 0;
    while (hdr_next(&p, end, &h) && ++nh <= MIME_MAX_HEADERS) {
        if (!hdr_is(&h, name))
            continue;
        char *v = hdr_unfold(&h);
        if (!v)
            return -1;
        addr_list(&as, v, strlen(v));
        free(v);
        break;
    }
    *out = as.a;
    *n = as.n;
    return as.oom ? -1 : 0;
}

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

int mime_parse(const char *raw, size_t len, struct mime_msg *out)
{
    struct walk w;
    memset(&w, 0, sizeof(w));
    memset(out, 0, sizeof(*out));
    w.raw = raw;
    w.len = len;
    w.out = out;
    walk_entity(&w, raw, raw + len, 0, "text/plain", true);
    out->parts = w.parts;
    out->nparts = w.nparts;
    if (w.oom || w.text.oom || w.html.oom)
        goto oom;
    out->text_len = w.text.len;
    out->text = w.text.p ? sb_take(&w.text) : strdup("");
    w.text.p = NULL;
    out->html_len = w.html.len;
    out->html = w.html.p ? sb_take(&w.html) : strdup("");
    w.html.p = NULL;
    out->charset_fallback = strdup(w.fallback ? "latin1" : "");
    out->subject = dup_or_empty(hdr_value(out, "Subject"));
    out->date = dup_or_empty(hdr_value(out, "Date"));
    const char *mid = hdr_value(out, "Message-ID");
    if (mid) {
        while (*mid == '<' || *mid == ' ')
            mid++;
        out->message_id = strdup(mid);
        if (out->message_id) {
            size_t n = strlen(out->message_id);
            while (n && (out->message_id[n - 1] == '>' || out->message_id[n - 1] == ' '))
                out->message_id[--n] = '\0';
        }
    } else {
        out->message_id = strdup("");
    }
    struct sb sn = {0};
    if (out->text && out->html) {
        if (out->text_len)
            snippet_make(&sn, out->text, out->text_len, false);
        else
            snippet_make(&sn, out->html, out->html_len, true);
    }
    out->snippet = sn.p ? sb_take(&sn) : (sn.oom ? NULL : strdup(""));
    if (!out->text || !out->html || !out->charset_fallback || !out->subject || !out->date ||
        !out->message_id || !out->snippet)
        goto oom;
    if (addrs_from_raw(raw, len, "From", &out->from, &out->nfrom) < 0 ||
        addrs_from_raw(raw, len, "To", &out->to, &out->nto) < 0 ||
        addrs_from_raw(raw, len, "Cc", &out->cc, &out->ncc) < 0 ||
        addrs_from_raw(raw, len, "Reply-To", &out->reply_to, &out->nreply_to) < 0 ||
        addrs_from_raw(raw, len, "Bcc", &out->bcc, &out->nbcc) < 0)
        goto oom;
    return 0;
oom:
    free(w.text.p);
    free(w.html.p);
    mime_free(out);
    return -1;
}

int mime_part_data(const char *raw, size_t len, size_t index, char **out, size_t *outlen)
{
    struct walk w;
    memset(&w, 0, sizeof(w));
    w.raw = raw;
    w.len = len;
    w.target = index;
    *out = NULL;
    *outlen = 0;
    walk_entity(&w, raw, raw + len, 0, "text/plain", true);
    if (w.oom) {
        free(w.data.p);
        return -1;
    }
    if (!w.found) {
        free(w.data.p);
        return -2;
    }
    *outlen = w.data.len;
    *out = w.data.p ? sb_take(&w.data) : strdup("");
    return *out ? 0 : -1;
}

const struct mime_msg *sink_msg_mime(struct sink_msg *m)
{
    if (m->mime)
        return m->mime;
    struct mime_msg *mm = calloc(1, sizeof(*mm));
    if (!mm)
        return NULL;
    if (mime_parse(m->raw, m->size, mm) < 0) {
        free(mm);
        return NULL;
    }
    m->mime = mm;
    return mm;
}
