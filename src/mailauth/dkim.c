/*
 * dkim.c - DKIM (RFC 6376, RFC 8463, RFC 8301) signing and verification on
 * OpenSSL 3's EVP API (see dkim.h for why not libopendkim).
 *
 * Layout: pure parts first (header split, canonicalisation, selection,
 * signature and key-record parsing), then keys, signing, verification.
 * The pure parts allocate only through struct buf and never read past the
 * lengths they are given.  Hashing streams the canonical body into SHA-256
 * (no copy of the body); the header data is small (bounded by the fields).
 *
 * RSA-SHA256 signs SHA-256(header data) with PKCS#1 v1.5; Ed25519-SHA256
 * (RFC 8463) signs the 32-octet SHA-256(header data) with PureEd25519.
 */
#include "mailauth/dkim.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "core/base64.h"
#include "core/taglist.h"

#define DKIM_KEYFILE_MAX 65536 /* octets of a PEM key file */
#define DKIM_FUTURE_SKEW 300   /* t= up to this many seconds ahead is accepted */

const char *const dkim_sign_headers[] = {"From",
                                         "To",
                                         "Cc",
                                         "Subject",
                                         "Date",
                                         "Message-ID",
                                         "Reply-To",
                                         "In-Reply-To",
                                         "References",
                                         "MIME-Version",
                                         "Content-Type",
                                         "Content-Transfer-Encoding",
                                         "List-Unsubscribe",
                                         "List-Unsubscribe-Post",
                                         "List-Id",
                                         NULL};

const char *dkim_status_name(enum dkim_status s)
{
    switch (s) {
    case DKIM_NONE:
        return "none";
    case DKIM_PASS:
        return "pass";
    case DKIM_FAIL:
        return "fail";
    case DKIM_NEUTRAL:
        return "neutral";
    case DKIM_POLICY:
        return "policy";
    case DKIM_TEMPERROR:
        return "temperror";
    case DKIM_PERMERROR:
        return "permerror";
    }
    return "none";
}

