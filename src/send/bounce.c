/*
 * bounce.c - the bounce parser (see bounce.h).
 *
 * One pass over the header section, then a walk of the MIME tree: multipart
 * bodies are cut at their boundary lines (a part runs to the line break
 * before the next delimiter), message/delivery-status parts are read as
 * groups of header-like fields separated by empty lines, text parts are
 * remembered and scanned only when no delivery-status part was found, and
 * attached originals (message/rfc822, text/rfc822-headers) are never read.
 * Every loop advances by at least one line, every copy is truncated to its
 * destination, and the walk stops at BOUNCE_DEPTH levels and BOUNCE_SCAN_MAX
 * octets: the input is hostile (anyone can send mail to a bounce address).
 */
#include "send/bounce.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define FIELD_MAX 2048 /* one unfolded field value kept; the rest is cut */
#define MAX_TEXT_PARTS 4

struct walk {
    struct bounce_report *r;
    const char *text[MAX_TEXT_PARTS], *text_end[MAX_TEXT_PARTS];
    size_t ntext;
    char failed_hdr[FIELD_MAX]; /* X-Failed-Recipients */
};

/* ---- small helpers ----------------------------------------------------- */

/* Copy s[0..n) into out[size]: control characters as spaces, truncated. */
static void copy_clean(char *out, size_t size, const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        out[k++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    out[k] = '\0';
}

static void trim(const char **s, size_t *n)
{
    while (*n > 0 && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
        (*n)--;
}

static bool starts_ci(const char *s, size_t n, const char *prefix)
{
    size_t pl = strlen(prefix);
    return n >= pl && strncasecmp(s, prefix, pl) == 0;
}

/* Case-insensitive search of needle in s[0..n). */
static bool contains_ci(const char *s, size_t n, const char *needle)
{
    size_t nl = strlen(needle);
    for (size_t i = 0; i + nl <= n; i++)
        if (strncasecmp(s + i, needle, nl) == 0)
            return true;
    return false;
}

/* The next line of [*p, end): its start and length without CR/LF; false at the end. */
static bool next_line(const char **p, const char *end, const char **ls, size_t *ll)
{
    if (*p >= end)
        return false;
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    const char *le = nl ? nl : end;
    *ls = *p;
    *ll = (size_t)(le - *p);
    if (*ll > 0 && (*ls)[*ll - 1] == '\r')
        (*ll)--;
    *p = nl ? nl + 1 : end;
    return true;
}

/* An address out of s[0..n) (spaces and one pair of <> around it removed): plausible
 * local@domain, no white space, controls or delimiters.  Lower-case is not forced. */
static bool take_addr(const char *s, size_t n, char *out, size_t size)
{
    trim(&s, &n);
    if (n >= 2 && s[0] == '<' && s[n - 1] == '>') {
        s++;
        n -= 2;
        trim(&s, &n);
    }
    if (n < 3 || n > ADDR_PATH_MAX - 2 || n >= size)
        return false;
    const char *at = NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f || strchr("<>,;()\"\\", c))
            return false;
        if (c == '@')
            at = s + i;
    }
    if (!at || at == s || at == s + n - 1)
        return false;
    memcpy(out, s, n);
    out[n] = '\0';
    return true;
}

/* ---- status codes ------------------------------------------------------- */

static size_t ndigits(const char *s, size_t max)
{
    size_t n = 0;
    while (n < max && s[n] >= '0' && s[n] <= '9')
        n++;
    return n;
}

/* An enhanced status code at s ("5.1.1"): its length, else 0. */
static size_t enhanced_at(const char *s)
{
    if (!(s[0] == '2' || s[0] == '4' || s[0] == '5') || s[1] != '.')
        return 0;
    size_t a = ndigits(s + 2, 4);
    if (a < 1 || a > 3 || s[2 + a] != '.')
        return 0;
    size_t b = ndigits(s + 3 + a, 4);
    if (b < 1 || b > 3)
        return 0;
    char after = s[3 + a + b];
    if (after == '.' || (after >= '0' && after <= '9'))
        return 0;
    return 3 + a + b;
}

static bool word_start(const char *text, const char *p)
{
    if (p == text)
        return true;
    char c = p[-1];
    return !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
             c == '.' || c == '_');
}

