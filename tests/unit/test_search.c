/*
 * test_search.c - Mailpit's search language (sink/search.c): splitting into
 * words and "phrases", prefixes and exclusions, the cleaning of text, the
 * matching of each field, sizes, dates, HTML to text, and the limits.
 * The expectations follow Mailpit v1.30.5's search.go and its tests.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sink/search.h"

static struct search_query q;
static char why[128];

static int parse(const char *s)
{
    return search_parse(s, strlen(s), &q, why, sizeof(why));
}

/* Mailpit's own test message (search_test.go), number 7 */
static const struct search_doc doc7 = {
    .from = "From 7 from-7@example.com",
    .to = "To 7 to-7@example.com, To2 7 to2-7@example.com",
    .cc = "CC 7 cc-7@example.com, CC2 7 cc2-7@example.com",
    .bcc = "",
    .reply_to = "Reply To 7 reply-to-7@example.com",
    .subject = "Subject line 7 end",
    .message_id = "abc.7@example.com",
    .return_path = "from-7@example.com",
    .text = "This is the email body 7 <jdsauk;dwqmdqw;>.",
    .html = "",
    .filenames = "report.pdf ",
    .read = false,
    .attachments = 1,
    .inlines = 0,
    .size = 2048,
    .received_ms = 1700000000000, /* 2023-11-14T22:13:20Z */
};

static bool matches(const char *query, const struct search_doc *d)
{
    assert_int_equal(parse(query), 0);
    bool hit = search_match(&q, d);
    search_free(&q);
    return hit;
}

static void test_split(void **state)
{
    (void)state;
    assert_int_equal(parse("  from:a   \"two words\" -subject:\"x y\" !is:read  "), 0);
    assert_int_equal(q.nterms, 4);
    assert_int_equal(q.terms[0].field, SF_FROM);
    assert_string_equal(q.terms[0].value, "a");
    assert_int_equal(q.terms[1].field, SF_TEXT);
    assert_string_equal(q.terms[1].value, "two words");
    assert_int_equal(q.terms[2].field, SF_SUBJECT);
    assert_true(q.terms[2].exclude);
    assert_string_equal(q.terms[2].value, "x y");
    assert_int_equal(q.terms[3].field, SF_IS_READ);
    assert_true(q.terms[3].exclude);
    search_free(&q);
    /* blanks, lone quotes, "from:" alone and a lone '-' filter nothing or are text */
    assert_int_equal(parse("\"\" from: ,;; "), 0);
    assert_int_equal(q.nterms, 0);
    search_free(&q);
    assert_int_equal(parse("-"), 0);
    assert_int_equal(q.nterms, 1);
    assert_int_equal(q.terms[0].field, SF_TEXT);
    assert_false(q.terms[0].exclude);
    search_free(&q);
    /* prefixes are case-insensitive; values are cleaned and lower-cased */
    assert_int_equal(parse("TO:<Bob@Example.NET>"), 0);
    assert_int_equal(q.terms[0].field, SF_TO);
    assert_string_equal(q.terms[0].value, "bob@example.net");
    search_free(&q);
}

static void test_mailpit_searches(void **state)
{
    (void)state;
    /* each of Mailpit's "unique searches" finds message 7 */
    const char *hits[] = {
        "from-7@example.com",
        "from:from-7@example.com",
        "to-7@example.com",
        "to:to-7@example.com",
        "to2-7@example.com",
        "to:to2-7@example.com",
        "cc-7@example.com",
        "cc:cc-7@example.com",
        "cc2-7@example.com",
        "cc:cc2-7@example.com",
        "reply-to-7@example.com",
        "reply-to:\"reply-to-7@example.com\"",
        "\"Subject line 7 end\"",
        "subject:\"Subject line 7 end\"",
        "\"the email body 7 jdsauk dwqmdqw\"",
        "addressed:to2-7",
        "message-id:abc.7",
        "report.pdf",
        "has:attachment",
        "has:attachments",
        "is:unread",
        "-is:read",
        "!has:inline",
        "larger:1k",
        "smaller:3kb",
        "after:2023-11-14",
        "before:2023-11-15",
        "after:\"14 Nov 2023 22:00:00 +0000\"",
        "SUBJECT:line FROM:From",
        "",
    };
    for (size_t i = 0; i < sizeof(hits) / sizeof(hits[0]); i++)
        if (!matches(hits[i], &doc7))
            fail_msg("expected a match: %s", hits[i]);
    const char *misses[] = {
        "from-8@example.com",
        "from:to-7@example.com",
        "to:from-7",
        "subject:\"line  7\"", /* subject: is not cleaned */
        "\"Subject line 8 end\"",
        "-from:from-7",
        "is:read",
        "has:inline",
        "is:tagged",
        "tag:x",
        "larger:2kb",
        "smaller:2048",
        "after:2023-11-15",
        "before:2023-11-14",
        "bcc:x",
        "free text from-7 and-something-missing",
    };
    for (size_t i = 0; i < sizeof(misses) / sizeof(misses[0]); i++)
        if (matches(misses[i], &doc7))
            fail_msg("expected no match: %s", misses[i]);
    /* unreadable dates are ignored, as Mailpit does; a bad size is text */
    assert_true(matches("after:yesterday-ish", &doc7));
    assert_int_equal(parse("larger:huge"), 0);
    assert_int_equal(q.terms[0].field, SF_TEXT);
    search_free(&q);
}

