/*
 * utf8.h - the one UTF-8 validator that addresses, logs and everything else
 * share (RFC 3629): overlong forms, surrogates (U+D800..U+DFFF) and code
 * points above U+10FFFF are not valid.  Pure, allocates nothing.
 */
#ifndef TERN_CORE_UTF8_H
#define TERN_CORE_UTF8_H

#include <stddef.h>

/* Length (1 to 4) of the valid UTF-8 sequence at s[0..len), len >= 1; 0 if
 * the octets there are not one. */
size_t utf8_seq_len(const unsigned char *s, size_t len);

#endif
