/*
 * test_mtasts.c - RFC 8461 MTA-STS (mailauth/mtasts.c): the TXT record,
 * the policy parser (LF and CRLF, unknown keys, repeated keys, missing
 * fields, bad values, limits), MX patterns with the one-label wildcard,
 * and the cache with a fake source and clock: refresh on a new TXT id or
 * after max_age, a failed refresh keeps the policy until max_age, nothing
 * cached + failure = no policy, a restart reads the policy back from disk;
 * the [mta_sts] keys of tern.conf with their FILE:LINE errors.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/config.h"
#include "mailauth/mtasts.h"

static char why[300];

/* ---- TXT ---- */

static int txt(const char *s, char *id)
{
    return mtasts_txt_parse(s, strlen(s), id, why, sizeof(why));
}

static void test_txt(void **state)
{
    (void)state;
    char id[MTASTS_ID_MAX + 1];
    assert_int_equal(txt("v=STSv1; id=20160831085700Z;", id), 0);
    assert_string_equal(id, "20160831085700Z");
    assert_int_equal(txt("v=STSv1;id=abc", id), 0);
    assert_string_equal(id, "abc");
    assert_int_equal(txt("v=STSv1; id=abc; ext=whatever", id), 0); /* extensions ignored */
    assert_int_equal(txt("v=STSv1; id=12345678901234567890123456789012", id), 0);
    assert_int_equal(txt("v=STSv1; id=123456789012345678901234567890123", id), -1); /* 33 */
    assert_int_equal(txt("v=STSv1; id=", id), -1);
    assert_int_equal(txt("v=STSv1; id=ab-c", id), -1);
    assert_int_equal(txt("v=STSv1", id), -1);         /* no id */
    assert_int_equal(txt("id=abc; v=STSv1", id), -1); /* v must come first */
    assert_int_equal(txt("v=STSv2; id=abc", id), -1);
    assert_int_equal(txt("v=STSv1; id=abc; id=def", id), -1); /* duplicate tag */
    assert_int_equal(txt("garbage \x01\x02", id), -1);
    assert_true(strlen(why) > 0);
}

/* ---- policy ---- */

static struct mtasts_policy pol;

static int policy(const char *s)
{
    return mtasts_policy_parse(s, strlen(s), &pol, why, sizeof(why));
}

static void test_policy_ok(void **state)
{
    (void)state;
    assert_int_equal(policy("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n"
                            "mx: *.Example.NET\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n"),
                     0);
    assert_int_equal(pol.mode, MTASTS_MODE_ENFORCE);
    assert_int_equal(pol.max_age, 604800);
    assert_int_equal(pol.nmx, 3);
    assert_string_equal(pol.mx[1], "*.example.net");
    /* LF only, no final newline, blanks, unknown keys, repeated keys: the first counts */
    assert_int_equal(policy("version:STSv1\nmode:   testing  \nfoo: bar baz\nmx: a.example\n"
                            "mode: enforce\nmax_age: 0\nmax_age: 99"),
                     0);
    assert_int_equal(pol.mode, MTASTS_MODE_TESTING);
    assert_int_equal(pol.max_age, 0);
    assert_int_equal(pol.nmx, 1);
    /* mode none needs no mx */
    assert_int_equal(policy("version: STSv1\nmode: none\nmax_age: 86400\n"), 0);
    assert_int_equal(pol.mode, MTASTS_MODE_NONE);
    assert_int_equal(policy("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557600\n"),
                     0);
}

static void test_policy_bad(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "<html><body>hello</body></html>",
        "version: STSv1\nmode: enforce\nmx: a.example\n",             /* no max_age */
        "mode: enforce\nmx: a.example\nmax_age: 1\n",                 /* no version */
        "version: STSv1\nmx: a.example\nmax_age: 1\n",                /* no mode */
        "version: STSv1\nmode: enforce\nmax_age: 1\n",                /* enforce without mx */
        "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n", /* version */
        "version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n",  /* mode */
        "version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1\n", /* case matters */
        "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601\n",
        "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 12345678901\n",
        "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n",
        "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1d\n",
        "version: STSv1\nmode: enforce\nmx: a..example\nmax_age: 1\n", /* bad pattern */
        "version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmx: a*.example\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmx: *\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmx: a.example.\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmx:\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\njunk line\n",
        "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n: value\n",
        "version: STSv1\nmode: enforce\nmx: a.ex\x01ample\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\nnote: caf\xc3\xa9\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = '\0';
        if (policy(bad[i]) != -1)
            fail_msg("accepted: %s", bad[i]);
        assert_true(strlen(why) > 0);
    }
}

