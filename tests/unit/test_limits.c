/*
 * test_limits.c - the shared connection and memory limits (src/smtp/limits.c):
 * sessions per address and per network, connection rate over time, the
 * table's expiry and eviction, the derived session limit and the body budget.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "smtp/limits.h"

static struct sockaddr_storage addr(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
    }
    return ss;
}

static enum smtp_limits_verdict conn(struct smtp_limits *l, const char *ip, uint64_t now,
                                     struct smtp_limits_hold *h)
{
    struct sockaddr_storage ss = addr(ip);
    return smtp_limits_connect(l, (struct sockaddr *)&ss, now, h);
}

static void test_per_address_and_network(void **state)
{
    (void)state;
    struct smtp_limits_conf c = {.max_sessions = 100, .max_sessions_per_ip = 2};
    struct smtp_limits *l = smtp_limits_new(&c);
    struct smtp_limits_hold h[16], x;
    assert_int_equal(conn(l, "192.0.2.1", 1000, &h[0]), LIMITS_OK);
    assert_int_equal(conn(l, "192.0.2.1", 1000, &h[1]), LIMITS_OK);
    assert_int_equal(conn(l, "192.0.2.1", 1000, &x), LIMITS_CLIENT);
    /* the /24 holds four times as much: 2 more addresses' worth */
    assert_int_equal(conn(l, "192.0.2.2", 1000, &h[2]), LIMITS_OK);
    assert_int_equal(conn(l, "192.0.2.2", 1000, &h[3]), LIMITS_OK);
    assert_int_equal(conn(l, "192.0.2.3", 1000, &h[4]), LIMITS_OK);
    assert_int_equal(conn(l, "192.0.2.4", 1000, &h[5]), LIMITS_OK);
    assert_int_equal(conn(l, "192.0.2.3", 1000, &h[10]), LIMITS_OK);
    assert_int_equal(conn(l, "192.0.2.4", 1000, &h[11]), LIMITS_OK);
    assert_int_equal(conn(l, "192.0.2.5", 1000, &x), LIMITS_CLIENT);
    assert_int_equal(conn(l, "198.51.100.1", 1000, &h[6]), LIMITS_OK); /* another network */
    /* IPv6: the /64 is one client; IPv4-mapped counts as IPv4 */
    assert_int_equal(conn(l, "2001:db8::1", 1000, &h[7]), LIMITS_OK);
    assert_int_equal(conn(l, "2001:db8::2", 1000, &h[8]), LIMITS_OK);
    assert_int_equal(conn(l, "2001:db8::3", 1000, &x), LIMITS_CLIENT);
    assert_int_equal(conn(l, "2001:db8:0:1::1", 1000, &h[9]), LIMITS_OK);
    assert_int_equal(conn(l, "::ffff:192.0.2.1", 1000, &x), LIMITS_CLIENT);
    assert_int_equal(smtp_limits_sessions(l), 12);
    smtp_limits_disconnect(l, &h[0]);
    assert_int_equal(conn(l, "::ffff:192.0.2.1", 1000, &h[0]), LIMITS_OK);
    for (int i = 0; i < 12; i++)
        smtp_limits_disconnect(l, &h[i]);
    assert_int_equal(smtp_limits_sessions(l), 0);
    smtp_limits_free(l);
}

static void test_max_sessions(void **state)
{
    (void)state;
    struct smtp_limits_conf c = {.max_sessions = 3};
    struct smtp_limits *l = smtp_limits_new(&c);
    struct smtp_limits_hold h[3], x;
    char ip[32];
    for (int i = 0; i < 3; i++) {
        snprintf(ip, sizeof(ip), "10.0.%d.1", i);
        assert_int_equal(conn(l, ip, 0, &h[i]), LIMITS_OK);
    }
    assert_int_equal(conn(l, "10.9.9.9", 0, &x), LIMITS_SESSIONS);
    smtp_limits_disconnect(l, &h[1]);
    assert_int_equal(conn(l, "10.9.9.9", 0, &h[1]), LIMITS_OK);
    for (int i = 0; i < 3; i++)
        smtp_limits_disconnect(l, &h[i]);
    smtp_limits_free(l);
    /* derived from the descriptor limit, with room for the rest, and capped */
    assert_int_equal(smtp_limits_default_sessions(1024), 720);
    assert_int_equal(smtp_limits_default_sessions(128), 48);
    assert_int_equal(smtp_limits_default_sessions(10), 8);
    assert_int_equal(smtp_limits_default_sessions(1 << 30), 20000);
}

