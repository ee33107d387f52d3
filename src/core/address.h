/*
 * address.h - RFC 5321 mailbox and path parsing.
 *
 * Parses "<local@domain>", "<>" and bare "local@domain".  The local part is
 * kept as written (a quoted local part keeps its quotes and backslashes) so
 * that it can be forwarded unchanged; the domain is kept as written too, an
 * address literal with its brackets.  Limits: local part 64, domain 255,
 * path 256 octets.  CR, LF, NUL and every other control character is refused
 * anywhere, even inside quotes.  Octets >= 0x80 are accepted only with
 * ADDR_ALLOW_UTF8 and only when they form valid UTF-8 (RFC 6531).  A source
 * route ("<@a,@b:user@c>") is accepted and discarded (RFC 5321 4.1.1.3) and
 * reported in had_route.  Nothing is allocated.
 */
#ifndef TERN_CORE_ADDRESS_H
#define TERN_CORE_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>

#define ADDR_LOCAL_MAX 64
#define ADDR_DOMAIN_MAX 255
#define ADDR_PATH_MAX 256 /* incl. the angle brackets */

enum addr_flags {
    ADDR_ALLOW_UTF8 = 1 << 0, /* SMTPUTF8 was given: UTF-8 in local part and domain */
    ADDR_ALLOW_NULL = 1 << 1, /* "<>" is acceptable (MAIL FROM) */
};

enum addr_error {
    ADDR_OK = 0,
    ADDR_ESYNTAX,      /* malformed */
    ADDR_ELOCAL_LONG,  /* local part over 64 octets */
    ADDR_EDOMAIN_LONG, /* domain over 255 octets */
    ADDR_EPATH_LONG,   /* path over 256 octets */
    ADDR_ECTRL,        /* control character (CR, LF, NUL, ...) */
    ADDR_EUTF8,        /* non-ASCII without ADDR_ALLOW_UTF8, or invalid UTF-8 */
    ADDR_ENULL,        /* "<>" where it is not allowed */
    ADDR_EDOMAIN,      /* bad domain syntax (labels, hyphens, empty) */
    ADDR_ELITERAL,     /* bad address literal ([1.2.3.4], [IPv6:...]) */
};

struct mailaddr {
    char local[ADDR_LOCAL_MAX + 1];
    char domain[ADDR_DOMAIN_MAX + 1];
    bool is_null;    /* "<>" */
    bool is_literal; /* domain is an address literal */
    bool is_quoted;  /* local part is a quoted string */
    bool has_utf8;   /* contains octets >= 0x80 */
    bool had_route;  /* a source route was present and discarded */
};

/*
 * Parse a path at s[0..len): it must start with '<'.  On success *used is the
 * number of octets up to and including '>'.  Returns an enum addr_error.
 */
int addr_parse_path(const char *s, size_t len, int flags, struct mailaddr *out, size_t *used);

/* Parse a whole bare mailbox "local@domain" (no brackets, nothing after). */
int addr_parse_mailbox(const char *s, size_t len, int flags, struct mailaddr *out);

/* "local@domain" ("" for the null path) into buf; returns the length it needs. */
size_t addr_format(const struct mailaddr *a, char *buf, size_t size);

/* A short human text for an enum addr_error, e.g. "local part longer than 64 octets". */
const char *addr_strerror(int err);

/* True if s[0..len) is valid UTF-8 (no overlongs, no surrogates). */
bool utf8_valid(const char *s, size_t len);

#endif
