/*
 * search.c - Mailpit's search language (see search.h).
 *
 * Matched against Mailpit v1.30.5 (commit 408b30d, internal/storage/search.go
 * and internal/tools/argsparser.go): the same prefixes, the same splitting of
 * words and phrases, the same cleaning of the text; an unreadable date or
 * size is ignored as Mailpit ignores it.  Pure: no I/O, no global state; every
 * loop is bounded by the input's length.
 */
#include "sink/search.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static bool search_sep(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f' || c == '<' ||
           c == '>' || c == '"' || c == ',' || c == ';' || c == '(' || c == ')';
}

size_t search_clean(const char *s, size_t len, char *out)
{
    size_t n = 0;
    bool pending = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        /* U+FEFF (EF BB BF) counts as a blank, as in Mailpit */
        if (c == 0xef && i + 2 < len && (unsigned char)s[i + 1] == 0xbb &&
            (unsigned char)s[i + 2] == 0xbf) {
            i += 2;
            c = ' ';
        }
        if (search_sep(c) || c == '\0') {
            pending = n > 0;
            continue;
        }
        if (pending)
            out[n++] = ' ';
        pending = false;
        out[n++] = (char)tolower(c);
    }
    out[n] = '\0';
    return n;
}

bool search_contains_clean(const char *hay, const char *needle)
{
    if (!needle[0])
        return true;
    if (!hay)
        return false;
    size_t len = strlen(hay);
    char *c = malloc(len + 1);
    if (!c)
        return false;
    search_clean(hay, len, c);
    bool hit = strstr(c, needle) != NULL;
    free(c);
    return hit;
}

/* An ASCII case-insensitive substring test on the text as it is (subject:). */
static bool search_contains_case(const char *hay, const char *needle)
{
    return strcasestr(hay ? hay : "", needle) != NULL;
}

static bool search_tag_is(const char *s, size_t len, const char *name)
{
    return strlen(name) == len && strncasecmp(s, name, len) == 0;
}

char *search_html_text(const char *html, size_t len)
{
    char *t = malloc(len + 1), *out;
    size_t n = 0;
    if (!t)
        return NULL;
    for (size_t i = 0; i < len;) {
        if (html[i] == '<') {
            if (len - i >= 4 && memcmp(html + i, "<!--", 4) == 0) {
                const char *e = NULL;
                for (size_t k = i + 4; k + 3 <= len; k++)
                    if (memcmp(html + k, "-->", 3) == 0) {
                        e = html + k + 3;
                        break;
                    }
                i = e ? (size_t)(e - html) : len;
                continue;
            }
            size_t i0 = i, k = i + 1, nb;
            while (k < len && html[k] != '>')
                k++;
            nb = 0;
            while (i + 1 + nb < k && isalpha((unsigned char)html[i + 1 + nb]))
                nb++;
            bool skip = search_tag_is(html + i + 1, nb, "script") ||
                        search_tag_is(html + i + 1, nb, "style") ||
                        search_tag_is(html + i + 1, nb, "head");
            i = k < len ? k + 1 : len;
            t[n++] = ' ';
            if (skip) { /* its content, up to "</name" */
                const char *name = html + i0 + 1;
                size_t j = i;
                while (j + 2 + nb <= len && !(html[j] == '<' && html[j + 1] == '/' &&
                                              strncasecmp(html + j + 2, name, nb) == 0))
                    j++;
                i = j + 2 + nb <= len ? j : len;
            }
            continue;
        }
        if (html[i] == '&') {
            static const struct {
                const char *name;
                char c;
            } ents[] = {{"&amp;", '&'},  {"&lt;", '<'},   {"&gt;", '>'},
                        {"&quot;", '"'}, {"&#39;", '\''}, {"&nbsp;", ' '}};
            bool done = false;
            for (size_t e = 0; e < sizeof(ents) / sizeof(ents[0]) && !done; e++) {
                size_t el = strlen(ents[e].name);
                if (len - i >= el && strncasecmp(html + i, ents[e].name, el) == 0) {
                    t[n++] = ents[e].c;
                    i += el;
                    done = true;
                }
            }
            if (done)
                continue;
        }
        t[n++] = html[i++];
    }
    out = malloc(n + 1);
    if (out)
        search_clean(t, n, out);
    free(t);
    return out;
}

