/*
 * template.c - message templates of `tern send`: parse once, render per row.
 *
 * A template is split into header fields (each unfolded into a list of
 * parts: literal text and {{column}} placeholders) and a body (the same
 * parts, with every line break stored as CRLF).  The template may use LF,
 * CRLF or CR line endings; rendering only ever writes CRLF.
 *
 * Rendering builds the header section field by field: substituted values
 * that hold CR or LF are refused (header injection), every value goes
 * through mime_encode_header() (RFC 2047 for what is not ASCII, folding at
 * 76 columns), the missing Date / Message-ID / From / To / MIME headers are
 * added, and the result is checked so that no header line exceeds 998
 * octets.  The body gets its values with line breaks turned into CRLF and
 * is quoted-printable encoded when a line exceeds 998 octets.
 *
 * Ownership: the template owns its copies of names and text; render output
 * is malloc'ed for the caller.  Nothing here prints, exits or touches files
 * other than the template itself (template_load).
 */
#include "send/template.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "core/base64.h"
#include "core/buf.h"

#define TEMPLATE_MAX (1024 * 1024) /* largest template file */
#define MIME_LINE 76               /* fold header lines here (RFC 2047 §2) */
#define MIME_LINE_HARD 998         /* RFC 5322 §2.1.1 */
#define MIME_EW_BYTES 45           /* raw octets in one encoded-word: 60 base64 chars */

enum tpart_kind { TPART_TEXT, TPART_VAR };

struct tpart {
    enum tpart_kind kind;
    char *s; /* the text, or the column name */
    size_t len;
    unsigned long line;
};

struct tparts {
    struct tpart *v;
    size_t n, cap;
};

struct tfield {
    char *name;
    struct tparts value;
    unsigned long line;
};

struct template
{
    char *name;
    struct tfield *fields;
    size_t nfields, capfields;
    struct tparts body;
};

