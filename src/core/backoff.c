/*
 * backoff.c - exponential backoff with jitter (see backoff.h).  Pure: the
 * randomness comes from the caller.
 */
#include "core/backoff.h"

uint64_t backoff_delay_ms(unsigned retry, uint64_t base_ms, uint64_t max_ms, double u01)
{
    if (retry == 0)
        return 0;
    uint64_t d = base_ms;
    for (unsigned i = 1; i < retry && d < max_ms; i++)
        d = d > max_ms / 2 ? max_ms : d * 2;
    if (d > max_ms)
        d = max_ms;
    double j = (double)d * (0.8 + 0.4 * u01);
    uint64_t r = (uint64_t)j;
    return r > max_ms ? max_ms : r;
}