const char *bounce_find_status(const char *text, char *out, size_t size)
{
    if (size > 0)
        out[0] = '\0';
    if (!text || size < 8)
        return out;
    for (const char *p = text; *p; p++) {
        size_t n;
        if (word_start(text, p) && (n = enhanced_at(p)) > 0) {
            snprintf(out, size, "%.*s", (int)n, p);
            return out;
        }
    }
    for (const char *p = text; p[0] && p[1] && p[2]; p++) {
        if ((p[0] == '4' || p[0] == '5') && ndigits(p, 3) == 3 && word_start(text, p) &&
            (p[3] == ' ' || p[3] == '-' || p[3] == '\0')) {
            snprintf(out, size, "%c.0.0", p[0]);
            return out;
        }
    }
    return out;
}

enum bounce_kind bounce_classify(const char *action, const char *status, const char *diag)
{
    char code[16];
    if (action && (strcasecmp(action, "delivered") == 0 || strcasecmp(action, "relayed") == 0 ||
                   strcasecmp(action, "expanded") == 0))
        return BOUNCE_NONE;
    bounce_find_status(status && *status ? status : diag, code, sizeof(code));
    if (!code[0] && status && *status)
        bounce_find_status(diag, code, sizeof(code));
    if (action && strcasecmp(action, "delayed") == 0)
        return BOUNCE_SOFT;
    if (code[0] == '5')
        return BOUNCE_HARD;
    if (code[0] == '4')
        return BOUNCE_SOFT;
    if (code[0] == '2')
        return BOUNCE_NONE;
    return BOUNCE_SOFT;
}

const char *bounce_kind_name(enum bounce_kind k)
{
    return k == BOUNCE_HARD ? "hard" : k == BOUNCE_SOFT ? "soft" : "none";
}

/* ---- header-like field groups ------------------------------------------- */

typedef void (*field_fn)(void *ctx, const char *name, const char *value);

/* Read fields from *p until an empty line (consumed) or end; unfold; call fn per field.
 * A line that is neither a field nor a continuation is skipped. */
static void read_fields(const char **p, const char *end, field_fn fn, void *ctx)
{
    char name[64], value[FIELD_MAX];
    size_t vlen = 0;
    bool have = false;
    const char *ls;
    size_t ll;

    name[0] = '\0';
    while (next_line(p, end, &ls, &ll)) {
        if (ll == 0)
            break;
        if (ls[0] == ' ' || ls[0] == '\t') {
            if (have) {
                const char *s = ls;
                size_t n = ll;
                trim(&s, &n);
                if (vlen + 1 < sizeof(value)) {
                    value[vlen++] = ' ';
                    size_t take = n < sizeof(value) - 1 - vlen ? n : sizeof(value) - 1 - vlen;
                    copy_clean(value + vlen, take + 1, s, take);
                    vlen += take;
                }
            }
            continue;
        }
        if (have) {
            value[vlen] = '\0';
            fn(ctx, name, value);
            have = false;
        }
        const char *colon = memchr(ls, ':', ll);
        size_t nl = colon ? (size_t)(colon - ls) : 0;
        if (!colon || nl == 0 || nl >= sizeof(name) || memchr(ls, ' ', nl))
            continue;
        memcpy(name, ls, nl);
        name[nl] = '\0';
        const char *s = colon + 1;
        size_t n = ll - nl - 1;
        trim(&s, &n);
        copy_clean(value, sizeof(value), s, n);
        vlen = strlen(value);
        have = true;
    }
    if (have) {
        value[vlen] = '\0';
        fn(ctx, name, value);
    }
}

/* ---- Content-Type --------------------------------------------------------- */

static void ct_parse(const char *ct, char *type, size_t tsize, char *boundary, size_t bsize)
{
    size_t n = strcspn(ct, ";");
    const char *s = ct;
    trim(&s, &n);
    copy_clean(type, tsize, s, n);
    for (char *q = type; *q; q++)
        if (*q >= 'A' && *q <= 'Z')
            *q = (char)(*q - 'A' + 'a');
    boundary[0] = '\0';
    for (const char *p = ct; *p; p++) {
        if (strncasecmp(p, "boundary", 8) != 0 ||
            (p > ct && p[-1] != ';' && p[-1] != ' ' && p[-1] != '\t'))
            continue;
        const char *v = p + 8;
        while (*v == ' ' || *v == '\t')
            v++;
        if (*v != '=')
            continue;
        v++;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t bl;
        if (*v == '"') {
            v++;
            bl = strcspn(v, "\"");
        } else {
            bl = strcspn(v, "; \t");
        }
        if (bl > 0 && bl < bsize && bl <= 200)
            copy_clean(boundary, bsize, v, bl);
        return;
    }
}

/* ---- delivery-status parts ----------------------------------------------- */

struct group {
    struct bounce_rcpt rc;
    char final[ADDR_PATH_MAX + 1], original[ADDR_PATH_MAX + 1];
    char envid[101];
};

