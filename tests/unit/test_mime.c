/*
 * test_mime.c - the sink's MIME parser (src/sink/mime.c) on the shapes real
 * mail programs write (Thunderbird, Gmail, Outlook), on RFC 2047 / 2231 /
 * 6532 headers, and on broken and hostile structure.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/address.h"
#include "sink/mime.h"
#include "sink/store.h"

static struct mime_msg parse(const char *raw)
{
    struct mime_msg m;
    assert_int_equal(mime_parse(raw, strlen(raw), &m), 0);
    return m;
}

static char *part(const char *raw, size_t index, size_t *len)
{
    char *data;
    assert_int_equal(mime_part_data(raw, strlen(raw), index, &data, len), 0);
    return data;
}

static void test_thunderbird_alternative_inline_image(void **state)
{
    (void)state;
    const char *raw = "Message-ID: <4b6c@example.com>\r\n"
                      "Date: Tue, 3 Mar 2026 10:00:00 +0100\r\n"
                      "MIME-Version: 1.0\r\n"
                      "User-Agent: Mozilla Thunderbird\r\n"
                      "From: =?UTF-8?Q?J=c3=b6rg_M=c3=bcller?= <joerg@example.com>\r\n"
                      "To: \"Smith, Bob\" <bob@example.org>, ann@example.com (Ann Lee)\r\n"
                      "Cc: Team: dave@example.com, Erin <erin@example.com>;, frank@example.net\r\n"
                      "Subject: =?UTF-8?Q?Gr=c3=bc=c3=9fe_aus_K=c3=b6ln?=\r\n"
                      "Content-Type: multipart/alternative;\r\n"
                      " boundary=\"------------8TZ5\"\r\n"
                      "\r\n"
                      "This is a multi-part message in MIME format.\r\n"
                      "--------------8TZ5\r\n"
                      "Content-Type: text/plain; charset=UTF-8; format=flowed\r\n"
                      "Content-Transfer-Encoding: 8bit\r\n"
                      "\r\n"
                      "Hallo Bob,\r\n\r\nsch\xc3\xb6ne Gr\xc3\xbc\xc3\x9f"
                      "e.\r\n"
                      "\r\n"
                      "--------------8TZ5\r\n"
                      "Content-Type: multipart/related;\r\n"
                      " boundary=\"------------R3lT\"\r\n"
                      "\r\n"
                      "\r\n"
                      "--------------R3lT\r\n"
                      "Content-Type: text/html; charset=UTF-8\r\n"
                      "Content-Transfer-Encoding: 7bit\r\n"
                      "\r\n"
                      "<html><head><style>p{color:red}</style></head><body><p>Hallo&nbsp;Bob,</p>"
                      "<img src=\"cid:part1.X@example.com\"></body></html>\r\n"
                      "--------------R3lT\r\n"
                      "Content-Type: image/png; name=\"logo.png\"\r\n"
                      "Content-Disposition: inline; filename=\"logo.png\"\r\n"
                      "Content-Id: <part1.X@example.com>\r\n"
                      "Content-Transfer-Encoding: base64\r\n"
                      "\r\n"
                      "iVBORw0KGgo=\r\n"
                      "\r\n"
                      "--------------R3lT--\r\n"
                      "\r\n"
                      "--------------8TZ5--\r\n";
    struct mime_msg m = parse(raw);
    assert_string_equal(m.subject, "Grüße aus Köln");
    assert_string_equal(m.message_id, "4b6c@example.com");
    assert_string_equal(m.date, "Tue, 3 Mar 2026 10:00:00 +0100");
    assert_int_equal(m.nfrom, 1);
    assert_string_equal(m.from[0].name, "Jörg Müller");
    assert_string_equal(m.from[0].address, "joerg@example.com");
    assert_int_equal(m.nto, 2);
    assert_string_equal(m.to[0].name, "Smith, Bob");
    assert_string_equal(m.to[0].address, "bob@example.org");
    assert_string_equal(m.to[1].name, "Ann Lee"); /* a comment as the name */
    assert_string_equal(m.to[1].address, "ann@example.com");
    assert_int_equal(m.ncc, 3);
    assert_string_equal(m.cc[0].address, "dave@example.com");
    assert_string_equal(m.cc[1].name, "Erin");
    assert_string_equal(m.cc[2].address, "frank@example.net");
    assert_string_equal(m.text, "Hallo Bob,\r\n\r\nschöne Grüße.\r\n");
    assert_int_equal(m.text_len, strlen(m.text));
    assert_true(strstr(m.html, "<img src=\"cid:part1.X@example.com\">") != NULL);
    assert_string_equal(m.snippet, "Hallo Bob, schöne Grüße.");
    assert_int_equal(m.nparts, 1);
    assert_string_equal(m.parts[0].content_type, "image/png");
    assert_string_equal(m.parts[0].filename, "logo.png");
    assert_string_equal(m.parts[0].content_id, "part1.X@example.com");
    assert_string_equal(m.parts[0].disposition, "inline");
    assert_true(m.parts[0].inline_part);
    assert_int_equal(m.parts[0].size, 8);
    assert_int_equal(m.nheaders, 9);
    assert_string_equal(m.hnames[4], "From");
    assert_string_equal(m.hvalues[4], "Jörg Müller <joerg@example.com>");
    assert_string_equal(m.hvalues[8], "multipart/alternative; boundary=\"------------8TZ5\"");
    size_t len;
    char *d = part(raw, m.parts[0].index, &len);
    assert_int_equal(len, 8);
    assert_memory_equal(d, "\x89PNG\r\n\x1a\n", 8);
    free(d);
    char *x;
    assert_int_equal(mime_part_data(raw, strlen(raw), 99, &x, &len), -2);
    mime_free(&m);
}

