/*
 * test_arh.c - Authentication-Results (mailauth/arh.c): the field built
 * with hostile values (quotes, backslashes, control and non-ASCII octets,
 * over-long values, a second '@'), and the removal of our own copies
 * (case, comments and quoted ids, folded fields, LF line ends, other ids
 * kept, nothing taken from the body).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mailauth/arh.h"

static char *built(const char *id, const struct arh_result *r, size_t n)
{
    struct buf b = {0};
    if (arh_build(&b, id, r, n) < 0) {
        buf_free(&b);
        return NULL;
    }
    buf_append(&b, "", 1);
    return b.p;
}

static void test_build(void **state)
{
    (void)state;
    struct arh_result r[3] = {
        {.method = "spf",
         .result = "pass",
         .props = {{"smtp.mailfrom", "alice@example.org"}},
         .nprops = 1},
        {.method = "dkim",
         .result = "fail",
         .reason = "body hash (bh=) did not verify",
         .props = {{"header.d", "example.org"}, {"header.s", "sel"}, {"header.b", "abcd+/12"}},
         .nprops = 3},
        {.method = "dmarc",
         .result = "pass",
         .reason = "p=reject",
         .props = {{"header.from", "example.org"}},
         .nprops = 1},
    };
    char *s = built("mx.example.net", r, 3);
    assert_non_null(s);
    assert_string_equal(s,
                        "Authentication-Results: mx.example.net;\r\n"
                        "\tspf=pass smtp.mailfrom=alice@example.org;\r\n"
                        "\tdkim=fail (body hash \\(bh=\\) did not verify) header.d=example.org\r\n"
                        "\theader.s=sel header.b=abcd+/12;\r\n"
                        "\tdmarc=pass (p=reject) header.from=example.org\r\n");
    free(s);

    s = built("mx.example.net", NULL, 0);
    assert_string_equal(s, "Authentication-Results: mx.example.net; none\r\n");
    free(s);
    assert_null(built("bad id", NULL, 0));
    assert_null(built("", NULL, 0));
    assert_null(built("x;y", NULL, 0));
}

static void test_hostile(void **state)
{
    (void)state;
    char out[ARH_VALUE_MAX * 2 + 4];
    arh_value("\"quoted\"@example.org", out, sizeof(out));
    assert_string_equal(out, "\"\\\"quoted\\\"@example.org\"");
    arh_value("a;b=c\r\nX-Evil: 1", out, sizeof(out));
    assert_string_equal(out, "\"a;b=c??X-Evil: 1\"");
    arh_value("a\\b", out, sizeof(out));
    assert_string_equal(out, "\"a\\\\b\"");
    arh_value("x@y@z", out, sizeof(out));
    assert_string_equal(out, "\"x@y@z\"");
    arh_value("bob@", out, sizeof(out));
    assert_string_equal(out, "\"bob@\"");
    arh_value("caf\xc3\xa9.example", out, sizeof(out));
    assert_string_equal(out, "\"caf??.example\"");
    arh_value("(comment)", out, sizeof(out));
    assert_string_equal(out, "\"(comment)\"");
    char big[1000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(arh_value(big, out, sizeof(out)), ARH_VALUE_MAX);
    /* a tiny output buffer is never overrun */
    char tiny[5];
    arh_value("\"\"\"\"\"\"", tiny, sizeof(tiny));
    assert_true(strlen(tiny) < sizeof(tiny));

    struct arh_result r = {.method = "spf",
                           .result = "fail",
                           .reason = "evil)\r\n(X: y\\",
                           .props = {{"smtp.mailfrom", "x\r\nBcc: a@b"}, {"smtp.helo", ""}},
                           .nprops = 2};
    char *s = built("mx.example.net", &r, 1);
    assert_non_null(s);
    assert_string_equal(s, "Authentication-Results: mx.example.net;\r\n"
                           "\tspf=fail (evil\\)??\\(X: y\\\\) smtp.mailfrom=\"x??Bcc: a@b\"\r\n");
    free(s);
}

static size_t strip(char *msg, const char *id)
{
    size_t len = strlen(msg);
    size_t n = arh_strip(msg, &len, id);
    msg[len] = '\0';
    return n;
}

static void test_strip(void **state)
{
    (void)state;
    char m1[] = "Received: x\r\n"
                "Authentication-Results: MX.Example.NET; spf=pass\r\n"
                "authentication-results : (forged) mx.example.net;\r\n\tdkim=pass\r\n"
                "Authentication-Results: \"mx.example.net\"; dmarc=pass\r\n"
                "Authentication-Results: other.example; spf=pass\r\n"
                "Authentication-Results: mx.example.net.evil; spf=pass\r\n"
                "Authentication-Results-Extra: mx.example.net\r\n"
                "Subject: hi\r\n"
                "\r\n"
                "Authentication-Results: mx.example.net; in the body\r\n";
    assert_int_equal(strip(m1, "mx.example.net"), 3);
    assert_string_equal(m1, "Received: x\r\n"
                            "Authentication-Results: other.example; spf=pass\r\n"
                            "Authentication-Results: mx.example.net.evil; spf=pass\r\n"
                            "Authentication-Results-Extra: mx.example.net\r\n"
                            "Subject: hi\r\n"
                            "\r\n"
                            "Authentication-Results: mx.example.net; in the body\r\n");

    char m2[] = "Authentication-Results: mx.example.net; a=b\n\tc=d\nX: y\n\nbody";
    assert_int_equal(strip(m2, "mx.example.net"), 1);
    assert_string_equal(m2, "X: y\n\nbody");

    /* the last field, no body, no final line end */
    char m3[] = "X: y\r\nAuthentication-Results: mx.example.net";
    assert_int_equal(strip(m3, "mx.example.net"), 1);
    assert_string_equal(m3, "X: y\r\n");

    /* unreadable ids are kept */
    char m4[] = "Authentication-Results: \"mx.example.net; x\r\nAuthentication-Results: ;x\r\n\r\n";
    assert_int_equal(strip(m4, "mx.example.net"), 0);
    char m5[] = "Authentication-Results: (unterminated comment mx.example.net\r\n\r\n";
    assert_int_equal(strip(m5, "mx.example.net"), 0);
    char m6[] = "";
    assert_int_equal(strip(m6, "mx.example.net"), 0);
    char m7[] = "Authentication-Results: mx.example.net\r\n";
    assert_int_equal(strip(m7, ""), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_strip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