/* "rfc822; addr" -> addr */
static void typed_addr(const char *v, char *out, size_t size)
{
    const char *semi = strchr(v, ';');
    const char *a = semi ? semi + 1 : v;
    if (!take_addr(a, strlen(a), out, size))
        out[0] = '\0';
}

static void group_field(void *ctx, const char *name, const char *value)
{
    struct group *g = ctx;
    if (strcasecmp(name, "Final-Recipient") == 0)
        typed_addr(value, g->final, sizeof(g->final));
    else if (strcasecmp(name, "Original-Recipient") == 0)
        typed_addr(value, g->original, sizeof(g->original));
    else if (strcasecmp(name, "Action") == 0)
        copy_clean(g->rc.action, sizeof(g->rc.action), value, strcspn(value, " ;("));
    else if (strcasecmp(name, "Status") == 0) {
        size_t n = enhanced_at(value);
        copy_clean(g->rc.status, sizeof(g->rc.status), value, n);
    } else if (strcasecmp(name, "Diagnostic-Code") == 0) {
        const char *semi = strchr(value, ';');
        const char *d = semi ? semi + 1 : value;
        while (*d == ' ')
            d++;
        copy_clean(g->rc.diag, sizeof(g->rc.diag), d, strlen(d));
    } else if (strcasecmp(name, "Original-Envelope-Id") == 0)
        copy_clean(g->envid, sizeof(g->envid), value, strlen(value));
}

static void add_rcpt(struct bounce_report *r, const struct bounce_rcpt *rc)
{
    for (size_t i = 0; i < r->nrcpts; i++)
        if (strcasecmp(r->rcpts[i].addr, rc->addr) == 0)
            return;
    if (r->nrcpts < BOUNCE_MAX_RCPTS)
        r->rcpts[r->nrcpts++] = *rc;
}

static void parse_status(struct walk *w, const char *p, const char *end)
{
    struct group g;
    memset(&g, 0, sizeof(g));
    read_fields(&p, end, group_field, &g); /* per-message fields */
    if (g.envid[0] && !w->r->envid[0])
        snprintf(w->r->envid, sizeof(w->r->envid), "%s", g.envid);
    w->r->dsn = true;
    while (p < end) {
        const char *before = p;
        memset(&g, 0, sizeof(g));
        read_fields(&p, end, group_field, &g);
        const char *addr = g.final[0] ? g.final : g.original;
        if (addr[0]) {
            snprintf(g.rc.addr, sizeof(g.rc.addr), "%s", addr);
            g.rc.kind = bounce_classify(g.rc.action, g.rc.status, g.rc.diag);
            if (!g.rc.status[0])
                bounce_find_status(g.rc.diag, g.rc.status, sizeof(g.rc.status));
            add_rcpt(w->r, &g.rc);
        }
        if (p == before) /* cannot happen (a line is always consumed); be sure */
            break;
    }
}

/* ---- the MIME walk ---------------------------------------------------------- */

struct part_hdr {
    char ct[FIELD_MAX];
};

static void part_field(void *ctx, const char *name, const char *value)
{
    struct part_hdr *h = ctx;
    if (strcasecmp(name, "Content-Type") == 0 && !h->ct[0])
        snprintf(h->ct, sizeof(h->ct), "%s", value);
}

static void walk(struct walk *w, const char *ctype, const char *p, const char *end, int depth);

/* Is the line a delimiter of boundary b?  1 = delimiter, 2 = close delimiter, 0 = no. */
static int delimiter(const char *ls, size_t ll, const char *b, size_t bl)
{
    if (ll < bl + 2 || ls[0] != '-' || ls[1] != '-' || memcmp(ls + 2, b, bl) != 0)
        return 0;
    const char *rest = ls + 2 + bl;
    size_t rl = ll - 2 - bl;
    int kind = 1;
    if (rl >= 2 && rest[0] == '-' && rest[1] == '-') {
        kind = 2;
        rest += 2;
        rl -= 2;
    }
    for (size_t i = 0; i < rl; i++)
        if (rest[i] != ' ' && rest[i] != '\t')
            return 0;
    return kind;
}

