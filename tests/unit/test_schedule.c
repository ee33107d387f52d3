/*
 * test_schedule.c - unit tests for queue/schedule.c with a fake clock (plain
 * integers): ordering by due time, nothing before its time, wake-up times
 * (a full destination causes none), the per-destination limit with one
 * destination down while local work and another destination keep flowing,
 * the global limit, FIFO fairness after a freed slot, reloads that raise and
 * lower limits, retry of all and of one item (also while in flight),
 * hold/release, remove, duplicate and invalid ids, destination case, stats
 * and listing, the retry-delay table; then 200,000 random operations over
 * 5,000 ids checked against a reference model, and 200,000 items drained
 * with a count of the work done and of the bytes per item.
 * schedule_check() verifies the internal invariants throughout.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "queue/schedule.h"

/* ---- helpers ------------------------------------------------------------- */

static void check(const struct schedule *s)
{
    char why[256];
    if (schedule_check(s, why, sizeof(why)) != 0)
        fail_msg("schedule_check: %s", why);
}

static struct schedule *new_sched(unsigned max_inflight, unsigned per_dest)
{
    struct schedule_limits lim = {.max_inflight = max_inflight, .per_dest = per_dest};
    struct schedule *s = schedule_new(&lim);
    assert_non_null(s);
    return s;
}

static void add(struct schedule *s, const char *id, const char *dest, int64_t due)
{
    assert_int_equal(schedule_add(s, id, dest, due), 0);
}

/* schedule_next() must hand out id (NULL: nothing). */
static void expect_next(struct schedule *s, int64_t now, const char *id)
{
    const char *got = schedule_next(s, now, NULL);
    if (!id && got)
        fail_msg("at %lld expected nothing, got %s", (long long)now, got);
    if (id && !got)
        fail_msg("at %lld expected %s, got nothing", (long long)now, id);
    if (id)
        assert_string_equal(got, id);
    check(s);
}

static void expect_state(const struct schedule *s, const char *id, enum schedule_state st,
                         int64_t due)
{
    int64_t got_due = -1;
    assert_int_equal(schedule_lookup(s, id, NULL, &got_due), st);
    assert_int_equal(schedule_state_of(s, id), st);
    assert_true(got_due == due);
}

/* ---- ordering and wake-ups --------------------------------------------- */

static void test_order_by_due(void **state)
{
    (void)state;
    struct schedule *s = new_sched(0, 0);
    add(s, "c", "c.example", 300);
    add(s, "a", "a.example", 100);
    add(s, "b", "", 200);
    add(s, "d", "a.example", 250);
    check(s);
    expect_next(s, 0, NULL);
    expect_next(s, 99, NULL); /* nothing before its time */
    const char *dest = NULL;
    const char *id = schedule_next(s, 100, &dest);
    assert_non_null(id);
    assert_string_equal(id, "a");
    assert_string_equal(dest, "a.example");
    expect_state(s, "a", SCHEDULE_INFLIGHT, 100);
    expect_next(s, 100, NULL);
    expect_next(s, 1000, "b");
    expect_next(s, 1000, "d");
    expect_next(s, 1000, "c");
    expect_next(s, 1000, NULL);
    /* nothing is handed out twice */
    expect_next(s, INT64_MAX, NULL);
    assert_int_equal(schedule_dest_inflight(s, "a.example"), 2);
    assert_int_equal(schedule_dest_inflight(s, ""), 1);
    assert_int_equal(schedule_dest_inflight(s, "nowhere.example"), 0);
    schedule_free(s);
}

static void test_wakeup(void **state)
{
    (void)state;
    struct schedule *s = new_sched(0, 1);
    assert_true(schedule_wakeup(s, 0) == INT64_MAX);
    add(s, "late", "", 500);
    assert_true(schedule_wakeup(s, 0) == 500);
    assert_true(schedule_wakeup(s, 499) == 500);
    assert_true(schedule_wakeup(s, 500) == 500);
    assert_true(schedule_wakeup(s, 900) == 900); /* overdue: now */
    assert_int_equal(schedule_remove(s, "late"), 0);
    assert_true(schedule_wakeup(s, 0) == INT64_MAX);

    /* two items for one destination with per_dest 1: the second is blocked */
    add(s, "x1", "d.example", 100);
    assert_true(schedule_wakeup(s, 50) == 100);
    expect_next(s, 100, "x1");
    add(s, "x2", "d.example", 100);
    assert_true(schedule_wakeup(s, 100) == 100); /* not known to be blocked yet */
    expect_next(s, 100, NULL);
    expect_state(s, "x2", SCHEDULE_DUE, 100);
    /* blocked by its destination: no wake-up, however late it gets */
    assert_true(schedule_wakeup(s, 100) == INT64_MAX);
    assert_true(schedule_wakeup(s, 1000000) == INT64_MAX);
    /* a later item elsewhere gives its own time */
    add(s, "y", "e.example", 300);
    assert_true(schedule_wakeup(s, 100) == 300);
    /* the destination frees a slot: wake up now, and x2 is next */
    assert_int_equal(schedule_done(s, "x1", true, NULL, 0, 150), 0);
    check(s);
    assert_true(schedule_wakeup(s, 150) == 150);
    expect_next(s, 150, "x2");
    expect_next(s, 150, NULL);
    assert_true(schedule_wakeup(s, 150) == 300);
    /* a rescheduled item gives its new time */
    assert_int_equal(schedule_done(s, "x2", false, "d.example", 200, 160), 0);
    assert_true(schedule_wakeup(s, 160) == 200);
    schedule_free(s);
}

/* ---- limits -------------------------------------------------------------- */

struct flow {
    int started_down, started_up, started_local;
    int done_up, done_local;
};