static void template_fail(char *why, size_t whysize, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void template_fail(char *why, size_t whysize, const char *fmt, ...)
{
    va_list ap;

    if (whysize == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(why, whysize, fmt, ap);
    va_end(ap);
}

static int template_is_ws(char c)
{
    return c == ' ' || c == '\t';
}

/* ---- parsing ------------------------------------------------------------ */

static int template_add_part(struct tparts *ps, enum tpart_kind kind, const char *s, size_t len,
                             unsigned long line)
{
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 16;
        struct tpart *nv = realloc(ps->v, cap * sizeof(*nv));
        if (nv == NULL)
            return -1;
        ps->v = nv;
        ps->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return -1;
    memcpy(copy, s, len);
    copy[len] = '\0';
    ps->v[ps->n++] = (struct tpart){kind, copy, len, line};
    return 0;
}

/* Split one line (no line break) into text and placeholders. */
static int template_parse_line(const char *name, unsigned long line, const char *s, size_t len,
                               struct tparts *ps, char *why, size_t whysize)
{
    size_t i = 0;

    while (i < len) {
        const char *open = NULL;
        for (size_t k = i; k + 1 < len; k++) {
            if (s[k] == '{' && s[k + 1] == '{') {
                open = s + k;
                break;
            }
        }
        size_t textlen = open ? (size_t)(open - (s + i)) : len - i;
        if (textlen > 0 && template_add_part(ps, TPART_TEXT, s + i, textlen, line) != 0)
            goto oom;
        if (open == NULL)
            break;
        size_t a = (size_t)(open - s) + 2, b = a;
        while (b + 1 < len && !(s[b] == '}' && s[b + 1] == '}'))
            b++;
        if (b + 1 >= len) {
            template_fail(why, whysize, "%s:%lu: '{{' is not closed by '}}' on the same line", name,
                          line);
            return -1;
        }
        size_t na = a, nb = b;
        while (na < nb && template_is_ws(s[na]))
            na++;
        while (nb > na && template_is_ws(s[nb - 1]))
            nb--;
        if (na == nb) {
            template_fail(why, whysize, "%s:%lu: empty placeholder '{{}}'", name, line);
            return -1;
        }
        for (size_t k = na; k < nb; k++) {
            if (s[k] == '{' || s[k] == '}' || (unsigned char)s[k] < 0x20) {
                template_fail(why, whysize, "%s:%lu: malformed placeholder '%.*s'", name, line,
                              (int)(b + 2 - (a - 2)), s + a - 2);
                return -1;
            }
        }
        if (template_add_part(ps, TPART_VAR, s + na, nb - na, line) != 0)
            goto oom;
        i = b + 2;
    }
    return 0;
oom:
    template_fail(why, whysize, "%s: out of memory", name);
    return -1;
}

static int template_header_line(struct template *tp, unsigned long line, const char *s, size_t len,
                                char *why, size_t whysize)
{
    if (template_is_ws(s[0])) {
        if (tp->nfields == 0) {
            template_fail(why, whysize,
                          "%s:%lu: a continuation line (starting with white space) before "
                          "any header field",
                          tp->name, line);
            return -1;
        }
        /* unfolding: the line break goes, the white space stays */
        return template_parse_line(tp->name, line, s, len, &tp->fields[tp->nfields - 1].value, why,
                                   whysize);
    }
    const char *colon = memchr(s, ':', len);
    size_t nlen = colon ? (size_t)(colon - s) : 0;
    int ok = nlen > 0;
    for (size_t k = 0; ok && k < nlen; k++)
        ok = s[k] > 32 && s[k] < 127 && s[k] != '{' && s[k] != '}';
    if (!ok) {
        template_fail(why, whysize,
                      "%s:%lu: not a header field 'Name: value' (a template is header fields, "
                      "an empty line, then the body)",
                      tp->name, line);
        return -1;
    }
    if (tp->nfields == tp->capfields) {
        size_t cap = tp->capfields ? tp->capfields * 2 : 16;
        struct tfield *nf = realloc(tp->fields, cap * sizeof(*nf));
        if (nf == NULL)
            goto oom;
        tp->fields = nf;
        tp->capfields = cap;
    }
    struct tfield *f = &tp->fields[tp->nfields];
    memset(f, 0, sizeof(*f));
    f->line = line;
    f->name = strndup(s, nlen);
    if (f->name == NULL)
        goto oom;
    tp->nfields++;
    return template_parse_line(tp->name, line, colon + 1, len - nlen - 1, &f->value, why, whysize);
oom:
    template_fail(why, whysize, "%s: out of memory", tp->name);
    return -1;
}

struct template *template_parse(const char *name, const char *text, size_t len, char *why,
                                size_t whysize)
{
    struct template *tp = calloc(1, sizeof(*tp));
    int in_body = 0;
    unsigned long line = 1;
    size_t i = 0;

    if (whysize > 0)
        why[0] = '\0';
    if (tp == NULL || (tp->name = strdup(name)) == NULL) {
        free(tp);
        template_fail(why, whysize, "%s: out of memory", name);
        return NULL;
    }
    if (len > TEMPLATE_MAX) {
        template_fail(why, whysize, "%s: larger than %d octets", name, TEMPLATE_MAX);
        goto fail;
    }
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        i = 3;
    while (i < len) {
        size_t j = i;
        while (j < len && text[j] != '\n' && text[j] != '\r' && text[j] != '\0')
            j++;
        if (j < len && text[j] == '\0') {
            template_fail(why, whysize, "%s:%lu: NUL octet", name, line);
            goto fail;
        }
        int eol = j < len;
        size_t next = j;
        if (eol)
            next += (text[j] == '\r' && j + 1 < len && text[j + 1] == '\n') ? 2 : 1;
        if (!in_body) {
            if (j == i)
                in_body = 1;
            else if (template_header_line(tp, line, text + i, j - i, why, whysize) != 0)
                goto fail;
        } else {
            if (template_parse_line(name, line, text + i, j - i, &tp->body, why, whysize) != 0)
                goto fail;
            if (eol && template_add_part(&tp->body, TPART_TEXT, "\r\n", 2, line) != 0) {
                template_fail(why, whysize, "%s: out of memory", name);
                goto fail;
            }
        }
        line++;
        i = next;
    }
    if (tp->nfields == 0) {
        template_fail(why, whysize, "%s:1: no header fields (at least a Subject is expected)",
                      name);
        goto fail;
    }
    return tp;
fail:
    template_free(tp);
    return NULL;
}

struct template *template_load(const char *path, char *why, size_t whysize)
{
    FILE *f = fopen(path, "rb");
    char *text;
    size_t n;

    if (f == NULL) {
        template_fail(why, whysize, "%s: %s", path, strerror(errno));
        return NULL;
    }
    text = malloc(TEMPLATE_MAX + 1);
    if (text == NULL) {
        fclose(f);
        template_fail(why, whysize, "%s: out of memory", path);
        return NULL;
    }
    n = fread(text, 1, TEMPLATE_MAX + 1, f);
    if (ferror(f)) {
        template_fail(why, whysize, "%s: read error: %s", path, strerror(errno));
        fclose(f);
        free(text);
        return NULL;
    }
    if (fclose(f) != 0) {
        template_fail(why, whysize, "%s: close: %s", path, strerror(errno));
        free(text);
        return NULL;
    }
    struct template *tp = template_parse(path, text, n, why, whysize);
    free(text);
    return tp;
}

static void template_free_parts(struct tparts *ps)
{
    for (size_t i = 0; i < ps->n; i++)
        free(ps->v[i].s);
    free(ps->v);
}

void template_free(struct template *tp)
{
    if (tp == NULL)
        return;
    for (size_t i = 0; i < tp->nfields; i++) {
        free(tp->fields[i].name);
        template_free_parts(&tp->fields[i].value);
    }
    free(tp->fields);
    template_free_parts(&tp->body);
    free(tp->name);
    free(tp);
}

static const char *template_list_name(const struct csv_table *t)
{
    return t->name ? t->name : "list";
}

static int template_check_parts(const struct template *tp, const struct tparts *ps,
                                const struct csv_table *t, char *why, size_t whysize)
{
    for (size_t i = 0; i < ps->n; i++) {
        if (ps->v[i].kind == TPART_VAR && csv_col(t, ps->v[i].s) < 0) {
            template_fail(why, whysize, "%s:%lu: no column '%s' in %s", tp->name, ps->v[i].line,
                          ps->v[i].s, template_list_name(t));
            return -1;
        }
    }
    return 0;
}

int template_check(const struct template *tp, const struct csv_table *t, char *why, size_t whysize)
{
    for (size_t i = 0; i < tp->nfields; i++)
        if (template_check_parts(tp, &tp->fields[i].value, t, why, whysize) != 0)
            return -1;
    return template_check_parts(tp, &tp->body, t, why, whysize);
}

/* ---- RFC 2047 ------------------------------------------------------------ */

/* Length of the UTF-8 character at p (1 for anything malformed). */
static size_t mime_utf8_len(const unsigned char *p, size_t n)
{
    size_t want = 1;

    if (p[0] >= 0xC2 && p[0] <= 0xDF)
        want = 2;
    else if (p[0] >= 0xE0 && p[0] <= 0xEF)
        want = 3;
    else if (p[0] >= 0xF0 && p[0] <= 0xF4)
        want = 4;
    if (want > n)
        return 1;
    for (size_t k = 1; k < want; k++)
        if ((p[k] & 0xC0) != 0x80)
            return 1;
    return want;
}

static int mime_word_needs_encoding(const char *w, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)w[i];
        if (c < 0x20 || c >= 0x7F)
            return 1;
        if (c == '=' && i + 1 < n && w[i + 1] == '?')
            return 1;
    }
    return 0;
}

