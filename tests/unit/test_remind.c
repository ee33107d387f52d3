/*
 * test_remind.c - unit tests for send/remind.c: window lists (units,
 * sorting, duplicates and malformed items refused), ISO 8601 times (the
 * listed forms, zones, leap days; malformed ones refused; independent of
 * TZ), and remind_due() over simulated days: one reminder per window as the
 * expiry approaches, only the latest window after missed days, nothing
 * after the expiry or when a smaller window was already sent.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "send/remind.h"

#define DAY 86400

static void test_windows(void **state)
{
    (void)state;
    struct remind_windows w;
    char why[256];

    assert_int_equal(remind_parse_windows("30d,7d,1d", &w, why, sizeof(why)), 0);
    assert_int_equal(w.n, 3);
    assert_int_equal(w.secs[0], 30 * DAY);
    assert_int_equal(w.secs[1], 7 * DAY);
    assert_int_equal(w.secs[2], DAY);

    assert_int_equal(remind_parse_windows(" 1h , 2w,90s,5m,3d ", &w, why, sizeof(why)), 0);
    assert_int_equal(w.n, 5);
    int64_t want[] = {14 * DAY, 3 * DAY, 3600, 300, 90};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(w.secs[i], want[i]);

    assert_int_equal(remind_parse_windows("1d", &w, why, sizeof(why)), 0);
    assert_int_equal(w.n, 1);
}

static void test_window_errors(void **state)
{
    (void)state;
    struct remind_windows w;
    char why[256];
    static const struct {
        const char *in, *why;
    } cases[] = {
        {"", "reminder windows: empty window in ''"},
        {"30d,,1d", "reminder windows: empty window in '30d,,1d'"},
        {"30d,", "reminder windows: empty window in '30d,'"},
        {"30", "reminder windows: expected a number and a unit (s m h d w), not '30'"},
        {"d", "reminder windows: expected a number and a unit (s m h d w), not 'd'"},
        {"3 d", "reminder windows: expected a number and a unit (s m h d w), not '3 d'"},
        {"-1d", "reminder windows: expected a number and a unit (s m h d w), not '-1d'"},
        {"1dd", "reminder windows: expected a number and a unit (s m h d w), not '1dd'"},
        {"2y", "reminder windows: unknown unit (use s m h d w) in '2y'"},
        {"0d", "reminder windows: a window must be longer than zero: '0d'"},
        {"7d,30d,7d", "reminder windows: the same window twice: '7d'"},
        {"1d,24h", "reminder windows: the same window twice: '24h'"},
        {"99999999999999999999d", "reminder windows: window too large: '99999999999999999999d'"},
        {"40000d", "reminder windows: window too large: '40000d'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(remind_parse_windows(cases[i].in, &w, why, sizeof(why)), -1);
        assert_string_equal(why, cases[i].why);
    }
    assert_int_equal(remind_parse_windows("1s,2s,3s,4s,5s,6s,7s,8s,9s,10s,11s,12s,13s,14s,15s,16s",
                                          &w, why, sizeof(why)),
                     0);
    assert_int_equal(
        remind_parse_windows("1s,2s,3s,4s,5s,6s,7s,8s,9s,10s,11s,12s,13s,14s,15s,16s,17s", &w, why,
                             sizeof(why)),
        -1);
    assert_string_equal(why, "reminder windows: more than 16");
}

static void test_parse_time(void **state)
{
    (void)state;
    time_t t;
    const time_t dec1 = 1796083200; /* 2026-12-01T00:00:00Z */

    /* the local zone must not matter */
    setenv("TZ", "America/New_York", 1);
    tzset();
    static const struct {
        const char *in;
        time_t want;
    } ok[] = {
        {"2026-12-01", dec1},
        {"2026-12-01T10:00:00Z", dec1 + 10 * 3600},
        {"2026-12-01 10:00:00+02:00", dec1 + 8 * 3600},
        {"2026-12-01T10:00:00", dec1 + 10 * 3600},
        {"2026-12-01T10:00Z", dec1 + 10 * 3600},
        {"2026-12-01t10:00:00z", dec1 + 10 * 3600},
        {"2026-12-01T10:00:00.123Z", dec1 + 10 * 3600},
        {"2026-12-01T10:00:00-0530", dec1 + 15 * 3600 + 1800},
        {"2026-12-01T01:00:00+05", dec1 - 4 * 3600},
        {"  2026-12-01  ", dec1},
        {"2028-02-29", 1835395200},
        {"1970-01-01T00:00:00Z", 0},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        t = 1;
        assert_int_equal(remind_parse_time(ok[i].in, &t), 0);
        assert_int_equal(t, ok[i].want);
    }
    static const char *const bad[] = {
        "",
        "2026",
        "2026-12",
        "2026-1-01",
        "26-12-01",
        "2026/12/01",
        "2026-13-01",
        "2026-00-10",
        "2026-12-32",
        "2026-02-29",
        "2100-02-29",
        "2026-12-01T",
        "2026-12-01T10",
        "2026-12-01T24:00:00Z",
        "2026-12-01T10:60:00Z",
        "2026-12-01T10:00:61Z",
        "2026-12-01T10:00:00+",
        "2026-12-01T10:00:00+2",
        "2026-12-01T10:00:00+24:00",
        "2026-12-01T10:00:00+02:60",
        "2026-12-01T10:00:00.Z",
        "2026-12-01T10:00:00ZZ",
        "2026-12-01 garbage",
        "2026-12-01x",
        "tomorrow",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(remind_parse_time(bad[i], &t), -1);
    unsetenv("TZ");
    tzset();
}

