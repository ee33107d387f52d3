/*
 * fuzz_log.c - libFuzzer harness for log_escape() (core/log.c).
 *
 * The first byte picks the output size (0..255, or 4 KiB); the rest is the
 * text.  The output must be NUL-terminated within the size, hold no control
 * octet (C0, DEL), be valid UTF-8, and unescape (\\xNN, \\\\) to a prefix of
 * the input that ends on a whole input character: nothing forged, nothing
 * lost in the middle.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Length of a valid UTF-8 sequence at p (strict), 0 if none. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    size_t len = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : 2;
    if (p[0] < 0xc2 || p[0] > 0xf4 || n < len)
        return 0;
    uint32_t cp = p[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char out[4096], back[4096];
    if (size < 1)
        return 0;
    size_t osize = data[0] == 255 ? sizeof(out) : data[0];
    const char *in = (const char *)data + 1;
    size_t n = size - 1;

    memset(out, 'Z', sizeof(out));
    size_t len = log_escape(in, n, out, osize);
    if (osize == 0) {
        if (len != 0)
            abort();
        return 0;
    }
    if (len >= osize || out[len] != '\0' || strlen(out) != len)
        abort();
    size_t b = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)out[i];
        if (c < 0x20 || c == 0x7f)
            abort();
        if (c == '\\') {
            if (out[i + 1] == '\\') {
                back[b++] = '\\';
                i += 2;
                continue;
            }
            if (out[i + 1] != 'x' || hexval(out[i + 2]) < 0 || hexval(out[i + 3]) < 0)
                abort();
            back[b++] = (char)(hexval(out[i + 2]) << 4 | hexval(out[i + 3]));
            i += 4;
            continue;
        }
        size_t k = c < 0x80 ? 1 : utf8_len((const unsigned char *)out + i, len - i);
        if (k == 0)
            abort();
        memcpy(back + b, out + i, k);
        b += k;
        i += k;
    }
    if (b > n || memcmp(back, in, b) != 0)
        abort();
    /* it stops only where the next character would not fit (at most 12 octets: a
     * 3-octet character escaped) */
    if (b < n && len + 12 < osize)
        abort();
    return 0;
}
