/*
 * arh.h - the Authentication-Results header field (RFC 8601): building ours,
 * and removing the copies that claim to be ours from a received message.
 *
 *   arh_build()  "Authentication-Results: ID;\r\n\tspf=pass smtp.mailfrom=a@b;\r\n\t..."
 *                Every value (domains from DNS, addresses and selectors from
 *                the peer) is written as a token when it is made only of
 *                harmless characters, else as a quoted-string with '"' and '\'
 *                escaped; control characters and non-ASCII octets become '?';
 *                each value is cut at ARH_VALUE_MAX octets.  Comments (reasons)
 *                are made of printable ASCII only, parentheses and '\' escaped.
 *   arh_strip()  removes, in place, every Authentication-Results field of the
 *                header section whose authserv-id equals ours (no case; RFC
 *                8601 section 5: a receiver must delete forged copies of its own
 *                results); fields of other ids are kept as they are.
 *
 * Pure: no I/O; arh_build() appends to a struct buf.
 */
#ifndef TERN_MAILAUTH_ARH_H
#define TERN_MAILAUTH_ARH_H

#include <stddef.h>

#include "core/buf.h"

#define ARH_VALUE_MAX 256
#define ARH_COMMENT_MAX 200
#define ARH_PROPS_MAX 4

/* One resinfo: "method=result (reason) ptype.property=value ..." */
struct arh_result {
    const char *method; /* "spf", "dkim", "dmarc" (ours: plain tokens) */
    const char *result; /* "pass", "fail", ... (ours) */
    const char *reason; /* a comment after the result, or NULL / "" */
    struct {
        const char *name;  /* "smtp.mailfrom", "header.d", ... (ours) */
        const char *value; /* hostile; NULL or "": the property is left out */
    } props[ARH_PROPS_MAX];
    size_t nprops;
};

/*
 * Append the whole field, CRLF-terminated, to out: the authserv-id, then each
 * result on its own folded line, or " none" when n is 0.  Returns 0, or -1
 * when the authserv-id is not a usable token (empty or holds other than
 * letters, digits, '.', '-', '_').
 */
int arh_build(struct buf *out, const char *authserv_id, const struct arh_result *res, size_t n);

/* Writes value as a token or a quoted-string (see above) into out; returns the length. */
size_t arh_value(const char *value, char *out, size_t size);

/*
 * Remove our Authentication-Results fields from msg[0..*len) (header section
 * only: up to the first empty line, CRLF or LF), moving the rest down.  A
 * field whose authserv-id cannot be read is kept.  Returns the number of
 * fields removed; *len is updated.
 */
size_t arh_strip(char *msg, size_t *len, const char *authserv_id);

#endif