static void test_dest_down(void **state)
{
    (void)state;
    struct schedule *s = new_sched(0, 2);
    char id[32];
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof(id), "down%d", i);
        add(s, id, "down.example", 0);
        snprintf(id, sizeof(id), "up%d", i);
        add(s, id, "up.example", 0);
        snprintf(id, sizeof(id), "loc%d", i);
        add(s, id, "", 0);
    }
    struct flow f = {0};
    int64_t now = 0;
    for (int tick = 0; tick < 10; tick++, now += 1000) {
        char started[64][16];
        int n = 0;
        const char *got, *dest;
        while ((got = schedule_next(s, now, &dest)) != NULL) {
            assert_true(n < 64);
            snprintf(started[n++], sizeof(started[0]), "%s", got);
            assert_true(schedule_dest_inflight(s, "down.example") <= 2);
            assert_true(schedule_dest_inflight(s, "up.example") <= 2);
            if (strcmp(dest, "down.example") == 0)
                f.started_down++;
            else if (strcmp(dest, "up.example") == 0)
                f.started_up++;
            else
                f.started_local++;
        }
        check(s);
        if (tick == 0) {
            /* local work has no per-destination limit: all of it at once */
            assert_int_equal(f.started_local, 10);
            assert_int_equal(f.started_down, 2);
            assert_int_equal(f.started_up, 2);
        }
        /* everything that can start has started: no wake-up before something ends */
        assert_true(schedule_wakeup(s, now) > now);
        for (int i = 0; i < n; i++) {
            if (strncmp(started[i], "down", 4) == 0) {
                /* the destination is down: try again in a minute */
                assert_int_equal(
                    schedule_done(s, started[i], false, "down.example", now + 60000, now), 0);
            } else {
                assert_int_equal(schedule_done(s, started[i], true, NULL, 0, now), 0);
                if (strncmp(started[i], "up", 2) == 0)
                    f.done_up++;
                else
                    f.done_local++;
            }
        }
        check(s);
    }
    /* up.example flowed at 2 per tick beside the dead one; local went at once */
    assert_int_equal(f.done_up, 10);
    assert_int_equal(f.done_local, 10);
    /* every down item was tried once (2 per tick) and waits for its retry */
    assert_int_equal(f.started_down, 10);
    struct schedule_stats st;
    schedule_stats(s, &st);
    assert_int_equal(st.total, 10);
    assert_int_equal(st.waiting, 10);
    assert_int_equal(st.dests, 1);
    assert_true(st.oldest_due_ms == 60000);
    assert_true(schedule_wakeup(s, now) == 60000);
    schedule_free(s);
}

static void test_global_limit(void **state)
{
    (void)state;
    struct schedule *s = new_sched(3, 0);
    char id[16];
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof(id), "g%d", i);
        add(s, id, i % 2 ? "" : "a.example", i);
    }
    expect_next(s, 100, "g0");
    expect_next(s, 100, "g1");
    expect_next(s, 100, "g2");
    expect_next(s, 100, NULL);
    /* blocked by max_inflight: wait for a done, not for time */
    assert_true(schedule_wakeup(s, 100) == INT64_MAX);
    assert_int_equal(schedule_done(s, "g1", true, NULL, 0, 200), 0);
    assert_true(schedule_wakeup(s, 200) == 200);
    expect_next(s, 200, "g3");
    expect_next(s, 200, NULL);
    /* a reload that lowers the limit leaves in-flight items alone */
    struct schedule_limits lim = {.max_inflight = 1, .per_dest = 0};
    schedule_set_limits(s, &lim);
    struct schedule_stats st;
    schedule_stats(s, &st);
    assert_int_equal(st.inflight, 3);
    assert_int_equal(schedule_done(s, "g0", true, NULL, 0, 300), 0);
    assert_int_equal(schedule_done(s, "g2", true, NULL, 0, 300), 0);
    expect_next(s, 300, NULL);
    assert_int_equal(schedule_done(s, "g3", true, NULL, 0, 300), 0);
    expect_next(s, 300, "g4");
    expect_next(s, 300, NULL);
    lim.max_inflight = 0; /* unlimited */
    schedule_set_limits(s, &lim);
    for (int i = 5; i < 10; i++) {
        snprintf(id, sizeof(id), "g%d", i);
        expect_next(s, 300, id);
    }
    schedule_free(s);
}

static void test_fifo_fairness(void **state)
{
    (void)state;
    struct schedule *s = new_sched(0, 1);
    add(s, "x1", "d.example", 10);
    add(s, "x2", "d.example", 20);
    add(s, "x3", "D.Example", 30);
    expect_next(s, 100, "x1");
    expect_next(s, 100, NULL); /* x2, x3 wait in d.example's FIFO, in due order */
    expect_state(s, "x2", SCHEDULE_DUE, 20);
    expect_state(s, "x3", SCHEDULE_DUE, 30);
    /* an earlier item elsewhere, then a slot frees: the freed slot goes first */
    add(s, "z", "", 5);
    add(s, "x0", "d.example", 1); /* earlier than x2, but x2 has waited in line */
    assert_int_equal(schedule_done(s, "x1", true, NULL, 0, 100), 0);
    expect_next(s, 100, "x2");
    expect_next(s, 100, "z");
    expect_next(s, 100, NULL);
    expect_state(s, "x0", SCHEDULE_DUE, 1); /* behind x3 */
    assert_int_equal(schedule_done(s, "x2", true, NULL, 0, 100), 0);
    expect_next(s, 100, "x3");
    assert_int_equal(schedule_done(s, "x3", true, NULL, 0, 100), 0);
    expect_next(s, 100, "x0");
    schedule_free(s);
}

