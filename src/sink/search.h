/*
 * search.h - Mailpit's search language for the sink (pure: no I/O, no sink types).
 *
 * search_parse() splits a query the way Mailpit does (words separated by
 * spaces, "quoted phrases" kept whole, the quotes dropped) and reads each
 * word as a term: from: to: cc: bcc: reply-to: addressed: subject:
 * message-id: tag: is:read is:unread is:tagged has:attachment(s)
 * has:inline(s) after: before: larger: smaller:, or free text; a leading
 * '-' or '!' excludes.  Every term must hold (AND).  Matching is a
 * substring test, ASCII case-insensitive, on text "cleaned" as Mailpit
 * cleans it (runs of blanks and of < > " , ; ( ) become one space).
 * search_match() tests a query against a struct search_doc that the caller
 * fills from a message.  Bounds: SEARCH_MAX_QUERY octets, SEARCH_MAX_TERMS
 * terms.  The query owns its strings; search_free() releases them.
 */
#ifndef TERN_SINK_SEARCH_H
#define TERN_SINK_SEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SEARCH_MAX_QUERY 2048
#define SEARCH_MAX_TERMS 32

enum search_field {
    SF_TEXT,
    SF_FROM,
    SF_TO,
    SF_CC,
    SF_BCC,
    SF_REPLY_TO,
    SF_ADDRESSED, /* any of from, to, cc, bcc, reply-to */
    SF_SUBJECT,
    SF_MESSAGE_ID,
    SF_TAG, /* the sink has no tags: never matches */
    SF_IS_READ,
    SF_IS_UNREAD,
    SF_IS_TAGGED,
    SF_HAS_ATTACHMENT,
    SF_HAS_INLINE,
    SF_AFTER,   /* received at or after num (ms) */
    SF_BEFORE,  /* received at or before num (ms) */
    SF_LARGER,  /* size > num */
    SF_SMALLER, /* size < num */
};

struct search_term {
    enum search_field field;
    bool exclude;
    char *value; /* cleaned, lower case (subject: as given); "" for is:/has: */
    int64_t num; /* after:/before: Unix ms; larger:/smaller: octets */
};

struct search_query {
    struct search_term *terms;
    size_t nterms;
};

/* What a message offers to a search; NULL strings count as "". */
struct search_doc {
    const char *from, *to, *cc, *bcc, *reply_to; /* "Name address, Name address" */
    const char *subject, *message_id, *return_path;
    const char *text;      /* the text body */
    const char *html;      /* the HTML body (tags are stripped before matching) */
    const char *filenames; /* attachment file names, space separated */
    bool read;
    size_t attachments, inlines;
    uint64_t size;
    int64_t received_ms;
};

/* 0; -1 out of memory; -2 too long or too many terms (why says which).
 * An empty query (or only blanks) gives nterms == 0, which matches all. */
int search_parse(const char *s, size_t len, struct search_query *out, char *why, size_t whysize);
void search_free(struct search_query *q);
bool search_match(const struct search_query *q, const struct search_doc *d);

/* helpers, exposed for tests */
/* Mailpit's cleanString(): into out (at least len + 1 octets), returns its length */
size_t search_clean(const char *s, size_t len, char *out);
/* does the cleaned form of hay contain needle (already cleaned)? */
bool search_contains_clean(const char *hay, const char *needle);
/* HTML to its text (tags, comments, <script>/<style> bodies removed; a few
 * entities decoded), cleaned; malloc, or NULL when out of memory */
char *search_html_text(const char *html, size_t len);
/* "2kb", "1.5M", "300": octets, or 0 when not a size */
uint64_t search_size(const char *s);
/* A date: RFC 5322 ("Tue, 1 Jul 2003 10:52:37 +0200") or ISO 8601
 * ("2024-01-31", "2024-01-31T10:00:00Z", "+01:00" offsets); dates without a
 * zone are UTC.  0 with *ms set, or -1. */
int search_parse_date(const char *s, size_t len, int64_t *ms);

#endif
