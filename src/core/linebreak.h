/*
 * linebreak.h - break the over-long lines of a stored message before it goes
 * to a next hop, so that no line there exceeds LINEBREAK_LIMIT (998) octets.
 *
 * A server may take lines up to [server] max_line_length (64 KiB at most);
 * the next hop (RFC 5321 4.5.3.1.6) need not.  Lines of at most `limit`
 * octets are never touched.  A longer line is cut into pieces of at most
 * `width` octets, each cut the only change:
 *   - at a run of white space (SP / HTAB) preceded by text: CRLF is inserted
 *     before the run, so the continuation begins with the white space.  In a
 *     header this is RFC 5322 folding (unfolding gives back the original); in
 *     a body it turns one space into a line break;
 *   - where the window holds no such run: CRLF SP is inserted (what Postfix's
 *     smtp_line_length_limit does), never inside a UTF-8 sequence.
 * Every continuation line therefore begins with white space: it can never be
 * taken for a header field, a MIME boundary, a "From " line or a lone ".",
 * and base64 decoders skip the added octets.
 *
 * Line ends are what data_stuff() takes for them (CRLF, a bare CR, a bare LF),
 * so the lengths counted here are the ones the next hop sees.  Pure: no
 * allocation, no state; output goes through emit as slices of the input and
 * the inserted separators.
 */
#ifndef TERN_CORE_LINEBREAK_H
#define TERN_CORE_LINEBREAK_H

#include <stddef.h>
#include <stdint.h>

#include "core/data.h"

#define LINEBREAK_LIMIT 998 /* octets of a line the next hop may see, CRLF excluded */
#define LINEBREAK_WIDTH 990 /* octets per piece of a broken line (room for a stuffing dot) */

/* Octets of the longest line of msg[0..len), line ends excluded. */
size_t linebreak_longest(const char *msg, size_t len);

/*
 * Emit msg[0..len) with every line longer than limit broken into pieces of at
 * most width octets (2 <= width <= limit, 2 <= limit; other values are
 * clamped).  Returns the octets emitted.
 */
uint64_t linebreak(const char *msg, size_t len, size_t limit, size_t width, data_emit_fn emit,
                   void *ctx);

#endif
