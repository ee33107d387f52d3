/*
 * test_ledger.c - unit tests for send/ledger.c, each in a fresh mkdtemp
 * directory: put / get / update of one key, attempts counted, keys that
 * differ only by campaign or window, recipients lower-cased, the smallest
 * window sent, the CSV report (header row, quoting, permanent failures
 * only), WAL mode on disk, and data kept across close and reopen.  Schema
 * version 2: a version-1 file migrated with its rows kept, a file from a
 * newer tern refused, bounces (a soft one never downgrades a hard one),
 * tokens, the secret made once, and the counts per campaign.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "../support/testutil.h"
#include "send/ledger.h"

struct fixture {
    char dir[64];
    char db[128];
    char report[128];
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    if (fx == NULL)
        return -1;
    if (tu_tmpdir(fx->dir, sizeof(fx->dir), "test_ledger") == NULL)
        return -1;
    snprintf(fx->db, sizeof(fx->db), "%s/ledger.db", fx->dir);
    snprintf(fx->report, sizeof(fx->report), "%s/report.csv", fx->dir);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    int rc = tu_rmtree(fx->dir);
    free(fx);
    return rc == 0 ? 0 : -1;
}

static int64_t attempts_of(const char *db, const char *rcpt)
{
    sqlite3 *h;
    sqlite3_stmt *st;
    int64_t n = -1;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(h, "SELECT attempts FROM sends WHERE rcpt=?1", -1, &st, NULL),
        SQLITE_OK);
    sqlite3_bind_text(st, 1, rcpt, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(h);
    return n;
}

static void test_put_get_update(void **state)
{
    struct fixture *fx = *state;
    char why[256];
    enum ledger_status st;
    struct ledger *l = ledger_open(fx->db, true, why, sizeof(why));
    assert_non_null(l);

    assert_int_equal(ledger_get(l, "c1", "ann@x.org", "", &st), 0);
    assert_int_equal(st, LEDGER_NONE);
    assert_int_equal(ledger_put(l, "c1", "Ann@X.org", "", LEDGER_TRANSIENT, "421 busy"), 0);
    assert_int_equal(ledger_get(l, "c1", "ann@x.org", "", &st), 0);
    assert_int_equal(st, LEDGER_TRANSIENT);
    assert_int_equal(ledger_get(l, "c1", "ANN@x.org", "", &st), 0);
    assert_int_equal(st, LEDGER_TRANSIENT);
    assert_int_equal(ledger_put(l, "c1", "ann@x.org", "", LEDGER_SENT, "250 ok"), 0);
    assert_int_equal(ledger_get(l, "c1", "ann@x.org", "", &st), 0);
    assert_int_equal(st, LEDGER_SENT);
    /* other campaign, other window: other keys */
    assert_int_equal(ledger_get(l, "c2", "ann@x.org", "", &st), 0);
    assert_int_equal(st, LEDGER_NONE);
    assert_int_equal(ledger_get(l, "c1", "ann@x.org", "86400", &st), 0);
    assert_int_equal(st, LEDGER_NONE);
    assert_int_equal(ledger_get(l, "c1", "ann@x.org", NULL, &st), 0);
    assert_int_equal(st, LEDGER_SENT);
    /* LEDGER_NONE is not an outcome */
    assert_int_equal(ledger_put(l, "c1", "ann@x.org", "", LEDGER_NONE, ""), -1);
    ledger_close(l);
    assert_int_equal(attempts_of(fx->db, "ann@x.org"), 2);
}

static void test_attempts(void **state)
{
    struct fixture *fx = *state;
    char why[256];
    struct ledger *l = ledger_open(fx->db, true, why, sizeof(why));
    assert_non_null(l);
    for (int i = 0; i < 5; i++)
        assert_int_equal(ledger_put(l, "c", "bob@x.org", "", LEDGER_TRANSIENT, "451"), 0);
    assert_int_equal(attempts_of(fx->db, "bob@x.org"), 5); /* visible to another reader */
    assert_int_equal(ledger_put(l, "c", "bob@x.org", "", LEDGER_PERMANENT, "550"), 0);
    assert_int_equal(attempts_of(fx->db, "bob@x.org"), 6);
    ledger_close(l);
}

