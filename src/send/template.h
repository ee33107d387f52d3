/*
 * template.h - message templates of `tern send`.
 *
 * A template is an RFC 5322 message (header fields, an empty line, the
 * body) with {{column}} placeholders (white space inside the braces is
 * allowed: {{ name }}).  "{{" not closed on the same line, or an empty or
 * malformed name, is an error at load time naming FILE:LINE.
 *
 * Rendering one row:
 *  - every placeholder is replaced by the row's value for that column; a
 *    placeholder whose column does not exist is an error (template_check);
 *  - a value that goes into a header and contains CR or LF is an error
 *    naming the CSV line and the column (header injection);
 *  - a header whose rendered value is not ASCII is encoded as RFC 2047
 *    encoded-words (UTF-8, B or Q), folded to stay within 78 columns;
 *  - Date, Message-ID (<random@domain-of-from>), MIME-Version: 1.0 and, when
 *    absent, Content-Type: text/plain; charset=utf-8 and
 *    Content-Transfer-Encoding (7bit for ASCII bodies, 8bit otherwise, or
 *    quoted-printable when a body line exceeds 998 octets) are added; From
 *    and To are added from the envelope when the template has none;
 *  - List-Unsubscribe and List-Unsubscribe-Post are added when render_opts
 *    says so (a template that has its own is refused by template_has_field
 *    checks in send.c);
 *  - the output has CRLF line endings only.
 */
#ifndef TERN_SEND_TEMPLATE_H
#define TERN_SEND_TEMPLATE_H

#include <stddef.h>
#include <time.h>

#include "send/csv.h"

struct template;

struct render_opts {
    const char *from;       /* envelope sender, for From: and the Message-ID domain */
    const char *to;         /* the recipient, for To: when absent */
    time_t now;             /* for Date: */
    const char *msgid_seed; /* mixed into the Message-ID (e.g. ledger key), may be NULL */
    /* List-Unsubscribe (RFC 2369) value, already checked (send/unsub.c), NULL = none; with
     * one_click also List-Unsubscribe-Post: List-Unsubscribe=One-Click (RFC 8058).  Both go
     * right after the template's own fields, so that a DKIM signature made later covers them. */
    const char *list_unsubscribe;
    int one_click;
};

struct template *template_load(const char *path, char *why, size_t whysize);
struct template *template_parse(const char *name, const char *text, size_t len, char *why,
                                size_t whysize);
/* Every placeholder has a column in t?  -1 with why = "TEMPLATE:LINE: no column 'x' in LIST". */
int template_check(const struct template *tp, const struct csv_table *t, char *why, size_t whysize);
/* Render row into *out (malloc'ed, *outlen octets).  -1 with why naming the CSV line and column. */
int template_render(const struct template *tp, const struct csv_table *t, const struct csv_row *row,
                    const struct render_opts *o, char **out, size_t *outlen, char *why,
                    size_t whysize);
void template_free(struct template *tp);
/* Does the template have a header field of this name (case-insensitive)? */
int template_has_field(const struct template *tp, const char *name);

/* RFC 2047-encode s if it is not plain ASCII (else copy); output folded with CRLF SP.
 * name_len: length of "Name: " already on the line.  Returns malloc'ed string. */
char *mime_encode_header(const char *s, size_t name_len);

#endif