static void test_set_limits(void **state)
{
    (void)state;
    struct schedule *s = new_sched(0, 1);
    add(s, "a", "d.example", 0);
    add(s, "b", "d.example", 1);
    add(s, "c", "d.example", 2);
    add(s, "e", "d.example", 3);
    expect_next(s, 0, "a");
    expect_next(s, 0, NULL);
    assert_true(schedule_wakeup(s, 0) == 1);
    expect_next(s, 10, NULL);
    assert_true(schedule_wakeup(s, 10) == INT64_MAX);
    /* raised: two more may start at once */
    struct schedule_limits lim = {.max_inflight = 0, .per_dest = 3};
    schedule_set_limits(s, &lim);
    check(s);
    assert_true(schedule_wakeup(s, 10) == 10);
    expect_next(s, 10, "b");
    expect_next(s, 10, "c");
    expect_next(s, 10, NULL);
    /* a slot frees (e is reserved for it), then the limit drops to 1 */
    assert_int_equal(schedule_done(s, "a", true, NULL, 0, 10), 0);
    expect_state(s, "e", SCHEDULE_DUE, 3);
    lim.per_dest = 1;
    schedule_set_limits(s, &lim);
    check(s);
    expect_next(s, 10, NULL); /* b and c still run: e goes back in line */
    expect_state(s, "e", SCHEDULE_DUE, 3);
    assert_true(schedule_wakeup(s, 10) == INT64_MAX);
    assert_int_equal(schedule_done(s, "b", true, NULL, 0, 10), 0);
    expect_next(s, 10, NULL); /* c alone fills the limit of 1 */
    assert_int_equal(schedule_done(s, "c", true, NULL, 0, 10), 0);
    expect_next(s, 10, "e");
    /* unlimited per destination */
    add(s, "f", "d.example", 4);
    add(s, "g", "d.example", 5);
    expect_next(s, 10, NULL);
    lim.per_dest = 0;
    schedule_set_limits(s, &lim);
    expect_next(s, 10, "f");
    expect_next(s, 10, "g");
    assert_int_equal(schedule_dest_inflight(s, "d.example"), 3);
    schedule_free(s);

    /* slots reserved beyond a lowered limit go back to the line, in order */
    s = new_sched(0, 1);
    char id[8];
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof(id), "p%d", i);
        add(s, id, "d.example", i);
    }
    expect_next(s, 10, "p0");
    expect_next(s, 10, NULL);
    lim = (struct schedule_limits){.max_inflight = 1, .per_dest = 0};
    schedule_set_limits(s, &lim); /* p1..p4 may go as far as d.example is concerned... */
    check(s);
    expect_next(s, 10, NULL); /* ... but not globally */
    lim = (struct schedule_limits){.max_inflight = 0, .per_dest = 2};
    schedule_set_limits(s, &lim); /* p1 keeps its slot, p2..p4 go back */
    check(s);
    expect_next(s, 10, "p1");
    expect_next(s, 10, NULL);
    for (int i = 2; i < 5; i++) {
        snprintf(id, sizeof(id), "p%d", i - 2);
        assert_int_equal(schedule_done(s, id, true, NULL, 0, 10), 0);
        snprintf(id, sizeof(id), "p%d", i);
        expect_next(s, 10, id);
        expect_next(s, 10, NULL);
    }
    schedule_free(s);
}

/* ---- retry, hold, remove --------------------------------------------- */

static void test_retry_all(void **state)
{
    (void)state;
    struct schedule *s = new_sched(0, 0);
    add(s, "a", "a.example", 100);
    add(s, "b", "b.example", 5000);
    add(s, "c", "c.example", 50);
    add(s, "h", "", 7000);
    assert_int_equal(schedule_hold(s, "h"), 0);
    expect_next(s, 100, "c");
    expect_next(s, 100, "a");
    schedule_retry_all(s, 200);
    check(s);
    expect_state(s, "b", SCHEDULE_WAITING, 200);
    expect_state(s, "h", SCHEDULE_HELD, 7000); /* held stays held */
    assert_true(schedule_wakeup(s, 150) == 200);
    /* in flight during the retry: due at the done's now instead of its own due */
    assert_int_equal(schedule_done(s, "a", false, "a.example", 10000, 300), 0);
    expect_state(s, "a", SCHEDULE_WAITING, 300);
    /* ... or its own due if that is earlier */
    assert_int_equal(schedule_done(s, "c", false, "c.example", 250, 300), 0);
    expect_state(s, "c", SCHEDULE_WAITING, 250);
    /* the mark is used up */
    expect_next(s, 300, "b");
    expect_next(s, 300, "c");
    expect_next(s, 300, "a");
    assert_int_equal(schedule_done(s, "a", false, "a.example", 10000, 400), 0);
    expect_state(s, "a", SCHEDULE_WAITING, 10000);
    /* an item already overdue keeps its earlier due */
    schedule_retry_all(s, 50000);
    expect_state(s, "a", SCHEDULE_WAITING, 10000);
    schedule_free(s);
}

static void test_retry_one(void **state)
{
    (void)state;
    struct schedule *s = new_sched(0, 1);
    add(s, "a", "", 9000);
    add(s, "b", "", 8000);
    add(s, "c", "", 100);
    assert_int_equal(schedule_retry(s, "a", 500), 0);
    expect_state(s, "a", SCHEDULE_WAITING, 500);
    assert_int_equal(schedule_retry(s, "c", 500), 0); /* never later */
    expect_state(s, "c", SCHEDULE_WAITING, 100);
    check(s);
    expect_next(s, 500, "c");
    expect_next(s, 500, "a");
    expect_next(s, 500, NULL);
    /* in flight: due when done */
    assert_int_equal(schedule_retry(s, "a", 600), 0);
    assert_int_equal(schedule_done(s, "a", false, "", 60000, 700), 0);
    expect_state(s, "a", SCHEDULE_WAITING, 700);
    /* held or absent: refused */
    assert_int_equal(schedule_hold(s, "b"), 0);
    assert_int_equal(schedule_retry(s, "b", 700), -1);
    assert_int_equal(schedule_retry(s, "nope", 700), -1);
    /* DUE (blocked behind its destination): already due */
    add(s, "d1", "d.example", 0);
    add(s, "d2", "d.example", 1);
    expect_next(s, 700, "d1");
    expect_next(s, 700, "a");
    expect_next(s, 700, NULL);
    expect_state(s, "d2", SCHEDULE_DUE, 1);
    assert_int_equal(schedule_retry(s, "d2", 800), 0);
    expect_state(s, "d2", SCHEDULE_DUE, 1);
    check(s);
    schedule_free(s);
}

