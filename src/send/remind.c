/*
 * remind.c - reminder mode of `tern send`: windows, expiry times, and the
 * one reminder due for a row.
 *
 * Windows are "N<unit>" items (s m h d w) separated by commas, kept sorted
 * largest first; a duplicate (also "1d,24h") is an error, so that every
 * window names one distinct ledger key.  Times are ISO 8601, read by hand
 * and turned into time_t with timegm(), so the local time zone never takes
 * part; a missing zone means UTC.  remind_due() is pure arithmetic on
 * 64-bit seconds, with overflow checked; nothing here allocates, prints or
 * reads the clock.
 */
#include "send/remind.h"

#include <stdio.h>
#include <string.h>

#define REMIND_MAX_SECS ((int64_t)100 * 366 * 86400) /* a century is plenty */

static void remind_fail(char *why, size_t whysize, const char *what, const char *item, size_t len)
{
    if (whysize > 0)
        snprintf(why, whysize, "reminder windows: %s '%.*s'", what, (int)len, item);
}

int remind_parse_windows(const char *s, struct remind_windows *w, char *why, size_t whysize)
{
    const char *p = s;

    memset(w, 0, sizeof(*w));
    if (whysize > 0)
        why[0] = '\0';
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *a = p, *b = p + len;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        if (a == b) {
            remind_fail(why, whysize, "empty window in", s, strlen(s));
            return -1;
        }
        int64_t n = 0, unit;
        const char *q = a;
        while (q < b && *q >= '0' && *q <= '9') {
            n = n * 10 + (*q - '0');
            if (n > REMIND_MAX_SECS) {
                remind_fail(why, whysize, "window too large:", a, (size_t)(b - a));
                return -1;
            }
            q++;
        }
        if (q == a || q + 1 != b) {
            remind_fail(why, whysize, "expected a number and a unit (s m h d w), not", a,
                        (size_t)(b - a));
            return -1;
        }
        switch (*q) {
        case 's':
            unit = 1;
            break;
        case 'm':
            unit = 60;
            break;
        case 'h':
            unit = 3600;
            break;
        case 'd':
            unit = 86400;
            break;
        case 'w':
            unit = 7 * 86400;
            break;
        default:
            remind_fail(why, whysize, "unknown unit (use s m h d w) in", a, (size_t)(b - a));
            return -1;
        }
        if (n == 0) {
            remind_fail(why, whysize, "a window must be longer than zero:", a, (size_t)(b - a));
            return -1;
        }
        if (n > REMIND_MAX_SECS / unit) {
            remind_fail(why, whysize, "window too large:", a, (size_t)(b - a));
            return -1;
        }
        int64_t secs = n * unit;
        for (size_t i = 0; i < w->n; i++) {
            if (w->secs[i] == secs) {
                remind_fail(why, whysize, "the same window twice:", a, (size_t)(b - a));
                return -1;
            }
        }
        if (w->n == REMIND_MAX_WINDOWS) {
            if (whysize > 0)
                snprintf(why, whysize, "reminder windows: more than %d", REMIND_MAX_WINDOWS);
            return -1;
        }
        /* insert, keeping the largest first */
        size_t at = w->n;
        while (at > 0 && w->secs[at - 1] < secs) {
            w->secs[at] = w->secs[at - 1];
            at--;
        }
        w->secs[at] = secs;
        w->n++;
        if (end == NULL)
            break;
        p = end + 1;
    }
    return 0;
}

/* Exactly n digits at *p into *v; advances *p. */
static int remind_digits(const char **p, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return -1;
        *v = *v * 10 + (c - '0');
    }
    *p += n;
    return 0;
}

static int remind_mdays(int year, int mon)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return mon == 2 && leap ? 29 : days[mon - 1];
}

int remind_parse_time(const char *s, time_t *out)
{
    const char *p = s;
    int y, mo, d, h = 0, mi = 0, sec = 0, zs = 0;

    while (*p == ' ' || *p == '\t')
        p++;
    if (remind_digits(&p, 4, &y) != 0 || *p++ != '-' || remind_digits(&p, 2, &mo) != 0 ||
        *p++ != '-' || remind_digits(&p, 2, &d) != 0)
        return -1;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > remind_mdays(y, mo))
        return -1;
    if (*p == 'T' || *p == 't' || (*p == ' ' && p[1] >= '0' && p[1] <= '9')) {
        p++;
        if (remind_digits(&p, 2, &h) != 0 || *p++ != ':' || remind_digits(&p, 2, &mi) != 0)
            return -1;
        if (*p == ':') {
            p++;
            if (remind_digits(&p, 2, &sec) != 0)
                return -1;
            if (*p == '.' || *p == ',') { /* fractions of a second are dropped */
                p++;
                if (*p < '0' || *p > '9')
                    return -1;
                while (*p >= '0' && *p <= '9')
                    p++;
            }
        }
        if (h > 23 || mi > 59 || sec > 60)
            return -1;
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int sign = *p++ == '-' ? -1 : 1, zh, zm = 0;
            if (remind_digits(&p, 2, &zh) != 0)
                return -1;
            if (*p == ':') {
                p++;
                if (remind_digits(&p, 2, &zm) != 0)
                    return -1;
            } else if (*p >= '0' && *p <= '9') {
                if (remind_digits(&p, 2, &zm) != 0)
                    return -1;
            }
            if (zh > 23 || zm > 59)
                return -1;
            zs = sign * (zh * 3600 + zm * 60);
        }
    }
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != '\0')
        return -1;

    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    *out = t - zs;
    return 0;
}

int64_t remind_due(const struct remind_windows *w, time_t expires, time_t now, int64_t min_sent)
{
    int64_t left, due = -1;

    if (min_sent < -1) /* unknown (a ledger error): never risk a duplicate */
        return -1;
    if (now >= expires || __builtin_sub_overflow((int64_t)expires, (int64_t)now, &left))
        return -1;
    /* open: now >= expires - secs, i.e. secs >= left; the smallest open one is due */
    for (size_t i = 0; i < w->n; i++)
        if (w->secs[i] >= left)
            due = w->secs[i];
    if (due < 0)
        return -1;
    if (min_sent >= 0 && min_sent <= due)
        return -1;
    return due;
}