static int mime_is_sep(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* White space out: CR and LF become spaces so nothing bare escapes. */
static void mime_put_sep(struct buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf_append(b, s[i] == '\t' ? "\t" : " ", 1);
}

char *mime_encode_header(const char *s, size_t name_len)
{
    struct buf b = {0};
    size_t col = name_len;
    int content = 0; /* something after the field name on the current line */
    const char *p = s, *sep;
    size_t seplen;

    while (mime_is_sep(*p))
        p++;
    sep = p;
    seplen = 0;
    while (*p != '\0') {
        const char *q = p;
        while (*q != '\0' && !mime_is_sep(*q))
            q++;
        if (!mime_word_needs_encoding(p, (size_t)(q - p))) {
            size_t wlen = (size_t)(q - p);
            if (content && col + seplen + wlen > MIME_LINE) {
                buf_append(&b, "\r\n", 2);
                col = 0;
            }
            mime_put_sep(&b, sep, seplen);
            buf_append(&b, p, wlen);
            col += seplen + wlen;
            content = 1;
        } else {
            /* a run of words to encode, with the white space between them */
            const char *end = q;
            for (;;) {
                const char *n1 = end;
                while (mime_is_sep(*n1))
                    n1++;
                const char *n2 = n1;
                while (*n2 != '\0' && !mime_is_sep(*n2))
                    n2++;
                if (n1 == n2 || !mime_word_needs_encoding(n1, (size_t)(n2 - n1)))
                    break;
                end = n2;
            }
            size_t rawlen = (size_t)(end - p), pos = 0;
            const unsigned char *raw = (const unsigned char *)p;
            while (pos < rawlen) {
                size_t room = col + seplen + 12 < MIME_LINE ? MIME_LINE - col - seplen - 12 : 0;
                size_t maxb = room / 4 * 3, take = 0;
                if (maxb > MIME_EW_BYTES)
                    maxb = MIME_EW_BYTES;
                while (pos + take < rawlen) {
                    size_t cl = mime_utf8_len(raw + pos + take, rawlen - pos - take);
                    if (take + cl > maxb)
                        break;
                    take += cl;
                }
                if (take == 0) {
                    if (content) {
                        buf_append(&b, "\r\n", 2);
                        col = 0;
                        content = 0;
                        if (seplen == 0) {
                            sep = " ";
                            seplen = 1;
                        }
                        continue;
                    }
                    take = mime_utf8_len(raw + pos, rawlen - pos);
                }
                char chunk[MIME_EW_BYTES];
                char enc[BASE64_ENCODED_LEN(MIME_EW_BYTES) + 1];
                for (size_t k = 0; k < take; k++) /* line breaks never go in, even encoded */
                    chunk[k] = raw[pos + k] == '\r' || raw[pos + k] == '\n' ? ' ' : raw[pos + k];
                long elen = base64_encode(chunk, take, enc, sizeof(enc));
                if (elen < 0)
                    abort(); /* take <= MIME_EW_BYTES: cannot happen */
                mime_put_sep(&b, sep, seplen);
                buf_append(&b, "=?UTF-8?B?", 10);
                buf_append(&b, enc, (size_t)elen);
                buf_append(&b, "?=", 2);
                col += seplen + 12 + (size_t)elen;
                content = 1;
                pos += take;
                sep = " ";
                seplen = 1;
            }
            q = end;
        }
        sep = q;
        while (mime_is_sep(*q))
            q++;
        seplen = (size_t)(q - sep);
        p = q;
    }
    buf_append(&b, "", 1);
    return b.p;
}

/* ---- rendering ----------------------------------------------------------- */

static const char *template_value(const struct csv_table *t, const struct csv_row *row,
                                  const char *col)
{
    int i = csv_col(t, col);
    return i < 0 ? NULL : row->fields[i];
}

static int template_has(const struct template *tp, const char *name)
{
    for (size_t i = 0; i < tp->nfields; i++)
        if (strcasecmp(tp->fields[i].name, name) == 0)
            return 1;
    return 0;
}

int template_has_field(const struct template *tp, const char *name)
{
    return template_has(tp, name);
}

/* "Name: value" with value encoded and folded, then CRLF. */
static void template_put_field(struct buf *out, const char *name, const char *value)
{
    size_t nlen = strlen(name);
    char *enc = mime_encode_header(value, nlen + 2);

    buf_append(out, name, nlen);
    buf_append(out, ":", 1);
    if (enc[0] != '\0') {
        buf_append(out, " ", 1);
        buf_append(out, enc, strlen(enc));
    }
    buf_append(out, "\r\n", 2);
    free(enc);
}

static void template_msgid(struct buf *out, const struct render_opts *o,
                           const unsigned char rnd[16])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char r[16];
    char id[300];
    size_t n = 0;

    memcpy(r, rnd, 16);
    if (o->msgid_seed != NULL) { /* FNV-1a of the seed, mixed into the random octets */
        uint64_t h = 0xcbf29ce484222325ULL;
        for (const char *s = o->msgid_seed; *s; s++)
            h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
        for (int k = 0; k < 8; k++)
            r[k] ^= (unsigned char)(h >> (8 * k));
    }
    id[n++] = '<';
    for (int k = 0; k < 16; k++) {
        id[n++] = hex[r[k] >> 4];
        id[n++] = hex[r[k] & 15];
    }
    id[n++] = '@';
    const char *at = o->from ? strrchr(o->from, '@') : NULL;
    size_t dstart = n;
    if (at != NULL) {
        for (const char *d = at + 1; *d && n < sizeof(id) - 3; d++) {
            char c = *d;
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '.')
                id[n++] = c;
            else
                break;
        }
    }
    if (n == dstart) {
        memcpy(id + n, "localhost", 9);
        n += 9;
    }
    id[n++] = '>';
    id[n] = '\0';
    template_put_field(out, "Message-ID", id);
}