static void test_outlook_html_only_snippet_and_attachment(void **state)
{
    (void)state;
    const char *raw =
        "From: \"Doe, Jane\" <jane@corp.example>\r\n"
        "To: <x@example.com>\r\n"
        "Subject: =?iso-8859-1?Q?R=E9union_d=E9plac=E9e?=\r\n"
        "Content-Type: multipart/mixed;\r\n\tboundary=\"_004_DB9PR\"\r\n"
        "\r\n"
        "--_004_DB9PR\r\n"
        "Content-Type: text/html; charset=\"windows-1252\"\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n"
        "\r\n"
        "<html><head><script>alert(1)</script></head><body>Caf=E9 &amp; cr=E8me =\r\n"
        "=E0 15h=A0: <b>ok</b></body></html>\r\n"
        "--_004_DB9PR\r\n"
        "Content-Type: application/vnd.ms-excel; "
        "name=\"=?iso-8859-1?Q?bilan_2026_=E9t=E9.xls?=\"\r\n"
        "Content-Description: bilan.xls\r\n"
        "Content-Disposition: attachment; filename=\"=?iso-8859-1?Q?bilan_2026_=E9t=E9.xls?=\";\r\n"
        "\tsize=3\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        "YWJj\r\n"
        "\r\n"
        "--_004_DB9PR--\r\n";
    struct mime_msg m = parse(raw);
    assert_string_equal(m.subject, "Réunion déplacée");
    assert_string_equal(m.from[0].name, "Doe, Jane");
    assert_string_equal(m.to[0].name, "");
    assert_string_equal(m.to[0].address, "x@example.com");
    assert_string_equal(m.text, "");
    assert_true(strstr(m.html, "Café &amp; crème à 15h\xc2\xa0: <b>ok</b>") != NULL);
    assert_string_equal(m.snippet, "Café & crème à 15h\xc2\xa0: ok");
    assert_int_equal(m.nparts, 1);
    assert_string_equal(m.parts[0].filename, "bilan 2026 été.xls");
    assert_string_equal(m.parts[0].disposition, "attachment");
    assert_false(m.parts[0].inline_part);
    assert_int_equal(m.parts[0].size, 3);
    mime_free(&m);
    m = parse(
        "Content-Type: text/html\r\n\r\n<p>&#233;t&#xE9;&#160;&#x1F600; &#0; &#xD800; &#65</p>");
    assert_string_equal(m.snippet, "été \xf0\x9f\x98\x80 &#0; &#xD800; &#65");
    mime_free(&m);
}

