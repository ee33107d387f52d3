/*
 * test_template.c - unit tests for send/template.c: placeholders (with
 * spaces, in headers and body), parse errors and the missing-column error
 * text, header injection naming the CSV line and column, RFC 2047 of a
 * non-ASCII Subject (exact encoded-words, folding, decoding back), the added
 * headers (present exactly once, not added when the template has them),
 * CRLF-only output from LF and CRLF templates, quoted-printable for a
 * body line longer than 998 octets, and List-Unsubscribe /
 * List-Unsubscribe-Post from render_opts (folded, a line break refused).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"
#include "core/header.h"
#include "send/template.h"

static const char list_text[] = "email,first name,subject,note\n"
                                "ann@example.org,Ann,Hello,\"two\nlines\"\n"
                                "bob@example.org,Bob,\"evil\r\nBcc: x@y\",plain\n"
                                "zoe@example.org,Zoë,Grüße aus Köln,ok\n";

struct fixture {
    struct csv_table t;
    struct render_opts o;
};

static int setup(void **state)
{
    static struct fixture fx;
    char why[256];

    if (csv_table_parse("list.csv", list_text, strlen(list_text), &fx.t, why, sizeof(why)) != 0)
        return -1;
    fx.o.from = "news@sender.example";
    fx.o.to = "ann@example.org";
    fx.o.now = 1796119200; /* 2026-12-01 10:00:00 UTC, a Tuesday */
    fx.o.msgid_seed = "campaign/ann@example.org";
    *state = &fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    csv_table_free(&fx->t);
    return 0;
}

static char *render(struct fixture *fx, const char *tmpl, size_t row, char *why, size_t whysize)
{
    char *out = NULL;
    size_t outlen = 0;
    struct template *tp = template_parse("t.eml", tmpl, strlen(tmpl), why, whysize);

    assert_non_null(tp);
    int rc = template_render(tp, &fx->t, &fx->t.rows[row], &fx->o, &out, &outlen, why, whysize);
    template_free(tp);
    if (rc != 0) {
        assert_null(out);
        return NULL;
    }
    assert_int_equal(strlen(out), outlen);
    return out;
}

/* No CR without LF, no LF without CR. */
static void assert_crlf_only(const char *s)
{
    for (size_t i = 0; s[i]; i++) {
        if (s[i] == '\r')
            assert_int_equal(s[i + 1], '\n');
        if (s[i] == '\n')
            assert_true(i > 0 && s[i - 1] == '\r');
    }
}