static void setwhy(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void setwhy(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    if (!why || whylen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

static bool wsp(char c)
{
    return c == ' ' || c == '\t';
}

static bool fws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* ---- header split ---------------------------------------------------------- */

/* End of the line starting at i: the index after its LF, or len. */
static size_t line_end(const char *msg, size_t len, size_t i)
{
    const char *nl = memchr(msg + i, '\n', len - i);
    return nl ? (size_t)(nl - msg) + 1 : len;
}

static bool line_empty(const char *msg, size_t i, size_t e)
{
    size_t n = e - i;
    return n == 0 || (n == 1 && msg[i] == '\n') || (n == 2 && msg[i] == '\r' && msg[i + 1] == '\n');
}

long dkim_split_header(const char *msg, size_t len, struct dkim_field *f, size_t max,
                       size_t *body_off, char *why, size_t whylen)
{
    size_t i = 0, n = 0;

    *body_off = len;
    while (i < len) {
        size_t e = line_end(msg, len, i), start = i, colon;
        if (line_empty(msg, i, e)) {
            *body_off = e;
            return (long)n;
        }
        if (wsp(msg[i])) {
            setwhy(why, whylen, "header line %zu starts with a blank but follows no field", n + 1);
            return -1;
        }
        for (colon = i; colon < e && msg[colon] != ':'; colon++) {
            unsigned char c = (unsigned char)msg[colon];
            if (c <= 0x20 && !wsp((char)c)) {
                colon = e;
                break;
            }
            if (c > 0x7e) {
                colon = e;
                break;
            }
        }
        if (colon >= e || colon == i) {
            setwhy(why, whylen, "header line %zu is not a field (no name and ':')", n + 1);
            return -1;
        }
        if (n == max) {
            setwhy(why, whylen, "more than %zu header fields", max);
            return -1;
        }
        i = e;
        while (i < len && wsp(msg[i])) /* continuation lines */
            i = line_end(msg, len, i);
        if (i - start > DKIM_MAX_FIELD_LEN) {
            setwhy(why, whylen, "header field %zu longer than %d octets", n + 1,
                   DKIM_MAX_FIELD_LEN);
            return -1;
        }
        f[n].p = msg + start;
        f[n].len = i - start;
        f[n].namelen = colon - start;
        while (f[n].namelen > 0 && wsp(msg[start + f[n].namelen - 1]))
            f[n].namelen--;
        if (f[n].namelen == 0) {
            setwhy(why, whylen, "header line %zu has an empty name", n + 1);
            return -1;
        }
        n++;
    }
    return (long)n; /* no body */
}

static bool name_eq(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && strncasecmp(a, b, alen) == 0;
}

void dkim_select_fields(const struct dkim_field *f, size_t nf, const char *const *names,
                        const size_t *namelens, size_t nnames, long *sel)
{
    unsigned char used[DKIM_MAX_FIELDS];

    if (nf > DKIM_MAX_FIELDS)
        nf = DKIM_MAX_FIELDS;
    memset(used, 0, nf);
    for (size_t k = 0; k < nnames; k++) {
        sel[k] = -1;
        for (size_t j = nf; j-- > 0;) {
            if (!used[j] && name_eq(f[j].p, f[j].namelen, names[k], namelens[k])) {
                used[j] = 1;
                sel[k] = (long)j;
                break;
            }
        }
    }
}

/* ---- canonicalisation -------------------------------------------------------- */

/* The offsets [bs, be) of the b= tag's value in a DKIM-Signature field
 * (raw), bs == be == 0 if there is none.  As dkimpy and OpenDKIM do: the
 * value runs from after '=' up to the next ';' or the end. */
static void find_b_value(const char *field, size_t len, size_t *bs, size_t *be)
{
    size_t i = 0;
    *bs = *be = 0;
    while (i < len && field[i] != ':')
        i++;
    if (i < len)
        i++;
    while (i < len) {
        size_t ns;
        while (i < len && fws(field[i]))
            i++;
        ns = i;
        while (i < len && field[i] != '=' && field[i] != ';' && !fws(field[i]))
            i++;
        if (i - ns == 1 && field[ns] == 'b') {
            while (i < len && fws(field[i]))
                i++;
            if (i < len && field[i] == '=') {
                size_t s = i + 1, e = s;
                while (e < len && field[e] != ';')
                    e++;
                *bs = s;
                *be = e;
                return;
            }
        }
        while (i < len && field[i] != ';')
            i++;
        if (i < len)
            i++;
    }
}

static void canon_relaxed_value(const char *p, size_t n, struct buf *out)
{
    bool pending = false, any = false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\r' || c == '\n')
            continue; /* unfolding */
        if (wsp(c)) {
            pending = true;
            continue;
        }
        if (pending && any)
            buf_append(out, " ", 1);
        pending = false;
        any = true;
        buf_append(out, &c, 1);
    }
}

void dkim_canon_header(enum dkim_canon c, const char *field, size_t len, bool drop_b,
                       struct buf *out)
{
    size_t bs = 0, be = 0, colon;

    if (drop_b) {
        while (len > 0 && (field[len - 1] == '\n' || field[len - 1] == '\r'))
            len--;
        find_b_value(field, len, &bs, &be);
    }
    if (c == DKIM_CANON_SIMPLE) {
        if (be > bs) {
            buf_append(out, field, bs);
            buf_append(out, field + be, len - be);
        } else {
            buf_append(out, field, len);
        }
        return;
    }
    for (colon = 0; colon < len && field[colon] != ':'; colon++)
        ;
    {
        size_t nl = colon;
        while (nl > 0 && wsp(field[nl - 1]))
            nl--;
        for (size_t i = 0; i < nl; i++) {
            char ch = (char)tolower((unsigned char)field[i]);
            buf_append(out, &ch, 1);
        }
    }
    buf_append(out, ":", 1);
    if (colon < len) {
        size_t vs = colon + 1;
        if (be > bs) {
            /* the value without the b= value: two pieces, blanks joined
             * across them as if they were one text */
            struct buf tmp = {0};
            buf_append(&tmp, field + vs, bs - vs);
            buf_append(&tmp, field + be, len - be);
            canon_relaxed_value(tmp.p, tmp.len, out);
            buf_free(&tmp);
        } else {
            size_t vlen = len - vs;
            if (!drop_b) {
                while (vlen > 0 && (field[vs + vlen - 1] == '\n' || field[vs + vlen - 1] == '\r'))
                    vlen--;
            }
            canon_relaxed_value(field + vs, vlen, out);
        }
    }
    if (!drop_b)
        buf_append(out, "\r\n", 2);
}

struct body_out {
    void (*emit)(void *ctx, const char *p, size_t n);
    void *ctx;
    size_t total;
    char tmp[4096];
    size_t tn;
};

static void bo_flush(struct body_out *o)
{
    if (o->tn) {
        o->emit(o->ctx, o->tmp, o->tn);
        o->total += o->tn;
        o->tn = 0;
    }
}

static void bo_put(struct body_out *o, const char *p, size_t n)
{
    if (n > sizeof(o->tmp) - o->tn) {
        bo_flush(o);
        if (n > sizeof(o->tmp)) {
            o->emit(o->ctx, p, n);
            o->total += n;
            return;
        }
    }
    memcpy(o->tmp + o->tn, p, n);
    o->tn += n;
}

size_t dkim_canon_body(enum dkim_canon c, const char *body, size_t len,
                       void (*emit)(void *ctx, const char *p, size_t n), void *ctx)
{
    struct body_out o = {.emit = emit, .ctx = ctx};
    size_t i = 0, empties = 0;

    while (i < len) {
        size_t e = line_end(body, len, i), ce = e;
        /* the line's content without its line end */
        if (ce > i && body[ce - 1] == '\n')
            ce--;
        if (ce > i && body[ce - 1] == '\r' && ce < e)
            ce--;
        if (c == DKIM_CANON_RELAXED) {
            size_t te = ce;
            while (te > i && wsp(body[te - 1]))
                te--;
            if (te == i) {
                empties++;
            } else {
                bool pending = false;
                for (; empties > 0; empties--)
                    bo_put(&o, "\r\n", 2);
                for (size_t k = i; k < te; k++) {
                    if (wsp(body[k])) {
                        pending = true;
                        continue;
                    }
                    if (pending)
                        bo_put(&o, " ", 1);
                    pending = false;
                    bo_put(&o, body + k, 1);
                }
                bo_put(&o, "\r\n", 2);
            }
        } else {
            if (ce == i) {
                empties++;
            } else {
                for (; empties > 0; empties--)
                    bo_put(&o, "\r\n", 2);
                bo_put(&o, body + i, ce - i);
                bo_put(&o, "\r\n", 2);
            }
        }
        i = e;
    }
    if (c == DKIM_CANON_SIMPLE && o.total + o.tn == 0)
        bo_put(&o, "\r\n", 2);
    bo_flush(&o);
    return o.total;
}

/* ---- tag values ---------------------------------------------------------------- */

/* Copy v[0..n) without blanks into out (size), for base64. -1 if too long. */
static long strip_blanks(const char *v, size_t n, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (fws(v[i]))
            continue;
        if (o + 1 >= size)
            return -1;
        out[o++] = v[i];
    }
    out[o] = '\0';
    return (long)o;
}

static int decode_b64(const struct tag *t, unsigned char *out, size_t size, size_t *outlen)
{
    char tmp[4096];
    long n = strip_blanks(t->value, t->valuelen, tmp, sizeof(tmp)), d;
    if (n <= 0)
        return -1;
    d = base64_decode(tmp, (size_t)n, out, size);
    if (d < 0)
        return -1;
    *outlen = (size_t)d;
    return 0;
}

static int parse_uint(const struct tag *t, size_t maxdigits, unsigned long long *out)
{
    unsigned long long v = 0;
    if (t->valuelen == 0 || t->valuelen > maxdigits)
        return -1;
    for (size_t i = 0; i < t->valuelen; i++) {
        if (t->value[i] < '0' || t->value[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(t->value[i] - '0');
    }
    *out = v;
    return 0;
}

/* Copy a printable value into out, lower-cased when lower; -1 if too long
 * or not printable ASCII without blanks. */
static int copy_token(const struct tag *t, char *out, size_t size, bool lower)
{
    if (t->valuelen == 0 || t->valuelen >= size)
        return -1;
    for (size_t i = 0; i < t->valuelen; i++) {
        unsigned char c = (unsigned char)t->value[i];
        if (c <= 0x20 || c > 0x7e)
            return -1;
        out[i] = lower ? (char)tolower(c) : (char)c;
    }
    out[t->valuelen] = '\0';
    return 0;
}

/* Printable copy for messages (cut, non-printables as '?'). */
static void printable(const char *p, size_t n, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < size; i++) {
        unsigned char c = (unsigned char)p[i];
        out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[o] = '\0';
}

int dkim_sig_parse(const char *value, size_t len, struct dkim_sig *out, char *why, size_t whylen)
{
    struct taglist tl;
    const struct tag *t;
    char tw[160];
    unsigned long long u;

    memset(out, 0, sizeof(*out));
    if (taglist_parse(value, len, &tl, tw, sizeof(tw)) < 0) {
        setwhy(why, whylen, "bad tag list: %s", tw);
        return -1;
    }
    /* what the verdict shows, even when the signature is bad */
    if ((t = taglist_get(&tl, "d")))
        printable(t->value, t->valuelen, out->domain, sizeof(out->domain));
    for (char *p = out->domain; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    if ((t = taglist_get(&tl, "s")))
        printable(t->value, t->valuelen, out->selector, sizeof(out->selector));
    if ((t = taglist_get(&tl, "a")))
        printable(t->value, t->valuelen, out->algo_name, sizeof(out->algo_name));
    if ((t = taglist_get(&tl, "b"))) {
        size_t o = 0;
        for (size_t i = 0; i < t->valuelen && o < 8; i++)
            if (!fws(t->value[i]))
                out->b8[o++] = (t->value[i] > 0x20 && t->value[i] < 0x7f) ? t->value[i] : '?';
        out->b8[o] = '\0';
    }

    if (!(t = taglist_get(&tl, "v"))) {
        setwhy(why, whylen, "no v= tag");
        return -1;
    }
    if (!tag_is(t, "1")) {
        char vv[12];
        printable(t->value, t->valuelen, vv, sizeof(vv));
        setwhy(why, whylen, "unsupported version v=%s", vv);
        return -1;
    }
    if (!(t = taglist_get(&tl, "a"))) {
        setwhy(why, whylen, "no a= tag");
        return -1;
    }
    if (tag_is(t, "rsa-sha256")) {
        out->algo = DKIM_ALGO_RSA_SHA256;
    } else if (tag_is(t, "ed25519-sha256")) {
        out->algo = DKIM_ALGO_ED25519_SHA256;
    } else {
        setwhy(why, whylen, "unsupported algorithm '%s'", out->algo_name);
        return -1;
    }
    out->hcanon = out->bcanon = DKIM_CANON_SIMPLE;
    if ((t = taglist_get(&tl, "c"))) {
        const char *slash = memchr(t->value, '/', t->valuelen);
        size_t hl = slash ? (size_t)(slash - t->value) : t->valuelen;
        struct tag h = {.value = t->value, .valuelen = hl};
        if (tag_is(&h, "relaxed"))
            out->hcanon = DKIM_CANON_RELAXED;
        else if (!tag_is(&h, "simple")) {
            setwhy(why, whylen, "bad c= tag");
            return -1;
        }
        if (slash) {
            struct tag b = {.value = slash + 1, .valuelen = t->valuelen - hl - 1};
            if (tag_is(&b, "relaxed"))
                out->bcanon = DKIM_CANON_RELAXED;
            else if (!tag_is(&b, "simple")) {
                setwhy(why, whylen, "bad c= tag");
                return -1;
            }
        }
    }
    if (!(t = taglist_get(&tl, "d")) || copy_token(t, out->domain, sizeof(out->domain), true) < 0 ||
        !dns_qname_valid(out->domain, strlen(out->domain))) {
        setwhy(why, whylen, "missing or bad d= tag");
        return -1;
    }
    if (!(t = taglist_get(&tl, "s")) ||
        copy_token(t, out->selector, sizeof(out->selector), false) < 0 ||
        !dns_qname_valid(out->selector, strlen(out->selector))) {
        setwhy(why, whylen, "missing or bad s= tag");
        return -1;
    }
    if (!(t = taglist_get(&tl, "h")) || t->valuelen == 0) {
        setwhy(why, whylen, "missing h= tag");
        return -1;
    } else {
        bool from = false;
        size_t i = 0;
        while (i <= t->valuelen) {
            size_t s = i, e;
            while (i < t->valuelen && t->value[i] != ':')
                i++;
            e = i;
            while (s < e && fws(t->value[s]))
                s++;
            while (e > s && fws(t->value[e - 1]))
                e--;
            if (e == s) {
                setwhy(why, whylen, "empty name in h=");
                return -1;
            }
            if (out->nh == DKIM_MAX_H) {
                setwhy(why, whylen, "more than %d names in h=", DKIM_MAX_H);
                return -1;
            }
            out->h[out->nh] = t->value + s;
            out->hlen[out->nh] = e - s;
            if (name_eq(t->value + s, e - s, "from", 4))
                from = true;
            out->nh++;
            i++;
        }
        if (!from) {
            setwhy(why, whylen, "h= does not sign From");
            return -1;
        }
    }
    if (!(t = taglist_get(&tl, "bh")) || decode_b64(t, out->bh, sizeof(out->bh), &out->bhlen) < 0 ||
        out->bhlen != 32) {
        setwhy(why, whylen, "missing or bad bh= tag");
        return -1;
    }
    if (!(t = taglist_get(&tl, "b")) || decode_b64(t, out->b, sizeof(out->b), &out->blen) < 0) {
        setwhy(why, whylen, "missing or bad b= tag");
        return -1;
    }
    if ((t = taglist_get(&tl, "i"))) {
        const char *at;
        size_t dl, dlen = strlen(out->domain);
        char dom[256];
        if (copy_token(t, out->auid, sizeof(out->auid), false) < 0 ||
            !(at = strrchr(out->auid, '@'))) {
            setwhy(why, whylen, "bad i= tag");
            return -1;
        }
        dl = strlen(at + 1);
        if (dl >= sizeof(dom)) {
            setwhy(why, whylen, "bad i= tag");
            return -1;
        }
        for (size_t k = 0; k <= dl; k++)
            dom[k] = (char)tolower((unsigned char)at[1 + k]);
        if (!(dl == dlen && strcmp(dom, out->domain) == 0) &&
            !(dl > dlen && dom[dl - dlen - 1] == '.' &&
              strcmp(dom + dl - dlen, out->domain) == 0)) {
            setwhy(why, whylen, "i= is not within d=");
            return -1;
        }
    }
    if ((t = taglist_get(&tl, "q"))) {
        bool ok = false;
        for (size_t i = 0; i < t->valuelen;) {
            size_t s = i;
            while (i < t->valuelen && t->value[i] != ':')
                i++;
            struct tag one = {.value = t->value + s, .valuelen = i - s};
            if (tag_is(&one, "dns/txt"))
                ok = true;
            i++;
        }
        if (!ok) {
            setwhy(why, whylen, "q= does not allow dns/txt");
            return -1;
        }
    }
    if ((t = taglist_get(&tl, "l"))) {
        if (parse_uint(t, 18, &u) < 0) {
            setwhy(why, whylen, "bad l= tag");
            return -1;
        }
        out->has_l = true;
        out->l = u;
    }
    if ((t = taglist_get(&tl, "t"))) {
        if (parse_uint(t, 12, &u) < 0) {
            setwhy(why, whylen, "bad t= tag");
            return -1;
        }
        out->has_t = true;
        out->t = (long long)u;
    }
    if ((t = taglist_get(&tl, "x"))) {
        if (parse_uint(t, 12, &u) < 0) {
            setwhy(why, whylen, "bad x= tag");
            return -1;
        }
        out->has_x = true;
        out->x = (long long)u;
        if (out->has_t && out->x < out->t) {
            setwhy(why, whylen, "x= is before t=");
            return -1;
        }
    }
    return 0;
}

/* Is item (case-insensitive) in the colon-separated list v? */
static bool list_has(const struct tag *t, const char *item)
{
    size_t n = strlen(item);
    for (size_t i = 0; i <= t->valuelen;) {
        size_t s = i, e;
        while (i < t->valuelen && t->value[i] != ':')
            i++;
        e = i;
        while (s < e && fws(t->value[s]))
            s++;
        while (e > s && fws(t->value[e - 1]))
            e--;
        if (name_eq(t->value + s, e - s, item, n))
            return true;
        i++;
    }
    return false;
}

int dkim_keyrec_parse(const char *txt, size_t len, struct dkim_keyrec *out, char *why,
                      size_t whylen)
{
    struct taglist tl;
    const struct tag *t;
    char tw[160];

    memset(out, 0, sizeof(*out));
    if (taglist_parse(txt, len, &tl, tw, sizeof(tw)) < 0) {
        setwhy(why, whylen, "bad key record: %s", tw);
        return -1;
    }
    if ((t = taglist_get(&tl, "v")) && (t != &tl.tags[0] || !tag_is(t, "DKIM1"))) {
        setwhy(why, whylen, "bad key record: v= is not DKIM1 or not first");
        return -1;
    }
    out->algo = DKIM_ALGO_RSA_SHA256;
    if ((t = taglist_get(&tl, "k"))) {
        if (tag_is(t, "ed25519"))
            out->algo = DKIM_ALGO_ED25519_SHA256;
        else if (!tag_is(t, "rsa")) {
            setwhy(why, whylen, "bad key record: unknown key type k=");
            return -1;
        }
    }
    out->sha256_ok = !(t = taglist_get(&tl, "h")) || list_has(t, "sha256");
    out->email_service = !(t = taglist_get(&tl, "s")) || list_has(t, "*") || list_has(t, "email");
    if ((t = taglist_get(&tl, "t"))) {
        out->testing = list_has(t, "y");
        out->strict = list_has(t, "s");
    }
    if (!(t = taglist_get(&tl, "p"))) {
        setwhy(why, whylen, "bad key record: no p= tag");
        return -1;
    }
    if (t->valuelen == 0) {
        out->plen = 0; /* revoked */
        return 0;
    }
    if (decode_b64(t, out->p, sizeof(out->p), &out->plen) < 0) {
        setwhy(why, whylen, "bad key record: p= is not base64 or too long");
        return -1;
    }
    if (out->plen == 0) {
        setwhy(why, whylen, "bad key record: empty key");
        return -1;
    }
    return 0;
}

/* ---- keys ------------------------------------------------------------------------ */

static int key_setup(struct dkim_key *k, EVP_PKEY *pkey, const char *label, const char *domain,
                     const char *selector, char *why, size_t whylen)
{
    int id = EVP_PKEY_get_base_id(pkey);
    size_t dl = strlen(domain), sl = strlen(selector);

    if (dl == 0 || dl >= sizeof(k->domain) || !dns_qname_valid(domain, dl)) {
        setwhy(why, whylen, "%s: bad DKIM domain", label);
        return -1;
    }
    if (sl == 0 || sl >= sizeof(k->selector) || !dns_qname_valid(selector, sl)) {
        setwhy(why, whylen, "%s: bad DKIM selector", label);
        return -1;
    }
    if (id == EVP_PKEY_RSA) {
        int bits = EVP_PKEY_get_bits(pkey);
        if (bits < DKIM_MIN_RSA_BITS || bits > DKIM_MAX_RSA_BITS) {
            setwhy(why, whylen, "%s: RSA key of %d bits (%d..%d allowed)", label, bits,
                   DKIM_MIN_RSA_BITS, DKIM_MAX_RSA_BITS);
            return -1;
        }
        k->algo = DKIM_ALGO_RSA_SHA256;
        k->bits = (unsigned)bits;
    } else if (id == EVP_PKEY_ED25519) {
        k->algo = DKIM_ALGO_ED25519_SHA256;
        k->bits = 256;
    } else {
        setwhy(why, whylen, "%s: not an RSA or Ed25519 key", label);
        return -1;
    }
    for (size_t i = 0; i <= dl; i++)
        k->domain[i] = (char)tolower((unsigned char)domain[i]);
    memcpy(k->selector, selector, sl + 1);
    k->pkey = pkey;
    return 0;
}

struct dkim_key *dkim_key_from_pem(const char *pem, size_t len, const char *label,
                                   const char *domain, const char *selector, char *why,
                                   size_t whylen)
{
    BIO *bio;
    EVP_PKEY *pkey;
    struct dkim_key *k;

    if (len > DKIM_KEYFILE_MAX || len > 0x7fffffff) {
        setwhy(why, whylen, "%s: key file too large", label);
        return NULL;
    }
    bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio) {
        setwhy(why, whylen, "%s: out of memory", label);
        return NULL;
    }
    pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"");
    BIO_free(bio);
    if (!pkey) {
        setwhy(why, whylen, "%s: not a PEM private key (unencrypted PKCS#8 or RSA)", label);
        return NULL;
    }
    k = calloc(1, sizeof(*k));
    if (!k) {
        EVP_PKEY_free(pkey);
        setwhy(why, whylen, "%s: out of memory", label);
        return NULL;
    }
    if (key_setup(k, pkey, label, domain, selector, why, whylen) < 0) {
        EVP_PKEY_free(pkey);
        free(k);
        return NULL;
    }
    return k;
}

struct dkim_key *dkim_key_load(const char *path, const char *domain, const char *selector,
                               char *why, size_t whylen)
{
    char *pem = malloc(DKIM_KEYFILE_MAX + 1);
    size_t n = 0;
    int fd;
    struct dkim_key *k;

    if (!pem) {
        setwhy(why, whylen, "%s: out of memory", path);
        return NULL;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        setwhy(why, whylen, "%s: %s", path, strerror(errno));
        free(pem);
        return NULL;
    }
    for (;;) {
        ssize_t r = read(fd, pem + n, DKIM_KEYFILE_MAX + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            setwhy(why, whylen, "%s: %s", path, strerror(errno));
            close(fd);
            OPENSSL_cleanse(pem, n);
            free(pem);
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > DKIM_KEYFILE_MAX)
            break;
    }
    close(fd);
    k = dkim_key_from_pem(pem, n, path, domain, selector, why, whylen);
    OPENSSL_cleanse(pem, n);
    free(pem);
    return k;
}

void dkim_key_free(struct dkim_key *k)
{
    if (!k)
        return;
    EVP_PKEY_free(k->pkey);
    free(k);
}

int dkim_keygen(enum dkim_algo algo, unsigned bits, struct buf *pem_out, char *why, size_t whylen)
{
    EVP_PKEY *pkey;
    BIO *bio;
    char *p;
    long n;

    if (algo == DKIM_ALGO_RSA_SHA256) {
        if (bits < DKIM_MIN_RSA_BITS || bits > DKIM_MAX_RSA_BITS) {
            setwhy(why, whylen, "RSA keys have %d..%d bits", DKIM_MIN_RSA_BITS, DKIM_MAX_RSA_BITS);
            return -1;
        }
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
    } else {
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    }
    if (!pkey) {
        setwhy(why, whylen, "key generation failed");
        return -1;
    }
    bio = BIO_new(BIO_s_mem());
    if (!bio || !PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL)) {
        BIO_free(bio);
        EVP_PKEY_free(pkey);
        setwhy(why, whylen, "cannot write the key as PEM");
        return -1;
    }
    n = BIO_get_mem_data(bio, &p);
    buf_append(pem_out, p, (size_t)n);
    OPENSSL_cleanse(p, (size_t)n);
    BIO_free(bio);
    EVP_PKEY_free(pkey);
    return 0;
}

int dkim_key_record(const struct dkim_key *k, struct buf *out, char *why, size_t whylen)
{
    unsigned char raw[2048], *der = NULL;
    size_t rawlen = sizeof(raw);
    char b64[4096];
    int dl;

    if (k->algo == DKIM_ALGO_ED25519_SHA256) {
        if (EVP_PKEY_get_raw_public_key(k->pkey, raw, &rawlen) != 1) {
            setwhy(why, whylen, "cannot read the Ed25519 public key");
            return -1;
        }
    } else {
        dl = i2d_PUBKEY(k->pkey, &der);
        if (dl <= 0 || (size_t)dl > sizeof(raw)) {
            OPENSSL_free(der);
            setwhy(why, whylen, "cannot encode the RSA public key");
            return -1;
        }
        memcpy(raw, der, (size_t)dl);
        rawlen = (size_t)dl;
        OPENSSL_free(der);
    }
    if (base64_encode(raw, rawlen, b64, sizeof(b64)) < 0) {
        setwhy(why, whylen, "public key too long");
        return -1;
    }
    const char *pre =
        k->algo == DKIM_ALGO_ED25519_SHA256 ? "v=DKIM1; k=ed25519; p=" : "v=DKIM1; k=rsa; p=";
    buf_append(out, pre, strlen(pre));
    buf_append(out, b64, strlen(b64) + 1);
    out->len--; /* NUL kept, not counted */
    return 0;
}

/* ---- hashing helpers --------------------------------------------------------------- */

struct hash_sink {
    EVP_MD_CTX *md;
    bool limited;
    unsigned long long left; /* l= octets still hashed */
    int err;
};

static void hash_emit(void *ctx, const char *p, size_t n)
{
    struct hash_sink *h = ctx;
    if (h->limited) {
        if (h->left == 0)
            return;
        if (n > h->left)
            n = (size_t)h->left;
        h->left -= n;
    }
    if (EVP_DigestUpdate(h->md, p, n) != 1)
        h->err = 1;
}

/* SHA-256 of the canonical body, the first limit octets when limited;
 * *total gets the canonical length. */
static int body_hash(enum dkim_canon c, const char *body, size_t len, bool limited,
                     unsigned long long limit, unsigned char out[32], size_t *total)
{
    struct hash_sink h = {.limited = limited, .left = limit};
    unsigned int olen = 0;
    int rc = -1;

    h.md = EVP_MD_CTX_new();
    if (!h.md)
        return -1;
    if (EVP_DigestInit_ex(h.md, EVP_sha256(), NULL) == 1) {
        *total = dkim_canon_body(c, body, len, hash_emit, &h);
        if (!h.err && EVP_DigestFinal_ex(h.md, out, &olen) == 1 && olen == 32)
            rc = 0;
    }
    EVP_MD_CTX_free(h.md);
    return rc;
}

static int sha256(const void *p, size_t n, unsigned char out[32])
{
    unsigned int olen = 0;
    return EVP_Digest(p, n, out, &olen, EVP_sha256(), NULL) == 1 && olen == 32 ? 0 : -1;
}

/* ---- signing ------------------------------------------------------------------------ */

/* Appends text to a field being folded: a fold (CRLF TAB) first when the
 * current line would pass 76 columns; breakable: the text may be cut
 * anywhere (base64). */
struct folder {
    struct buf *b;
    size_t col;
};

static void fold_put(struct folder *f, const char *s, size_t n, bool breakable)
{
    if (!breakable) {
        if (f->col + n > 76 && f->col > 1) {
            buf_append(f->b, "\r\n\t", 3);
            f->col = 1;
        }
        buf_append(f->b, s, n);
        f->col += n;
        return;
    }
    while (n > 0) {
        size_t room = f->col < 76 ? 76 - f->col : 0, k;
        if (room == 0) {
            buf_append(f->b, "\r\n\t", 3);
            f->col = 1;
            continue;
        }
        k = n < room ? n : room;
        buf_append(f->b, s, k);
        f->col += k;
        s += k;
        n -= k;
    }
}

static void fold_str(struct folder *f, const char *s)
{
    fold_put(f, s, strlen(s), false);
}

int dkim_sign(const struct dkim_key *k, const char *msg, size_t len, time_t now,
              struct buf *header_out, char *why, size_t whylen)
{
    struct dkim_field *f = NULL;
    size_t body_off = 0, total = 0, nnames = 0;
    const char *names[DKIM_MAX_H];
    size_t namelens[DKIM_MAX_H];
    long nf, sel[DKIM_MAX_H];
    unsigned char bh[32], hh[32], sig[1024];
    char b64[2048], tmp[64];
    struct buf field = {0}, data = {0};
    struct folder fo = {.b = &field, .col = 0};
    EVP_MD_CTX *md = NULL;
    size_t siglen = sizeof(sig);
    int rc = -1;

    f = malloc(sizeof(*f) * DKIM_MAX_FIELDS);
    if (!f) {
        setwhy(why, whylen, "out of memory");
        return -1;
    }
    nf = dkim_split_header(msg, len, f, DKIM_MAX_FIELDS, &body_off, why, whylen);
    if (nf < 0)
        goto out;
    /* the names to sign: each present field once more than it appears */
    for (size_t i = 0; dkim_sign_headers[i]; i++) {
        size_t hn = strlen(dkim_sign_headers[i]), count = 0;
        for (long j = 0; j < nf; j++)
            if (name_eq(f[j].p, f[j].namelen, dkim_sign_headers[i], hn))
                count++;
        if (i == 0 && count == 0) {
            setwhy(why, whylen, "the message has no From: field");
            goto out;
        }
        for (size_t c = 0; c < (count ? count + 1 : 0); c++) {
            if (nnames == DKIM_MAX_H) {
                setwhy(why, whylen, "too many header fields to sign");
                goto out;
            }
            names[nnames] = dkim_sign_headers[i];
            namelens[nnames++] = hn;
        }
    }
    if (body_hash(DKIM_CANON_RELAXED, msg + body_off, len - body_off, false, 0, bh, &total) < 0 ||
        base64_encode(bh, sizeof(bh), b64, sizeof(b64)) < 0) {
        setwhy(why, whylen, "cannot hash the body");
        goto out;
    }

    fold_str(&fo, "DKIM-Signature: v=1;");
    fold_str(&fo, k->algo == DKIM_ALGO_ED25519_SHA256 ? " a=ed25519-sha256;" : " a=rsa-sha256;");
    fold_str(&fo, " c=relaxed/relaxed;");
    {
        char ds[DKIM_SELECTOR_MAX + 300];
        snprintf(ds, sizeof(ds), " d=%s;", k->domain);
        fold_str(&fo, ds);
        snprintf(ds, sizeof(ds), " s=%s;", k->selector);
        fold_str(&fo, ds);
    }
    snprintf(tmp, sizeof(tmp), " t=%lld;", (long long)now);
    fold_str(&fo, tmp);
    fold_str(&fo, " h=");
    for (size_t i = 0; i < nnames; i++) {
        char nm[64];
        snprintf(nm, sizeof(nm), "%s%s", names[i], i + 1 < nnames ? ":" : ";");
        for (char *p = nm; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        fold_str(&fo, nm);
    }
    fold_str(&fo, " bh=");
    fold_put(&fo, b64, strlen(b64), true);
    fold_str(&fo, "; b=");

    /* header data: the selected fields, then this field without its b= value */
    dkim_select_fields(f, (size_t)nf, (const char *const *)names, namelens, nnames, sel);
    for (size_t i = 0; i < nnames; i++)
        if (sel[i] >= 0)
            dkim_canon_header(DKIM_CANON_RELAXED, f[sel[i]].p, f[sel[i]].len, false, &data);
    dkim_canon_header(DKIM_CANON_RELAXED, field.p, field.len, true, &data);

    md = EVP_MD_CTX_new();
    if (!md)
        goto ssl_fail;
    if (k->algo == DKIM_ALGO_RSA_SHA256) {
        if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k->pkey) != 1 ||
            EVP_DigestSign(md, NULL, &siglen, (const unsigned char *)data.p, data.len) != 1 ||
            siglen > sizeof(sig) ||
            EVP_DigestSign(md, sig, &siglen, (const unsigned char *)data.p, data.len) != 1)
            goto ssl_fail;
    } else {
        if (sha256(data.p, data.len, hh) < 0 ||
            EVP_DigestSignInit(md, NULL, NULL, NULL, k->pkey) != 1 ||
            EVP_DigestSign(md, sig, &siglen, hh, sizeof(hh)) != 1)
            goto ssl_fail;
    }
    if (base64_encode(sig, siglen, b64, sizeof(b64)) < 0)
        goto ssl_fail;
    fold_put(&fo, b64, strlen(b64), true);
    buf_append(&field, "\r\n", 2);
    buf_append(header_out, field.p, field.len);
    rc = 0;
    goto out;
ssl_fail:
    setwhy(why, whylen, "signing with %s failed (OpenSSL)",
           k->algo == DKIM_ALGO_ED25519_SHA256 ? "ed25519-sha256" : "rsa-sha256");
out:
    EVP_MD_CTX_free(md);
    buf_free(&field);
    buf_free(&data);
    free(f);
    return rc;
}