static void test_due_days(void **state)
{
    (void)state;
    struct remind_windows w;
    char why[256];
    const time_t exp = 1796119200;

    assert_int_equal(remind_parse_windows("30d,7d,1d", &w, why, sizeof(why)), 0);
    assert_int_equal(remind_due(&w, exp, exp - 40 * DAY, -1), -1);
    assert_int_equal(remind_due(&w, exp, exp - 31 * DAY, -1), -1);
    assert_int_equal(remind_due(&w, exp, exp - 30 * DAY, -1), 30 * DAY); /* opens exactly */
    assert_int_equal(remind_due(&w, exp, exp - 20 * DAY, 30 * DAY), -1);
    assert_int_equal(remind_due(&w, exp, exp - 5 * DAY, 30 * DAY), 7 * DAY);
    assert_int_equal(remind_due(&w, exp, exp - 5 * DAY, 7 * DAY), -1);
    assert_int_equal(remind_due(&w, exp, exp - DAY / 2, 7 * DAY), DAY);
    assert_int_equal(remind_due(&w, exp, exp - DAY / 2, DAY), -1);
    /* missed days: the first run half a day before, nothing sent yet: only 1d */
    assert_int_equal(remind_due(&w, exp, exp - DAY / 2, -1), DAY);
    /* after (or at) the expiry: nothing */
    assert_int_equal(remind_due(&w, exp, exp, -1), -1);
    assert_int_equal(remind_due(&w, exp, exp + DAY, -1), -1);
    /* an unknown smaller window already sent also silences the larger ones */
    assert_int_equal(remind_due(&w, exp, exp - 6 * DAY, 3600), -1);

    /* a daily run from 45 days before: exactly three reminders, 30d, 7d, 1d */
    int64_t sent = -1, got[8];
    int n = 0;
    for (int64_t now = exp - 45 * DAY; now < exp + 3 * DAY; now += DAY) {
        int64_t due = remind_due(&w, exp, (time_t)now, sent);
        if (due >= 0) {
            assert_true(n < 8);
            got[n++] = due;
            sent = due;
        }
    }
    assert_int_equal(n, 3);
    assert_int_equal(got[0], 30 * DAY);
    assert_int_equal(got[1], 7 * DAY);
    assert_int_equal(got[2], DAY);

    /* a run every 10 days from 45 days before: missed windows are not made up */
    sent = -1;
    n = 0;
    for (int64_t now = exp - 45 * DAY; now < exp + 3 * DAY; now += 10 * DAY) {
        int64_t due = remind_due(&w, exp, (time_t)now, sent);
        if (due >= 0) {
            got[n++] = due;
            sent = due;
        }
    }
    /* runs at -45, -35, -25 (30d), -15, -5 (7d), +5 */
    assert_int_equal(n, 2);
    assert_int_equal(got[0], 30 * DAY);
    assert_int_equal(got[1], 7 * DAY);

    /* the ledger could not say (-2): nothing, rather than a possible duplicate */
    assert_int_equal(remind_due(&w, exp, exp - DAY / 2, -2), -1);

    /* no windows: nothing is ever due */
    w.n = 0;
    assert_int_equal(remind_due(&w, exp, exp - DAY, -1), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_windows),
        cmocka_unit_test(test_window_errors),
        cmocka_unit_test(test_parse_time),
        cmocka_unit_test(test_due_days),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
