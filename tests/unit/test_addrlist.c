/*
 * test_addrlist.c - address lists of To/Cc/Bcc headers (core/addrlist.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/addrlist.h"

static char got[4096], bad[1024];

static void on_addr(void *ctx, const char *a)
{
    (void)ctx;
    strncat(got, a, sizeof(got) - strlen(got) - 2);
    strcat(got, " ");
}

static void on_bad(void *ctx, const char *a)
{
    (void)ctx;
    strncat(bad, a, sizeof(bad) - strlen(bad) - 2);
    strcat(bad, "|");
}

static int run(const char *s)
{
    got[0] = bad[0] = '\0';
    return addrlist_parse(s, strlen(s), on_addr, on_bad, NULL);
}

static void test_forms(void **state)
{
    (void)state;
    assert_int_equal(run("a@b.example"), 1);
    assert_string_equal(got, "a@b.example ");
    assert_int_equal(run("\"Last, First\" <x@y.example>, Plain Name <p@q.example>"), 2);
    assert_string_equal(got, "x@y.example p@q.example ");
    assert_int_equal(run("c@d.example (Carl, the boss), e@f.example"), 2);
    assert_string_equal(got, "c@d.example e@f.example ");
    assert_int_equal(run("team: g@h.example, i@j.example;, k@l.example"), 3);
    assert_string_equal(got, "g@h.example i@j.example k@l.example ");
    assert_int_equal(run("Undisclosed recipients:;"), 0);
    assert_int_equal(run("<@r1,@r2:s@t.example>"), 1);
    assert_string_equal(got, "s@t.example ");
    assert_int_equal(run("\"quoted local\"@u.example"), 1);
    assert_string_equal(got, "\"quoted local\"@u.example ");
    assert_int_equal(run(" a@b.example ,\r\n\tc@d.example"), 2);
}

static void test_errors(void **state)
{
    (void)state;
    assert_int_equal(run("not-an-address, ok@x.example"), 1);
    assert_string_equal(bad, "not-an-address|");
    assert_string_equal(got, "ok@x.example ");
    assert_int_equal(run("\"unterminated <a@b.example>"), -1);
    assert_int_equal(run("(open comment a@b.example"), -1);
    assert_int_equal(run("<a@b.example"), -1);
    assert_int_equal(run("a\r\n@b.example"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
