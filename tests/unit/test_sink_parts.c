/*
 * test_sink_parts.c - the sink's pure parts: fault specifications and
 * decisions (src/sink/fault.c) and the message store (src/sink/store.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "sink/fault.h"
#include "sink/store.h"

static void test_fault_parse(void **state)
{
    (void)state;
    struct fault_rule r;
    enum fault_point p;
    unsigned ms;
    char why[256];
    assert_int_equal(fault_parse_fail("RCPT:451:10", &r, why, sizeof(why)), 0);
    assert_int_equal(r.point, FP_RCPT);
    assert_int_equal(r.code, 451);
    assert_true(r.percent == 10.0);
    assert_int_equal(fault_parse_fail("eod:554:2.5", &r, why, sizeof(why)), 0);
    assert_int_equal(r.point, FP_EOD);
    assert_int_equal(fault_parse_fail("HELO:421:100", &r, why, sizeof(why)), 0);
    assert_int_equal(r.point, FP_EHLO);
    assert_int_equal(fault_parse_fail("RCPT:351:10", &r, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "400 to 599"));
    assert_int_equal(fault_parse_fail("QUIT:451:10", &r, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "unknown command 'QUIT'"));
    assert_int_equal(fault_parse_fail("RCPT:451:101", &r, why, sizeof(why)), -1);
    assert_int_equal(fault_parse_fail("RCPT:451", &r, why, sizeof(why)), -1);
    assert_int_equal(fault_parse_fail("RCPT::451:1", &r, why, sizeof(why)), -1);
    assert_int_equal(fault_parse_delay("DATA:200", &p, &ms, why, sizeof(why)), 0);
    assert_int_equal(p, FP_DATA);
    assert_int_equal(ms, 200);
    assert_int_equal(fault_parse_delay("DATA:x", &p, &ms, why, sizeof(why)), -1);
    assert_int_equal(fault_parse_delay("DATA:99999999", &p, &ms, why, sizeof(why)), -1);
}

static void test_fault_decisions(void **state)
{
    (void)state;
    struct fault_conf c;
    struct fault_state st, st2;
    struct fault_rule r = {FP_RCPT, 451, 30};
    char why[64];
    memset(&c, 0, sizeof(c));
    c.close_first = 4;
    c.seed = 42;
    assert_int_equal(fault_conf_add_rule(&c, &r, why, sizeof(why)), 0);
    r.percent = 40; /* same point and code: replaces */
    assert_int_equal(fault_conf_add_rule(&c, &r, why, sizeof(why)), 0);
    assert_int_equal(c.nrules, 1);
    fault_init(&st, &c);
    /* close_first: four cuts, alternating 421 / clean (mail-test-srv's order), then none */
    assert_int_equal(fault_at_mail(&st), CUT_421);
    assert_int_equal(fault_at_mail(&st), CUT_CLEAN);
    assert_int_equal(fault_at_mail(&st), CUT_421);
    assert_int_equal(fault_at_mail(&st), CUT_CLEAN);
    assert_int_equal(fault_at_mail(&st), CUT_NONE);
    assert_int_equal(st.stats.close_first, 4);
    /* the rate is near 40 % over many draws, and the same seed repeats itself */
    fault_init(&st, &c);
    fault_init(&st2, &c);
    int hits = 0;
    for (int i = 0; i < 10000; i++) {
        int a = fault_fail(&st, FP_RCPT), b = fault_fail(&st2, FP_RCPT);
        assert_int_equal(a, b);
        hits += a == 451;
        assert_int_equal(fault_fail(&st, FP_MAIL), 0);
        fault_fail(&st2, FP_MAIL);
    }
    assert_in_range(hits, 3700, 4300);
    assert_int_equal(st.stats.fail[FP_RCPT], (uint64_t)hits);
    assert_string_equal(fault_enh(FP_RCPT, 550), "5.1.1");
    assert_string_equal(fault_enh(FP_MAIL, 451), "4.3.0");
}

static struct sink_msg *msg(const char *from, const char *to, const char *subject, size_t size)
{
    struct sink_msg *m = calloc(1, sizeof(*m));
    m->mail_from = strdup(from);
    m->rcpts = calloc(1, sizeof(char *));
    m->rcpts[0] = strdup(to);
    m->nrcpt = 1;
    m->raw = calloc(1, size + 1);
    m->size = size;
    m->subject = strdup(subject);
    return m;
}

static void test_store(void **state)
{
    (void)state;
    struct sink_store st;
    store_init(&st, 3, 1000);
    for (int i = 0; i < 5; i++)
        store_add(&st, msg("a@x.org", i % 2 ? "odd@y.org" : "even@y.org", "hello", 10));
    assert_int_equal(st.count, 3);
    assert_int_equal(st.dropped, 2);
    assert_int_equal(st.newest->id, 5);
    assert_int_equal(st.oldest->id, 3);
    assert_null(store_get(&st, 2));
    assert_non_null(store_get(&st, 4));
    struct sink_filter f = {.to = "ODD@"};
    assert_true(store_match(store_get(&st, 4), &f));
    assert_false(store_match(store_get(&st, 5), &f));
    struct sink_filter fx = {.to = "odd@y.org", .exact = true};
    assert_true(store_match(store_get(&st, 4), &fx));
    fx.to = "odd@";
    assert_false(store_match(store_get(&st, 4), &fx));
    assert_int_equal(store_delete(&st, 4), 0);
    assert_int_equal(store_delete(&st, 4), -1);
    assert_int_equal(st.count, 2);
    /* the byte limit drops old messages too, never the new one */
    store_add(&st, msg("a@x.org", "b@y.org", "big", 5000));
    assert_int_equal(st.count, 1);
    assert_int_equal(st.newest->id, 6);
    store_clear(&st);
    assert_int_equal(st.count, 0);
    assert_int_equal(st.bytes, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fault_parse),
        cmocka_unit_test(test_fault_decisions),
        cmocka_unit_test(test_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
