/*
 * test_dmarc.c - DMARC (mailauth/dmarc.c): record parsing (v= first, p=,
 * sp=, adkim=, aspf=, pct=, rua without p), the RFC5322.From domain (one
 * field, one address; none, several, groups, garbage), the Public Suffix
 * List (normal, wildcard and exception rules, the default rule, the real
 * Debian list), alignment, and the decision with pct sampling.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "mailauth/dmarc.h"

static char why[256];

static int rec(const char *s, struct dmarc_record *r)
{
    why[0] = '\0';
    return dmarc_record_parse(s, strlen(s), r, why, sizeof(why));
}

static void test_record(void **state)
{
    (void)state;
    struct dmarc_record r;
    assert_int_equal(rec("v=DMARC1; p=reject", &r), 0);
    assert_int_equal(r.p, DMARC_P_REJECT);
    assert_int_equal(r.sp, DMARC_P_REJECT);
    assert_int_equal(r.pct, 100);
    assert_false(r.adkim_strict);
    assert_false(r.aspf_strict);

    assert_int_equal(rec("v=DMARC1;p=quarantine;sp=none;adkim=s;aspf=s;pct=20;"
                         "rua=mailto:agg@example.org;ruf=mailto:f@example.org;fo=1;x=y",
                         &r),
                     0);
    assert_int_equal(r.p, DMARC_P_QUARANTINE);
    assert_int_equal(r.sp, DMARC_P_NONE);
    assert_true(r.adkim_strict);
    assert_true(r.aspf_strict);
    assert_int_equal(r.pct, 20);
    assert_string_equal(r.rua, "mailto:agg@example.org");
    assert_string_equal(r.ruf, "mailto:f@example.org");

    /* bad optional values: defaults */
    assert_int_equal(rec("v=DMARC1; p=Reject; sp=bogus; adkim=x; pct=101", &r), 0);
    assert_int_equal(r.p, DMARC_P_REJECT);
    assert_int_equal(r.sp, DMARC_P_REJECT);
    assert_false(r.adkim_strict);
    assert_int_equal(r.pct, 100);
    assert_int_equal(rec("v=DMARC1; p=none; pct=-1", &r), 0);
    assert_int_equal(r.pct, 100);
    assert_int_equal(rec("v=DMARC1; p=none; pct=0", &r), 0);
    assert_int_equal(r.pct, 0);

    /* rua= without a valid p=: p=none (6.6.3) */
    assert_int_equal(rec("v=DMARC1; p=maybe; rua=mailto:a@b.example", &r), 0);
    assert_int_equal(r.p, DMARC_P_NONE);

    /* not DMARC records */
    assert_int_equal(rec("p=reject; v=DMARC1", &r), -1);
    assert_non_null(strstr(why, "v=DMARC1"));
    assert_int_equal(rec("v=DMARC2; p=reject", &r), -1);
    assert_int_equal(rec("v=spf1 -all", &r), -1);
    assert_int_equal(rec("v=DMARC1", &r), -1);
    assert_non_null(strstr(why, "p="));
    assert_int_equal(rec("v=DMARC1; p=reject; p=none", &r), -1); /* duplicate tag */
    assert_int_equal(rec("", &r), -1);
    assert_int_equal(rec("v=DMARC1; p=reject; \x01=x", &r), -1);
    /* hostile rua: printable only */
    assert_int_equal(rec("v=DMARC1; p=none; rua=mailto:a@b\x7f", &r), -1);
}

static int from(const char *msg, char *d)
{
    why[0] = '\0';
    return dmarc_from_domain(msg, strlen(msg), d, DMARC_DOMAIN_MAX + 1, why, sizeof(why));
}