static void test_min_window(void **state)
{
    struct fixture *fx = *state;
    char why[256];
    struct ledger *l = ledger_open(fx->db, true, why, sizeof(why));
    assert_non_null(l);
    assert_int_equal(ledger_min_window_sent(l, "r", "ann@x.org"), -1);
    assert_int_equal(ledger_put(l, "r", "ann@x.org", "", LEDGER_SENT, "250"), 0);
    assert_int_equal(ledger_min_window_sent(l, "r", "ann@x.org"), -1); /* not a window */
    assert_int_equal(ledger_put(l, "r", "ann@x.org", "2592000", LEDGER_SENT, "250"), 0);
    assert_int_equal(ledger_min_window_sent(l, "r", "ann@x.org"), 2592000);
    assert_int_equal(ledger_put(l, "r", "ann@x.org", "604800", LEDGER_SENT, "250"), 0);
    /* numeric order, not text order ("86400" < "604800" as text too, "90" would not be) */
    assert_int_equal(ledger_put(l, "r", "ann@x.org", "90", LEDGER_TRANSIENT, "421"), 0);
    assert_int_equal(ledger_min_window_sent(l, "r", "ANN@x.org"), 604800);
    assert_int_equal(ledger_put(l, "r", "ann@x.org", "90", LEDGER_SENT, "250"), 0);
    assert_int_equal(ledger_min_window_sent(l, "r", "ann@x.org"), 90);
    assert_int_equal(ledger_min_window_sent(l, "other", "ann@x.org"), -1);
    assert_int_equal(ledger_min_window_sent(l, "r", "bob@x.org"), -1);
    ledger_close(l);
}

static void test_report(void **state)
{
    struct fixture *fx = *state;
    char why[256];
    struct ledger *l = ledger_open(fx->db, true, why, sizeof(why));
    assert_non_null(l);
    assert_int_equal(ledger_put(l, "c", "ok@x.org", "", LEDGER_SENT, "250 ok"), 0);
    assert_int_equal(
        ledger_put(l, "c", "b@x.org", "", LEDGER_PERMANENT, "550 5.1.1 \"b\" unknown, sorry"), 0);
    assert_int_equal(ledger_put(l, "c", "a@x.org", "604800", LEDGER_TRANSIENT, "451"), 0);
    assert_int_equal(
        ledger_put(l, "c", "a@x.org", "604800", LEDGER_PERMANENT, "554 no\nsecond line"), 0);
    assert_int_equal(ledger_put(l, "c", "t@x.org", "", LEDGER_TRANSIENT, "421"), 0);
    assert_int_equal(ledger_put(l, "other", "z@x.org", "", LEDGER_PERMANENT, "550"), 0);
    assert_int_equal(ledger_report(l, "c", fx->report, why, sizeof(why)), 0);
    char *csv = tu_slurp(fx->report, NULL);
    assert_string_equal(csv, "email,window,attempts,detail\r\n"
                             "a@x.org,604800,2,\"554 no\nsecond line\"\r\n"
                             "b@x.org,,1,\"550 5.1.1 \"\"b\"\" unknown, sorry\"\r\n");
    free(csv);

    /* nothing failed: just the header */
    assert_int_equal(ledger_report(l, "none", fx->report, why, sizeof(why)), 0);
    csv = tu_slurp(fx->report, NULL);
    assert_string_equal(csv, "email,window,attempts,detail\r\n");
    free(csv);

    char bad[160];
    snprintf(bad, sizeof(bad), "%s/no/such/dir/r.csv", fx->dir);
    assert_int_equal(ledger_report(l, "c", bad, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "No such file or directory"));
    ledger_close(l);
}