static unsigned count(const char *hay, const char *needle)
{
    unsigned n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static const char *body_of(const char *msg)
{
    const char *b = strstr(msg, "\r\n\r\n");
    assert_non_null(b);
    return b + 4;
}

static void test_placeholders(void **state)
{
    struct fixture *fx = *state;
    char why[256];
    char *m = render(fx,
                     "Subject: {{subject}} for {{ first name }}\n"
                     "\n"
                     "Dear {{first name}},\n"
                     "{{   note}}\n"
                     "{single} braces } stay {\n",
                     0, why, sizeof(why));
    assert_non_null(m);
    assert_non_null(strstr(m, "Subject: Hello for Ann\r\n"));
    assert_string_equal(body_of(m), "Dear Ann,\r\ntwo\r\nlines\r\n{single} braces } stay {\r\n");
    assert_crlf_only(m);
    free(m);
}

static void test_parse_errors(void **state)
{
    (void)state;
    char why[256];
    static const struct {
        const char *text, *why;
    } cases[] = {
        {"Subject: x\n\nHello {{name\n}}\n",
         "t.eml:3: '{{' is not closed by '}}' on the same line"},
        {"Subject: {{ }}\n\n", "t.eml:1: empty placeholder '{{}}'"},
        {"Subject: x\n\n{{a{b}}\n", "t.eml:3: malformed placeholder '{{a{b}}'"},
        {"Dear {{name}},\n\nbody\n",
         "t.eml:1: not a header field 'Name: value' (a template is header fields, an empty line, "
         "then the body)"},
        {" folded\nSubject: x\n\n",
         "t.eml:1: a continuation line (starting with white space) before any header field"},
        {"\nbody only\n", "t.eml:1: no header fields (at least a Subject is expected)"},
        {"{{h}}: x\n\n",
         "t.eml:1: not a header field 'Name: value' (a template is header fields, an empty line, "
         "then the body)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct template *tp =
            template_parse("t.eml", cases[i].text, strlen(cases[i].text), why, sizeof(why));
        assert_null(tp);
        assert_string_equal(why, cases[i].why);
    }
    assert_null(template_parse("t.eml", "Subject: a\0b\n\n", 14, why, sizeof(why)));
    assert_string_equal(why, "t.eml:1: NUL octet");
}

static void test_missing_column(void **state)
{
    struct fixture *fx = *state;
    char why[256];
    const char *text = "Subject: hi\n\nline two\n\nDear {{ surname }},\n";
    struct template *tp = template_parse("t.eml", text, strlen(text), why, sizeof(why));
    assert_non_null(tp);
    assert_int_equal(template_check(tp, &fx->t, why, sizeof(why)), -1);
    assert_string_equal(why, "t.eml:5: no column 'surname' in list.csv");
    /* render refuses too */
    char *out = (char *)1;
    size_t len;
    assert_int_equal(
        template_render(tp, &fx->t, &fx->t.rows[0], &fx->o, &out, &len, why, sizeof(why)), -1);
    assert_null(out);
    assert_string_equal(why, "t.eml:5: no column 'surname' in list.csv");
    template_free(tp);
}

static void test_header_injection(void **state)
{
    struct fixture *fx = *state;
    char why[256];

    /* Bob's row starts on line 4: Ann's note spans lines 2-3 */
    assert_null(render(fx, "Subject: {{subject}}\n\nhi\n", 1, why, sizeof(why)));
    assert_string_equal(why, "list.csv:4: column 'subject': value contains a line break, which "
                             "cannot go into the header 'Subject'");
    /* multi-line value: fine in the body, refused in a header; row 0 starts at line 2 */
    assert_null(render(fx, "Subject: x\nX-Note: {{note}}\n\n{{note}}\n", 0, why, sizeof(why)));
    assert_string_equal(why, "list.csv:2: column 'note': value contains a line break, which "
                             "cannot go into the header 'X-Note'");
    /* the recipient itself */
    fx->o.to = "evil@x\r\nBcc: y@z";
    assert_null(render(fx, "Subject: x\n\nhi\n", 0, why, sizeof(why)));
    assert_string_equal(why,
                        "list.csv:2: the recipient address contains a line break or is too long");
    fx->o.to = "ann@example.org";
}

static void test_rfc2047(void **state)
{
    struct fixture *fx = *state;
    char why[256];
    char *m = render(fx, "Subject: {{subject}}, {{first name}}!\n\nhi\n", 2, why, sizeof(why));
    assert_non_null(m);
    /* "Grüße" and "Köln," "Zoë!" are encoded word by word, ASCII words stay */
    assert_non_null(
        strstr(m, "Subject: =?UTF-8?B?R3LDvMOfZQ==?= aus =?UTF-8?B?S8O2bG4sIFpvw6sh?=\r\n"));

    /* decode back: every encoded-word, joined */
    char subj[512];
    assert_true(header_get(m, strlen(m), "Subject", subj, sizeof(subj)) > 0);
    char dec[512];
    size_t d = 0;
    const char *p = subj;
    while (*p) {
        if (strncmp(p, "=?UTF-8?B?", 10) == 0) {
            const char *e = strstr(p + 10, "?=");
            assert_non_null(e);
            long n = base64_decode(p + 10, (size_t)(e - p - 10), (unsigned char *)dec + d,
                                   sizeof(dec) - d);
            assert_true(n >= 0);
            d += (size_t)n;
            p = e + 2;
        } else {
            assert_true(d + 1 < sizeof(dec));
            dec[d++] = *p++;
        }
    }
    dec[d] = '\0';
    assert_string_equal(dec, "Grüße aus Köln, Zoë!");
    free(m);

    /* a long non-ASCII subject: folded, every line <= 76, decodes back */
    char *enc = mime_encode_header(
        "Ünïcödé ünïcödé ünïcödé ünïcödé ünïcödé ünïcödé ünïcödé ünïcödé ünïcödé end", 9);
    assert_non_null(strstr(enc, "\r\n "));
    size_t col = 9;
    for (const char *q = enc; *q; q++) {
        if (*q == '\r') {
            assert_true(q[1] == '\n' && (q[2] == ' ' || q[2] == '\t'));
            col = 0;
            q++;
            continue;
        }
        col++;
        assert_true(col <= 76);
    }
    assert_non_null(strstr(enc, " end"));
    free(enc);

    /* ASCII is copied (folded at white space only when long) */
    enc = mime_encode_header("plain ascii", 9);
    assert_string_equal(enc, "plain ascii");
    free(enc);
    /* an ASCII word that looks like an encoded-word gets encoded */
    enc = mime_encode_header("=?x?", 9);
    assert_string_equal(enc, "=?UTF-8?B?PT94Pw==?=");
    free(enc);
}

static void test_added_headers(void **state)
{
    struct fixture *fx = *state;
    char why[256];
    char *m = render(fx, "Subject: hi\n\nbody\n", 0, why, sizeof(why));
    assert_non_null(m);
    static const char *const added[] = {"From: news@sender.example\r\n",
                                        "To: ann@example.org\r\n",
                                        "Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n",
                                        "MIME-Version: 1.0\r\n",
                                        "Content-Type: text/plain; charset=utf-8\r\n",
                                        "Content-Transfer-Encoding: 7bit\r\n"};
    for (size_t i = 0; i < sizeof(added) / sizeof(added[0]); i++)
        assert_int_equal(count(m, added[i]), 1);
    assert_int_equal(header_count(m, strlen(m), "Message-ID"), 1);
    char id[128];
    assert_int_equal(header_get(m, strlen(m), "Message-ID", id, sizeof(id)), 32 + 2 + 1 + 14);
    assert_int_equal(id[0], '<');
    assert_int_equal(strspn(id + 1, "0123456789abcdef"), 32);
    assert_string_equal(id + 33, "@sender.example>");
    /* two renders: different ids */
    char *m2 = render(fx, "Subject: hi\n\nbody\n", 0, why, sizeof(why));
    char id2[128];
    assert_true(header_get(m2, strlen(m2), "Message-ID", id2, sizeof(id2)) > 0);
    assert_string_not_equal(id, id2);
    free(m2);
    free(m);

    /* the template has them all: nothing added, nothing doubled */
    const char *full = "from: Me <me@x.example>\n"
                       "TO: {{email}}\n"
                       "Subject: hi\n"
                       "Date: Mon, 30 Nov 2026 08:00:00 +0100\n"
                       "Message-Id: <fixed@x.example>\n"
                       "Mime-Version: 1.0\n"
                       "Content-Type: text/plain; charset=us-ascii\n"
                       "Content-Transfer-Encoding: 7bit\n"
                       "\n"
                       "body\n";
    m = render(fx, full, 0, why, sizeof(why));
    assert_non_null(m);
    static const char *const names[] = {"From",
                                        "To",
                                        "Date",
                                        "Message-ID",
                                        "MIME-Version",
                                        "Content-Type",
                                        "Content-Transfer-Encoding"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        assert_int_equal(header_count(m, strlen(m), names[i]), 1);
    assert_non_null(strstr(m, "TO: ann@example.org\r\n"));
    assert_non_null(strstr(m, "Message-Id: <fixed@x.example>\r\n"));
    assert_null(strstr(m, "news@sender.example"));
    free(m);

    /* 8bit for a non-ASCII body */
    m = render(fx, "Subject: x\n\nHallo {{first name}}\n", 2, why, sizeof(why));
    assert_non_null(strstr(m, "Content-Transfer-Encoding: 8bit\r\n"));
    assert_string_equal(body_of(m), "Hallo Zoë\r\n");
    free(m);
}

static void test_crlf_only(void **state)
{
    struct fixture *fx = *state;
    char why[256];
    const char *lf = "Subject: {{subject}}\nX-Folded: one\n two\n\nA {{note}}\nB\n\nC";
    const char *crlf =
        "Subject: {{subject}}\r\nX-Folded: one\r\n two\r\n\r\nA {{note}}\r\nB\r\n\r\nC";
    char *a = render(fx, lf, 0, why, sizeof(why));
    char *b = render(fx, crlf, 0, why, sizeof(why));
    assert_non_null(a);
    assert_non_null(b);
    assert_crlf_only(a);
    assert_crlf_only(b);
    assert_non_null(strstr(a, "X-Folded: one two\r\n")); /* unfolded, short enough */
    assert_string_equal(body_of(a), "A two\r\nlines\r\nB\r\n\r\nC\r\n");
    assert_string_equal(body_of(a), body_of(b));
    free(a);
    free(b);
}

static void test_quoted_printable(void **state)
{
    struct fixture *fx = *state;
    char why[256];
    size_t n = 1200;
    char *tmpl = malloc(n + 64);
    assert_non_null(tmpl);
    strcpy(tmpl, "Subject: long\n\n");
    size_t o = strlen(tmpl);
    for (size_t i = 0; i < n; i++)
        tmpl[o++] = i % 10 == 9 ? ' ' : (i == 500 ? '=' : 'a');
    strcpy(tmpl + o, " \nshort line\n");
    char *m = render(fx, tmpl, 0, why, sizeof(why));
    assert_non_null(m);
    assert_int_equal(header_count(m, strlen(m), "Content-Transfer-Encoding"), 1);
    assert_non_null(strstr(m, "Content-Transfer-Encoding: quoted-printable\r\n"));
    assert_crlf_only(m);
    const char *body = body_of(m);
    assert_non_null(strstr(body, "=3D"));
    assert_non_null(strstr(body, "=20\r\nshort line\r\n")); /* trailing space encoded */
    /* every body line <= 76; decoding gives back the original */
    size_t col = 0;
    char *dec = malloc(strlen(body) + 1);
    size_t d = 0;
    for (const char *p = body; *p; p++) {
        if (*p == '\r') {
            assert_true(col <= 76);
            col = 0;
            continue;
        }
        col = *p == '\n' ? 0 : col + 1;
    }
    for (const char *p = body; *p;) {
        if (p[0] == '=' && p[1] == '\r' && p[2] == '\n') {
            p += 3;
        } else if (p[0] == '=') {
            unsigned v;
            assert_int_equal(sscanf(p + 1, "%2X", &v), 1);
            dec[d++] = (char)v;
            p += 3;
        } else {
            dec[d++] = *p++;
        }
    }
    dec[d] = '\0';
    assert_memory_equal(dec, tmpl + strlen("Subject: long\n\n"), n);
    assert_string_equal(dec + n, " \r\nshort line\r\n");
    free(dec);
    free(m);
    free(tmpl);
}

static void test_list_unsubscribe(void **state)
{
    struct fixture *fx = *state;
    char why[256];
    const char *tmpl = "Subject: hi\n\nbody\n";
    fx->o.list_unsubscribe = "<https://example.org/u/abc>, "
                             "<mailto:unsubscribe+abc@example.org?subject=unsubscribe>";
    fx->o.one_click = 1;
    char *out = render(fx, tmpl, 0, why, sizeof(why));
    assert_non_null(out);
    char v[512];
    assert_true(header_get(out, strlen(out), "List-Unsubscribe", v, sizeof(v)) > 0);
    assert_string_equal(v, "<https://example.org/u/abc>, "
                           "<mailto:unsubscribe+abc@example.org?subject=unsubscribe>");
    assert_true(header_get(out, strlen(out), "List-Unsubscribe-Post", v, sizeof(v)) > 0);
    assert_string_equal(v, "List-Unsubscribe=One-Click");
    assert_int_equal(count(out, "List-Unsubscribe:"), 1);
    assert_crlf_only(out);
    free(out);
    /* mailto only: no one-click */
    fx->o.list_unsubscribe = "<mailto:u@example.org>";
    fx->o.one_click = 0;
    out = render(fx, tmpl, 0, why, sizeof(why));
    assert_non_null(out);
    assert_int_equal(count(out, "List-Unsubscribe-Post"), 0);
    free(out);
    fx->o.list_unsubscribe = "<https://x/\r\nBcc: a@b>";
    assert_null(render(fx, tmpl, 0, why, sizeof(why)));
    assert_non_null(strstr(why, "line break"));
    fx->o.list_unsubscribe = NULL;
}

static void test_long_header_word(void **state)
{
    struct fixture *fx = *state;
    char why[256];
    char *tmpl = malloc(1200);
    assert_non_null(tmpl);
    strcpy(tmpl, "X-Long: ");
    memset(tmpl + 8, 'w', 1000);
    strcpy(tmpl + 1008, "\n\nbody\n");
    assert_null(render(fx, tmpl, 0, why, sizeof(why)));
    assert_string_equal(why, "list.csv:2: the header 'X-Long' would have a line longer than 998 "
                             "octets (a word too long to fold)");
    free(tmpl);

    /* many short words fold to <= 76 columns */
    char *enc = mime_encode_header("aaaa bbbb cccc dddd eeee ffff gggg hhhh iiii jjjj kkkk llll "
                                   "mmmm nnnn oooo pppp qqqq rrrr",
                                   9);
    assert_string_equal(enc, "aaaa bbbb cccc dddd eeee ffff gggg hhhh iiii jjjj kkkk llll "
                             "mmmm\r\n nnnn oooo pppp qqqq rrrr");
    free(enc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_placeholders),     cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_missing_column),   cmocka_unit_test(test_header_injection),
        cmocka_unit_test(test_rfc2047),          cmocka_unit_test(test_added_headers),
        cmocka_unit_test(test_crlf_only),        cmocka_unit_test(test_quoted_printable),
        cmocka_unit_test(test_long_header_word), cmocka_unit_test(test_list_unsubscribe),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