static void walk_multipart(struct walk *w, const char *boundary, const char *p, const char *end,
                           int depth)
{
    size_t bl = strlen(boundary);
    const char *part = NULL, *ls = NULL;
    size_t ll = 0;
    while (true) {
        const char *line_start = p;
        if (!next_line(&p, end, &ls, &ll)) {
            if (part) /* no close delimiter: the part runs to the end */
                line_start = end;
            else
                return;
        }
        int d = line_start == end ? 2 : delimiter(ls, ll, boundary, bl);
        if (!d)
            continue;
        if (part) {
            /* the line break before the delimiter belongs to it */
            const char *pe = line_start;
            if (pe > part && pe[-1] == '\n')
                pe--;
            if (pe > part && pe[-1] == '\r')
                pe--;
            struct part_hdr h;
            h.ct[0] = '\0';
            const char *body = part;
            read_fields(&body, pe, part_field, &h);
            walk(w, h.ct[0] ? h.ct : "text/plain", body, pe, depth + 1);
        }
        if (d == 2)
            return;
        part = p;
    }
}

static void walk(struct walk *w, const char *ctype, const char *p, const char *end, int depth)
{
    char type[64], boundary[256];
    if (depth > BOUNCE_DEPTH)
        return;
    ct_parse(ctype, type, sizeof(type), boundary, sizeof(boundary));
    if (strncmp(type, "multipart/", 10) == 0) {
        if (boundary[0])
            walk_multipart(w, boundary, p, end, depth);
    } else if (strcmp(type, "message/delivery-status") == 0 ||
               strcmp(type, "message/global-delivery-status") == 0) {
        parse_status(w, p, end);
    } else if ((strcmp(type, "text/plain") == 0 || type[0] == '\0') && w->ntext < MAX_TEXT_PARTS) {
        w->text[w->ntext] = p;
        w->text_end[w->ntext++] = end;
    }
}

/* ---- plain-text bounces ------------------------------------------------------ */

static bool original_follows(const char *ls, size_t ll)
{
    if (ll >= 3 && memcmp(ls, "---", 3) == 0 &&
        (contains_ci(ls, ll, "original") || contains_ci(ls, ll, "copy of") ||
         contains_ci(ls, ll, "undelivered message")))
        return true;
    return starts_ci(ls, ll, "Original message follows") || starts_ci(ls, ll, "Received: ") ||
           starts_ci(ls, ll, "Return-Path: ");
}

static void diag_append(char *diag, size_t size, const char *s, size_t n)
{
    size_t dl = strlen(diag);
    trim(&s, &n);
    if (n == 0 || dl + 2 >= size)
        return;
    if (dl > 0)
        diag[dl++] = ' ';
    copy_clean(diag + dl, size - dl, s, n);
}

static void scan_text(struct walk *w, const char *p, const char *end, bool permanent)
{
    struct bounce_rcpt cur;
    bool have = false;
    const char *ls;
    size_t ll;

    memset(&cur, 0, sizeof(cur));
    while (next_line(&p, end, &ls, &ll)) {
        if (original_follows(ls, ll))
            break;
        const char *s = ls;
        size_t n = ll;
        bool indented = n > 0 && (s[0] == ' ' || s[0] == '\t');
        trim(&s, &n);
        char addr[ADDR_PATH_MAX + 1];
        bool newrc = false;
        const char *rest = NULL;
        size_t rl = 0;
        if (n > 0 && s[0] == '<') {
            /* Postfix / qmail "<addr>: reason", "<addr> (expanded from <x>): reason",
             * Sendmail "<addr>" alone */
            const char *gt = memchr(s, '>', n);
            if (gt && take_addr(s, (size_t)(gt - s) + 1, addr, sizeof(addr))) {
                rest = gt + 1;
                rl = n - (size_t)(rest - s);
                if (rl > 0 && rest[0] == ' ' && rl > 1 && rest[1] == '(') {
                    const char *close = memchr(rest, ')', rl);
                    if (close) {
                        rl -= (size_t)(close + 1 - rest);
                        rest = close + 1;
                    }
                }
                if (rl == 0 || rest[0] == ':') {
                    newrc = true;
                    if (rl > 0) {
                        rest++;
                        rl--;
                    }
                }
            }
        } else if (indented && n > 0 && memchr(s, ' ', n) == NULL &&
                   take_addr(s, n, addr, sizeof(addr))) {
            newrc = true; /* Exim: "  addr" alone on an indented line */
        }
        if (newrc) {
            if (have)
                add_rcpt(w->r, &cur);
            memset(&cur, 0, sizeof(cur));
            snprintf(cur.addr, sizeof(cur.addr), "%s", addr);
            if (rest)
                diag_append(cur.diag, sizeof(cur.diag), rest, rl);
            have = true;
            continue;
        }
        if (n == 0) {
            if (have && cur.diag[0]) {
                add_rcpt(w->r, &cur);
                have = false;
            }
            continue;
        }
        if (have)
            diag_append(cur.diag, sizeof(cur.diag), s, n);
    }
    if (have)
        add_rcpt(w->r, &cur);
    for (size_t i = 0; i < w->r->nrcpts; i++) {
        struct bounce_rcpt *rc = &w->r->rcpts[i];
        if (rc->kind != BOUNCE_NONE || rc->action[0])
            continue;
        bounce_find_status(rc->diag, rc->status, sizeof(rc->status));
        rc->kind = rc->status[0] ? bounce_classify("", rc->status, "")
                   : permanent   ? BOUNCE_HARD
                                 : BOUNCE_SOFT;
    }
}

