/*
 * base64.c - RFC 4648 base64 (standard alphabet, padded), strict.
 *
 * The decoder accepts only canonical input: length a multiple of four, '='
 * only as the last one or two octets of the last quantum, no white space,
 * and the unused bits before the padding must be zero.  So decoding and then
 * encoding gives back the input exactly, and encoding then decoding too.
 *
 * Both functions NUL-terminate their output and refuse (-1) rather than
 * truncate when out is too small.  Never: allocates or reads past n.
 */
#include "core/base64.h"

#include <limits.h>
#include <stdint.h>

static const char base64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

long base64_encode(const void *in, size_t n, char *out, size_t size)
{
    const unsigned char *p = in;
    size_t need, o = 0, i = 0;

    if (n > (SIZE_MAX / 4) * 3 - 3)
        return -1;
    need = BASE64_ENCODED_LEN(n);
    if (size < need + 1 || need > (size_t)LONG_MAX)
        return -1;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = base64_alphabet[v >> 18];
        out[o++] = base64_alphabet[(v >> 12) & 63];
        out[o++] = base64_alphabet[(v >> 6) & 63];
        out[o++] = base64_alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = base64_alphabet[v >> 18];
        out[o++] = base64_alphabet[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = base64_alphabet[v >> 18];
        out[o++] = base64_alphabet[(v >> 12) & 63];
        out[o++] = base64_alphabet[(v >> 6) & 63];
        out[o++] = '=';
    }
    out[o] = '\0';
    return (long)o;
}

int base64_digit(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

long base64_decode(const char *in, size_t n, unsigned char *out, size_t size)
{
    size_t o = 0, pad = 0, need;

    if (n % 4 != 0)
        return -1;
    if (n > 0 && in[n - 1] == '=')
        pad = (n > 1 && in[n - 2] == '=') ? 2 : 1;
    need = n / 4 * 3 - pad;
    if (size < need + 1 || need > (size_t)LONG_MAX)
        return -1;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        size_t valid = (i + 4 == n) ? 4 - pad : 4;
        for (size_t k = 0; k < 4; k++) {
            v[k] = k < valid ? base64_digit(in[i + k]) : 0;
            if (v[k] < 0)
                return -1;
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        if (valid == 4) {
            out[o++] = (unsigned char)(w >> 16);
            out[o++] = (unsigned char)(w >> 8);
            out[o++] = (unsigned char)w;
        } else if (valid == 3) {
            if (w & 0xff)
                return -1; /* non-zero pad bits */
            out[o++] = (unsigned char)(w >> 16);
            out[o++] = (unsigned char)(w >> 8);
        } else {
            if (w & 0xffff)
                return -1;
            out[o++] = (unsigned char)(w >> 16);
        }
    }
    out[o] = '\0';
    return (long)o;
}