static void test_policy_limits(void **state)
{
    (void)state;
    char *big = malloc(MTASTS_POLICY_MAX + 64);
    assert_non_null(big);
    size_t n = (size_t)snprintf(big, 200,
                                "version: STSv1\nmode: enforce\nmx: a.example\n"
                                "max_age: 1\n");
    memset(big + n, 'x', MTASTS_POLICY_MAX + 1 - n); /* one octet too many */
    assert_int_equal(mtasts_policy_parse(big, MTASTS_POLICY_MAX + 1, &pol, why, sizeof(why)), -1);
    free(big);
    char text[4096] = "version: STSv1\nmode: enforce\nmax_age: 1\n";
    for (int i = 0; i < MTASTS_MX_MAX; i++)
        snprintf(text + strlen(text), sizeof(text) - strlen(text), "mx: m%d.example\n", i);
    assert_int_equal(policy(text), 0);
    assert_int_equal(pol.nmx, MTASTS_MX_MAX);
    strcat(text, "mx: one-more.example\n");
    assert_int_equal(policy(text), -1);
}

/* ---- MX patterns ---- */

static void test_mx_match(void **state)
{
    (void)state;
    assert_true(mtasts_mx_match("mail.example.com", "mail.example.com"));
    assert_true(mtasts_mx_match("mail.example.com", "MAIL.Example.COM."));
    assert_false(mtasts_mx_match("mail.example.com", "mail.example.co"));
    assert_false(mtasts_mx_match("mail.example.com", "xmail.example.com"));
    assert_true(mtasts_mx_match("*.example.net", "mx1.example.net"));
    assert_true(mtasts_mx_match("*.example.net", "MX1.EXAMPLE.NET."));
    assert_false(mtasts_mx_match("*.example.net", "example.net"));     /* one label needed */
    assert_false(mtasts_mx_match("*.example.net", "a.b.example.net")); /* only one */
    assert_false(mtasts_mx_match("*.example.net", ".example.net"));
    assert_false(mtasts_mx_match("*.example.net", "mx1.example.neta"));
    assert_false(mtasts_mx_match("*.example.net", "mx1.xexample.net"));
    assert_false(mtasts_mx_match("mail.example.com", ""));
    assert_int_equal(policy("version: STSv1\nmode: enforce\nmx: a.example\nmx: *.b.example\n"
                            "max_age: 1\n"),
                     0);
    assert_true(mtasts_policy_match(&pol, "a.example"));
    assert_true(mtasts_policy_match(&pol, "x.b.example"));
    assert_false(mtasts_policy_match(&pol, "b.example"));
    assert_false(mtasts_policy_match(&pol, "c.example"));
}

/* ---- cache with a fake source ---- */

struct fake {
    enum mtasts_txt_status txt;
    const char *id;
    const char *body; /* NULL: the fetch fails */
    int fetches;
};

static enum mtasts_txt_status fake_txt(void *ctx, const char *domain, char id[MTASTS_ID_MAX + 1],
                                       char *w, size_t wl)
{
    struct fake *f = ctx;
    (void)domain;
    snprintf(id, MTASTS_ID_MAX + 1, "%s", f->txt == MTASTS_TXT_OK ? f->id : "");
    snprintf(w, wl, "fake TXT %d", (int)f->txt);
    return f->txt;
}

static int fake_fetch(void *ctx, const char *domain, char **body, size_t *len, char *w, size_t wl)
{
    struct fake *f = ctx;
    (void)domain;
    f->fetches++;
    if (!f->body) {
        snprintf(w, wl, "connection refused");
        return -1;
    }
    *body = strdup(f->body);
    *len = strlen(f->body);
    return 0;
}