static void test_rfc2047_words(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"=?iso-8859-1?q?caf=E9?=", "café"},
        {"=?ISO-8859-15?Q?20_=A4?=", "20 €"},
        {"=?koi8-r?B?8NLJ18XU?=", "Привет"},
        {"=?shift_jis?B?k/qWe4zq?=", "日本語"},
        {"=?utf-8?b?5pel5pys?= =?utf-8?b?6Kqe?=", "日本語"}, /* blank between dropped */
        {"=?utf-8?q?=E6=97?=\r\n =?utf-8?q?=A5?=", "日"},    /* a character split */
        {"=?utf-8?q?a?= b =?utf-8?q?c?=", "a b c"},          /* text between kept */
        {"=?UTF-8*en?Q?lang?=", "lang"},                     /* RFC 2231 language */
        {"=?utf-8?q?broken", "=?utf-8?q?broken"},            /* malformed: as is */
        {"=?utf-8?x?abc?=", "=?utf-8?x?abc?="},              /* unknown encoding */
        {"=?x-nope?q?abc?=", "abc"},                         /* unknown charset */
        {"=?../../etc?q?abc?=", "abc"},                      /* never given to iconv */
        {"=?utf-8?q?=FF?=", "\xef\xbf\xbd"},                 /* invalid UTF-8 */
        {"=?utf-8?q?a=0Ab=00?=", "a b "},                    /* controls: spaces */
        {"caf\xc3\xa9 raw", "café raw"},                     /* RFC 6532 */
        {"bad \xff\xc3", "bad \xef\xbf\xbd\xef\xbf\xbd"},    /* invalid: replaced */
        {"", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *s = mime_decode_words(cases[i].in, strlen(cases[i].in));
        assert_non_null(s);
        if (strcmp(s, cases[i].out) != 0)
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, s, cases[i].out);
        assert_true(mime_utf8_valid(s, strlen(s)));
        free(s);
    }
}

static void test_rfc2231_and_qp(void **state)
{
    (void)state;
    const char *raw = "Subject: files\r\n"
                      "Content-Type: multipart/mixed; boundary=XX\r\n"
                      "\r\n"
                      "--XX\r\n"
                      "Content-Type: text/plain; charset=iso-8859-1\r\n"
                      "Content-Transfer-Encoding: quoted-printable\r\n"
                      "\r\n"
                      "Gr=FC=DFe, a soft=\r\n"
                      " line break=3D, trailing blanks   \r\n"
                      "=XY stays, =e9 lower case=\r\n"
                      "\r\n"
                      "--XX\r\n"
                      "Content-Disposition: attachment; filename*=UTF-8''%E2%82%AC%20rates.txt\r\n"
                      "\r\n"
                      "a\r\n"
                      "--XX\r\n"
                      "Content-Disposition: attachment;\r\n"
                      " filename*0*=iso-8859-1'fr'%E9t%E9;\r\n"
                      " filename*1=\" long\";\r\n"
                      " filename*2*=%2Etxt\r\n"
                      "\r\n"
                      "b\r\n"
                      "--XX\r\n"
                      "Content-Type: message/rfc822\r\n"
                      "\r\n"
                      "Subject: inner\r\n\r\ninner body\r\n"
                      "--XX--\r\n";
    struct mime_msg m = parse(raw);
    assert_string_equal(m.text,
                        "Grüße, a soft line break=, trailing blanks\r\n=XY stays, é lower case");
    assert_int_equal(m.nparts, 3);
    assert_string_equal(m.parts[0].filename, "€ rates.txt");
    assert_string_equal(m.parts[0].content_type, "text/plain");
    assert_string_equal(m.parts[1].filename, "été long.txt");
    assert_string_equal(m.parts[2].content_type, "message/rfc822");
    assert_int_equal(m.parts[2].size, strlen("Subject: inner\r\n\r\ninner body"));
    assert_string_equal(m.subject, "files");
    mime_free(&m);
}

static void test_broken_boundaries(void **state)
{
    (void)state;
    /* missing final delimiter; a delimiter-like line that is not one; padding */
    const char *raw = "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
                      "--b \t\r\n\r\nfirst\r\n--bb\r\nstill first\r\n"
                      "--b\r\nContent-Type: text/html\r\n\r\n<p>last";
    struct mime_msg m = parse(raw);
    assert_string_equal(m.text, "first\r\n--bb\r\nstill first");
    assert_string_equal(m.html, "<p>last");
    mime_free(&m);
    /* the boundary never appears: no parts, no body */
    m = parse("Content-Type: multipart/mixed; boundary=zz\r\n\r\nhello\r\n");
    assert_int_equal(m.nparts, 0);
    assert_string_equal(m.text, "");
    mime_free(&m);
    /* no boundary parameter: read as text */
    m = parse("Content-Type: multipart/mixed\r\n\r\nhello\r\n");
    assert_string_equal(m.text, "hello\r\n");
    mime_free(&m);
    /* LF-only line ends, no header/body separator at all, empty input */
    m = parse("Content-Type: multipart/alternative; boundary=q\n\n--q\n\nlf\n--q--\n");
    assert_string_equal(m.text, "lf");
    mime_free(&m);
    m = parse("Subject: only a header");
    assert_string_equal(m.subject, "only a header");
    assert_string_equal(m.text, "");
    mime_free(&m);
    m = parse("");
    assert_int_equal(m.nheaders, 0);
    assert_string_equal(m.snippet, "");
    mime_free(&m);
    /* a line that is no header starts the body */
    m = parse("Subject: x\r\nthis is no header\r\nmore\r\n");
    assert_string_equal(m.text, "this is no header\r\nmore\r\n");
    mime_free(&m);
}