static int template_date(struct buf *out, time_t now)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    char date[64];

    if (gmtime_r(&now, &tm) == NULL || tm.tm_wday < 0 || tm.tm_wday > 6 || tm.tm_mon < 0 ||
        tm.tm_mon > 11 || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999)
        return -1;
    snprintf(date, sizeof(date), "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday],
             tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    template_put_field(out, "Date", date);
    return 0;
}

/* Append s with every line break (CRLF, LF, CR) written as CRLF. */
static void template_put_crlf(struct buf *out, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] != '\r' && s[j] != '\n')
            j++;
        buf_append(out, s + i, j - i);
        if (j == n)
            break;
        buf_append(out, "\r\n", 2);
        j += (s[j] == '\r' && j + 1 < n && s[j + 1] == '\n') ? 2 : 1;
        i = j;
    }
}

/* Quoted-printable (RFC 2045 §6.7) of a body with CRLF line breaks. */
static void template_qp(struct buf *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i = 0, col = 0;

    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r' && i + 1 < n && s[i + 1] == '\n') {
            buf_append(out, "\r\n", 2);
            col = 0;
            i += 2;
            continue;
        }
        int at_eol = i + 1 == n || (s[i + 1] == '\r' && i + 2 < n && s[i + 2] == '\n');
        char tok[3];
        size_t tlen;
        if ((c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !at_eol)) {
            tok[0] = (char)c;
            tlen = 1;
        } else {
            tok[0] = '=';
            tok[1] = hex[c >> 4];
            tok[2] = hex[c & 15];
            tlen = 3;
        }
        if (col + tlen > 75) {
            buf_append(out, "=\r\n", 3);
            col = 0;
        }
        buf_append(out, tok, tlen);
        col += tlen;
        i++;
    }
}