/* ---- verification ------------------------------------------------------------------- */

static enum dns_qstatus dns_lookup(void *ctx, const char *qname, struct dns_txt *out, char *why,
                                   size_t whylen)
{
    return dns_resolver_txt(ctx, qname, out, why, whylen);
}

size_t dkim_verify(struct dns_resolver *r, const char *msg, size_t len, time_t now,
                   struct dkim_verdict *out, size_t max)
{
    return dkim_verify_with(dns_lookup, r, msg, len, now, out, max);
}

static EVP_PKEY *public_key(const struct dkim_keyrec *kr, char *why, size_t whylen)
{
    EVP_PKEY *pk = NULL;
    if (kr->algo == DKIM_ALGO_ED25519_SHA256) {
        if (kr->plen != 32) {
            setwhy(why, whylen, "Ed25519 key of %zu octets", kr->plen);
            return NULL;
        }
        pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, kr->p, kr->plen);
    } else {
        const unsigned char *p = kr->p;
        pk = d2i_PUBKEY(NULL, &p, (long)kr->plen);
        if (pk && p != kr->p + kr->plen) {
            EVP_PKEY_free(pk);
            pk = NULL;
        }
        if (!pk) { /* a bare PKCS#1 RSAPublicKey, as some publish */
            p = kr->p;
            pk = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, (long)kr->plen);
        }
        if (pk && EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA) {
            EVP_PKEY_free(pk);
            pk = NULL;
        }
    }
    if (!pk)
        setwhy(why, whylen, "key record: p= is not a valid public key");
    return pk;
}