static void test_hold_release(void **state)
{
    (void)state;
    struct schedule *s = new_sched(0, 1);
    add(s, "w", "", 100);
    assert_int_equal(schedule_hold(s, "w"), 0);
    assert_int_equal(schedule_hold(s, "w"), 0); /* already held */
    expect_state(s, "w", SCHEDULE_HELD, 100);
    expect_next(s, 1000, NULL);
    assert_true(schedule_wakeup(s, 1000) == INT64_MAX);
    assert_int_equal(schedule_release(s, "w", 2000), 0);
    expect_state(s, "w", SCHEDULE_WAITING, 2000);
    assert_int_equal(schedule_release(s, "w", 0), -1); /* not held */
    assert_true(schedule_wakeup(s, 1000) == 2000);
    expect_next(s, 2000, "w");

    /* in flight: held when done; released while in flight: not held */
    assert_int_equal(schedule_hold(s, "w"), 0);
    expect_state(s, "w", SCHEDULE_INFLIGHT, 2000);
    assert_int_equal(schedule_done(s, "w", false, "", 3000, 2500), 0);
    expect_state(s, "w", SCHEDULE_HELD, 3000);
    assert_int_equal(schedule_release(s, "w", 2500), 0);
    expect_next(s, 2500, "w");
    assert_int_equal(schedule_release(s, "w", 0), -1); /* in flight, not to be held */
    assert_int_equal(schedule_hold(s, "w"), 0);
    assert_int_equal(schedule_release(s, "w", 0), 0);
    assert_int_equal(schedule_done(s, "w", false, "", 3000, 2600), 0);
    expect_state(s, "w", SCHEDULE_WAITING, 3000);

    /* DUE in a destination FIFO, and DUE in the ready FIFO (holding a slot) */
    add(s, "d1", "d.example", 0);
    add(s, "d2", "d.example", 1);
    add(s, "d3", "d.example", 2);
    expect_next(s, 2600, "d1");
    expect_next(s, 2600, NULL);
    assert_int_equal(schedule_hold(s, "d3"), 0); /* in d.example's FIFO */
    check(s);
    assert_int_equal(schedule_done(s, "d1", true, NULL, 0, 2600), 0);
    assert_int_equal(schedule_hold(s, "d2"), 0); /* in the ready FIFO */
    check(s);
    assert_true(schedule_wakeup(s, 2600) == 3000);
    expect_next(s, 2600, NULL);
    assert_int_equal(schedule_release(s, "d3", 0), 0);
    expect_next(s, 2600, "d3");
    assert_int_equal(schedule_hold(s, "absent"), -1);
    assert_int_equal(schedule_release(s, "absent", 0), -1);
    struct schedule_stats st;
    schedule_stats(s, &st);
    assert_int_equal(st.held, 1);
    assert_int_equal(st.inflight, 1);
    assert_int_equal(st.waiting, 1);
    schedule_free(s);
}

static void test_remove(void **state)
{
    (void)state;
    struct schedule *s = new_sched(0, 1);
    add(s, "w", "w.example", 100);
    add(s, "h", "h.example", 100);
    add(s, "d1", "d.example", 0);
    add(s, "d2", "d.example", 1);
    add(s, "d3", "d.example", 2);
    add(s, "d4", "d.example", 3);
    assert_int_equal(schedule_hold(s, "h"), 0);
    expect_next(s, 10, "d1");
    expect_next(s, 10, NULL);
    struct schedule_stats st;
    schedule_stats(s, &st);
    assert_int_equal(st.dests, 3);
    assert_int_equal(schedule_remove(s, "d1"), -1); /* in flight */
    assert_int_equal(schedule_remove(s, "w"), 0);   /* WAITING */
    assert_int_equal(schedule_remove(s, "h"), 0);   /* HELD */
    assert_int_equal(schedule_remove(s, "d3"), 0);  /* DUE in its FIFO */
    check(s);
    assert_int_equal(schedule_done(s, "d1", true, NULL, 0, 10), 0);
    assert_int_equal(schedule_remove(s, "d2"), 0); /* DUE in the ready FIFO: d4 takes its slot */
    check(s);
    assert_true(schedule_wakeup(s, 10) == 10);
    expect_next(s, 10, "d4");
    assert_int_equal(schedule_remove(s, "d2"), -1); /* gone */
    assert_false(schedule_has(s, "w"));
    assert_int_equal(schedule_state_of(s, "w"), SCHEDULE_NONE);
    schedule_stats(s, &st);
    assert_int_equal(st.total, 1);
    assert_int_equal(st.dests, 1); /* unused destinations are freed */
    assert_int_equal(schedule_done(s, "d4", true, NULL, 0, 0), 0);
    assert_int_equal(schedule_done(s, "d4", true, NULL, 0, 0), -1); /* not in flight */
    schedule_stats(s, &st);
    assert_int_equal(st.total, 0);
    assert_int_equal(st.dests, 0);
    assert_true(st.oldest_due_ms == INT64_MAX);
    schedule_free(s);
}