static void test_rate(void **state)
{
    (void)state;
    struct smtp_limits_conf c = {.max_sessions = 1000, .max_connect_rate_per_ip = 6};
    struct smtp_limits *l = smtp_limits_new(&c);
    struct smtp_limits_hold h;
    uint64_t t = 5000000;
    for (int i = 0; i < 6; i++) { /* a burst of the whole minute's worth */
        assert_int_equal(conn(l, "192.0.2.7", t, &h), LIMITS_OK);
        smtp_limits_disconnect(l, &h);
    }
    assert_int_equal(conn(l, "192.0.2.7", t, &h), LIMITS_RATE);
    assert_int_equal(conn(l, "192.0.2.7", t + 9000, &h), LIMITS_RATE);
    /* one more every 10 s after that */
    assert_int_equal(conn(l, "192.0.2.7", t + 10000, &h), LIMITS_OK);
    smtp_limits_disconnect(l, &h);
    assert_int_equal(conn(l, "192.0.2.7", t + 10000, &h), LIMITS_RATE);
    assert_int_equal(conn(l, "192.0.2.8", t, &h), LIMITS_OK); /* its own count... */
    smtp_limits_disconnect(l, &h);
    /* ...but the /24 allows 4 x 6 a minute in all */
    char ip[32];
    int ok = 0;
    for (int i = 10; i < 40; i++) {
        snprintf(ip, sizeof(ip), "192.0.2.%d", i);
        if (conn(l, ip, t + 10000, &h) == LIMITS_OK) {
            ok++;
            smtp_limits_disconnect(l, &h);
        }
    }
    /* 8 taken at t; 10 s at 24 a minute leaked 4 of them: 24 - 8 + 4 */
    assert_int_equal(ok, 20);
    smtp_limits_free(l);
}

static void test_table_bounded(void **state)
{
    (void)state;
    /* many more clients than the table holds: idle ones are forgotten, live ones kept */
    struct smtp_limits_conf c = {
        .max_sessions = 4, .max_sessions_per_ip = 1, .max_connect_rate_per_ip = 1};
    struct smtp_limits *l = smtp_limits_new(&c);
    struct smtp_limits_hold live, h;
    assert_int_equal(conn(l, "203.0.113.1", 0, &live), LIMITS_OK);
    char ip[32];
    for (int i = 0; i < 100000; i++) {
        snprintf(ip, sizeof(ip), "%d.%d.%d.1", 10 + (i >> 16), (i >> 8) & 255, i & 255);
        assert_int_equal(conn(l, ip, (uint64_t)i, &h), LIMITS_OK);
        smtp_limits_disconnect(l, &h);
    }
    assert_int_equal(conn(l, "203.0.113.1", 100000, &h), LIMITS_CLIENT);
    smtp_limits_disconnect(l, &live);
    assert_int_equal(smtp_limits_sessions(l), 0);
    smtp_limits_free(l);
}

static void test_body_budget(void **state)
{
    (void)state;
    struct smtp_limits_conf c = {.max_sessions = 10, .body_memory = 1000};
    struct smtp_limits *l = smtp_limits_new(&c);
    assert_true(smtp_limits_body_take(l, 600));
    assert_false(smtp_limits_body_take(l, 401));
    assert_true(smtp_limits_body_take(l, 400));
    assert_int_equal(smtp_limits_body_used(l), 1000);
    smtp_limits_body_give(l, 1000);
    assert_int_equal(smtp_limits_body_used(l), 0);
    smtp_limits_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_per_address_and_network),
        cmocka_unit_test(test_max_sessions),
        cmocka_unit_test(test_rate),
        cmocka_unit_test(test_table_bounded),
        cmocka_unit_test(test_body_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