static void verify_one(dkim_lookup_fn lookup, void *ctx, const char *msg, size_t len,
                       const struct dkim_field *f, size_t nf, size_t sigidx, size_t body_off,
                       time_t now, struct dkim_verdict *v)
{
    struct dkim_sig *s = calloc(1, sizeof(*s));
    struct dkim_keyrec *kr = calloc(1, sizeof(*kr));
    const struct dkim_field *sf = &f[sigidx];
    const char *colon = memchr(sf->p, ':', sf->len);
    char qname[DNS_NAME_MAX + 80], kwhy[160];
    struct dns_txt txt;
    enum dns_qstatus qs;
    unsigned char bh[32], hh[32];
    size_t total = 0;
    long sel[DKIM_MAX_H];
    struct buf data = {0};
    EVP_PKEY *pk = NULL;
    EVP_MD_CTX *md = NULL;
    bool have_key = false;

    memset(&txt, 0, sizeof(txt));
    v->status = DKIM_PERMERROR;
    if (!s || !kr) {
        v->status = DKIM_TEMPERROR;
        setwhy(v->why, sizeof(v->why), "out of memory");
        goto out;
    }
    if (dkim_sig_parse(colon + 1, sf->len - (size_t)(colon + 1 - sf->p), s, v->why,
                       sizeof(v->why)) < 0) {
        snprintf(v->domain, sizeof(v->domain), "%s", s->domain);
        snprintf(v->selector, sizeof(v->selector), "%s", s->selector);
        snprintf(v->algo, sizeof(v->algo), "%s", s->algo_name);
        snprintf(v->b8, sizeof(v->b8), "%s", s->b8);
        goto out;
    }
    snprintf(v->domain, sizeof(v->domain), "%s", s->domain);
    snprintf(v->selector, sizeof(v->selector), "%s", s->selector);
    snprintf(v->algo, sizeof(v->algo), "%s", s->algo_name);
    snprintf(v->b8, sizeof(v->b8), "%s", s->b8);
    if (s->has_t && s->t > (long long)now + DKIM_FUTURE_SKEW) {
        setwhy(v->why, sizeof(v->why), "t= is in the future");
        goto out;
    }
    if (s->has_x && s->x < (long long)now) {
        v->status = DKIM_FAIL;
        setwhy(v->why, sizeof(v->why), "signature expired (x=)");
        goto out;
    }

    /* the key */
    snprintf(qname, sizeof(qname), "%s._domainkey.%s", s->selector, s->domain);
    kwhy[0] = '\0';
    qs = lookup(ctx, qname, &txt, kwhy, sizeof(kwhy));
    if (!kwhy[0] || memchr(kwhy, '\0', sizeof(kwhy)) == NULL)
        snprintf(kwhy, sizeof(kwhy), "%s", dns_qstatus_name(qs));
    if (qs == DNS_Q_TEMP) {
        v->status = DKIM_TEMPERROR;
        setwhy(v->why, sizeof(v->why), "key lookup: %s", kwhy);
        goto out;
    }
    if (qs != DNS_Q_OK) {
        setwhy(v->why, sizeof(v->why), "no key for signature (%s)", dns_qstatus_name(qs));
        goto out;
    }
    for (size_t i = 0; i < txt.n && !have_key; i++)
        if (dkim_keyrec_parse(txt.rec[i], txt.len[i], kr, kwhy, sizeof(kwhy)) == 0)
            have_key = true;
    if (!have_key) {
        setwhy(v->why, sizeof(v->why), "%s", kwhy);
        goto out;
    }
    if (kr->plen == 0) {
        setwhy(v->why, sizeof(v->why), "key revoked");
        goto out;
    }
    if (kr->algo != s->algo) {
        setwhy(v->why, sizeof(v->why), "key type does not match a=");
        goto out;
    }
    if (!kr->sha256_ok || !kr->email_service) {
        setwhy(v->why, sizeof(v->why), "key record does not allow sha256 or email (h=/s=)");
        goto out;
    }
    if (kr->strict && s->auid[0]) {
        const char *at = strrchr(s->auid, '@');
        if (!at || strcasecmp(at + 1, s->domain) != 0) {
            setwhy(v->why, sizeof(v->why), "key has t=s and i= is a subdomain of d=");
            goto out;
        }
    }
    pk = public_key(kr, v->why, sizeof(v->why));
    if (!pk)
        goto out;
    if (kr->algo == DKIM_ALGO_RSA_SHA256) {
        int bits = EVP_PKEY_get_bits(pk);
        if (bits < DKIM_MIN_RSA_BITS || bits > DKIM_MAX_RSA_BITS) {
            v->status = DKIM_FAIL;
            setwhy(v->why, sizeof(v->why), "RSA key of %d bits (%d..%d accepted)", bits,
                   DKIM_MIN_RSA_BITS, DKIM_MAX_RSA_BITS);
            goto out;
        }
    }

    /* the body */
    if (body_hash(s->bcanon, msg + body_off, len - body_off, s->has_l, s->l, bh, &total) < 0) {
        v->status = DKIM_TEMPERROR;
        setwhy(v->why, sizeof(v->why), "cannot hash the body");
        goto out;
    }
    if (s->has_l && s->l > total) {
        v->status = DKIM_FAIL;
        setwhy(v->why, sizeof(v->why), "body shorter than l=");
        goto out;
    }
    if (memcmp(bh, s->bh, 32) != 0) {
        v->status = DKIM_FAIL;
        setwhy(v->why, sizeof(v->why), "body hash mismatch");
        goto out;
    }

    /* the header */
    dkim_select_fields(f, nf, (const char *const *)s->h, s->hlen, s->nh, sel);
    for (size_t i = 0; i < s->nh; i++)
        if (sel[i] >= 0)
            dkim_canon_header(s->hcanon, f[sel[i]].p, f[sel[i]].len, false, &data);
    dkim_canon_header(s->hcanon, sf->p, sf->len, true, &data);
    md = EVP_MD_CTX_new();
    if (!md) {
        v->status = DKIM_TEMPERROR;
        setwhy(v->why, sizeof(v->why), "out of memory");
        goto out;
    }
    int ok;
    if (s->algo == DKIM_ALGO_RSA_SHA256) {
        ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pk) == 1 &&
             EVP_DigestVerify(md, s->b, s->blen, (const unsigned char *)data.p, data.len) == 1;
    } else {
        ok = sha256(data.p, data.len, hh) == 0 &&
             EVP_DigestVerifyInit(md, NULL, NULL, NULL, pk) == 1 &&
             EVP_DigestVerify(md, s->b, s->blen, hh, sizeof(hh)) == 1;
    }
    if (!ok) {
        v->status = DKIM_FAIL;
        setwhy(v->why, sizeof(v->why), "signature did not verify");
        goto out;
    }
    v->status = DKIM_PASS;
    if (s->has_l && total > s->l)
        setwhy(v->why, sizeof(v->why), "l=: only %llu of %zu body octets signed", s->l, total);
    else if (kr->testing)
        setwhy(v->why, sizeof(v->why), "key in testing mode (t=y)");
    else
        v->why[0] = '\0';
