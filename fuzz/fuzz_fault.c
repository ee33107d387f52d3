/*
 * fuzz_fault.c - the sink's fault specifications (--fail CMD:CODE:P,
 * --delay CMD:MS) on arbitrary strings.  Invariants: an accepted rule has
 * a code from 400 to 599, a percentage from 0 to 100 and a known point.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sink/fault.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char s[128], why[256];
    struct fault_rule r;
    enum fault_point p;
    unsigned ms;

    if (size >= sizeof(s))
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    if (fault_parse_fail(s, &r, why, sizeof(why)) == 0 &&
        (r.code < 400 || r.code > 599 || r.percent < 0 || r.percent > 100 || r.point >= FP__COUNT))
        abort();
    if (fault_parse_delay(s, &p, &ms, why, sizeof(why)) == 0 &&
        (ms > FAULT_DELAY_MAX || p >= FP__COUNT))
        abort();
    return 0;
}
