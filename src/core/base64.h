/*
 * base64.h - RFC 4648 base64 for SASL (AUTH PLAIN / LOGIN).
 *
 * Strict decoding: the standard alphabet, '=' padding required to a multiple
 * of four, no white space, nothing after the padding.
 */
#ifndef TERN_CORE_BASE64_H
#define TERN_CORE_BASE64_H

#include <stddef.h>

/* Encoded length for n octets, without the NUL. */
#define BASE64_ENCODED_LEN(n) ((((n) + 2) / 3) * 4)

/* Encodes into out (NUL-terminated); returns the length or -1 if out is too small. */
long base64_encode(const void *in, size_t n, char *out, size_t size);

/* Decodes into out (NUL-terminated too, for convenience); returns the decoded
 * length or -1 if malformed or too long for out. */
long base64_decode(const char *in, size_t n, unsigned char *out, size_t size);

/* The value 0..63 of one base64 character (RFC 4648 alphabet), or -1. */
int base64_digit(int c);

#endif