/* -1 if a header line in [p, p+n) is longer than MIME_LINE_HARD; else 0. */
static int template_header_lines_ok(const char *p, size_t n)
{
    size_t col = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            col = 0;
        } else if (p[i] != '\r' && ++col > MIME_LINE_HARD) {
            return -1;
        }
    }
    return 0;
}

int template_render(const struct template *tp, const struct csv_table *t, const struct csv_row *row,
                    const struct render_opts *o, char **out, size_t *outlen, char *why,
                    size_t whysize)
{
    struct buf h = {0}, body = {0}, v = {0};
    const char *list = template_list_name(t);
    unsigned char rnd[16];

    *out = NULL;
    *outlen = 0;
    if (whysize > 0)
        why[0] = '\0';
    if (template_check(tp, t, why, whysize) != 0)
        return -1;

    for (size_t i = 0; i < tp->nfields; i++) {
        const struct tfield *f = &tp->fields[i];
        size_t start = h.len;
        v.len = 0;
        for (size_t k = 0; k < f->value.n; k++) {
            const struct tpart *pt = &f->value.v[k];
            if (pt->kind == TPART_TEXT) {
                buf_append(&v, pt->s, pt->len);
                continue;
            }
            const char *val = template_value(t, row, pt->s);
            if (strpbrk(val, "\r\n") != NULL) {
                template_fail(why, whysize,
                              "%s:%lu: column '%s': value contains a line break, which cannot "
                              "go into the header '%s'",
                              list, row->line, pt->s, f->name);
                goto fail;
            }
            buf_append(&v, val, strlen(val));
        }
        buf_append(&v, "", 1);
        template_put_field(&h, f->name, v.p);
        if (template_header_lines_ok(h.p + start, h.len - start) != 0) {
            template_fail(why, whysize,
                          "%s:%lu: the header '%s' would have a line longer than %d octets "
                          "(a word too long to fold)",
                          list, row->line, f->name, MIME_LINE_HARD);
            goto fail;
        }
    }

    if (o->list_unsubscribe && o->list_unsubscribe[0]) {
        if (strpbrk(o->list_unsubscribe, "\r\n") != NULL) {
            template_fail(why, whysize, "%s:%lu: List-Unsubscribe value with a line break", list,
                          row->line);
            goto fail;
        }
        size_t start = h.len;
        template_put_field(&h, "List-Unsubscribe", o->list_unsubscribe);
        if (o->one_click)
            template_put_field(&h, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click");
        if (template_header_lines_ok(h.p + start, h.len - start) != 0) {
            template_fail(why, whysize, "%s:%lu: the List-Unsubscribe line is too long", list,
                          row->line);
            goto fail;
        }
    }

    static const char *const envelope[] = {"From", "To"};
    for (int k = 0; k < 2; k++) {
        const char *addr = k == 0 ? o->from : o->to;
        if (addr == NULL || template_has(tp, envelope[k]))
            continue;
        if (strpbrk(addr, "\r\n") != NULL || strlen(addr) > 900) {
            template_fail(why, whysize,
                          "%s:%lu: the %s address contains a line break or is too long", list,
                          row->line, k == 0 ? "sender" : "recipient");
            goto fail;
        }
        template_put_field(&h, envelope[k], addr);
    }
    if (!template_has(tp, "Date") && template_date(&h, o->now) != 0) {
        template_fail(why, whysize, "%s:%lu: the current time cannot be written as a Date", list,
                      row->line);
        goto fail;
    }
    if (!template_has(tp, "Message-ID")) {
        if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
            template_fail(why, whysize, "getrandom: %s", strerror(errno));
            goto fail;
        }
        template_msgid(&h, o, rnd);
    }
    if (!template_has(tp, "MIME-Version"))
        template_put_field(&h, "MIME-Version", "1.0");
    if (!template_has(tp, "Content-Type"))
        template_put_field(&h, "Content-Type", "text/plain; charset=utf-8");

    /* the body, values with their line breaks made CRLF */
    for (size_t k = 0; k < tp->body.n; k++) {
        const struct tpart *pt = &tp->body.v[k];
        if (pt->kind == TPART_TEXT) {
            buf_append(&body, pt->s, pt->len);
        } else {
            const char *val = template_value(t, row, pt->s);
            template_put_crlf(&body, val, strlen(val));
        }
    }
    if (body.len > 0 && (body.len < 2 || memcmp(body.p + body.len - 2, "\r\n", 2) != 0))
        buf_append(&body, "\r\n", 2);

    int qp = 0;
    if (!template_has(tp, "Content-Transfer-Encoding")) {
        int eight = 0;
        size_t col = 0;
        for (size_t i = 0; i < body.len; i++) {
            if (body.p[i] == '\n') {
                col = 0;
                continue;
            }
            if (body.p[i] != '\r' && ++col > MIME_LINE_HARD)
                qp = 1;
            if ((unsigned char)body.p[i] >= 0x80)
                eight = 1;
        }
        template_put_field(&h, "Content-Transfer-Encoding",
                           qp      ? "quoted-printable"
                           : eight ? "8bit"
                                   : "7bit");
    }

    buf_append(&h, "\r\n", 2);
    if (qp)
        template_qp(&h, body.p, body.len);
    else if (body.len > 0)
        buf_append(&h, body.p, body.len);
    buf_free(&body);
    buf_free(&v);
    *outlen = h.len;
    buf_append(&h, "", 1); /* NUL for convenience, not counted */
    *out = h.p;
    return 0;
fail:
    buf_free(&h);
    buf_free(&body);
    buf_free(&v);
    return -1;
}