static void test_duplicate_and_bad_ids(void **state)
{
    (void)state;
    struct schedule *s = new_sched(0, 0);
    add(s, "a", "x.example", 100);
    errno = 0;
    assert_int_equal(schedule_add(s, "a", "y.example", 50), -1);
    assert_int_equal(errno, EEXIST);
    const char *dest;
    int64_t due;
    assert_int_equal(schedule_lookup(s, "a", &dest, &due), SCHEDULE_WAITING);
    assert_string_equal(dest, "x.example"); /* nothing changed */
    assert_true(due == 100);
    expect_next(s, 100, "a");
    assert_int_equal(schedule_add(s, "a", "", 0), -1); /* also while in flight */
    char long_id[SCHEDULE_ID_MAX + 2];
    memset(long_id, 'k', SCHEDULE_ID_MAX);
    long_id[SCHEDULE_ID_MAX] = '\0';
    add(s, long_id, "", 0); /* 64: fine */
    long_id[SCHEDULE_ID_MAX] = 'k';
    long_id[SCHEDULE_ID_MAX + 1] = '\0';
    static const char *const bad[] = {"", "a b", "a/b", "../x", "a.b", "\xc3\xa9"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        errno = 0;
        assert_int_equal(schedule_add(s, bad[i], "", 0), -1);
        assert_int_equal(errno, EINVAL);
        assert_false(schedule_has(s, bad[i]));
    }
    assert_int_equal(schedule_add(s, long_id, "", 0), -1);
    assert_int_equal(schedule_add(s, NULL, "", 0), -1);
    assert_int_equal(schedule_add(s, "Aa-_09", NULL, 0), 0); /* NULL dest is "" */
    assert_int_equal(schedule_lookup(s, "Aa-_09", &dest, NULL), SCHEDULE_WAITING);
    assert_string_equal(dest, "");
    assert_false(schedule_has(s, "aa-_09")); /* ids are case-sensitive */
    struct schedule_stats st;
    schedule_stats(s, &st);
    assert_int_equal(st.total, 3);
    check(s);
    schedule_free(s);
}

static void test_dest_case(void **state)
{
    (void)state;
    struct schedule *s = new_sched(0, 1);
    add(s, "a", "Example.COM", 0);
    add(s, "b", "example.com", 1);
    const char *dest;
    expect_next(s, 1, "a");
    assert_int_equal(schedule_lookup(s, "a", &dest, NULL), SCHEDULE_INFLIGHT);
    assert_string_equal(dest, "example.com");
    assert_int_equal(schedule_dest_inflight(s, "EXAMPLE.com"), 1);
    expect_next(s, 1, NULL); /* one destination, limit 1 */
    struct schedule_stats st;
    schedule_stats(s, &st);
    assert_int_equal(st.dests, 1);
    /* done may move the item to another destination (e.g. a new route) */
    assert_int_equal(schedule_done(s, "a", false, "Other.Example", 2, 1), 0);
    expect_next(s, 1, "b");
    const char *d2;
    assert_non_null(schedule_next(s, 2, &d2));
    assert_string_equal(d2, "other.example");
    schedule_free(s);
}

struct listing {
    int n;
    int per_state[5];
};

static void list_one(void *ctx, const char *id, const char *dest, enum schedule_state st,
                     int64_t due)
{
    struct listing *l = ctx;
    assert_non_null(id);
    assert_non_null(dest);
    assert_true(st >= SCHEDULE_WAITING && st <= SCHEDULE_HELD);
    assert_true(due >= 0);
    l->n++;
    l->per_state[st]++;
}

static void test_stats_each(void **state)
{
    (void)state;
    struct schedule *s = new_sched(0, 1);
    add(s, "w", "", 500);
    add(s, "h", "", 40);
    add(s, "i", "d.example", 20);
    add(s, "q", "d.example", 30);
    assert_int_equal(schedule_hold(s, "h"), 0);
    expect_next(s, 100, "i");
    expect_next(s, 100, NULL);
    struct schedule_stats st;
    schedule_stats(s, &st);
    assert_int_equal(st.total, 4);
    assert_int_equal(st.waiting, 1);
    assert_int_equal(st.due, 1);
    assert_int_equal(st.inflight, 1);
    assert_int_equal(st.held, 1);
    assert_int_equal(st.dests, 2);
    assert_true(st.oldest_due_ms == 30); /* q, DUE; not the held or the in-flight one */
    assert_true(st.bytes > 0);
    struct listing l = {0};
    schedule_each(s, list_one, &l);
    assert_int_equal(l.n, 4);
    assert_int_equal(l.per_state[SCHEDULE_WAITING], 1);
    assert_int_equal(l.per_state[SCHEDULE_DUE], 1);
    assert_int_equal(l.per_state[SCHEDULE_INFLIGHT], 1);
    assert_int_equal(l.per_state[SCHEDULE_HELD], 1);
    schedule_free(s);
    schedule_free(NULL);
}

/* ---- retry delays ------------------------------------------------------ */

