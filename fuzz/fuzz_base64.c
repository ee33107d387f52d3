/*
 * fuzz_base64.c - libFuzzer harness for core/base64.c.
 *
 * Encode then decode must give the input back, with the exact output size
 * accepted and one octet less refused.  Decoding the raw input as base64,
 * when accepted, must re-encode to exactly the input (the decoder is strict
 * and canonical), and the decoded length must be the documented one.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t elen = BASE64_ENCODED_LEN(size);
    char *enc = malloc(elen + 1);
    unsigned char *dec = malloc(size + 1);

    if (enc == NULL || dec == NULL)
        abort();
    if (base64_encode(data, size, enc, elen) != -1)
        abort();
    if (base64_encode(data, size, enc, elen + 1) != (long)elen || strlen(enc) != elen)
        abort();
    if (size > 0 && base64_decode(enc, elen, dec, size) != -1)
        abort();
    if (base64_decode(enc, elen, dec, size + 1) != (long)size || memcmp(dec, data, size) != 0)
        abort();
    free(enc);
    free(dec);

    /* the input as base64 text */
    unsigned char *out = malloc(size + 1);
    char *again = malloc(BASE64_ENCODED_LEN(size) + 1);
    if (out == NULL || again == NULL)
        abort();
    long n = base64_decode((const char *)data, size, out, size + 1);
    if (n >= 0) {
        if (size % 4 != 0 || (size_t)n > size / 4 * 3 || (size_t)n + 2 < size / 4 * 3)
            abort();
        if (out[n] != 0)
            abort();
        long m = base64_encode(out, (size_t)n, again, BASE64_ENCODED_LEN(size) + 1);
        if (m != (long)size || memcmp(again, data, size) != 0)
            abort();
    }
    free(out);
    free(again);
    return 0;
}
