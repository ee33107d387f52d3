/*
 * backoff.h - the reconnect schedule: exponential backoff with jitter.
 *
 * Retry k (k = 0 for the first retry) waits 0 for k = 0 (the first retry is
 * immediate: a dropped idle connection is the common case), then
 * base * 2^(k-1), capped at max, each multiplied by a jitter factor drawn
 * uniformly from [0.8, 1.2] (and capped at max again).
 */
#ifndef TERN_CORE_BACKOFF_H
#define TERN_CORE_BACKOFF_H

#include <stdint.h>

/* u01: a uniform draw in [0, 1) supplied by the caller (so tests are exact). */
uint64_t backoff_delay_ms(unsigned retry, uint64_t base_ms, uint64_t max_ms, double u01);

#endif