static void test_retry_delay(void **state)
{
    (void)state;
    static const uint64_t table[] = {60000, 300000, 900000, 3600000};
    size_t n = sizeof(table) / sizeof(table[0]);
    assert_int_equal(schedule_retry_delay(table, n, 1, 0, 0.5), 60000);
    assert_int_equal(schedule_retry_delay(table, n, 0, 0, 0.5), 60000);
    assert_int_equal(schedule_retry_delay(table, n, 2, 0, 0.5), 300000);
    assert_int_equal(schedule_retry_delay(table, n, 4, 0, 0.5), 3600000);
    /* the last entry repeats */
    assert_int_equal(schedule_retry_delay(table, n, 5, 0, 0.5), 3600000);
    assert_int_equal(schedule_retry_delay(table, n, 1000000, 0, 0.9), 3600000);
    /* jitter: u01 = 0 gives the low bound, u01 -> 1 approaches the high bound */
    assert_int_equal(schedule_retry_delay(table, n, 1, 0.2, 0), 48000);
    assert_int_equal(schedule_retry_delay(table, n, 1, 0.2, 0.5), 60000);
    uint64_t hi = schedule_retry_delay(table, n, 1, 0.2, 0x1.fffffffffffffp-1);
    assert_true(hi <= 72000 && hi >= 71999);
    uint64_t st = 42;
    for (int i = 0; i < 10000; i++) {
        uint64_t d = schedule_retry_delay(table, n, 2, 0.25, rand_u01(&st));
        assert_true(d >= 225000 && d <= 375000);
    }
    /* out-of-range inputs are clamped */
    assert_int_equal(schedule_retry_delay(table, n, 1, 0.2, -3), 48000);
    hi = schedule_retry_delay(table, n, 1, 0.2, 7);
    assert_true(hi <= 72000 && hi >= 71999);
    assert_int_equal(schedule_retry_delay(table, n, 1, 5, 0), 1000); /* spread 1: factor 0 */
    assert_int_equal(schedule_retry_delay(table, n, 1, -1, 0.9), 60000);
    /* never less than a second */
    static const uint64_t tiny[] = {10, 1500};
    assert_int_equal(schedule_retry_delay(tiny, 2, 1, 0, 0), 1000);
    assert_int_equal(schedule_retry_delay(tiny, 2, 2, 0.5, 0), 1000); /* 750 */
    assert_int_equal(schedule_retry_delay(tiny, 2, 2, 0.5, 0.5), 1500);
    assert_int_equal(schedule_retry_delay(NULL, 0, 3, 0.1, 0.3), 1000);
    static const uint64_t huge[] = {UINT64_MAX};
    assert_true(schedule_retry_delay(huge, 1, 1, 0.5, 0.99) == UINT64_MAX);
}

/* ---- randomized, against a reference model ------------------------------ */

#define R_IDS 5000
#define R_OPS 200000
#define R_DESTS 8 /* 0 is "" (local) */

enum m_state { M_ABSENT, M_PENDING, M_INFLIGHT, M_HELD }; /* PENDING: WAITING or DUE */

struct m_item {
    enum m_state st;
    int dest;
    int64_t due;
    bool retry, hold;
};

struct model {
    struct m_item it[R_IDS];
    unsigned dest_inflight[R_DESTS];
    unsigned inflight;
    struct schedule_limits lim;
    int64_t now;
    int flight[R_IDS]; /* ids in flight, for picking one */
    int nflight;
    uint64_t rng;
};

static const char *r_id(int i)
{
    static char buf[4][24];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "%d-q%x", i, (unsigned)i * 2654435761u);
    return buf[k];
}

/* A destination's name, in a random case. */
static const char *r_dest(struct model *m, int d)
{
    static char buf[32];
    if (d == 0)
        return "";
    snprintf(buf, sizeof(buf), "d%d.example", d);
    for (char *p = buf; *p; p++) {
        if (*p >= 'a' && *p <= 'z' && rand_next(&m->rng) % 4 == 0)
            *p = (char)(*p - 'a' + 'A');
    }
    return buf;
}

static int r_dest_of(const char *name)
{
    if (name[0] == '\0')
        return 0;
    int d = -1;
    assert_int_equal(sscanf(name, "d%d.example", &d), 1);
    char lower[32];
    snprintf(lower, sizeof(lower), "d%d.example", d);
    assert_string_equal(name, lower);
    return d;
}

static bool m_dest_room(const struct model *m, int d)
{
    return d == 0 || m->lim.per_dest == 0 || m->dest_inflight[d] < m->lim.per_dest;
}

static bool m_global_room(const struct model *m)
{
    return m->lim.max_inflight == 0 || m->inflight < m->lim.max_inflight;
}

static void m_flight_del(struct model *m, int i)
{
    for (int k = 0; k < m->nflight; k++) {
        if (m->flight[k] == i) {
            m->flight[k] = m->flight[--m->nflight];
            return;
        }
    }
    fail_msg("%d not in the flight list", i);
}

/* The scheduler agrees with the model about item i. */
static void m_compare(const struct schedule *s, const struct model *m, int i)
{
    const struct m_item *mi = &m->it[i];
    const char *dest = NULL;
    int64_t due = 0;
    enum schedule_state st = schedule_lookup(s, r_id(i), &dest, &due);
    switch (mi->st) {
    case M_ABSENT:
        assert_int_equal(st, SCHEDULE_NONE);
        return;
    case M_PENDING:
        if (st != SCHEDULE_WAITING && st != SCHEDULE_DUE)
            fail_msg("item %d: state %d, model says pending", i, st);
        break;
    case M_INFLIGHT:
        assert_int_equal(st, SCHEDULE_INFLIGHT);
        break;
    case M_HELD:
        assert_int_equal(st, SCHEDULE_HELD);
        break;
    }
    if (due != mi->due)
        fail_msg("item %d: due %lld, model says %lld", i, (long long)due, (long long)mi->due);
    assert_int_equal(r_dest_of(dest), mi->dest);
}

/* After schedule_next() returned NULL: nothing may start, and the wake-up is right. */
static void m_check_idle(const struct schedule *s, const struct model *m)
{
    int64_t wake = schedule_wakeup(s, m->now);
    if (!m_global_room(m)) {
        assert_true(wake == INT64_MAX);
        return;
    }
    int64_t want = INT64_MAX;
    for (int i = 0; i < R_IDS; i++) {
        const struct m_item *mi = &m->it[i];
        if (mi->st != M_PENDING)
            continue;
        if (mi->due <= m->now && m_dest_room(m, mi->dest))
            fail_msg("item %d may start at %lld but next() gave nothing", i, (long long)m->now);
        enum schedule_state st = schedule_state_of(s, r_id(i));
        if (st == SCHEDULE_WAITING) {
            assert_true(mi->due > m->now);
            if (mi->due < want)
                want = mi->due;
        } else {
            assert_int_equal(st, SCHEDULE_DUE);
            assert_false(m_dest_room(m, mi->dest)); /* DUE only while blocked */
        }
    }
    if (wake != want)
        fail_msg("wakeup %lld, expected %lld", (long long)wake, (long long)want);
}