static void test_html(void **state)
{
    (void)state;
    struct search_doc d = {.html = "<html><head><title>T</title><style>p{color:red}</style></head>"
                                   "<body><p>Hello&nbsp;<b>World</b> &amp; you<!-- hidden -->"
                                   "<script>var secret=1;</script></p></body></html>"};
    assert_true(matches("\"hello world & you\"", &d));
    assert_false(matches("secret", &d));
    assert_false(matches("hidden", &d));
    assert_false(matches("color", &d));
    char *t = search_html_text("<p>a</p><SCRIPT>b</script>c<style", 33);
    assert_non_null(t);
    assert_string_equal(t, "a c");
    free(t);
    t = search_html_text("x<scrip", 7); /* unterminated tag at the end */
    assert_non_null(t);
    assert_string_equal(t, "x");
    free(t);
}

static void test_clean(void **state)
{
    (void)state;
    char out[64];
    const char in[] = "  A<b>,\"C\";(d)\t\r\n e\xef\xbb\xbf"
                      "f ";
    assert_int_equal(search_clean(in, strlen(in), out), 11);
    assert_string_equal(out, "a b c d e f");
    assert_true(search_contains_clean("The  Email\r\n body", "email body"));
    assert_false(search_contains_clean(NULL, "x"));
    assert_true(search_contains_clean(NULL, ""));
}

static void test_size_date(void **state)
{
    (void)state;
    int64_t ms;
    assert_int_equal(search_size("300"), 300);
    assert_int_equal(search_size("2kb"), 2048);
    assert_int_equal(search_size("2K"), 2048);
    assert_int_equal(search_size("1.5m"), 1572864);
    assert_int_equal(search_size("1.5 MB"), 1572864);
    assert_int_equal(search_size("1gb"), 0);
    assert_int_equal(search_size("kb"), 0);
    assert_int_equal(search_size("-1"), 0);

    const char *d1 = "Tue, 1 Jul 2003 10:52:37 +0200";
    assert_int_equal(search_parse_date(d1, strlen(d1), &ms), 0);
    assert_int_equal(ms, 1057049557000LL);
    const char *d2 = "1 Jul 2003 08:52:37 GMT (comment)";
    assert_int_equal(search_parse_date(d2, strlen(d2), &ms), 0);
    assert_int_equal(ms, 1057049557000LL);
    const char *d3 = "2003-07-01T08:52:37.123Z";
    assert_int_equal(search_parse_date(d3, strlen(d3), &ms), 0);
    assert_int_equal(ms, 1057049557000LL);
    const char *d4 = "2003-07-01T10:52:37+02:00";
    assert_int_equal(search_parse_date(d4, strlen(d4), &ms), 0);
    assert_int_equal(ms, 1057049557000LL);
    const char *d5 = "2003-07-01";
    assert_int_equal(search_parse_date(d5, strlen(d5), &ms), 0);
    assert_int_equal(ms, 1057017600000LL);
    const char *d6 = "Wed, 1 Jan 97 00:00 EST";
    assert_int_equal(search_parse_date(d6, strlen(d6), &ms), 0);
    assert_int_equal(ms, 852094800000LL);
    const char *bad[] = {"",
                         "yesterday",
                         "32 Jan 2020",
                         "1 Foo 2020",
                         "2020-13-01",
                         "2020-01-01T25:00",
                         "1 Jan 2020 10:00 +99",
                         "1 Jan 2020 10:00 junk",
                         "2020-01-01T10"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (search_parse_date(bad[i], strlen(bad[i]), &ms) == 0)
            fail_msg("expected a bad date: %s", bad[i]);
}

static void test_limits(void **state)
{
    (void)state;
    char big[SEARCH_MAX_QUERY + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(parse(big), -2);
    assert_non_null(strstr(why, "too long"));
    char many[SEARCH_MAX_TERMS * 3 + 8] = "";
    for (int i = 0; i <= SEARCH_MAX_TERMS; i++)
        strcat(many, "a ");
    assert_int_equal(parse(many), -2);
    assert_non_null(strstr(why, "too many"));
    many[strlen(many) - 2] = '\0'; /* exactly the limit */
    assert_int_equal(parse(many), 0);
    assert_int_equal(q.nterms, SEARCH_MAX_TERMS);
    search_free(&q);
    /* octets that are not UTF-8, and NUL inside the query */
    assert_int_equal(search_parse("\xff\xfe x\0y", 7, &q, why, sizeof(why)), 0);
    search_free(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split),     cmocka_unit_test(test_mailpit_searches),
        cmocka_unit_test(test_html),      cmocka_unit_test(test_clean),
        cmocka_unit_test(test_size_date), cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
