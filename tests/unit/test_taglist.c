/*
 * test_taglist.c - DKIM-style tag=value lists (core/taglist.c): folding
 * and blanks, empty values, trailing ';', duplicates, bad names, control
 * octets, the tag limit.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/taglist.h"

static struct taglist tl;
static char why[128];

static int parse(const char *s)
{
    return taglist_parse(s, strlen(s), &tl, why, sizeof(why));
}

static void assert_tag(const char *name, const char *value)
{
    const struct tag *t = taglist_get(&tl, name);
    assert_non_null(t);
    assert_int_equal(t->valuelen, strlen(value));
    assert_memory_equal(t->value, value, t->valuelen);
    assert_true(tag_is(t, value));
}

static void test_signature(void **state)
{
    (void)state;
    assert_int_equal(parse("v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n\td=example.org; s=sel;\r\n"
                           " h=from:to : subject ;bh=ab\r\n cd=; b = AB CD \t;"),
                     0);
    assert_int_equal(tl.n, 8);
    assert_tag("v", "1");
    assert_tag("a", "rsa-sha256");
    assert_tag("d", "example.org");
    assert_tag("h", "from:to : subject");
    assert_tag("bh", "ab\r\n cd=");
    assert_tag("b", "AB CD");
    assert_null(taglist_get(&tl, "x"));
    assert_null(taglist_get(&tl, "V")); /* names are case-sensitive */
    assert_false(tag_is(taglist_get(&tl, "v"), "2"));
}

static void test_edges(void **state)
{
    (void)state;
    assert_int_equal(parse(""), 0);
    assert_int_equal(tl.n, 0);
    assert_int_equal(parse("  \t "), 0);
    assert_int_equal(tl.n, 0);
    assert_int_equal(parse("p="), 0); /* an empty value: a revoked DKIM key */
    assert_tag("p", "");
    assert_int_equal(parse("v=STSv1; id=2016;"), 0);
    assert_int_equal(tl.n, 2);
    assert_tag("id", "2016");
    assert_int_equal(parse("a_1=x;;"), -1); /* an empty tag-spec between two ';' */
}

static void test_errors(void **state)
{
    (void)state;
    assert_int_equal(parse("a=1; a=2"), -1);
    assert_non_null(strstr(why, "twice"));
    assert_int_equal(parse("1a=x"), -1);
    assert_non_null(strstr(why, "letter"));
    assert_int_equal(parse("v=1; abc"), -1);
    assert_non_null(strstr(why, "tag 2 ('abc')"));
    assert_int_equal(parse("v=1\x01"), -1);
    assert_non_null(strstr(why, "control"));
    assert_int_equal(parse("v=\xc3\xa9"), -1);

    char many[400] = "";
    for (int i = 0; i < TAGLIST_MAX; i++) {
        char one[12];
        snprintf(one, sizeof(one), "t%d=%d;", i, i);
        strcat(many, one);
    }
    assert_int_equal(parse(many), 0);
    assert_int_equal(tl.n, TAGLIST_MAX);
    strcat(many, "x=1");
    assert_int_equal(parse(many), -1);
    assert_non_null(strstr(why, "more than 32"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signature),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
