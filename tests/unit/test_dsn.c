/*
 * test_dsn.c - unit tests for queue/dsn.c.  Each DSN is parsed back here with
 * a small MIME reader: CRLF everywhere, line lengths, the top header fields,
 * the boundary and the three parts, every delivery-status field per
 * recipient; NOTIFY filtering (default, NEVER, SUCCESS only, DELAY),
 * RET=HDRS and the size limit, the null sender, delayed warnings, cleaning
 * and folding of hostile error texts, RFC 6533 for UTF-8 addresses, and the
 * enhanced status code extraction.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/header.h"
#include "queue/dsn.h"

static const char original[] = "Message-ID: <orig-1@example.org>\r\n"
                               "From: Alice <alice@example.org>\r\n"
                               "To: info@example.net\r\n"
                               "Subject: quarterly report\r\n"
                               "\r\n"
                               "The body of the message.\r\n"
                               "--not-a-boundary\r\n";

#define NOW 1712400000
#define HOST "mx.example.org"

/* ---- a small MIME reader ------------------------------------------------- */

struct part {
    const char *p; /* header section (ending in the blank line) + body */
    size_t len;
    const char *body;
    size_t blen;
};

static void split_part(const char *p, size_t len, struct part *out)
{
    out->p = p;
    out->len = len;
    const char *e = memmem(p, len, "\r\n\r\n", 4);
    if (p[0] == '\r' && len >= 2 && p[1] == '\n')
        e = p - 2; /* no header fields */
    assert_non_null(e);
    out->body = e + 4;
    out->blen = len - (size_t)(out->body - p);
}

static void field(const struct part *pt, const char *name, char *out, size_t size)
{
    if (header_get(pt->p, pt->len, name, out, size) < 0)
        fail_msg("no %s field in:\n%.*s", name, (int)pt->len, pt->p);
}

static bool has_field(const char *p, size_t len, const char *name)
{
    char v[8];
    return header_get(p, len, name, v, sizeof(v)) >= 0;
}

static void check_lines(const struct buf *b, size_t maxlen)
{
    size_t col = 0;
    for (size_t i = 0; i < b->len; i++) {
        char c = b->p[i];
        if (c == '\r') {
            assert_true(i + 1 < b->len && b->p[i + 1] == '\n');
            i++;
            col = 0;
            continue;
        }
        assert_true(c != '\n'); /* no bare LF */
        col++;
        if (col > maxlen)
            fail_msg("line longer than %zu at offset %zu", maxlen, i);
    }
    assert_true(b->len >= 2 && b->p[b->len - 2] == '\r' && b->p[b->len - 1] == '\n');
}

struct dsn {
    struct part top;
    char boundary[128];
    struct part parts[3];
    /* delivery-status: group 0 is per message, then one per recipient */
    struct part groups[16];
    size_t ngroups;
};

static void parse_dsn(const struct buf *b, struct dsn *d)
{
    char ct[512];
    memset(d, 0, sizeof(*d));
    check_lines(b, 998);
    split_part(b->p, b->len, &d->top);
    field(&d->top, "Content-Type", ct, sizeof(ct));
    const char *bp = strstr(ct, "boundary=\"");
    assert_non_null(bp);
    bp += 10;
    const char *be = strchr(bp, '"');
    assert_non_null(be);
    snprintf(d->boundary, sizeof(d->boundary), "%.*s", (int)(be - bp), bp);

    char delim[160];
    snprintf(delim, sizeof(delim), "\r\n--%s", d->boundary);
    size_t dl = strlen(delim);
    const char *body = d->top.body - 2; /* the CRLF before the first delimiter */
    const char *end = b->p + b->len;
    const char *cur = memmem(body, (size_t)(end - body), delim, dl);
    assert_non_null(cur);
    int n = 0;
    for (;;) {
        cur += dl;
        if (cur + 2 <= end && memcmp(cur, "--", 2) == 0) {
            assert_int_equal(end - cur, 4); /* "--\r\n" and nothing after */
            break;
        }
        assert_memory_equal(cur, "\r\n", 2);
        cur += 2;
        const char *next = memmem(cur, (size_t)(end - cur), delim, dl);
        assert_non_null(next);
        assert_true(n < 3);
        split_part(cur, (size_t)(next - cur), &d->parts[n++]);
        cur = next;
    }
    assert_int_equal(n, 3);
    /* the boundary occurs only in the delimiters */
    size_t count = 0;
    for (const char *p = b->p;
         (p = memmem(p, (size_t)(end - p), d->boundary, strlen(d->boundary))) != NULL; p++)
        count++;
    assert_int_equal(count, 5); /* Content-Type + 3 delimiters + the close */

    /* delivery-status groups, separated by blank lines */
    const struct part *st = &d->parts[1];
    const char *g = st->body, *gend = st->body + st->blen;
    while (g < gend && d->ngroups < 16) {
        const char *sep = memmem(g, (size_t)(gend - g), "\r\n\r\n", 4);
        const char *ge = sep ? sep + 2 : gend;
        struct part *gp = &d->groups[d->ngroups++];
        gp->p = g;
        gp->len = (size_t)(ge - g);
        g = sep ? sep + 4 : gend;
    }
}

