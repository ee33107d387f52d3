/*
 * cmdline.h - a command line from the configuration or an alias, split into
 * an argv without any shell, then filled in with envelope values.
 *
 * Syntax (a small, predictable subset of sh word splitting):
 *   - spaces and tabs separate words;
 *   - '...' groups literally (no escapes inside);
 *   - "..." groups; a backslash inside escapes the next octet, whatever it is;
 *   - outside quotes a backslash escapes the next octet;
 *   - no variables, no globbing, no backticks, no redirections, no ';' or
 *     '|': those octets are ordinary characters of a word;
 *   - control characters (CR, LF, NUL, ...) are refused anywhere;
 *   - at most CMDLINE_MAX_WORDS words and CMDLINE_MAX_LEN octets.
 * An alias's leading '|' is the alias parser's business: strip it first.
 *
 * Substitution (cmdline_expand) happens after splitting, inside each word:
 * %from%, %to%, %to_user%, %to_domain%, %orig_to% are replaced by the
 * envelope values; any other '%' stays as written ("date +%Y%m%d" works).
 * A substituted value is always part of exactly one argv element: it can
 * never add a word.  A value that starts with '-' or contains a control
 * character is refused (so it can never become an option); the program
 * word (argv[0]) may not contain a placeholder at all, and must be an
 * absolute path or a bare name (looked up later in a fixed PATH).
 */
#ifndef TERN_DELIVER_CMDLINE_H
#define TERN_DELIVER_CMDLINE_H

#include <stddef.h>

#include "deliver/courier.h"

#define CMDLINE_MAX_WORDS 64
#define CMDLINE_MAX_LEN 4096 /* octets of the command line, and of the expanded words */

struct cmdline {
    int argc;
    char *argv[CMDLINE_MAX_WORDS + 1]; /* argv[argc] == NULL; words point into buf */
    char buf[CMDLINE_MAX_LEN + CMDLINE_MAX_WORDS];
};

enum cmdline_code {
    CMDLINE_OK = 0,
    CMDLINE_ESYNTAX,  /* unbalanced quote, trailing backslash, control character, empty */
    CMDLINE_ELIMIT,   /* too many words, or too long (before or after substitution) */
    CMDLINE_EPROGRAM, /* program word has a placeholder, or is a relative path */
    CMDLINE_EVALUE,   /* an envelope value was refused ('-' first, control character) */
};

struct cmdline_error {
    enum cmdline_code code;
    size_t pos;       /* ESYNTAX/ELIMIT while splitting: octet offset in the line (0-based) */
    int word;         /* EPROGRAM/EVALUE/ELIMIT while expanding: argv index */
    const char *what; /* static text, e.g. "unterminated double quote" */
    const char *var;  /* EVALUE: the placeholder, e.g. "%to%"; else NULL */
};

/*
 * Split s[0..len) into out.  Returns 0, or -1 with err filled (code, pos,
 * what).  out is always left valid (argc 0 on error).
 */
int cmdline_split(const char *s, size_t len, struct cmdline *out, struct cmdline_error *err);

/*
 * Check the program word of a split template: no placeholder, absolute or
 * a bare name without '/'.  Returns 0 or -1 (code EPROGRAM).  For
 * check-config: cmdline_split() then cmdline_check_program().
 */
int cmdline_check_program(const struct cmdline *tmpl, struct cmdline_error *err);

/*
 * Substitute vars into each word of tmpl, into out (which must not be
 * tmpl).  out->argc == tmpl->argc always on success.  Returns 0, or -1 with
 * err filled (EPROGRAM, EVALUE, ELIMIT); out->argc is 0 on error.
 */
int cmdline_expand(const struct cmdline *tmpl, const struct courier_vars *vars, struct cmdline *out,
                   struct cmdline_error *err);

/* One line for a person: "column 13: unterminated double quote". */
void cmdline_error_format(const struct cmdline_error *err, char *buf, size_t size);

#endif