static void test_from(void **state)
{
    (void)state;
    char d[DMARC_DOMAIN_MAX + 1];
    assert_int_equal(from("From: a@Example.ORG\r\nTo: b@x.test\r\n\r\nbody\r\n", d), 0);
    assert_string_equal(d, "example.org");
    assert_int_equal(
        from("Subject: x\r\nFROM: \"Doe, John\" (c) <john@mail.example.com>\r\n\r\n", d), 0);
    assert_string_equal(d, "mail.example.com");
    assert_int_equal(from("From: Name\r\n <folded@example.net>\r\n\r\n", d), 0);
    assert_string_equal(d, "example.net");
    /* only the header section counts */
    assert_int_equal(from("To: b@x.test\r\n\r\nFrom: a@example.org\r\n", d), -1);
    assert_non_null(strstr(why, "no From"));
    assert_int_equal(from("From: a@example.org\r\nFrom: b@example.net\r\n\r\n", d), -1);
    assert_non_null(strstr(why, "2 From"));
    assert_int_equal(from("From: a@example.org, b@example.net\r\n\r\n", d), -1);
    assert_non_null(strstr(why, "2 addresses"));
    assert_int_equal(from("From: undisclosed:;\r\n\r\n", d), -1);
    assert_int_equal(from("From: <unterminated@example.org\r\n\r\n", d), -1);
    assert_int_equal(from("From: \"open quote <a@example.org>\r\n\r\n", d), -1);
    assert_int_equal(from("From: a@[192.0.2.1]\r\n\r\n", d), -1);
    assert_int_equal(from("From: nobody\r\n\r\n", d), -1);
    assert_int_equal(from("From:\r\n\r\n", d), -1);
    /* LF line ends too */
    assert_int_equal(from("From: x@lf.example\n\nbody", d), 0);
    assert_string_equal(d, "lf.example");
}

static const char psl_text[] = "// a test list\n"
                               "com\n"
                               "uk\n"
                               "co.uk\n"
                               "// wildcards and exceptions\n"
                               "*.ck\n"
                               "!www.ck\n"
                               "jp\n"
                               "*.kobe.jp\n"
                               "!city.kobe.jp\n"
                               "// ===BEGIN PRIVATE DOMAINS===\n"
                               "blogspot.com\n"
                               "  \n"
                               "github.io   trailing words ignored\n";

static void org(const struct psl *p, const char *d, const char *want)
{
    char out[DMARC_DOMAIN_MAX + 1];
    if (!want) {
        assert_int_equal(psl_org_domain(p, d, out, sizeof(out)), -1);
        return;
    }
    assert_int_equal(psl_org_domain(p, d, out, sizeof(out)), 0);
    assert_string_equal(out, want);
}

static void test_psl(void **state)
{
    (void)state;
    struct psl *p = psl_load_text(psl_text, sizeof(psl_text) - 1, why, sizeof(why));
    assert_non_null(p);
    assert_int_equal(psl_rules(p), 10);
    org(p, "example.com", "example.com");
    org(p, "a.b.Example.COM.", "example.com");
    org(p, "com", "com");
    org(p, "www.bbc.co.uk", "bbc.co.uk");
    org(p, "co.uk", "co.uk");
    org(p, "x.uk", "x.uk");
    /* wildcard: every label under ck is a suffix, www.ck is not */
    org(p, "a.b.ck", "a.b.ck");
    org(p, "z.a.b.ck", "a.b.ck");
    org(p, "b.ck", "b.ck");
    org(p, "www.ck", "www.ck");
    org(p, "a.www.ck", "www.ck");
    org(p, "x.y.kobe.jp", "x.y.kobe.jp");
    org(p, "y.kobe.jp", "y.kobe.jp");
    org(p, "a.city.kobe.jp", "city.kobe.jp");
    org(p, "kobe.jp", "kobe.jp");
    /* private section */
    org(p, "me.blogspot.com", "me.blogspot.com");
    org(p, "a.me.github.io", "me.github.io");
    /* default rule "*" */
    org(p, "a.b.example", "b.example");
    org(p, "example", "example");
    org(p, "bad..name", NULL);
    org(p, "", NULL);
    org(p, "a b.com", NULL);
    /* no list: "*" only */
    org(NULL, "a.b.example.co.uk", "co.uk");
    psl_free(p);

    /* the installed list (Debian's publicsuffix package) */
    p = psl_load(NULL, why, sizeof(why));
    assert_non_null(p);
    assert_true(psl_rules(p) > 5000);
    org(p, "www.bbc.co.uk", "bbc.co.uk");
    org(p, "mail.google.com", "google.com");
    org(p, "foo.bar.kawasaki.jp", "foo.bar.kawasaki.jp"); /* *.kawasaki.jp */
    org(p, "a.city.kawasaki.jp", "city.kawasaki.jp");     /* !city.kawasaki.jp */
    psl_free(p);

    assert_null(psl_load("/nonexistent/psl.dat", why, sizeof(why)));
    assert_non_null(strstr(why, "/nonexistent/psl.dat"));
}

