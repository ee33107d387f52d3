/*
 * test_unsub.c - unit tests for send/unsub.c: the token (format, stable,
 * case-insensitive in the address, different per campaign and secret), the
 * suppression list (comments, case, trailing comments, errors with
 * FILE:LINE), patterns checked against the list (unknown column, unclosed
 * placeholder, http:// refused), and one message's values: VERP return
 * path, List-Unsubscribe with URL values percent-encoded, a value with a
 * line break or unsafe characters refused for an address, a too-long URL
 * refused, a "token" column winning over the HMAC, skips (suppressed, hard
 * bounce) and tokens written to the ledger.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support/testutil.h"
#include "send/unsub.h"

static const unsigned char secret[32] = "0123456789abcdef0123456789abcde";

static void test_token(void **state)
{
    (void)state;
    char a[UNSUB_TOKEN_LEN + 1], b[UNSUB_TOKEN_LEN + 1];
    unsub_token(secret, 32, "june", "Bob@Example.net", a);
    assert_int_equal(strlen(a), UNSUB_TOKEN_LEN);
    assert_int_equal(strspn(a, "abcdefghijklmnopqrstuvwxyz234567"), UNSUB_TOKEN_LEN);
    unsub_token(secret, 32, "june", "bob@example.net", b);
    assert_string_equal(a, b);
    unsub_token(secret, 32, "july", "bob@example.net", b);
    assert_string_not_equal(a, b);
    unsub_token(secret, 16, "june", "bob@example.net", b);
    assert_string_not_equal(a, b);
    /* campaign "a" + rcpt "b@c" differs from campaign "ab" + rcpt "@c" (the NUL between) */
    unsub_token(secret, 32, "a", "b@c", a);
    unsub_token(secret, 32, "ab", "@c", b);
    assert_string_not_equal(a, b);
}

static void test_suppress(void **state)
{
    (void)state;
    char why[256];
    const char ok[] = "# list\n\n  Ann@Example.NET \r\nbob@example.net # asked 2024\n#x@y\n";
    struct suppress *s = suppress_parse("sup.txt", ok, strlen(ok), why, sizeof(why));
    assert_non_null(s);
    assert_int_equal(suppress_count(s), 2);
    assert_true(suppress_has(s, "ann@example.net"));
    assert_true(suppress_has(s, "ANN@EXAMPLE.NET"));
    assert_true(suppress_has(s, "bob@example.net"));
    assert_false(suppress_has(s, "x@y"));
    assert_false(suppress_has(s, "carol@example.net"));
    suppress_free(s);
    const char bad[] = "a@b.example\nnot an address\n";
    assert_null(suppress_parse("sup.txt", bad, strlen(bad), why, sizeof(why)));
    assert_non_null(strstr(why, "sup.txt:2:"));
    char *longline = malloc(SUPPRESS_LINE_MAX + 10);
    memset(longline, 'a', SUPPRESS_LINE_MAX + 9);
    longline[SUPPRESS_LINE_MAX + 9] = '\n';
    assert_null(suppress_parse("l", longline, SUPPRESS_LINE_MAX + 10, why, sizeof(why)));
    assert_non_null(strstr(why, "l:1: line longer"));
    free(longline);
    assert_false(suppress_has(NULL, "a@b"));
}

