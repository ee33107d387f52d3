/*
 * taglist.h - the tag=value lists of DKIM (RFC 6376 3.2), shared by
 * DKIM-Signature fields, DKIM key records, DMARC records (RFC 7489 6.4) and
 * MTA-STS TXT records (RFC 8461 3.1).
 *
 *   tag-list  = tag-spec *( ";" tag-spec ) [ ";" ]
 *   tag-spec  = [FWS] tag-name [FWS] "=" [FWS] tag-value [FWS]
 *   tag-name  = ALPHA *( ALPHA / DIGIT / "_" )
 *   tag-value = [ tval *( 1*(WSP / FWS) tval ) ]   tval = 1*( %x21-3A / %x3C-7E )
 *
 * Pure: no allocation, no I/O.  The tags point into the caller's text;
 * values are trimmed of the blanks around them but keep folding inside
 * (DKIM's b= and bh= hold folded base64: the caller drops blanks there).
 */
#ifndef TERN_CORE_TAGLIST_H
#define TERN_CORE_TAGLIST_H

#include <stdbool.h>
#include <stddef.h>

#define TAGLIST_MAX 32 /* tags in one list; more is an error */

struct tag {
    const char *name, *value;
    size_t namelen, valuelen;
};

struct taglist {
    struct tag tags[TAGLIST_MAX];
    size_t n;
};

/*
 * Parse text[0..len).  Returns 0, or -1 with a reason in why ("tag 3: no
 * '='", "duplicate tag 'h'", "more than 32 tags", "octet 0x00 in value of
 * 'b'"): a list with any error is rejected whole, as RFC 6376 3.2 asks
 * (duplicate tags make the whole list invalid).  An empty list (only
 * blanks) is valid with n == 0.
 */
int taglist_parse(const char *text, size_t len, struct taglist *out, char *why, size_t whylen);

/* The tag called name (case-sensitive, as RFC 6376 says), or NULL. */
const struct tag *taglist_get(const struct taglist *tl, const char *name);

/* True if the tag's value is exactly s (case-sensitive). */
bool tag_is(const struct tag *t, const char *s);

#endif
