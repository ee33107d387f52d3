/*
 * header.h - reading RFC 5322 header fields out of a raw message.
 *
 * header_get() finds the first field with the given name (case-insensitive)
 * in the header section (which ends at the first empty line; CRLF or LF),
 * unfolds it (CRLF + WSP becomes the WSP), replaces every control character
 * (TAB included) with a space, trims surrounding white space and writes it to
 * out (NUL-terminated, truncated to size-1).  It reads at most the header
 * section and never past len.
 */
#ifndef TERN_CORE_HEADER_H
#define TERN_CORE_HEADER_H

#include <stddef.h>

/* Returns the length written (0 if empty), or -1 if absent (out is then ""). */
long header_get(const char *msg, size_t len, const char *name, char *out, size_t size);

/* Count header fields named name in the header section. */
unsigned header_count(const char *msg, size_t len, const char *name);

#endif