static void group_field(const struct dsn *d, size_t g, const char *name, const char *want)
{
    char v[1024];
    assert_true(g < d->ngroups);
    if (header_get(d->groups[g].p, d->groups[g].len, name, v, sizeof(v)) < 0)
        fail_msg("group %zu has no %s:\n%.*s", g, name, (int)d->groups[g].len, d->groups[g].p);
    if (strcmp(v, want) != 0)
        fail_msg("group %zu %s: got \"%s\", want \"%s\"", g, name, v, want);
}

static bool contains(const struct part *p, const char *s)
{
    return memmem(p->p, p->len, s, strlen(s)) != NULL;
}

/* ---- envelopes ------------------------------------------------------------ */

static void base_env(struct envelope *env)
{
    envelope_init(env);
    strcpy(env->id, "1712345678-0000002a-9f3a0c1d2e3b4a5f");
    envelope_set(&env->sender, "alice@example.org");
    env->created = 1712345678; /* Fri, 05 Apr 2024 19:34:38 +0000 */
}

static struct env_rcpt *add(struct envelope *env, const char *addr, enum env_rcpt_status status,
                            unsigned notify, const char *error)
{
    struct env_rcpt *r = envelope_add_rcpt(env, addr, NULL, "maildir:/x");
    r->notify = notify;
    envelope_rcpt_result(r, status, 1712399000, error);
    return r;
}

static const struct dsn_info failed_info = {.hostname = HOST, .kind = DSN_FAILED, .now = NOW};

/* ---- tests ------------------------------------------------------------------ */

