/*
 * test_num.c - strict number parsing (core/num.c) and host:port endpoints
 * (core/netaddr.c): bounds, suffixes, junk, brackets for IPv6.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <string.h>

#include "core/netaddr.h"
#include "core/num.h"

static void test_u64(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(num_parse_u64("0", 10, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(num_parse_u64("10", 10, &v), 0);
    assert_int_equal(num_parse_u64("11", 10, &v), -1);
    assert_int_equal(num_parse_u64("", 10, &v), -1);
    assert_int_equal(num_parse_u64("-1", 10, &v), -1);
    assert_int_equal(num_parse_u64("1 ", 10, &v), -1);
    assert_int_equal(num_parse_u64("18446744073709551615", UINT64_MAX, &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(num_parse_u64("18446744073709551616", UINT64_MAX, &v), -1);
}

static void test_percent(void **state)
{
    (void)state;
    double p;
    assert_int_equal(num_parse_percent("35", &p), 0);
    assert_true(p == 35.0);
    assert_int_equal(num_parse_percent("12.5", &p), 0);
    assert_true(p == 12.5);
    assert_int_equal(num_parse_percent("100", &p), 0);
    assert_int_equal(num_parse_percent("100.1", &p), -1);
    assert_int_equal(num_parse_percent("101", &p), -1);
    assert_int_equal(num_parse_percent("1.", &p), -1);
    assert_int_equal(num_parse_percent(".5", &p), -1);
    assert_int_equal(num_parse_percent("5%", &p), -1);
}

static void test_size_and_duration(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(num_parse_size("25M", 1ULL << 40, &v), 0);
    assert_true(v == 25ULL << 20);
    assert_int_equal(num_parse_size("2k", 1ULL << 40, &v), 0);
    assert_true(v == 2048);
    assert_int_equal(num_parse_size("1G", 1ULL << 29, &v), -1);
    assert_int_equal(num_parse_size("M", 1ULL << 40, &v), -1);
    assert_int_equal(num_parse_size("1MB", 1ULL << 40, &v), -1);
    assert_int_equal(num_parse_duration_ms("50ms", &v), 0);
    assert_true(v == 50);
    assert_int_equal(num_parse_duration_ms("2s", &v), 0);
    assert_true(v == 2000);
    assert_int_equal(num_parse_duration_ms("5m", &v), 0);
    assert_true(v == 300000);
    assert_int_equal(num_parse_duration_ms("3", &v), 0);
    assert_true(v == 3000);
    assert_int_equal(num_parse_duration_ms("1d", &v), 0);
    assert_true(v == 86400000);
    assert_int_equal(num_parse_duration_ms("5x", &v), -1);
    assert_int_equal(num_parse_duration_ms("ms", &v), -1);
    assert_int_equal(num_parse_duration_ms("", &v), -1);
}

static void test_netaddr(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    socklen_t len;
    const char *why;
    char buf[80];
    assert_int_equal(netaddr_parse("127.0.0.1:25", &ss, &len, &why), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_string_equal(netaddr_format((struct sockaddr *)&ss, buf, sizeof(buf)), "127.0.0.1:25");
    assert_int_equal(netaddr_parse("[::1]:1025", &ss, &len, &why), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_string_equal(netaddr_format((struct sockaddr *)&ss, buf, sizeof(buf)), "[::1]:1025");
    assert_int_equal(netaddr_parse("*:0", &ss, &len, &why), 0);
    assert_int_equal(netaddr_parse("::1:25", &ss, &len, &why), -1);
    assert_non_null(strstr(why, "IPv6"));
    assert_int_equal(netaddr_parse("127.0.0.1:65536", &ss, &len, &why), -1);
    assert_int_equal(netaddr_parse("127.0.0.1", &ss, &len, &why), -1);
    assert_int_equal(netaddr_parse("example.org:25", &ss, &len, &why), -1);
    assert_int_equal(netaddr_parse("[::1]25", &ss, &len, &why), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_u64),
        cmocka_unit_test(test_percent),
        cmocka_unit_test(test_size_and_duration),
        cmocka_unit_test(test_netaddr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
