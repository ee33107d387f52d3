/*
 * test_throttle.c - unit tests for server/throttle.c: counting and locking
 * at max_failures, the lock's end and forgetting after `lockout`, clearing,
 * the delay sequence, a fixed table under a flood of new keys (never more
 * entries than its size; locks outlive unlocked counts), and client
 * networks (IPv4 /24, IPv6 /64, IPv4-mapped, not an address).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "server/throttle.h"

static const struct throttle_conf conf = {.max_failures = 3, .lockout_ms = 1000};

static void test_lock_and_expiry(void **state)
{
    (void)state;
    struct throttle *t = throttle_new(64, 42);
    bool locked;
    assert_int_equal(throttle_locked(t, "a", 0), 0);
    assert_int_equal(throttle_fail(t, "a", 0, &conf, &locked), 1);
    assert_false(locked);
    assert_int_equal(throttle_fail(t, "a", 10, &conf, &locked), 2);
    assert_false(locked);
    assert_int_equal(throttle_locked(t, "a", 10), 0);
    assert_int_equal(throttle_fail(t, "a", 100, &conf, &locked), 3);
    assert_true(locked);
    assert_int_equal(throttle_locked(t, "a", 100), 1000);
    assert_int_equal(throttle_locked(t, "a", 600), 500);
    assert_int_equal(throttle_locked(t, "b", 600), 0); /* other keys are not touched */
    assert_int_equal(throttle_count(t, 600, &conf), 1);
    /* the lock is over at 1100; the count is forgotten with it */
    assert_int_equal(throttle_locked(t, "a", 1100), 0);
    assert_int_equal(throttle_count(t, 1100, &conf), 0);
    assert_int_equal(throttle_fail(t, "a", 1100, &conf, &locked), 1);
    assert_false(locked);
    /* failures further apart than lockout do not add up */
    assert_int_equal(throttle_fail(t, "a", 2100, &conf, &locked), 1);
    assert_int_equal(throttle_fail(t, "a", 3000, &conf, &locked), 2);
    throttle_clear(t, "a");
    assert_int_equal(throttle_fail(t, "a", 3001, &conf, &locked), 1);
    throttle_clear(t, "nothing there");
    throttle_free(t);
}

static void test_delay(void **state)
{
    (void)state;
    assert_int_equal(throttle_delay_ms(1), 500);
    assert_int_equal(throttle_delay_ms(2), 1000);
    assert_int_equal(throttle_delay_ms(3), 2000);
    assert_int_equal(throttle_delay_ms(4), 4000);
    assert_int_equal(throttle_delay_ms(5), 4000);
    assert_int_equal(throttle_delay_ms(4000000000u), 4000);
}

static void test_flood(void **state)
{
    (void)state;
    struct throttle_conf c = {.max_failures = 2, .lockout_ms = 1000000};
    struct throttle *t = throttle_new(64, 7); /* 8 buckets of 8 */
    bool locked;
    char key[32];
    /* lock a few keys */
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof(key), "locked-%d", i);
        throttle_fail(t, key, 1, &c, &locked);
        throttle_fail(t, key, 2, &c, &locked);
        assert_true(locked);
    }
    /* then a flood of single failures of new keys */
    for (int i = 0; i < 100000; i++) {
        snprintf(key, sizeof(key), "flood-%d", i);
        throttle_fail(t, key, 3 + (uint64_t)i, &c, &locked);
        assert_false(locked);
    }
    assert_true(throttle_count(t, 200000, &c) <= 64);
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof(key), "locked-%d", i);
        assert_true(throttle_locked(t, key, 200000) > 0);
    }
    throttle_free(t);
}

static void check_net(const char *peer, int rc, const char *net, const char *host)
{
    char n[64], h[64];
    assert_int_equal(throttle_net(peer, n, sizeof(n), h, sizeof(h)), rc);
    assert_string_equal(n, net);
    assert_string_equal(h, host);
}

static void test_net(void **state)
{
    (void)state;
    check_net("192.0.2.77:25", 0, "192.0.2.0/24", "192.0.2.77");
    check_net("127.0.0.1:40000", 0, "127.0.0.0/24", "127.0.0.1");
    check_net("[2001:db8:1:2:3:4:5:6]:587", 0, "2001:db8:1:2::/64", "2001:db8:1:2:3:4:5:6");
    check_net("[::1]:25", 0, "::/64", "::1");
    check_net("[::ffff:198.51.100.9]:25", 0, "198.51.100.0/24", "198.51.100.9");
    check_net("unix", -1, "unix", "unix");
    char n[8], h[8];
    assert_int_equal(throttle_net("[2001:db8:1:2:3:4:5:6]:587", n, sizeof(n), h, sizeof(h)), 0);
    assert_int_equal(strlen(n), 7); /* cut, never overrun */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lock_and_expiry),
        cmocka_unit_test(test_delay),
        cmocka_unit_test(test_flood),
        cmocka_unit_test(test_net),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
