/*
 * clock.h - small shared utilities for time and randomness that several
 * layers need: a monotonic clock (for deadlines, never for dates) and the
 * splitmix64 generator (reproducible from a seed; not for secrets).
 */
#ifndef TERN_CORE_CLOCK_H
#define TERN_CORE_CLOCK_H

#include <stdint.h>

/* Monotonic time in microseconds / milliseconds. */
uint64_t clock_mono_us(void);
uint64_t clock_mono_ms(void);

/* splitmix64: the next 64 random bits from *state. */
uint64_t rand_next(uint64_t *state);
/* A uniform double in [0, 1). */
double rand_u01(uint64_t *state);

#endif