static void test_failed(void **state)
{
    (void)state;
    struct envelope env;
    base_env(&env);
    envelope_set(&env.envid, "QQ+2B314");
    struct env_rcpt *r = add(&env, "bob@example.net", ENV_RCPT_FAILED, 0,
                             "550 5.1.1 <bob@example.net>: no such user");
    envelope_set(&r->orig, "info@example.net");
    add(&env, "carol@example.net", ENV_RCPT_FAILED, NOTIFY_NEVER, "550 5.1.1 no");
    add(&env, "dave@example.net", ENV_RCPT_SENT, 0, "");
    add(&env, "erin@example.net", ENV_RCPT_FAILED, NOTIFY_SUCCESS, "550 5.1.1 no");
    r = add(&env, "frank@example.net", ENV_RCPT_FAILED, NOTIFY_FAILURE | NOTIFY_DELAY,
            "451 4.4.1 connection timed out");
    envelope_set(&r->orcpt, "rfc822;Frank+2BX@example.net");
    r = add(&env, "gina@example.net", ENV_RCPT_FAILED, 0, "mailbox is full");
    r->last_attempt = 0;

    assert_true(dsn_wanted(&failed_info, &env));
    struct buf out = {0};
    assert_int_equal(dsn_build(&failed_info, &env, original, strlen(original), &out), 3);
    struct dsn d;
    parse_dsn(&out, &d);

    char v[512];
    field(&d.top, "From", v, sizeof(v));
    assert_string_equal(v, "Mail Delivery System <MAILER-DAEMON@mx.example.org>");
    field(&d.top, "To", v, sizeof(v));
    assert_string_equal(v, "<alice@example.org>");
    field(&d.top, "Subject", v, sizeof(v));
    assert_string_equal(v, "Undelivered Mail Returned to Sender");
    field(&d.top, "Date", v, sizeof(v));
    assert_string_equal(v, "Sat, 06 Apr 2024 10:40:00 +0000");
    field(&d.top, "Message-ID", v, sizeof(v));
    assert_true(v[0] == '<' && strstr(v, "@mx.example.org>"));
    field(&d.top, "In-Reply-To", v, sizeof(v));
    assert_string_equal(v, "<orig-1@example.org>");
    field(&d.top, "MIME-Version", v, sizeof(v));
    assert_string_equal(v, "1.0");
    field(&d.top, "Auto-Submitted", v, sizeof(v));
    assert_string_equal(v, "auto-replied");
    field(&d.top, "Content-Type", v, sizeof(v));
    assert_non_null(strstr(v, "multipart/report; report-type=delivery-status;"));

    /* human part */
    field(&d.parts[0], "Content-Type", v, sizeof(v));
    assert_string_equal(v, "text/plain; charset=us-ascii");
    assert_true(contains(&d.parts[0], "<bob@example.net> (sent to <info@example.net>):\r\n"
                                      "    550 5.1.1 <bob@example.net>: no such user\r\n"));
    assert_true(contains(&d.parts[0], "<frank@example.net>:"));
    assert_true(contains(&d.parts[0], "<gina@example.net>:"));
    assert_false(contains(&d.parts[0], "carol"));
    assert_false(contains(&d.parts[0], "dave"));
    assert_false(contains(&d.parts[0], "erin"));

    /* delivery-status part */
    field(&d.parts[1], "Content-Type", v, sizeof(v));
    assert_string_equal(v, "message/delivery-status");
    assert_int_equal(d.ngroups, 4);
    group_field(&d, 0, "Reporting-MTA", "dns; mx.example.org");
    group_field(&d, 0, "Original-Envelope-Id", "QQ+314");
    group_field(&d, 0, "Arrival-Date", "Fri, 05 Apr 2024 19:34:38 +0000");

    group_field(&d, 1, "Original-Recipient", "rfc822;info@example.net");
    group_field(&d, 1, "Final-Recipient", "rfc822;bob@example.net");
    group_field(&d, 1, "Action", "failed");
    group_field(&d, 1, "Status", "5.1.1");
    group_field(&d, 1, "Diagnostic-Code", "smtp; 550 5.1.1 <bob@example.net>: no such user");
    group_field(&d, 1, "Last-Attempt-Date", "Sat, 06 Apr 2024 10:23:20 +0000");

    group_field(&d, 2, "Original-Recipient", "rfc822;Frank+X@example.net");
    group_field(&d, 2, "Final-Recipient", "rfc822;frank@example.net");
    group_field(&d, 2, "Action", "failed");
    group_field(&d, 2, "Status", "4.4.1");

    assert_false(has_field(d.groups[3].p, d.groups[3].len, "Original-Recipient"));
    assert_false(has_field(d.groups[3].p, d.groups[3].len, "Last-Attempt-Date"));
    group_field(&d, 3, "Final-Recipient", "rfc822;gina@example.net");
    group_field(&d, 3, "Status", "5.0.0");
    group_field(&d, 3, "Diagnostic-Code", "x-tern; mailbox is full");

    /* the original, whole */
    field(&d.parts[2], "Content-Type", v, sizeof(v));
    assert_string_equal(v, "message/rfc822");
    assert_int_equal(d.parts[2].blen, strlen(original));
    assert_memory_equal(d.parts[2].body, original, strlen(original));

    buf_free(&out);
    envelope_free(&env);
}

