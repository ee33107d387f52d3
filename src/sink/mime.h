/*
 * mime.h - a bounded MIME parser for the sink (RFC 2045-2049, 2047, 2231, 6532).
 *
 * mime_parse() reads a message as received (headers, blank line, body) and
 * gives its decoded headers, addresses, first text/plain and text/html bodies
 * (converted to UTF-8), a snippet, and its attachments and inline parts.
 * Every string it returns is valid, NUL-terminated UTF-8 ("" when absent,
 * never NULL) and owned by the struct mime_msg: mime_free() releases them.
 * It never does I/O.  Malformed input still gives a best-effort result;
 * limits: multipart nesting depth MIME_MAX_DEPTH, MIME_MAX_PARTS parts in
 * all, MIME_MAX_HEADERS headers per part; decoded sizes never exceed the
 * message's size.  The only failure is running out of memory (-1).
 */
#ifndef TERN_SINK_MIME_H
#define TERN_SINK_MIME_H

#include <stdbool.h>
#include <stddef.h>

#define MIME_MAX_DEPTH 10  /* multipart nesting; deeper bodies are left whole */
#define MIME_MAX_PARTS 100 /* entities in all; later ones are ignored */
#define MIME_MAX_HEADERS 1000
#define MIME_SNIPPET_CHARS 250

struct sink_msg;

struct mime_addr {
    char *name, *address; /* decoded UTF-8; "" when absent */
};

struct mime_part {
    size_t index;       /* for mime_part_data(); stable for the same bytes */
    char *content_type; /* lower case type/subtype, e.g. "image/png" */
    char *charset;      /* lower case, "" when absent */
    char *filename;     /* decoded (RFC 2231 / 2047), "" when absent */
    char *content_id;   /* without the angle brackets, "" when absent */
    char *disposition;  /* "attachment", "inline" or "" */
    size_t size;        /* decoded octets */
    bool inline_part;   /* shown inside the message (inline with a Content-ID, or
                           disposition inline) rather than a download */
};

struct mime_msg {
    char *subject, *date, *message_id; /* decoded UTF-8 */
    struct mime_addr *from, *to, *cc, *reply_to, *bcc;
    size_t nfrom, nto, ncc, nreply_to, nbcc;
    char **hnames, **hvalues; /* decoded, in order */
    size_t nheaders;
    char *text; /* first text/plain outside attachments, UTF-8 */
    size_t text_len;
    char *html; /* first text/html outside attachments, UTF-8 */
    size_t html_len;
    char *snippet;           /* first ~250 chars of text (or of html stripped) */
    struct mime_part *parts; /* attachments + inline parts */
    size_t nparts;
    /* how a body in an unknown charset was read: "" (none met), or
       "latin1" (bytes that are not UTF-8 read as ISO-8859-1) */
    char *charset_fallback;
};

/* 0, or -1 (no memory; *out is then empty and needs no mime_free) */
int mime_parse(const char *raw, size_t len, struct mime_msg *out);
void mime_free(struct mime_msg *m);
/* decoded octets of part index (from mime_msg.parts[].index) into *out (malloc,
   NUL-terminated beyond *outlen); 0, -1 no memory, -2 no such part */
int mime_part_data(const char *raw, size_t len, size_t index, char **out, size_t *outlen);
/* the parsed message of m, parsed once and cached (NULL only when out of memory) */
const struct mime_msg *sink_msg_mime(struct sink_msg *m);

/* helpers, exposed for tests */
/* decode RFC 2047 encoded words in an unstructured header value (already
   unfolded); result is valid UTF-8 (malloc) or NULL (no memory) */
char *mime_decode_words(const char *s, size_t len);
/* is s[0..len) valid UTF-8 (no overlongs, no surrogates)? */
bool mime_utf8_valid(const char *s, size_t len);

#endif