#define ENFORCE_A "version: STSv1\nmode: enforce\nmx: mx.a.example\nmax_age: 100\n"
#define TESTING_B "version: STSv1\nmode: testing\nmx: *.b.example\nmax_age: 100\n"

static char tmpdir[64];

static int setup_dir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_mtasts.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof(path), "%s/mta-sts/a.example", tmpdir); /* the one file stored */
    unlink(path);
    snprintf(path, sizeof(path), "%s/mta-sts", tmpdir);
    return rmdir(path) == 0 && rmdir(tmpdir) == 0 ? 0 : -1;
}

static void test_cache(void **state)
{
    (void)state;
    char dir[128], note[600];
    snprintf(dir, sizeof(dir), "%s/mta-sts", tmpdir);
    struct fake f = {.txt = MTASTS_TXT_OK, .id = "one", .body = ENFORCE_A};
    struct mtasts_source src = {.txt = fake_txt, .fetch = fake_fetch, .ctx = &f};
    struct mtasts_cache *c = mtasts_cache_new(dir);
    struct mtasts_policy p;

    /* first use: fetched, then cached while the id is the same and max_age not passed */
    assert_int_equal(mtasts_cache_get(c, &src, "a.example", 1000, &p, note, sizeof(note)),
                     MTASTS_FETCHED);
    assert_int_equal(p.mode, MTASTS_MODE_ENFORCE);
    assert_string_equal(p.id, "one");
    assert_int_equal(mtasts_cache_get(c, &src, "a.example", 1050, &p, note, sizeof(note)),
                     MTASTS_CACHED);
    assert_int_equal(f.fetches, 1);
    /* a new id: refetched */
    f.id = "two";
    f.body = TESTING_B;
    assert_int_equal(mtasts_cache_get(c, &src, "a.example", 1060, &p, note, sizeof(note)),
                     MTASTS_FETCHED);
    assert_int_equal(f.fetches, 2);
    assert_int_equal(p.mode, MTASTS_MODE_TESTING);
    assert_string_equal(p.id, "two");
    /* another new id, the server down: the cached policy is kept until its max_age */
    f.id = "three";
    f.body = NULL;
    assert_int_equal(mtasts_cache_get(c, &src, "a.example", 1100, &p, note, sizeof(note)),
                     MTASTS_STALE_KEPT);
    assert_string_equal(p.id, "two");
    assert_non_null(strstr(note, "connection refused"));
    /* the TXT record gone: the cached policy still counts until max_age */
    f.txt = MTASTS_TXT_NONE;
    assert_int_equal(mtasts_cache_get(c, &src, "a.example", 1150, &p, note, sizeof(note)),
                     MTASTS_CACHED);
    /* max_age passed (fetched at 1060 + 100): no policy */
    assert_int_equal(mtasts_cache_get(c, &src, "a.example", 1160, &p, note, sizeof(note)),
                     MTASTS_NO_POLICY);
    f.txt = MTASTS_TXT_OK;
    assert_int_equal(mtasts_cache_get(c, &src, "a.example", 1160, &p, note, sizeof(note)),
                     MTASTS_FAILED);
    /* same id but expired: refetched */
    f.id = "two";
    f.body = ENFORCE_A;
    int before = f.fetches;
    assert_int_equal(mtasts_cache_get(c, &src, "a.example", 1200, &p, note, sizeof(note)),
                     MTASTS_FETCHED);
    assert_int_equal(f.fetches, before + 1);
    /* nothing cached + failures: no policy */
    f.body = NULL;
    assert_int_equal(mtasts_cache_get(c, &src, "b.example", 1200, &p, note, sizeof(note)),
                     MTASTS_FAILED);
    f.body = "<html>oops</html>";
    assert_int_equal(mtasts_cache_get(c, &src, "b.example", 1200, &p, note, sizeof(note)),
                     MTASTS_FAILED);
    assert_non_null(strstr(note, "invalid policy"));
    f.txt = MTASTS_TXT_BAD;
    assert_int_equal(mtasts_cache_get(c, &src, "b.example", 1200, &p, note, sizeof(note)),
                     MTASTS_FAILED);
    f.txt = MTASTS_TXT_NONE;
    assert_int_equal(mtasts_cache_get(c, &src, "b.example", 1200, &p, note, sizeof(note)),
                     MTASTS_NO_POLICY);
    /* names that cannot be a file name are refused before any lookup */
    assert_int_equal(mtasts_cache_get(c, &src, "../x", 1200, &p, note, sizeof(note)),
                     MTASTS_NO_POLICY);
    mtasts_cache_free(c);

    /* a restart: the policy comes back from DIR/a.example, no fetch */
    char path[256];
    struct stat st;
    snprintf(path, sizeof(path), "%s/a.example", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char junk[256];
    snprintf(junk, sizeof(junk), "%s/.tmp.123.a.example", dir); /* a crash in a store */
    FILE *jf = fopen(junk, "w");
    assert_non_null(jf);
    fclose(jf);
    c = mtasts_cache_new(dir);
    assert_int_equal(access(junk, F_OK), -1); /* removed */
    f.txt = MTASTS_TXT_OK;
    f.id = "two";
    f.body = NULL;
    before = f.fetches;
    assert_int_equal(mtasts_cache_get(c, &src, "a.example", 1250, &p, note, sizeof(note)),
                     MTASTS_CACHED);
    assert_int_equal(f.fetches, before);
    assert_int_equal(p.mode, MTASTS_MODE_ENFORCE);
    assert_string_equal(p.mx[0], "mx.a.example");
    /* a damaged file is ignored */
    mtasts_cache_free(c);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("tern-mta-sts-cache 1\nid two\nfetched 1200\nversion: STSv9\n", fp);
    fclose(fp);
    c = mtasts_cache_new(dir);
    assert_int_equal(mtasts_cache_get(c, &src, "a.example", 1250, &p, note, sizeof(note)),
                     MTASTS_FAILED);
    mtasts_cache_free(c);
}

/* ---- [mta_sts] in tern.conf ---- */

static void test_config(void **state)
{
    (void)state;
    struct conf *c = malloc(sizeof(*c));
    struct conf_errors e = {0};
    assert_non_null(c);
    const char *ok = "[server]\nhostname = mx.example.test\n";
    assert_int_equal(conf_parse_string(ok, strlen(ok), "t.conf", NULL, c, &e), 0);
    assert_true(c->mta_sts); /* on by default, port 443, the system's CA store */
    assert_int_equal(c->mta_sts_port, 443);
    assert_string_equal(c->mta_sts_ca, "");
    const char *set = "[server]\nhostname = mx.example.test\n[mta_sts]\nenabled = no\n"
                      "ca = /etc/ssl/test-ca.pem\nport = 8443\n";
    assert_int_equal(conf_parse_string(set, strlen(set), "t.conf", NULL, c, &e), 0);
    assert_false(c->mta_sts);
    assert_int_equal(c->mta_sts_port, 8443);
    assert_string_equal(c->mta_sts_ca, "/etc/ssl/test-ca.pem");
    const char *bad = "[server]\nhostname = mx.example.test\n[mta_sts]\nenabled = maybe\n"
                      "port = 0\nca =\nmode = enforce\n";
    assert_int_equal(conf_parse_string(bad, strlen(bad), "t.conf", NULL, c, &e), -1);
    assert_int_equal(e.n, 4);
    assert_non_null(strstr(e.v[0], "t.conf:4:"));
    assert_non_null(strstr(e.v[0], "'maybe' is not yes or no"));
    assert_non_null(strstr(e.v[1], "t.conf:5:"));
    assert_non_null(strstr(e.v[2], "t.conf:6:"));
    assert_non_null(strstr(e.v[3], "t.conf:7:"));
    conf_errors_free(&e);
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_txt),
        cmocka_unit_test(test_policy_ok),
        cmocka_unit_test(test_policy_bad),
        cmocka_unit_test(test_policy_limits),
        cmocka_unit_test(test_mx_match),
        cmocka_unit_test_setup_teardown(test_cache, setup_dir, teardown_dir),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