static void test_reopen(void **state)
{
    struct fixture *fx = *state;
    char why[256];
    enum ledger_status st;
    struct ledger *l = ledger_open(fx->db, true, why, sizeof(why));
    assert_non_null(l);
    assert_int_equal(ledger_put(l, "c", "ann@x.org", "86400", LEDGER_SENT, "250"), 0);
    assert_int_equal(ledger_put(l, "c", "bob@x.org", "", LEDGER_PERMANENT, "550"), 0);
    ledger_close(l);

    l = ledger_open(fx->db, true, why, sizeof(why));
    assert_non_null(l);
    assert_int_equal(ledger_get(l, "c", "ann@x.org", "86400", &st), 0);
    assert_int_equal(st, LEDGER_SENT);
    assert_int_equal(ledger_get(l, "c", "bob@x.org", "", &st), 0);
    assert_int_equal(st, LEDGER_PERMANENT);
    assert_int_equal(ledger_min_window_sent(l, "c", "ann@x.org"), 86400);
    /* two handles on one file (a report while a run writes) */
    struct ledger *l2 = ledger_open(fx->db, true, why, sizeof(why));
    assert_non_null(l2);
    assert_int_equal(ledger_put(l2, "c", "cy@x.org", "", LEDGER_SENT, "250"), 0);
    assert_int_equal(ledger_get(l, "c", "cy@x.org", "", &st), 0);
    assert_int_equal(st, LEDGER_SENT);
    ledger_close(l2);
    ledger_close(l);

    /* the database is in WAL mode on disk */
    sqlite3 *h;
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_open(fx->db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(h, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(q, 0), "wal");
    sqlite3_finalize(q);
    sqlite3_close(h);
}

static void test_open_errors(void **state)
{
    struct fixture *fx = *state;
    char why[256], path[160];

    snprintf(path, sizeof(path), "%s/missing/ledger.db", fx->dir);
    assert_null(ledger_open(path, true, why, sizeof(why)));
    assert_non_null(strstr(why, "ledger.db: sqlite: "));
    /* not a database */
    snprintf(path, sizeof(path), "%s/junk.db", fx->dir);
    tu_write_file(path, "this is not an SQLite database, not at all, no........\n", 0666);
    assert_null(ledger_open(path, true, why, sizeof(why)));
    assert_non_null(strstr(why, "junk.db: sqlite: "));
}

static void test_migrate_v1(void **state)
{
    struct fixture *fx = *state;
    sqlite3 *h;
    assert_int_equal(sqlite3_open(fx->db, &h), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(h,
                     "CREATE TABLE sends (campaign TEXT NOT NULL, rcpt TEXT NOT NULL, "
                     "\"window\" TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL "
                     "DEFAULT 0, detail TEXT NOT NULL DEFAULT '', updated TEXT NOT NULL, "
                     "PRIMARY KEY (campaign, rcpt, \"window\")) WITHOUT ROWID;"
                     "INSERT INTO sends VALUES ('c','a@x.test','','sent',1,'250','2024');",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(h);
    char why[256];
    struct ledger *l = ledger_open(fx->db, false, why, sizeof(why));
    assert_non_null(l);
    enum ledger_status st;
    assert_int_equal(ledger_get(l, "c", "a@x.test", "", &st), 0);
    assert_int_equal(st, LEDGER_SENT);
    enum ledger_bounce bk;
    assert_int_equal(ledger_bounce_get(l, "A@x.test", &bk), 0);
    assert_int_equal(bk, LEDGER_BOUNCE_NONE);
    assert_int_equal(ledger_bounce_put(l, "A@X.test", LEDGER_BOUNCE_HARD, "5.1.1", "gone", "c"), 0);
    assert_int_equal(ledger_bounce_put(l, "a@x.test", LEDGER_BOUNCE_SOFT, "4.2.2", "full", "d"), 0);
    assert_int_equal(ledger_bounce_get(l, "a@x.test", &bk), 0);
    assert_int_equal(bk, LEDGER_BOUNCE_HARD); /* never downgraded */
    assert_int_equal(ledger_bounce_put(l, "b@x.test", LEDGER_BOUNCE_SOFT, "4.2.2", "", "c"), 0);
    assert_int_equal(ledger_bounce_put(l, "b@x.test", LEDGER_BOUNCE_HARD, "5.1.1", "", "c"), 0);
    assert_int_equal(ledger_bounce_get(l, "b@x.test", &bk), 0);
    assert_int_equal(bk, LEDGER_BOUNCE_HARD); /* upgraded */
    assert_int_equal(ledger_bounce_put(l, "b@x.test", LEDGER_BOUNCE_NONE, "", "", ""), -1);

    struct ledger_counts k;
    assert_int_equal(ledger_counts(l, "c", &k), 0);
    assert_int_equal(k.sent, 1);
    assert_int_equal(k.bounced_hard, 1); /* b@ was never sent to in campaign c */
    assert_int_equal(ledger_counts(l, NULL, &k), 0);
    assert_int_equal(k.bounced_hard, 2);
    assert_int_equal(ledger_rcpt_known(l, "A@x.TEST"), 1);
    assert_int_equal(ledger_rcpt_known(l, "z@x.test"), 0);

    char c[64], r[64];
    assert_int_equal(ledger_begin(l), 0);
    assert_int_equal(ledger_token_put(l, "tok1", "c", "A@x.test"), 0);
    assert_int_equal(ledger_commit(l), 0);
    assert_int_equal(ledger_token_find(l, "tok1", c, sizeof(c), r, sizeof(r)), 1);
    assert_string_equal(c, "c");
    assert_string_equal(r, "a@x.test");
    assert_int_equal(ledger_token_find(l, "tok2", c, sizeof(c), r, sizeof(r)), 0);

    unsigned char s1[32], s2[32];
    assert_int_equal(ledger_secret(l, s1), 0);
    ledger_close(l);
    l = ledger_open(fx->db, false, why, sizeof(why));
    assert_non_null(l);
    assert_int_equal(ledger_secret(l, s2), 0);
    assert_memory_equal(s1, s2, 32); /* made once, kept */
    ledger_close(l);

    /* a file of a newer tern is refused, not damaged */
    assert_int_equal(sqlite3_open(fx->db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "PRAGMA user_version=3", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    assert_null(ledger_open(fx->db, false, why, sizeof(why)));
    assert_non_null(strstr(why, "newer"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_get_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attempts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_min_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_v1, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