/* ---- top level ---------------------------------------------------------------- */

struct top {
    struct walk *w;
    char ct[FIELD_MAX];
};

static void add_hint(struct bounce_report *r, const char *a)
{
    for (size_t i = 0; i < r->nhints; i++)
        if (strcasecmp(r->hints[i], a) == 0)
            return;
    if (r->nhints < BOUNCE_MAX_HINTS)
        snprintf(r->hints[r->nhints++], sizeof(r->hints[0]), "%s", a);
}

/* Every address in a header value: the <...> ones, else the comma-separated words. */
static void hints_from(struct bounce_report *r, const char *v)
{
    char a[ADDR_PATH_MAX + 1];
    bool angle = false;
    for (const char *p = v; (p = strchr(p, '<')) != NULL; p++) {
        const char *gt = strchr(p, '>');
        if (!gt)
            break;
        angle = true;
        if (take_addr(p, (size_t)(gt - p) + 1, a, sizeof(a)))
            add_hint(r, a);
    }
    if (angle)
        return;
    for (const char *p = v; *p;) {
        size_t n = strcspn(p, ",");
        if (take_addr(p, n, a, sizeof(a)))
            add_hint(r, a);
        p += n;
        if (*p)
            p++;
    }
}

static void top_field(void *ctx, const char *name, const char *value)
{
    struct top *t = ctx;
    if (strcasecmp(name, "Content-Type") == 0 && !t->ct[0])
        snprintf(t->ct, sizeof(t->ct), "%s", value);
    else if (strcasecmp(name, "To") == 0 || strcasecmp(name, "Delivered-To") == 0 ||
             strcasecmp(name, "X-Original-To") == 0 || strcasecmp(name, "Envelope-To") == 0)
        hints_from(t->w->r, value);
    else if (strcasecmp(name, "X-Failed-Recipients") == 0 && !t->w->failed_hdr[0])
        snprintf(t->w->failed_hdr, sizeof(t->w->failed_hdr), "%s", value);
}

void bounce_parse(const char *msg, size_t len, struct bounce_report *out)
{
    struct walk w;
    struct top t;
    const char *p = msg, *end;

    memset(out, 0, sizeof(*out));
    memset(&w, 0, sizeof(w));
    w.r = out;
    t.w = &w;
    t.ct[0] = '\0';
    if (!msg)
        return;
    end = msg + (len > BOUNCE_SCAN_MAX ? BOUNCE_SCAN_MAX : len);
    read_fields(&p, end, top_field, &t);
    walk(&w, t.ct[0] ? t.ct : "text/plain", p, end, 0);
    if (!out->dsn) {
        bool permanent = false;
        for (size_t i = 0; i < w.ntext; i++) {
            const char *q = w.text[i], *ls;
            size_t ll;
            while (next_line(&q, w.text_end[i], &ls, &ll) && !original_follows(ls, ll))
                if (contains_ci(ls, ll, "permanent error") ||
                    contains_ci(ls, ll, "permanent fatal error") ||
                    contains_ci(ls, ll, "permanent failure"))
                    permanent = true;
        }
        for (size_t i = 0; i < w.ntext; i++)
            scan_text(&w, w.text[i], w.text_end[i], permanent);
        /* Exim lists permanent failures in X-Failed-Recipients */
        char a[ADDR_PATH_MAX + 1];
        for (const char *q = w.failed_hdr; *q;) {
            size_t n = strcspn(q, ",");
            if (take_addr(q, n, a, sizeof(a))) {
                struct bounce_rcpt rc;
                memset(&rc, 0, sizeof(rc));
                snprintf(rc.addr, sizeof(rc.addr), "%s", a);
                rc.kind = BOUNCE_HARD;
                snprintf(rc.diag, sizeof(rc.diag), "listed in X-Failed-Recipients");
                add_rcpt(out, &rc);
            }
            q += n;
            if (*q)
                q++;
        }
    }
}