static void test_limits(void **state)
{
    (void)state;
    char *raw = malloc(64 * 1024);
    assert_non_null(raw);
    /* 101 attachments: 100 entities, the container included */
    size_t n = (size_t)sprintf(raw, "Content-Type: multipart/mixed; boundary=b\r\n\r\n");
    for (int i = 0; i < 101; i++)
        n += (size_t)sprintf(
            raw + n, "--b\r\nContent-Disposition: attachment; filename=f%d\r\n\r\n%d\r\n", i, i);
    sprintf(raw + n, "--b--\r\n");
    struct mime_msg m = parse(raw);
    assert_int_equal(m.nparts, MIME_MAX_PARTS - 1);
    assert_string_equal(m.parts[98].filename, "f98");
    mime_free(&m);
    /* depth 11: the eleventh multipart is left whole, as a part */
    char *body = malloc(8192), *tmp = malloc(8192);
    assert_non_null(body);
    assert_non_null(tmp);
    strcpy(body, "\r\nbottom\r\n");
    for (int d = 11; d >= 1; d--) {
        snprintf(tmp, 8192,
                 "Content-Type: multipart/mixed; boundary=d%d\r\n\r\n--d%d\r\n%s\r\n--d%d--\r\n", d,
                 d, body, d);
        strcpy(body, tmp);
    }
    m = parse(body);
    assert_string_equal(m.text, "");
    assert_int_equal(m.nparts, 1);
    assert_string_equal(m.parts[0].content_type, "multipart/mixed");
    size_t len;
    char *d = part(body, m.parts[0].index, &len);
    assert_int_equal(len, m.parts[0].size);
    assert_true(strstr(d, "bottom") != NULL);
    free(d);
    mime_free(&m);
    /* depth 10 is fine */
    strcpy(body, "\r\nbottom\r\n");
    for (int d = 10; d >= 1; d--) {
        snprintf(tmp, 8192,
                 "Content-Type: multipart/mixed; boundary=d%d\r\n\r\n--d%d\r\n%s\r\n--d%d--\r\n", d,
                 d, body, d);
        strcpy(body, tmp);
    }
    m = parse(body);
    assert_string_equal(m.text, "bottom\r\n");
    mime_free(&m);
    /* one huge base64 line, with junk and padding in the middle */
    size_t big = 3 * 1024 * 1024;
    char *b64 = malloc(big + 200);
    assert_non_null(b64);
    n = (size_t)sprintf(b64, "Content-Type: application/x\r\n"
                             "Content-Transfer-Encoding: base64\r\n\r\n");
    for (size_t i = 0; i < big / 4; i++, n += 4)
        memcpy(b64 + n, i == 1000 ? "!!==" : "////", 4);
    b64[n] = '\0';
    m = parse(b64);
    assert_int_equal(m.nparts, 1);
    assert_int_equal(m.parts[0].size, 3000); /* up to the first '=' */
    assert_true(m.parts[0].size <= n);
    mime_free(&m);
    free(b64);
    free(body);
    free(tmp);
    free(raw);
}

