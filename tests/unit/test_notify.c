/*
 * test_notify.c - unit tests for server/notify.c: the STATUS= and RELOADING=
 * texts (plurals, a buffer too small cut, never overrun), nothing sent
 * without NOTIFY_SOCKET, and, to an abstract datagram socket this test binds,
 * READY=1 with STATUS=, STATUS= sent only when it changed (or forced),
 * RELOADING=1 with MONOTONIC_USEC=, STOPPING=1.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "server/notify.h"

static void test_format(void **state)
{
    (void)state;
    char b[NOTIFY_MSG_MAX];
    notify_format_status(b, sizeof(b), 0, 0);
    assert_string_equal(b, "STATUS=queue 0 items, 0 sessions");
    notify_format_status(b, sizeof(b), 1, 1);
    assert_string_equal(b, "STATUS=queue 1 item, 1 session");
    notify_format_status(b, sizeof(b), 123456789, 4000);
    assert_string_equal(b, "STATUS=queue 123456789 items, 4000 sessions");
    notify_format_reloading(b, sizeof(b), 18446744073709551615ull);
    assert_string_equal(b, "RELOADING=1\nMONOTONIC_USEC=18446744073709551615");
    char small[10];
    memset(small, 'x', sizeof(small));
    notify_format_status(small, 8, 5, 5);
    assert_string_equal(small, "STATUS=");
    assert_int_equal(small[9], 'x');
}

static void test_disabled(void **state)
{
    (void)state;
    assert_int_equal(unsetenv("NOTIFY_SOCKET"), 0);
    assert_false(notify_enabled());
    notify_ready(1, 1); /* nothing to send to, nothing happens */
    notify_status(2, 2, true);
    notify_reloading();
    notify_stopping();
    assert_int_equal(setenv("NOTIFY_SOCKET", "", 1), 0);
    assert_false(notify_enabled());
}

/* the next datagram on fd, or "" if none comes within a short while */
static const char *next_msg(int fd, char *buf, size_t size)
{
    struct timeval tv = {0, 200000};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    ssize_t n = recv(fd, buf, size - 1, 0);
    if (n < 0) {
        assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
        n = 0;
    }
    buf[n] = '\0';
    return buf;
}

static void test_sent(void **state)
{
    (void)state;
    char name[64], env[80], buf[512];
    snprintf(name, sizeof(name), "tern-test-notify-%ld", (long)getpid());
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path + 1, name, strlen(name)); /* abstract: sun_path[0] is 0 */
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name));
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, len), 0);
    snprintf(env, sizeof(env), "@%s", name);
    assert_int_equal(setenv("NOTIFY_SOCKET", env, 1), 0);
    assert_true(notify_enabled());

    notify_ready(3, 1);
    assert_string_equal(next_msg(fd, buf, sizeof(buf)), "READY=1\nSTATUS=queue 3 items, 1 session");
    notify_status(3, 1, false); /* the same: not sent */
    assert_string_equal(next_msg(fd, buf, sizeof(buf)), "");
    notify_status(3, 1, true); /* forced */
    assert_string_equal(next_msg(fd, buf, sizeof(buf)), "STATUS=queue 3 items, 1 session");
    notify_status(2, 0, false);
    assert_string_equal(next_msg(fd, buf, sizeof(buf)), "STATUS=queue 2 items, 0 sessions");
    notify_reloading();
    next_msg(fd, buf, sizeof(buf));
    assert_memory_equal(buf, "RELOADING=1\nMONOTONIC_USEC=", 27);
    assert_true(strtoull(buf + 27, NULL, 10) > 0);
    notify_stopping();
    assert_string_equal(next_msg(fd, buf, sizeof(buf)), "STOPPING=1\nSTATUS=stopping");
    assert_true(notify_enabled()); /* the environment is kept for later messages */
    close(fd);
    unsetenv("NOTIFY_SOCKET");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_disabled),
        cmocka_unit_test(test_sent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