uint64_t search_size(const char *s)
{
    char *end;
    if (!isdigit((unsigned char)s[0]))
        return 0;
    double v = strtod(s, &end);
    if (end == s || v < 0 || v > 1e15)
        return 0;
    while (*end == ' ')
        end++;
    if (*end == '\0')
        return (uint64_t)v;
    if (strcasecmp(end, "k") == 0 || strcasecmp(end, "kb") == 0)
        return (uint64_t)(v * 1024);
    if (strcasecmp(end, "m") == 0 || strcasecmp(end, "mb") == 0)
        return (uint64_t)(v * 1024 * 1024);
    return 0;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; m 1..12). */
static int64_t search_days(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* n digits (1..max) at *p into *v; advances *p. */
static bool search_num(const char **p, const char *end, int min, int max, int *v)
{
    int n = 0, val = 0;
    while (*p < end && n < max && isdigit((unsigned char)**p)) {
        val = val * 10 + (**p - '0');
        (*p)++;
        n++;
    }
    *v = val;
    return n >= min;
}

static void search_blanks(const char **p, const char *end)
{
    while (*p < end && (**p == ' ' || **p == '\t' || **p == '\r' || **p == '\n'))
        (*p)++;
}

/* A zone: Z, UT, GMT, +hhmm, +hh:mm, or a US name; minutes east into *off. */
static bool search_zone(const char **p, const char *end, int *off)
{
    static const struct {
        const char *name;
        int off;
    } zones[] = {{"UTC", 0},       {"UT", 0},        {"GMT", 0},       {"Z", 0},
                 {"EST", -5 * 60}, {"EDT", -4 * 60}, {"CST", -6 * 60}, {"CDT", -5 * 60},
                 {"MST", -7 * 60}, {"MDT", -6 * 60}, {"PST", -8 * 60}, {"PDT", -7 * 60}};
    *off = 0;
    if (*p >= end)
        return true;
    if (**p == '+' || **p == '-') {
        int sign = **p == '-' ? -1 : 1, hh, mm = 0;
        (*p)++;
        if (!search_num(p, end, 2, 2, &hh))
            return false;
        if (*p < end && **p == ':')
            (*p)++;
        if (!search_num(p, end, 2, 2, &mm))
            return false;
        if (hh > 23 || mm > 59)
            return false;
        *off = sign * (hh * 60 + mm);
        return true;
    }
    for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++) {
        size_t zl = strlen(zones[i].name);
        if ((size_t)(end - *p) >= zl && strncasecmp(*p, zones[i].name, zl) == 0) {
            *p += zl;
            *off = zones[i].off;
            return true;
        }
    }
    return false;
}