struct fx {
    char dir[64], db[128];
    struct ledger *l;
    struct csv_table t;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char why[256];
    static const char list[] = "email,name,token\n"
                               "ann@example.net,Ann & Co/2,\n"
                               "bob@example.net,Bob,col-token-1\n"
                               "\"\"\"c d\"\"@example.net\",\"line\nbreak\",\n";
    if (!f || !tu_tmpdir(f->dir, sizeof(f->dir), "test_unsub"))
        return -1;
    snprintf(f->db, sizeof(f->db), "%s/l.db", f->dir);
    if (!(f->l = ledger_open(f->db, false, why, sizeof(why))) ||
        csv_table_parse("list.csv", list, strlen(list), &f->t, why, sizeof(why)) < 0) {
        fprintf(stderr, "setup: %s\n", why);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    ledger_close(f->l);
    csv_table_free(&f->t);
    int rc = tu_rmtree(f->dir);
    free(f);
    return rc;
}

static void test_patterns_checked(void **state)
{
    struct fx *f = *state;
    char why[256];
    struct bulk_opts o = {.return_path = "b+{{nope}}@x.test"};
    assert_null(bulk_new(&o, &f->t, f->l, why, sizeof(why)));
    assert_non_null(strstr(why, "no column 'nope'"));
    o = (struct bulk_opts){.unsub_url = "https://x.test/{{token"};
    assert_null(bulk_new(&o, &f->t, f->l, why, sizeof(why)));
    assert_non_null(strstr(why, "without '}}'"));
    o = (struct bulk_opts){.unsub_url = "http://x.test/{{token}}"};
    assert_null(bulk_new(&o, &f->t, f->l, why, sizeof(why)));
    assert_non_null(strstr(why, "https"));
    o = (struct bulk_opts){.unsub_url = "https://x.test/a b"};
    assert_null(bulk_new(&o, &f->t, f->l, why, sizeof(why)));
    o = (struct bulk_opts){.unsub_mailto = "no-at-sign"};
    assert_null(bulk_new(&o, &f->t, f->l, why, sizeof(why)));
    /* the list has a token column: the secret is not needed (nor read) */
    o = (struct bulk_opts){.token_secret = "/nonexistent/secret", .return_path = "{{token}}@x"};
    struct bulk *b = bulk_new(&o, &f->t, f->l, why, sizeof(why));
    assert_non_null(b);
    bulk_free(b);
}

static void test_message(void **state)
{
    struct fx *f = *state;
    char why[256];
    struct bulk_msg m;
    struct bulk_opts o = {.return_path = "bounces+{{rcpt_verp}}@x.test",
                          .unsub_url = "https://x.test/u?n={{name}}&c={{campaign}}",
                          .unsub_mailto = "mailto:unsub+{{rcpt_verp}}@x.test"};
    struct bulk *b = bulk_new(&o, &f->t, f->l, why, sizeof(why));
    assert_non_null(b);
    assert_false(bulk_uses_token(b));
    assert_true(bulk_has_unsub(b));
    assert_int_equal(
        bulk_message(b, "june", &f->t, &f->t.rows[0], "ann@example.net", &m, why, sizeof(why)), 0);
    assert_string_equal(m.return_path, "bounces+ann=example.net@x.test");
    assert_string_equal(m.list_unsubscribe,
                        "<https://x.test/u?n=Ann%20%26%20Co%2F2&c=june>, "
                        "<mailto:unsub+ann=example.net@x.test?subject=unsubscribe>");
    assert_true(m.one_click);
    /* a quoted local part cannot go into a return path */
    assert_int_equal(
        bulk_message(b, "june", &f->t, &f->t.rows[2], "\"c d\"@example.net", &m, why, sizeof(why)),
        -1);
    assert_non_null(strstr(why, "list.csv:4: --return-path"));
    bulk_free(b);

    /* a line break in a value: percent-encoded in a URL, never raw */
    o = (struct bulk_opts){.unsub_url = "https://x.test/u/{{name}}"};
    b = bulk_new(&o, &f->t, f->l, why, sizeof(why));
    assert_int_equal(
        bulk_message(b, "june", &f->t, &f->t.rows[2], "cd@example.net", &m, why, sizeof(why)), 0);
    assert_string_equal(m.list_unsubscribe, "<https://x.test/u/line%0Abreak>");
    assert_null(strpbrk(m.list_unsubscribe, "\r\n"));
    bulk_free(b);

    /* a value that makes the URL too long fails the row */
    static char longpat[UNSUB_URL_MAX + 1]; /* as long as allowed, then longer once expanded */
    memset(longpat, 'a', UNSUB_URL_MAX);
    memcpy(longpat, "https://x/", 10);
    memcpy(longpat + UNSUB_URL_MAX - 9, "{{email}}", 9);
    longpat[UNSUB_URL_MAX] = '\0';
    o = (struct bulk_opts){.unsub_url = longpat};
    b = bulk_new(&o, &f->t, f->l, why, sizeof(why));
    assert_non_null(b);
    assert_int_equal(
        bulk_message(b, "june", &f->t, &f->t.rows[0], "ann@example.net", &m, why, sizeof(why)), -1);
    bulk_free(b);
}

static void test_token_column_and_plan(void **state)
{
    struct fx *f = *state;
    char why[256], camp[64], rc[300];
    struct bulk_msg m;
    enum bulk_skip sk;
    const char sup[] = "bob@example.net\n";
    char path[160];
    snprintf(path, sizeof(path), "%s/sup", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(sup, fp);
    fclose(fp);
    struct bulk_opts o = {.return_path = "b+{{token}}@x.test", .suppress = path};
    struct bulk *b = bulk_new(&o, &f->t, f->l, why, sizeof(why));
    assert_non_null(b);
    assert_true(bulk_uses_token(b));
    assert_false(bulk_has_unsub(b));
    /* the list has a token column: it wins (Bob's is "col-token-1"); Ann's is empty */
    assert_int_equal(
        bulk_message(b, "june", &f->t, &f->t.rows[1], "bob@example.net", &m, why, sizeof(why)), 0);
    assert_string_equal(m.return_path, "b+col-token-1@x.test");
    assert_int_equal(
        bulk_message(b, "june", &f->t, &f->t.rows[0], "ann@example.net", &m, why, sizeof(why)), -1);
    /* plan: Bob suppressed, Ann planned (empty token: nothing recorded) */
    assert_int_equal(bulk_plan(b, f->l, "june", &f->t, &f->t.rows[1], "bob@example.net", &sk), 0);
    assert_int_equal(sk, BULK_SUPPRESSED);
    assert_int_equal(bulk_plan(b, f->l, "june", &f->t, &f->t.rows[0], "ann@example.net", &sk), 0);
    assert_int_equal(sk, BULK_SEND);
    bulk_free(b);

    /* without a token column: the HMAC with the ledger's secret, recorded at plan time */
    struct csv_table t2;
    const char list[] = "email\nann@example.net\n";
    assert_int_equal(csv_table_parse("l2", list, strlen(list), &t2, why, sizeof(why)), 0);
    o = (struct bulk_opts){.token_secret = "/nonexistent/secret", .return_path = "b+{{token}}@x"};
    assert_null(bulk_new(&o, &t2, f->l, why, sizeof(why)));
    assert_non_null(strstr(why, "--token-secret"));
    o = (struct bulk_opts){.return_path = "b+{{token}}@x.test"};
    b = bulk_new(&o, &t2, f->l, why, sizeof(why));
    assert_non_null(b);
    assert_int_equal(bulk_plan(b, f->l, "june", &t2, &t2.rows[0], "ann@example.net", &sk), 0);
    assert_int_equal(
        bulk_message(b, "june", &t2, &t2.rows[0], "ann@example.net", &m, why, sizeof(why)), 0);
    char tok[UNSUB_TOKEN_LEN + 1];
    memcpy(tok, m.return_path + 2, UNSUB_TOKEN_LEN);
    tok[UNSUB_TOKEN_LEN] = '\0';
    assert_int_equal(ledger_token_find(f->l, tok, camp, sizeof(camp), rc, sizeof(rc)), 1);
    assert_string_equal(rc, "ann@example.net");
    /* a hard bounce is skipped by the next plan */
    assert_int_equal(
        ledger_bounce_put(f->l, "ann@example.net", LEDGER_BOUNCE_HARD, "5.1.1", "", ""), 0);
    assert_int_equal(bulk_plan(b, f->l, "june", &t2, &t2.rows[0], "ann@example.net", &sk), 0);
    assert_int_equal(sk, BULK_HARD_BOUNCE);
    bulk_free(b);
    csv_table_free(&t2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token),
        cmocka_unit_test(test_suppress),
        cmocka_unit_test_setup_teardown(test_patterns_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_column_and_plan, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
