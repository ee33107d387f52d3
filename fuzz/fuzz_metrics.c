/*
 * fuzz_metrics.c - label values of any octets through the metrics registry
 * and its text exposition (core/metrics.c).  Invariants: the output is
 * valid UTF-8; every line is a comment or a sample of a tern_ metric (an
 * escape can never start a line or close a label value early); a label
 * value cut at METRICS_LABEL_MAX never splits an escape.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"
#include "core/address.h" /* utf8_valid */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char v[2][64];
    size_t n = 0, k = 0;
    metrics_reset();
    /* NUL-separated values, in pairs: a sink fault kind, a courier / class */
    for (size_t i = 0; i <= size && n < 64; i++) {
        if (i == size || data[i] == 0 || k == sizeof(v[0]) - 1) {
            v[n % 2][k] = '\0';
            if (n % 2)
                metrics_inc(M_DELIVERY_ATTEMPTS, v[0], v[1]);
            else
                metrics_inc(M_SINK_FAULTS, v[0], NULL);
            metrics_observe(M_DELIVERY_LATENCY, (double)k, v[n % 2], NULL);
            n++;
            k = 0;
        } else {
            v[n % 2][k++] = (char)data[i];
        }
    }
    struct buf b = {0};
    metrics_expose(METRICS_SERVE | METRICS_SINK | METRICS_SEND, &b);
    if (!utf8_valid(b.p, b.len))
        abort();
    for (size_t i = 0; i < b.len;) {
        const char *line = b.p + i, *nl = memchr(line, '\n', b.len - i);
        if (!nl)
            abort(); /* every line ends in \n */
        if (strncmp(line, "# HELP tern_", 12) != 0 && strncmp(line, "# TYPE tern_", 12) != 0 &&
            strncmp(line, "tern_", 5) != 0)
            abort();
        i = (size_t)(nl - b.p) + 1;
    }
    buf_free(&b);
    return 0;
}