static void test_headers_only(void **state)
{
    (void)state;
    struct envelope env;
    base_env(&env);
    env.ret = RET_HDRS;
    add(&env, "bob@example.net", ENV_RCPT_FAILED, 0, "550 5.1.1 no");
    struct buf out = {0};
    struct dsn d;
    char v[256];
    assert_int_equal(dsn_build(&failed_info, &env, original, strlen(original), &out), 1);
    parse_dsn(&out, &d);
    field(&d.parts[2], "Content-Type", v, sizeof(v));
    assert_string_equal(v, "text/rfc822-headers");
    assert_true(contains(&d.parts[2], "Subject: quarterly report\r\n"));
    assert_false(contains(&d.parts[2], "The body"));

    /* RET=FULL, but larger than max_full: headers only too */
    env.ret = RET_FULL;
    struct dsn_info small = failed_info;
    small.max_full = 100;
    out.len = 0;
    assert_int_equal(dsn_build(&small, &env, original, strlen(original), &out), 1);
    parse_dsn(&out, &d);
    field(&d.parts[2], "Content-Type", v, sizeof(v));
    assert_string_equal(v, "text/rfc822-headers");
    assert_false(contains(&d.parts[2], "The body"));
    /* and the default limit keeps a small message whole */
    out.len = 0;
    assert_int_equal(dsn_build(&failed_info, &env, original, strlen(original), &out), 1);
    parse_dsn(&out, &d);
    field(&d.parts[2], "Content-Type", v, sizeof(v));
    assert_string_equal(v, "message/rfc822");

    /* an original with bare LF comes back with CRLF */
    const char *lf = "Subject: x\n\nline one\nline two";
    out.len = 0;
    assert_int_equal(dsn_build(&failed_info, &env, lf, strlen(lf), &out), 1);
    parse_dsn(&out, &d);
    const char *want = "Subject: x\r\n\r\nline one\r\nline two\r\n";
    assert_int_equal(d.parts[2].blen, strlen(want));
    assert_memory_equal(d.parts[2].body, want, strlen(want));
    buf_free(&out);
    envelope_free(&env);
}

static void test_no_dsn(void **state)
{
    (void)state;
    struct envelope env;
    struct buf out = {0};
    buf_append(&out, "keep", 4);

    /* the null sender never gets one */
    base_env(&env);
    envelope_set(&env.sender, "");
    add(&env, "bob@example.net", ENV_RCPT_FAILED, NOTIFY_FAILURE, "550 5.1.1 no");
    assert_false(dsn_wanted(&failed_info, &env));
    assert_int_equal(dsn_build(&failed_info, &env, original, strlen(original), &out), 0);
    assert_int_equal(out.len, 4);
    envelope_free(&env);

    /* NOTIFY=NEVER, NOTIFY=SUCCESS and delivered recipients give nothing */
    base_env(&env);
    add(&env, "a@example.net", ENV_RCPT_FAILED, NOTIFY_NEVER, "550 5.1.1 no");
    add(&env, "b@example.net", ENV_RCPT_FAILED, NOTIFY_SUCCESS, "550 5.1.1 no");
    add(&env, "c@example.net", ENV_RCPT_SENT, 0, NULL);
    add(&env, "d@example.net", ENV_RCPT_PENDING, 0, "451 4.2.0 busy");
    assert_false(dsn_wanted(&failed_info, &env));
    assert_int_equal(dsn_build(&failed_info, &env, original, strlen(original), &out), 0);
    assert_int_equal(out.len, 4);
    /* a default of NEVER silences recipients without NOTIFY */
    add(&env, "e@example.net", ENV_RCPT_FAILED, 0, "550 5.1.1 no");
    assert_true(dsn_wanted(&failed_info, &env));
    struct dsn_info never = failed_info;
    never.default_notify = NOTIFY_NEVER;
    assert_false(dsn_wanted(&never, &env));
    envelope_free(&env);
    buf_free(&out);
}

