/*
 * taglist.c - DKIM-style tag=value lists (see taglist.h).
 */
#include "core/taglist.h"

#include <stdio.h>
#include <string.h>

/* FWS and WSP as one class: SP, HTAB, CR, LF (a CRLF not followed by a blank
 * cannot occur inside one header field value, and a DNS TXT record may hold
 * any of them). */
static bool tl_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool tl_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool tl_namechar(char c)
{
    return tl_alpha(c) || (c >= '0' && c <= '9') || c == '_';
}

/* "tag K ('NAME'): WHAT", or "tag K: WHAT" without a name; returns -1. */
static int tl_fail(char *why, size_t whylen, size_t k, const char *name, size_t namelen,
                   const char *what)
{
    if (!why || whylen == 0)
        return -1;
    /* a name reaching here passed tl_namechar(): printable */
    if (name)
        snprintf(why, whylen, "tag %zu ('%.*s'): %s", k, (int)(namelen > 32 ? 32 : namelen), name,
                 what);
    else
        snprintf(why, whylen, "tag %zu: %s", k, what);
    return -1;
}

int taglist_parse(const char *text, size_t len, struct taglist *out, char *why, size_t whylen)
{
    size_t i = 0;

    out->n = 0;
    if (why && whylen)
        why[0] = '\0';
    while (i < len) {
        size_t ns, ne, vs, ve, k = out->n + 1;

        while (i < len && tl_blank(text[i]))
            i++;
        if (i == len)
            break; /* trailing ";" and blanks, or an empty list */
        ns = i;
        if (!tl_alpha(text[i]))
            return tl_fail(why, whylen, k, NULL, 0, "a name must start with a letter");
        while (i < len && tl_namechar(text[i]))
            i++;
        ne = i;
        while (i < len && tl_blank(text[i]))
            i++;
        if (i == len || text[i] != '=')
            return tl_fail(why, whylen, k, text + ns, ne - ns, "no '=' after the name");
        i++;
        while (i < len && tl_blank(text[i]))
            i++;
        vs = ve = i;
        while (i < len && text[i] != ';') {
            unsigned char c = (unsigned char)text[i];
            if (!tl_blank((char)c) && (c < 0x21 || c > 0x7e))
                return tl_fail(why, whylen, k, text + ns, ne - ns,
                               "a control or 8-bit octet in the value");
            i++;
            if (!tl_blank((char)c))
                ve = i;
        }
        if (i < len)
            i++; /* the ';' */
        if (out->n == TAGLIST_MAX)
            return tl_fail(why, whylen, k, NULL, 0, "more than 32 tags in the list");
        for (size_t j = 0; j < out->n; j++)
            if (out->tags[j].namelen == ne - ns &&
                memcmp(out->tags[j].name, text + ns, ne - ns) == 0)
                return tl_fail(why, whylen, k, text + ns, ne - ns, "the tag appears twice");
        out->tags[out->n].name = text + ns;
        out->tags[out->n].namelen = ne - ns;
        out->tags[out->n].value = text + vs;
        out->tags[out->n].valuelen = ve - vs;
        out->n++;
    }
    return 0;
}

const struct tag *taglist_get(const struct taglist *tl, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < tl->n; i++)
        if (tl->tags[i].namelen == n && memcmp(tl->tags[i].name, name, n) == 0)
            return &tl->tags[i];
    return NULL;
}

bool tag_is(const struct tag *t, const char *s)
{
    size_t n = strlen(s);
    return t && t->valuelen == n && memcmp(t->value, s, n) == 0;
}
