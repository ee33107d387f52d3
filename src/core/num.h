/*
 * num.h - strict parsing of numbers written by people: counts, percentages,
 * sizes ("25M") and durations ("50ms", "2s", "5m").  Every function accepts
 * the whole string or nothing: no sign, no spaces, no trailing junk, no
 * overflow.
 */
#ifndef TERN_CORE_NUM_H
#define TERN_CORE_NUM_H

#include <stdint.h>

/* Decimal digits only, value <= max.  Returns 0 or -1. */
int num_parse_u64(const char *s, uint64_t max, uint64_t *out);

/* "12" or "12.5", 0..100.  Returns 0 or -1. */
int num_parse_percent(const char *s, double *out);

/* Digits with an optional K, M or G suffix (powers of 1024), <= max. */
int num_parse_size(const char *s, uint64_t max, uint64_t *out);

/* Digits with a unit ms, s, m, h or d (a bare number is seconds); into milliseconds. */
int num_parse_duration_ms(const char *s, uint64_t *out_ms);

#endif