static void test_charsets(void **state)
{
    (void)state;
    struct mime_msg m = parse("Content-Type: text/plain; charset=x-klingon\r\n\r\nGr\xfc\xdf"
                              "e");
    assert_string_equal(m.text, "Grüße");
    assert_string_equal(m.charset_fallback, "latin1");
    mime_free(&m);
    m = parse("Content-Type: text/plain; charset=x-klingon\r\n\r\nd\xc3\xa9j\xc3\xa0");
    assert_string_equal(m.text, "déjà"); /* valid UTF-8 is kept */
    assert_string_equal(m.charset_fallback, "");
    mime_free(&m);
    m = parse("Content-Type: text/plain; charset=utf-8\r\n\r\n\xff\xc0\xaf ok \xed\xa0\x80");
    assert_string_equal(
        m.text, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd ok \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    mime_free(&m);
    m = parse("Content-Type: text/plain; charset=shift_jis\r\n\r\n\x93\xfa\x96\x7b \x82");
    assert_string_equal(m.text, "日本 \xef\xbf\xbd"); /* a cut character */
    mime_free(&m);
    m = parse("Content-Type: text/plain; charset=\"ISO-2022-JP\"\r\n\r\n\x1b$BF|K\\\x1b(B!");
    assert_string_equal(m.text, "日本!");
    mime_free(&m);
    m = parse("Subject: bad \xc3\x28 \xf8\x88\x80\x80\x80\r\nFrom: \xff <a@b>\r\n\r\nx");
    assert_string_equal(
        m.subject,
        "bad \xef\xbf\xbd( \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    assert_string_equal(m.from[0].name, "\xef\xbf\xbd");
    mime_free(&m);
    /* a header with a bare CR inside */
    m = parse("Subject: a\rb\r\nX-Y: c\r\n d\r\n\r\n");
    assert_string_equal(m.subject, "a b");
    assert_string_equal(m.hvalues[1], "c d");
    mime_free(&m);
}

static void test_gmail_mixed_and_cache(void **state)
{
    (void)state;
    const char *raw = "MIME-Version: 1.0\r\n"
                      "From: Ann Example <ann@gmail.example>\r\n"
                      "Date: Wed, 4 Mar 2026 09:00:00 +0000\r\n"
                      "Subject: =?UTF-8?B?xZtyb2Rh?=\r\n"
                      "To: bob@example.com\r\n"
                      "Bcc: hidden@example.com\r\n"
                      "Reply-To: \"Ann (work)\" <ann@work.example>\r\n"
                      "Content-Type: multipart/mixed; boundary=\"000000000000a1b2\"\r\n"
                      "\r\n"
                      "--000000000000a1b2\r\n"
                      "Content-Type: multipart/alternative; boundary=\"000000000000a1b1\"\r\n"
                      "\r\n"
                      "--000000000000a1b1\r\n"
                      "Content-Type: text/plain; charset=\"UTF-8\"\r\n"
                      "Content-Transfer-Encoding: base64\r\n"
                      "\r\n"
                      "xZtyb2RhIHcgS3Jha293aWU=\r\n"
                      "--000000000000a1b1\r\n"
                      "Content-Type: text/html; charset=\"UTF-8\"\r\n"
                      "\r\n"
                      "<div dir=\"ltr\">x</div>\r\n"
                      "--000000000000a1b1--\r\n"
                      "--000000000000a1b2\r\n"
                      "Content-Type: text/csv; charset=\"US-ASCII\"; name=\"data.csv\"\r\n"
                      "Content-Disposition: attachment; filename=\"data.csv\"\r\n"
                      "Content-Transfer-Encoding: base64\r\n"
                      "X-Attachment-Id: f_lx1\r\n"
                      "Content-ID: <f_lx1>\r\n"
                      "\r\n"
                      "YSxiCjEsMgo=\r\n"
                      "--000000000000a1b2--\r\n";
    struct sink_msg *sm = calloc(1, sizeof(*sm));
    assert_non_null(sm);
    sm->raw = strdup(raw);
    sm->size = strlen(raw);
    const struct mime_msg *m = sink_msg_mime(sm);
    assert_non_null(m);
    assert_ptr_equal(sink_msg_mime(sm), m); /* parsed once */
    assert_string_equal(m->subject, "środa");
    assert_string_equal(m->text, "środa w Krakowie");
    assert_string_equal(m->html, "<div dir=\"ltr\">x</div>");
    assert_int_equal(m->nbcc, 1);
    assert_string_equal(m->reply_to[0].name, "Ann (work)");
    assert_int_equal(m->nparts, 1);
    assert_string_equal(m->parts[0].charset, "us-ascii");
    assert_string_equal(m->parts[0].filename, "data.csv");
    assert_false(m->parts[0].inline_part); /* attachment, though it has a Content-ID */
    assert_int_equal(m->parts[0].index, 4);
    size_t len;
    char *d = part(raw, 4, &len);
    assert_int_equal(len, 8);
    assert_memory_equal(d, "a,b\n1,2\n", 8);
    free(d);
    char *x;
    assert_int_equal(mime_part_data(raw, strlen(raw), 0, &x, &len), -2); /* a container */
    store_msg_free(sm); /* frees the cached parse too */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thunderbird_alternative_inline_image),
        cmocka_unit_test(test_outlook_html_only_snippet_and_attachment),
        cmocka_unit_test(test_rfc2047_words),
        cmocka_unit_test(test_rfc2231_and_qp),
        cmocka_unit_test(test_broken_boundaries),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_charsets),
        cmocka_unit_test(test_gmail_mixed_and_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
