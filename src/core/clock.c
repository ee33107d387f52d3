/*
 * clock.c - monotonic clock and splitmix64 (see clock.h).
 */
#include "core/clock.h"

#include <time.h>

uint64_t clock_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t clock_mono_ms(void)
{
    return clock_mono_us() / 1000;
}

uint64_t rand_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double rand_u01(uint64_t *state)
{
    return (double)(rand_next(state) >> 11) * (1.0 / 9007199254740992.0);
}