static void test_aligned(void **state)
{
    (void)state;
    struct psl *p = psl_load_text(psl_text, sizeof(psl_text) - 1, why, sizeof(why));
    assert_true(dmarc_aligned(p, "example.com", "EXAMPLE.com.", true));
    assert_false(dmarc_aligned(p, "mail.example.com", "example.com", true));
    assert_true(dmarc_aligned(p, "mail.example.com", "example.com", false));
    assert_true(dmarc_aligned(p, "a.bbc.co.uk", "b.bbc.co.uk", false));
    assert_false(dmarc_aligned(p, "bbc.co.uk", "itv.co.uk", false));
    assert_false(dmarc_aligned(p, "a.blogspot.com", "b.blogspot.com", false));
    assert_false(dmarc_aligned(p, "", "example.com", false));
    assert_false(dmarc_aligned(p, NULL, "example.com", false));
    psl_free(p);
}

static void test_decide(void **state)
{
    (void)state;
    struct dmarc_record r;
    struct dmarc_verdict v;
    const char *dk[] = {"other.example", "mail.example.com"};
    assert_int_equal(rec("v=DMARC1; p=reject; sp=quarantine; pct=50", &r), 0);

    struct dmarc_auth a = {.spf_domain = "bounce.example.com", .spf_pass = true};
    memset(&v, 0, sizeof(v));
    dmarc_decide(NULL, &r, false, "example.com", &a, 99, &v);
    assert_int_equal(v.result, DMARC_PASS);
    assert_true(v.spf_aligned);
    assert_int_equal(v.apply, DMARC_P_NONE);

    a.spf_pass = false;
    memset(&v, 0, sizeof(v));
    dmarc_decide(NULL, &r, false, "example.com", &a, 10, &v);
    assert_int_equal(v.result, DMARC_FAIL);
    assert_int_equal(v.policy, DMARC_P_REJECT);
    assert_int_equal(v.apply, DMARC_P_REJECT);
    /* not sampled (sample >= pct): one step lower */
    memset(&v, 0, sizeof(v));
    dmarc_decide(NULL, &r, false, "example.com", &a, 50, &v);
    assert_int_equal(v.apply, DMARC_P_QUARANTINE);
    /* a subdomain without its own record: sp= */
    memset(&v, 0, sizeof(v));
    dmarc_decide(NULL, &r, true, "x.example.com", &a, 0, &v);
    assert_int_equal(v.policy, DMARC_P_QUARANTINE);
    assert_int_equal(v.apply, DMARC_P_QUARANTINE);

    /* DKIM relaxed alignment; strict breaks it */
    a.dkim_domains = dk;
    a.ndkim = 2;
    memset(&v, 0, sizeof(v));
    dmarc_decide(NULL, &r, false, "example.com", &a, 0, &v);
    assert_int_equal(v.result, DMARC_PASS);
    assert_true(v.dkim_aligned);
    assert_int_equal(rec("v=DMARC1; p=reject; adkim=s", &r), 0);
    memset(&v, 0, sizeof(v));
    dmarc_decide(NULL, &r, false, "example.com", &a, 0, &v);
    assert_int_equal(v.result, DMARC_FAIL);

    assert_string_equal(dmarc_result_name(DMARC_TEMPERROR), "temperror");
    assert_string_equal(dmarc_policy_name(DMARC_P_QUARANTINE), "quarantine");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record),  cmocka_unit_test(test_from),   cmocka_unit_test(test_psl),
        cmocka_unit_test(test_aligned), cmocka_unit_test(test_decide),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
