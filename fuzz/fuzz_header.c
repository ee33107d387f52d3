/*
 * fuzz_header.c - libFuzzer harness for core/header.c.
 *
 * The first byte gives the length of a field name taken from the following
 * bytes; the rest is a message.  Invariants: the result fits the output,
 * matches strlen, holds no control character and no surrounding space; a
 * smaller output gives a prefix of the larger one; header_count() is
 * non-zero exactly when header_get() finds the field; and nothing past len
 * is read (the message is copied into an exact-size heap block).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/header.h"

static void check_value(const char *out, long n, size_t size)
{
    if (n < 0)
        return;
    if ((size_t)n >= size || strlen(out) != (size_t)n)
        abort();
    for (long i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];
        if (c < 0x20 || c == 0x7f)
            abort();
    }
    if (n > 0 && (out[0] == ' ' || out[n - 1] == ' '))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char name[32], big[1024], small[9];

    if (size < 1)
        return 0;
    size_t nl = data[0] % sizeof(name);
    if (nl > size - 1)
        nl = size - 1;
    memcpy(name, data + 1, nl);
    name[nl] = '\0';
    size_t len = size - 1 - nl;
    char *msg = malloc(len ? len : 1);
    if (msg == NULL)
        abort();
    memcpy(msg, data + 1 + nl, len);

    long a = header_get(msg, len, name, big, sizeof(big));
    long b = header_get(msg, len, name, small, sizeof(small));
    check_value(big, a, sizeof(big));
    check_value(small, b, sizeof(small));
    if ((a < 0) != (b < 0))
        abort();
    if (a < 0 && (big[0] != '\0' || small[0] != '\0'))
        abort();
    if (b > 0 && strncmp(big, small, (size_t)b) != 0)
        abort();
    unsigned count = header_count(msg, len, name);
    if ((count > 0) != (a >= 0))
        abort();
    if (header_get(msg, len, name, NULL, 0) != (a < 0 ? -1 : 0))
        abort();
    free(msg);
    return 0;
}
