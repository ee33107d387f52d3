/*
 * fuzz_arh.c - libFuzzer harness for mailauth/arh.c.
 *
 * The input is a message: arh_strip() must leave a message no longer than
 * before, whose body (after the first empty line) is unchanged, in which
 * no field that arh_strip() would remove is left (a second pass removes
 * nothing).  Its first line is also used as a hostile value: arh_build()
 * must produce one field whose every line ends in CRLF, holds only
 * printable ASCII or TAB, and is under 998 octets.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mailauth/arh.h"

static const char *body_of(const char *m, size_t n, size_t *bl)
{
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || m[i - 1] == '\n') {
            if (m[i] == '\n') {
                *bl = n - i - 1;
                return m + i + 1;
            }
            if (m[i] == '\r' && i + 1 < n && m[i + 1] == '\n') {
                *bl = n - i - 2;
                return m + i + 2;
            }
        }
    }
    *bl = 0;
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *m = malloc(size ? size : 1), *orig = malloc(size ? size : 1);
    if (!m || !orig)
        abort();
    if (size) {
        memcpy(m, data, size);
        memcpy(orig, data, size);
    }
    size_t len = size;
    arh_strip(m, &len, "mx.example.net");
    if (len > size)
        abort();
    size_t bl0, bl1;
    const char *b0 = body_of(orig, size, &bl0), *b1 = body_of(m, len, &bl1);
    if (b0 && (!b1 || bl0 != bl1 || memcmp(b0, b1, bl0) != 0))
        abort();
    size_t len2 = len;
    if (arh_strip(m, &len2, "MX.example.NET") != 0 || len2 != len)
        abort();

    char value[600];
    size_t vl = size < sizeof(value) - 1 ? size : sizeof(value) - 1;
    memcpy(value, data, vl);
    value[vl] = '\0';
    struct arh_result r = {.method = "dkim",
                           .result = "fail",
                           .reason = value,
                           .props = {{"header.d", value}, {"header.s", value}, {"header.b", value}},
                           .nprops = 3};
    struct buf b = {0};
    if (arh_build(&b, "mx.example.net", &r, 1) < 0)
        abort();
    size_t line = 0;
    for (size_t i = 0; i < b.len; i++) {
        unsigned char c = (unsigned char)b.p[i];
        if (c == '\r') {
            if (i + 1 >= b.len || b.p[i + 1] != '\n')
                abort();
            line = 0;
            i++;
            continue;
        }
        if ((c < 0x20 && c != '\t') || c > 0x7e || ++line > 998)
            abort();
    }
    if (b.len < 2 || b.p[b.len - 1] != '\n')
        abort();
    /* our own field is removed by arh_strip */
    buf_append(&b, "\r\n", 2);
    size_t l3 = b.len;
    if (arh_strip(b.p, &l3, "mx.example.net") != 1 || l3 != 2)
        abort();
    buf_free(&b);
    free(m);
    free(orig);
    return 0;
}
