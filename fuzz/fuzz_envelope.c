/*
 * fuzz_envelope.c - libFuzzer harness for queue/envelope.c.
 *
 * The input is an envelope file.  Invariants: envelope_parse() returns one of
 * its three results and fills the reason for the two failures; an envelope
 * that parses formats (envelope_format() accepts everything the parser
 * produced), re-parses to an equal envelope, and formats to the same octets
 * again; a parsed envelope has the message checksum exactly when it is
 * version 2 (and formats as the version it was read as); every proper
 * prefix of a formatted envelope is INCOMPLETE.  The
 * input is copied into an exact-size heap block, so a read past len is
 * caught by ASan.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue/envelope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size ? size : 1);
    if (!copy)
        abort();
    memcpy(copy, data, size);

    struct envelope a, b;
    char why[200];
    int rc = envelope_parse(copy, size, &a, why, sizeof(why));
    if (rc != ENV_OK && rc != ENV_INCOMPLETE && rc != ENV_CORRUPT)
        abort();
    if (rc != ENV_OK && strncmp(why, "line ", 5) != 0)
        abort();
    if (rc == ENV_OK) {
        struct buf t1 = {0}, t2 = {0};
        if ((a.version == 2) != a.msg_sum || (a.version != 1 && a.version != 2))
            abort();
        if (envelope_format(&a, &t1) != 0)
            abort();
        if (t1.len < 16 || t1.p[14] != (char)('0' + a.version))
            abort();
        if (envelope_parse(t1.p, t1.len, &b, why, sizeof(why)) != ENV_OK)
            abort();
        if (!envelope_equal(&a, &b))
            abort();
        if (envelope_format(&b, &t2) != 0 || t1.len != t2.len || memcmp(t1.p, t2.p, t1.len) != 0)
            abort();
        envelope_free(&b);
        /* a cut-short write is recognised as such (one cut point per input) */
        size_t cut = size % t1.len;
        if (envelope_parse(t1.p, cut, &b, NULL, 0) != ENV_INCOMPLETE)
            abort();
        envelope_free(&b);
        buf_free(&t1);
        buf_free(&t2);
    }
    envelope_free(&a);
    free(copy);
    return 0;
}
