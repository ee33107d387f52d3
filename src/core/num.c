/*
 * num.c - strict number parsing (see num.h).  Pure functions, no locale.
 */
#include "core/num.h"

#include <string.h>

static int num_digits(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 20)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

int num_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    return num_digits(s, strlen(s), max, out);
}

int num_parse_percent(const char *s, double *out)
{
    const char *dot = strchr(s, '.');
    uint64_t ip, fp = 0;
    double frac = 0;
    if (!dot)
        dot = s + strlen(s);
    if (num_digits(s, (size_t)(dot - s), 100, &ip) < 0)
        return -1;
    if (*dot) {
        size_t fl = strlen(dot + 1);
        if (fl == 0 || fl > 6 || num_digits(dot + 1, fl, 999999, &fp) < 0)
            return -1;
        frac = (double)fp;
        for (size_t i = 0; i < fl; i++)
            frac /= 10;
    }
    if (ip + frac > 100.0)
        return -1;
    *out = (double)ip + frac;
    return 0;
}

int num_parse_size(const char *s, uint64_t max, uint64_t *out)
{
    size_t n = strlen(s);
    uint64_t mult = 1, v;
    if (n > 0) {
        switch (s[n - 1]) {
        case 'k':
        case 'K':
            mult = 1024;
            break;
        case 'm':
        case 'M':
            mult = 1024 * 1024;
            break;
        case 'g':
        case 'G':
            mult = 1024 * 1024 * 1024;
            break;
        }
    }
    if (mult > 1)
        n--;
    if (num_digits(s, n, UINT64_MAX / mult, &v) < 0 || v * mult > max)
        return -1;
    *out = v * mult;
    return 0;
}

int num_parse_duration_ms(const char *s, uint64_t *out_ms)
{
    size_t n = strlen(s), d = 0;
    uint64_t v, mult;
    while (d < n && s[d] >= '0' && s[d] <= '9')
        d++;
    const char *unit = s + d;
    if (strcmp(unit, "ms") == 0)
        mult = 1;
    else if (strcmp(unit, "s") == 0 || *unit == '\0')
        mult = 1000;
    else if (strcmp(unit, "m") == 0)
        mult = 60 * 1000;
    else if (strcmp(unit, "h") == 0)
        mult = 3600 * 1000;
    else if (strcmp(unit, "d") == 0)
        mult = 86400ULL * 1000;
    else
        return -1;
    if (num_digits(s, d, UINT64_MAX / mult, &v) < 0)
        return -1;
    *out_ms = v * mult;
    return 0;
}