static void m_check_all(const struct schedule *s, const struct model *m)
{
    check(s);
    struct schedule_stats st;
    schedule_stats(s, &st);
    size_t total = 0, held = 0;
    for (int i = 0; i < R_IDS; i++) {
        m_compare(s, m, i);
        total += m->it[i].st != M_ABSENT;
        held += m->it[i].st == M_HELD;
    }
    assert_int_equal(st.total, total);
    assert_int_equal(st.held, held);
    assert_int_equal(st.inflight, m->inflight);
    assert_int_equal(st.waiting + st.due + st.inflight + st.held, st.total);
    for (int d = 0; d < R_DESTS; d++) {
        char name[32];
        if (d == 0)
            name[0] = '\0';
        else
            snprintf(name, sizeof(name), "D%d.EXAMPLE", d);
        assert_int_equal(schedule_dest_inflight(s, name), m->dest_inflight[d]);
    }
}

static int64_t r_range(struct model *m, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rand_next(&m->rng) % (uint64_t)(hi - lo + 1));
}

static void test_random_model(void **state)
{
    (void)state;
    struct model *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    m->rng = 20240601;
    m->lim.max_inflight = 20;
    m->lim.per_dest = 2;
    m->now = 1000000;
    struct schedule *s = schedule_new(&m->lim);
    unsigned long handed = 0, idle_checks = 0, nulls = 0;
    for (long op = 0; op < R_OPS; op++) {
        unsigned r = (unsigned)(rand_next(&m->rng) % 1000);
        int i = (int)(rand_next(&m->rng) % R_IDS);
        struct m_item *mi = &m->it[i];
        const char *id = r_id(i);
        if (r < 250) { /* add */
            int d = (int)(rand_next(&m->rng) % R_DESTS);
            int64_t due = m->now + r_range(m, -500, 2000);
            int rc = schedule_add(s, id, r_dest(m, d), due);
            if (mi->st != M_ABSENT) {
                assert_int_equal(rc, -1);
            } else {
                assert_int_equal(rc, 0);
                *mi = (struct m_item){.st = M_PENDING, .dest = d, .due = due};
            }
        } else if (r < 550) { /* next */
            const char *dest = NULL;
            const char *got = schedule_next(s, m->now, &dest);
            if (!got) {
                if (++nulls % 8 == 0) {
                    m_check_idle(s, m);
                    idle_checks++;
                }
                continue;
            }
            int k = atoi(got);
            assert_true(k >= 0 && k < R_IDS);
            assert_string_equal(got, r_id(k));
            struct m_item *mk = &m->it[k];
            /* never twice without a done; only when due; only within the limits */
            assert_int_equal(mk->st, M_PENDING);
            assert_true(mk->due <= m->now);
            assert_true(m_global_room(m));
            assert_true(m_dest_room(m, mk->dest));
            assert_int_equal(r_dest_of(dest), mk->dest);
            mk->st = M_INFLIGHT;
            mk->retry = mk->hold = false;
            m->dest_inflight[mk->dest]++;
            m->inflight++;
            m->flight[m->nflight++] = k;
            handed++;
            i = k;
        } else if (r < 750) { /* done, usually of an item in flight */
            if (m->nflight > 0 && r < 730)
                i = m->flight[rand_next(&m->rng) % (unsigned)m->nflight];
            mi = &m->it[i];
            id = r_id(i);
            bool remove = rand_next(&m->rng) % 3 == 0;
            int d = rand_next(&m->rng) % 4 == 0 ? (int)(rand_next(&m->rng) % R_DESTS) : mi->dest;
            int64_t due = m->now + r_range(m, -100, 3000);
            int rc = schedule_done(s, id, remove, r_dest(m, d), due, m->now);
            if (mi->st != M_INFLIGHT) {
                assert_int_equal(rc, -1);
            } else {
                assert_int_equal(rc, 0);
                m->dest_inflight[mi->dest]--;
                m->inflight--;
                m_flight_del(m, i);
                if (remove) {
                    *mi = (struct m_item){.st = M_ABSENT};
                } else {
                    if (mi->retry && m->now < due)
                        due = m->now;
                    mi->st = mi->hold ? M_HELD : M_PENDING;
                    mi->due = due;
                    mi->dest = d;
                    mi->retry = mi->hold = false;
                }
            }
        } else if (r < 800) { /* remove */
            int rc = schedule_remove(s, id);
            if (mi->st == M_ABSENT || mi->st == M_INFLIGHT) {
                assert_int_equal(rc, -1);
            } else {
                assert_int_equal(rc, 0);
                *mi = (struct m_item){.st = M_ABSENT};
            }
        } else if (r < 840) { /* hold */
            int rc = schedule_hold(s, id);
            assert_int_equal(rc, mi->st == M_ABSENT ? -1 : 0);
            if (mi->st == M_PENDING)
                mi->st = M_HELD;
            else if (mi->st == M_INFLIGHT)
                mi->hold = true;
        } else if (r < 880) { /* release */
            int64_t due = m->now + r_range(m, -100, 1000);
            int rc = schedule_release(s, id, due);
            if (mi->st == M_HELD) {
                assert_int_equal(rc, 0);
                mi->st = M_PENDING;
                mi->due = due;
            } else if (mi->st == M_INFLIGHT && mi->hold) {
                assert_int_equal(rc, 0);
                mi->hold = false;
            } else {
                assert_int_equal(rc, -1);
            }
        } else if (r < 910) { /* retry one */
            int rc = schedule_retry(s, id, m->now);
            assert_int_equal(rc, mi->st == M_ABSENT || mi->st == M_HELD ? -1 : 0);
            if (mi->st == M_PENDING && m->now < mi->due)
                mi->due = m->now;
            else if (mi->st == M_INFLIGHT)
                mi->retry = true;
        } else if (r < 912) { /* retry all */
            schedule_retry_all(s, m->now);
            for (int k = 0; k < R_IDS; k++) {
                struct m_item *mk = &m->it[k];
                if (mk->st == M_PENDING && m->now < mk->due)
                    mk->due = m->now;
                else if (mk->st == M_INFLIGHT)
                    mk->retry = true;
            }
        } else if (r < 916) { /* reload with other limits */
            static const unsigned maxes[] = {0, 1, 5, 20, 50};
            static const unsigned pers[] = {0, 1, 2, 3};
            m->lim.max_inflight = maxes[rand_next(&m->rng) % 5];
            m->lim.per_dest = pers[rand_next(&m->rng) % 4];
            schedule_set_limits(s, &m->lim);
        } else { /* time passes */
            m->now += r_range(m, 0, 60);
        }
        m_compare(s, m, i);
        if (op % 2000 == 0)
            m_check_all(s, m);
    }
    m_check_all(s, m);
    /* the mix exercised what it should */
    assert_true(handed > 20000);
    assert_true(idle_checks > 1000);
    print_message("random: %lu handed out, %lu idle checks\n", handed, idle_checks);
    schedule_free(s);
    free(m);
}