static void test_delayed(void **state)
{
    (void)state;
    struct envelope env;
    struct dsn_info info = {
        .hostname = HOST, .kind = DSN_DELAYED, .now = NOW, .retry_until = NOW + 86400};
    base_env(&env);
    add(&env, "a@example.net", ENV_RCPT_PENDING, 0, "451 4.2.0 mailbox busy");
    struct env_rcpt *untried = envelope_add_rcpt(&env, "b@example.net", NULL, NULL);
    untried->notify = NOTIFY_DELAY;
    add(&env, "c@example.net", ENV_RCPT_FAILED, NOTIFY_DELAY | NOTIFY_FAILURE, "550 5.1.1 no");

    /* default NOTIFY is FAILURE only; untried and failed recipients are no delays */
    assert_false(dsn_wanted(&info, &env));
    info.default_notify = NOTIFY_FAILURE | NOTIFY_DELAY;
    assert_true(dsn_wanted(&info, &env));

    struct buf out = {0};
    struct dsn d;
    char v[256];
    assert_int_equal(dsn_build(&info, &env, original, strlen(original), &out), 1);
    parse_dsn(&out, &d);
    field(&d.top, "Subject", v, sizeof(v));
    assert_string_equal(v, "Delayed Mail (still being retried)");
    assert_true(contains(&d.parts[0], "Sun, 07 Apr 2024 10:40:00 +0000"));
    assert_int_equal(d.ngroups, 2);
    group_field(&d, 1, "Final-Recipient", "rfc822;a@example.net");
    group_field(&d, 1, "Action", "delayed");
    group_field(&d, 1, "Status", "4.2.0");
    group_field(&d, 1, "Will-Retry-Until", "Sun, 07 Apr 2024 10:40:00 +0000");
    field(&d.parts[2], "Content-Description", v, sizeof(v));
    assert_string_equal(v, "Delayed Message");

    /* an explicit NOTIFY=DELAY works without the default; a 5xx text still says 4.x.x */
    info.default_notify = 0;
    envelope_rcpt_result(&env.rcpts[1], ENV_RCPT_PENDING, NOW, "550 5.7.1 odd");
    out.len = 0;
    assert_int_equal(dsn_build(&info, &env, original, strlen(original), &out), 1);
    parse_dsn(&out, &d);
    group_field(&d, 1, "Final-Recipient", "rfc822;b@example.net");
    group_field(&d, 1, "Status", "4.0.0");

    /* once warned, never again */
    env.delay_warned = true;
    assert_false(dsn_wanted(&info, &env));
    out.len = 0;
    assert_int_equal(dsn_build(&info, &env, original, strlen(original), &out), 0);
    buf_free(&out);
    envelope_free(&env);
}