out:
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pk);
    buf_free(&data);
    dns_txt_free(&txt);
    free(s);
    free(kr);
}

size_t dkim_verify_with(dkim_lookup_fn lookup, void *ctx, const char *msg, size_t len, time_t now,
                        struct dkim_verdict *out, size_t max)
{
    struct dkim_field *f;
    size_t body_off = 0, n = 0;
    long nf;
    char why[160];

    if (max > DKIM_MAX_VERIFY)
        max = DKIM_MAX_VERIFY;
    if (max == 0)
        return 0;
    f = malloc(sizeof(*f) * DKIM_MAX_FIELDS);
    if (!f)
        return 0;
    nf = dkim_split_header(msg, len, f, DKIM_MAX_FIELDS, &body_off, why, sizeof(why));
    if (nf < 0) {
        /* a header we cannot read: one verdict if any signature can be seen */
        if (memmem(msg, len < DKIM_MAX_FIELD_LEN ? len : DKIM_MAX_FIELD_LEN, "DKIM-Signature",
                   14) ||
            memmem(msg, len < DKIM_MAX_FIELD_LEN ? len : DKIM_MAX_FIELD_LEN, "dkim-signature",
                   14)) {
            memset(&out[0], 0, sizeof(out[0]));
            out[0].status = DKIM_PERMERROR;
            setwhy(out[0].why, sizeof(out[0].why), "header: %s", why);
            n = 1;
        }
        free(f);
        return n;
    }
    for (long i = 0; i < nf && n < max; i++) {
        if (!name_eq(f[i].p, f[i].namelen, "DKIM-Signature", 14))
            continue;
        memset(&out[n], 0, sizeof(out[n]));
        verify_one(lookup, ctx, msg, len, f, (size_t)nf, (size_t)i, body_off, now, &out[n]);
        n++;
    }
    free(f);
    return n;
}