/* ---- scale ----------------------------------------------------------- */

#define S_ITEMS 200000
#define S_DESTS 1000

static void test_scale(void **state)
{
    (void)state;
    struct schedule *s = new_sched(500, 2);
    char id[32], dest[32];
    uint64_t rng = 7;
    for (int i = 0; i < S_ITEMS; i++) {
        snprintf(id, sizeof(id), "%d-%016llx", 1700000000 + i, (unsigned long long)rand_next(&rng));
        if (i % 10 == 0)
            dest[0] = '\0';
        else
            snprintf(dest, sizeof(dest), "mx%d.example.net", (int)(rand_next(&rng) % S_DESTS));
        add(s, id, dest, (int64_t)(rand_next(&rng) % 100000));
    }
    struct schedule_stats st;
    schedule_stats(s, &st);
    assert_int_equal(st.total, S_ITEMS);
    assert_int_equal(st.waiting, S_ITEMS);
    double per_item = (double)st.bytes / S_ITEMS;
    print_message("scale: %zu bytes for %d items (%.1f per item), %zu destinations\n", st.bytes,
                  S_ITEMS, per_item, st.dests);
    assert_true(per_item < 200);
    check(s);

    /* drain: each attempt fails once (back 10 s later), then succeeds */
    char(*running)[2][32] = calloc(500, sizeof(*running));
    unsigned char *tried = calloc(S_ITEMS, 1);
    assert_non_null(running);
    assert_non_null(tried);
    uint64_t steps0 = st.steps;
    int64_t now = 0;
    unsigned long handed = 0, rounds = 0, ops = 0;
    for (;;) {
        int n = 0;
        const char *got, *gdest;
        while ((got = schedule_next(s, now, &gdest)) != NULL) {
            assert_true(n < 500);
            snprintf(running[n][0], sizeof(running[n][0]), "%s", got);
            snprintf(running[n][1], sizeof(running[n][1]), "%s", gdest);
            n++;
            ops++;
        }
        ops++;
        for (int k = 0; k < n; k++) {
            int idx = atoi(running[k][0]) - 1700000000;
            bool again = !tried[idx];
            tried[idx] = 1;
            assert_int_equal(
                schedule_done(s, running[k][0], !again, running[k][1], now + 10000, now), 0);
            ops++;
        }
        handed += (unsigned long)n;
        rounds++;
        if (rounds % 20000 == 0)
            check(s);
        int64_t wake = schedule_wakeup(s, now);
        if (wake == INT64_MAX) {
            schedule_stats(s, &st);
            assert_int_equal(st.total, 0); /* nothing in flight here: empty */
            break;
        }
        /* a wake-up at now must mean work: never a busy loop */
        assert_true(wake > now || (wake == now && n > 0));
        now = wake;
    }
    schedule_stats(s, &st);
    uint64_t steps = st.steps - steps0;
    print_message("scale: %lu handed out in %lu rounds, %lu calls, %llu internal steps "
                  "(%.1f per call)\n",
                  handed, rounds, ops, (unsigned long long)steps, (double)steps / (double)ops);
    assert_int_equal(handed, 2 * S_ITEMS);
    /* O(log n) per call: log2(200000) is about 18 */
    assert_true(steps < 64ull * ops);
    assert_true(st.bytes < 4096); /* tables shrank back */
    free(tried);
    free(running);
    schedule_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_by_due),
        cmocka_unit_test(test_wakeup),
        cmocka_unit_test(test_dest_down),
        cmocka_unit_test(test_global_limit),
        cmocka_unit_test(test_fifo_fairness),
        cmocka_unit_test(test_set_limits),
        cmocka_unit_test(test_retry_all),
        cmocka_unit_test(test_retry_one),
        cmocka_unit_test(test_hold_release),
        cmocka_unit_test(test_remove),
        cmocka_unit_test(test_duplicate_and_bad_ids),
        cmocka_unit_test(test_dest_case),
        cmocka_unit_test(test_stats_each),
        cmocka_unit_test(test_retry_delay),
        cmocka_unit_test(test_random_model),
        cmocka_unit_test(test_scale),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
