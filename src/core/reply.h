/*
 * reply.h - SMTP replies: building them (server side) and parsing them
 * (client side).
 *
 * Builder: a reply is "CODE SP [ENH SP] TEXT CRLF", or several lines with
 * "CODE-" on all but the last.  Text is cleaned: any control character
 * becomes '?', and a line is cut so that it fits SMTP_REPLY_LINE_MAX.
 *
 * Parser: fed one line at a time (without CRLF).  It checks the 3-digit code
 * (2xx..5xx), the separator, that every line of a multi-line reply carries
 * the same code, and an optional enhanced status code (class must match the
 * code's first digit).  Lines and line count are bounded.  The parsed text
 * keeps each line's text joined with '\n' (the enhanced code and the space
 * after it are left out; a continuation line's copy of the same code too);
 * control characters in received text become '?'.
 */
#ifndef TERN_CORE_REPLY_H
#define TERN_CORE_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#define REPLY_LINES_MAX 100 /* lines in one multi-line reply */
#define REPLY_TEXT_MAX 4096 /* total text kept (longer text is truncated, not an error) */
#define ENH_MAX 16          /* "5.123.456" + NUL fits */

/* Format one reply line into buf (NUL-terminated); returns the length needed (like snprintf).
 * enh may be NULL or "".  'last' false gives "CODE-".  A code outside 200..599, or an enh
 * that is not "X.Y.Z" with X equal to the code's first digit, is a caller bug: abort(). */
size_t reply_format_line(char *buf, size_t size, int code, const char *enh, bool last,
                         const char *text);

struct reply {
    int code;          /* 200..599 */
    char enh[ENH_MAX]; /* enhanced status code of the first line, "" if none */
    char text[REPLY_TEXT_MAX];
    size_t textlen;
    size_t nlines;
};

enum reply_status { REPLY_MORE, REPLY_DONE, REPLY_ERROR };

struct reply_parser {
    struct reply r;
    int state;         /* 0 = expecting first line, 1 = inside multi-line, 2 = done, 3 = error */
    const char *error; /* static text when REPLY_ERROR */
};

void reply_parser_init(struct reply_parser *p);

/* Feed one line (no CRLF).  REPLY_DONE: p->r holds the reply; call reply_parser_init again
 * before the next one.  REPLY_ERROR: protocol error, p->error says why. */
enum reply_status reply_parser_line(struct reply_parser *p, const char *line, size_t len);

/* Parse "X.Y.Z" at s[0..len), class X in {2,4,5}, Y and Z 0..999 without leading junk.
 * Returns octets used (0 if none). */
size_t enh_parse(const char *s, size_t len);

#endif