int search_parse_date(const char *s, size_t len, int64_t *ms)
{
    static const char months[] = "janfebmaraprmayjunjulaugsepoctnovdec";
    const char *p = s, *end = s + len;
    int y, mo = 0, d, hh = 0, mi = 0, ss = 0, off = 0;

    search_blanks(&p, end);
    if (end - p >= 10 && isdigit((unsigned char)p[0]) && p[4] == '-') { /* ISO 8601 */
        if (!search_num(&p, end, 4, 4, &y) || p >= end || *p++ != '-' ||
            !search_num(&p, end, 2, 2, &mo) || p >= end || *p++ != '-' ||
            !search_num(&p, end, 2, 2, &d))
            return -1;
        if (p < end && (*p == 'T' || *p == 't' || *p == ' ')) {
            p++;
            if (!search_num(&p, end, 2, 2, &hh) || p >= end || *p++ != ':' ||
                !search_num(&p, end, 2, 2, &mi))
                return -1;
            if (p < end && *p == ':') {
                p++;
                if (!search_num(&p, end, 2, 2, &ss))
                    return -1;
                if (p < end && *p == '.') {
                    p++;
                    int frac;
                    if (!search_num(&p, end, 1, 9, &frac))
                        return -1;
                    while (p < end && isdigit((unsigned char)*p))
                        p++;
                }
            }
            if (!search_zone(&p, end, &off))
                return -1;
        }
    } else { /* RFC 5322 3.3, with the obsolete forms */
        if (end - p >= 4 && isalpha((unsigned char)p[0])) {
            while (p < end && isalpha((unsigned char)*p))
                p++;
            search_blanks(&p, end);
            if (p < end && *p == ',')
                p++;
            search_blanks(&p, end);
        }
        if (!search_num(&p, end, 1, 2, &d))
            return -1;
        search_blanks(&p, end);
        if (end - p < 3)
            return -1;
        for (int i = 0; i < 12 && !mo; i++)
            if (strncasecmp(p, months + 3 * i, 3) == 0)
                mo = i + 1;
        if (!mo)
            return -1;
        p += 3;
        search_blanks(&p, end);
        const char *ys = p;
        if (!search_num(&p, end, 2, 4, &y))
            return -1;
        if (p - ys == 2)
            y += y < 50 ? 2000 : 1900;
        else if (p - ys == 3)
            y += 1900;
        search_blanks(&p, end);
        if (p < end) {
            if (!search_num(&p, end, 1, 2, &hh) || p >= end || *p++ != ':' ||
                !search_num(&p, end, 2, 2, &mi))
                return -1;
            if (p < end && *p == ':') {
                p++;
                if (!search_num(&p, end, 2, 2, &ss))
                    return -1;
            }
            search_blanks(&p, end);
            if (!search_zone(&p, end, &off))
                return -1;
        }
    }
    search_blanks(&p, end);
    if (p < end && *p == '(') /* a trailing comment: "+0000 (UTC)" */
        p = end;
    if (p != end || mo < 1 || mo > 12 || d < 1 || d > 31 || hh > 23 || mi > 59 || ss > 60)
        return -1;
    int64_t t = search_days(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss - (int64_t)off * 60;
    *ms = t * 1000;
    return 0;
}

void search_free(struct search_query *q)
{
    for (size_t i = 0; i < q->nterms; i++)
        free(q->terms[i].value);
    free(q->terms);
    q->terms = NULL;
    q->nterms = 0;
}

static const struct {
    const char *prefix;
    enum search_field field;
} search_prefixes[] = {
    {"to:", SF_TO},
    {"from:", SF_FROM},
    {"cc:", SF_CC},
    {"bcc:", SF_BCC},
    {"reply-to:", SF_REPLY_TO},
    {"addressed:", SF_ADDRESSED},
    {"subject:", SF_SUBJECT},
    {"message-id:", SF_MESSAGE_ID},
    {"tag:", SF_TAG},
    {"after:", SF_AFTER},
    {"before:", SF_BEFORE},
    {"larger:", SF_LARGER},
    {"smaller:", SF_SMALLER},
};

static const struct {
    const char *word;
    enum search_field field;
} search_words[] = {
    {"is:read", SF_IS_READ},
    {"is:unread", SF_IS_UNREAD},
    {"is:tagged", SF_IS_TAGGED},
    {"has:attachment", SF_HAS_ATTACHMENT},
    {"has:attachments", SF_HAS_ATTACHMENT},
    {"has:inline", SF_HAS_INLINE},
    {"has:inlines", SF_HAS_INLINE},
};

/* One word (quotes removed, w[0..n) non-blank): append a term, or skip it. */
static int search_term_add(struct search_query *q, char *w, size_t n, char *why, size_t whysize)
{
    struct search_term t = {.field = SF_TEXT};
    char *clean = malloc(n + 1);
    if (!clean)
        return -1;
    /* a word that cleans to nothing is ignored (Mailpit: cleanString(w) == "") */
    if (search_clean(w, n, clean) == 0) {
        free(clean);
        return 0;
    }
    if (n > 1 && (w[0] == '-' || w[0] == '!')) {
        t.exclude = true;
        w++;
        n--;
    }
    size_t skip = 0;
    bool word = false;
    for (size_t i = 0; i < sizeof(search_words) / sizeof(search_words[0]); i++)
        if (strlen(search_words[i].word) == n && strncasecmp(w, search_words[i].word, n) == 0) {
            t.field = search_words[i].field;
            word = true;
        }
    for (size_t i = 0; !word && i < sizeof(search_prefixes) / sizeof(search_prefixes[0]); i++) {
        size_t pl = strlen(search_prefixes[i].prefix);
        if (n >= pl && strncasecmp(w, search_prefixes[i].prefix, pl) == 0) {
            t.field = search_prefixes[i].field;
            skip = pl;
            break;
        }
    }
    const char *v = w + skip;
    size_t vl = n - skip;
    if (word) {
        clean[0] = '\0';
    } else if (t.field == SF_SUBJECT) {
        memcpy(clean, v, vl);
        clean[vl] = '\0';
    } else {
        search_clean(v, vl, clean);
    }
    if (t.field == SF_LARGER || t.field == SF_SMALLER) {
        t.num = (int64_t)search_size(clean);
        if (t.num <= 0) { /* Mailpit: not a size, so it is free text */
            t.field = SF_TEXT;
            search_clean(w, n, clean);
        }
    } else if (t.field == SF_AFTER || t.field == SF_BEFORE) {
        if (clean[0] == '\0' || search_parse_date(clean, strlen(clean), &t.num) < 0) {
            free(clean); /* an unreadable date is ignored */
            return 0;
        }
    } else if (!word && clean[0] == '\0') { /* "from:" alone filters nothing */
        free(clean);
        return 0;
    }
    if (q->nterms >= SEARCH_MAX_TERMS) {
        free(clean);
        snprintf(why, whysize, "too many search terms (at most %d)", SEARCH_MAX_TERMS);
        return -2;
    }
    t.value = clean;
    q->terms[q->nterms++] = t;
    return 0;
}

int search_parse(const char *s, size_t len, struct search_query *out, char *why, size_t whysize)
{
    memset(out, 0, sizeof(*out));
    if (len > SEARCH_MAX_QUERY) {
        snprintf(why, whysize, "search query too long (at most %d octets)", SEARCH_MAX_QUERY);
        return -2;
    }
    out->terms = calloc(SEARCH_MAX_TERMS, sizeof(*out->terms));
    char *word = malloc(len + 1);
    if (!out->terms || !word) {
        free(word);
        search_free(out);
        return -1;
    }
    size_t n = 0;
    bool quoted = false;
    int rc = 0;
    for (size_t i = 0; i <= len && rc == 0; i++) {
        char c = i < len ? s[i] : ' ';
        if (c == '"') {
            quoted = !quoted;
            continue;
        }
        if (c == ' ' && (!quoted || i == len)) {
            /* trim, as strings.TrimSpace does */
            size_t a = 0, b = n;
            while (a < b && isspace((unsigned char)word[a]))
                a++;
            while (b > a && isspace((unsigned char)word[b - 1]))
                b--;
            if (b > a)
                rc = search_term_add(out, word + a, b - a, why, whysize);
            n = 0;
            continue;
        }
        word[n++] = c;
    }
    free(word);
    if (rc < 0) {
        if (rc == -1)
            snprintf(why, whysize, "out of memory");
        search_free(out);
    }
    return rc;
}

static bool search_term_match(const struct search_term *t, const struct search_doc *d)
{
    switch (t->field) {
    case SF_TEXT: {
        if (search_contains_clean(d->subject, t->value) ||
            search_contains_clean(d->from, t->value) || search_contains_clean(d->to, t->value) ||
            search_contains_clean(d->cc, t->value) || search_contains_clean(d->bcc, t->value) ||
            search_contains_clean(d->reply_to, t->value) ||
            search_contains_clean(d->return_path, t->value) ||
            search_contains_clean(d->filenames, t->value) ||
            search_contains_clean(d->text, t->value))
            return true;
        if (!d->html || !d->html[0])
            return false;
        char *h = search_html_text(d->html, strlen(d->html));
        bool hit = h && strstr(h, t->value) != NULL;
        free(h);
        return hit;
    }
    case SF_FROM:
        return search_contains_clean(d->from, t->value);
    case SF_TO:
        return search_contains_clean(d->to, t->value);
    case SF_CC:
        return search_contains_clean(d->cc, t->value);
    case SF_BCC:
        return search_contains_clean(d->bcc, t->value);
    case SF_REPLY_TO:
        return search_contains_clean(d->reply_to, t->value);
    case SF_ADDRESSED:
        return search_contains_clean(d->from, t->value) || search_contains_clean(d->to, t->value) ||
               search_contains_clean(d->cc, t->value) || search_contains_clean(d->bcc, t->value) ||
               search_contains_clean(d->reply_to, t->value);
    case SF_SUBJECT:
        return search_contains_case(d->subject, t->value);
    case SF_MESSAGE_ID:
        return search_contains_clean(d->message_id, t->value);
    case SF_TAG:
    case SF_IS_TAGGED:
        return false;
    case SF_IS_READ:
        return d->read;
    case SF_IS_UNREAD:
        return !d->read;
    case SF_HAS_ATTACHMENT:
        return d->attachments > 0;
    case SF_HAS_INLINE:
        return d->inlines > 0;
    case SF_AFTER:
        return d->received_ms >= t->num;
    case SF_BEFORE:
        return d->received_ms <= t->num;
    case SF_LARGER:
        return d->size > (uint64_t)t->num;
    case SF_SMALLER:
        return d->size < (uint64_t)t->num;
    }
    return false;
}

bool search_match(const struct search_query *q, const struct search_doc *d)
{
    for (size_t i = 0; i < q->nterms; i++)
        if (search_term_match(&q->terms[i], d) == q->terms[i].exclude)
            return false;
    return true;
}
