/*
 * remind.h - reminder mode of `tern send` (what Boulder's expiration-mailer
 * does): which reminder, if any, is due for a row now.
 *
 * Windows are durations before the expiry ("30d,7d,1d").  At time now, the
 * windows that have opened are those with now >= expires - window.  Only
 * the latest opened one (the smallest window) is due, so a run after missed
 * days sends one message, not a burst.  Nothing is due once the expiry has
 * passed, or when the ledger already holds a window <= the due one.
 */
#ifndef TERN_SEND_REMIND_H
#define TERN_SEND_REMIND_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define REMIND_MAX_WINDOWS 16

struct remind_windows {
    int64_t secs[REMIND_MAX_WINDOWS]; /* sorted, largest first */
    size_t n;
};

/* "30d,7d,1d" (units s m h d w); -1 with why. */
int remind_parse_windows(const char *s, struct remind_windows *w, char *why, size_t whysize);
/* ISO 8601: "2026-12-01", "2026-12-01T10:00:00Z", "2026-12-01 10:00:00+02:00";
 * a date or time without a zone is UTC.  -1 if malformed. */
int remind_parse_time(const char *s, time_t *out);
/* The due window in seconds, or -1 if none is due.  min_sent: smallest window already
 * sent (-1 if none; anything below -1, such as ledger_min_window_sent's -2 for a database
 * error, means unknown, and then nothing is due rather than a possible duplicate). */
int64_t remind_due(const struct remind_windows *w, time_t expires, time_t now, int64_t min_sent);

#endif