static void test_hostile_text(void **state)
{
    (void)state;
    struct envelope env;
    base_env(&env);
    char err[3000];
    /* controls, CRLF injection of a field, long text of words */
    int n = snprintf(err, sizeof(err),
                     "550 5.7.1 bad\r\nAction: delivered\r\n\x01\x1b[31m\tthing\x7f ");
    while (n < 2000)
        n += snprintf(err + n, sizeof(err) - (size_t)n, "word%d ", n);
    add(&env, "bob@example.net", ENV_RCPT_FAILED, 0, err);
    /* one very long word */
    char word[2100];
    memset(word, 'x', sizeof(word) - 1);
    word[sizeof(word) - 1] = '\0';
    add(&env, "carol@example.net", ENV_RCPT_FAILED, 0, word);
    /* high octets in an ASCII report become '?' */
    add(&env, "dave@example.net", ENV_RCPT_FAILED, 0, "550 5.1.1 caf\xc3\xa9 \xff");

    struct buf out = {0};
    struct dsn d;
    char v[2000];
    assert_int_equal(dsn_build(&failed_info, &env, original, strlen(original), &out), 3);
    parse_dsn(&out, &d); /* CRLF only, every line <= 998 */
    assert_int_equal(d.ngroups, 4);
    group_field(&d, 1, "Action", "failed"); /* the injected field did not take */
    header_get(d.groups[1].p, d.groups[1].len, "Diagnostic-Code", v, sizeof(v));
    const char *head = "smtp; 550 5.7.1 bad Action: delivered [31m thing word";
    assert_memory_equal(v, head, strlen(head));
    assert_true(strlen(v) <= DSN_ERROR_MAX + 6);
    for (const char *p = v; *p; p++)
        assert_true((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);
    /* the delivery-status part is folded under 78 columns except the long word */
    size_t col = 0, longest = 0;
    for (size_t i = 0; i < d.parts[1].len; i++) {
        if (d.parts[1].p[i] == '\r')
            col = 0;
        else if (d.parts[1].p[i] != '\n' && ++col > longest)
            longest = col;
    }
    assert_true(longest <= 998);
    header_get(d.groups[2].p, d.groups[2].len, "Diagnostic-Code", v, sizeof(v));
    assert_int_equal(strlen(v), strlen("x-tern; ") + DSN_ERROR_MAX);
    group_field(&d, 3, "Diagnostic-Code", "smtp; 550 5.1.1 caf?? ?");
    buf_free(&out);
    envelope_free(&env);
}

static void test_utf8(void **state)
{
    (void)state;
    struct envelope env;
    base_env(&env);
    env.smtputf8 = true;
    add(&env, "d\xc3\xa9@example.net", ENV_RCPT_FAILED, 0, "550 5.1.1 caf\xc3\xa9 ferm\xc3\xa9");
    struct buf out = {0};
    struct dsn d;
    char v[256];
    assert_int_equal(dsn_build(&failed_info, &env, original, strlen(original), &out), 1);
    parse_dsn(&out, &d);
    field(&d.top, "Content-Type", v, sizeof(v));
    assert_non_null(strstr(v, "report-type=global-delivery-status"));
    field(&d.parts[0], "Content-Type", v, sizeof(v));
    assert_string_equal(v, "text/plain; charset=utf-8");
    field(&d.parts[1], "Content-Type", v, sizeof(v));
    assert_string_equal(v, "message/global-delivery-status");
    group_field(&d, 1, "Final-Recipient", "utf-8;d\xc3\xa9@example.net");
    group_field(&d, 1, "Diagnostic-Code", "smtp; 550 5.1.1 caf\xc3\xa9 ferm\xc3\xa9");
    buf_free(&out);
    envelope_free(&env);
}

static void test_status_code(void **state)
{
    (void)state;
    static const char *const cases[][3] = {
        {"550 5.1.1 no such user", "5.0.0", "5.1.1"},
        {"550-5.7.26 unauthenticated", "5.0.0", "5.7.26"},
        {"452 4.2.2 mailbox full", "5.0.0", "4.2.2"},
        {"4.4.7 expired", "5.0.0", "4.4.7"},
        {"554 transaction failed", "4.0.0", "5.0.0"},
        {"550 4.1.1 mismatched classes", "4.0.0", "5.0.0"},
        {"550 5.1234.1 too many digits", "4.0.0", "5.0.0"},
        {"550 5.1.1234", "4.0.0", "5.0.0"},
        {"5.1.1", "4.0.0", "5.1.1"},
        {"no code at all", "5.0.0", "5.0.0"},
        {"", "4.0.0", "4.0.0"},
        {"250 2.0.0 ok", "5.0.0", "2.0.0"},
        {"999 9.9.9", "5.0.0", "5.0.0"},
    };
    char out[16];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        dsn_status_code(cases[i][0], cases[i][1], out, sizeof(out));
        if (strcmp(out, cases[i][2]) != 0)
            fail_msg("\"%s\": got %s, want %s", cases[i][0], out, cases[i][2]);
    }
    assert_string_equal(dsn_status_code(NULL, "4.0.0", out, sizeof(out)), "4.0.0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failed),       cmocka_unit_test(test_headers_only),
        cmocka_unit_test(test_no_dsn),       cmocka_unit_test(test_delayed),
        cmocka_unit_test(test_hostile_text), cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_status_code),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
