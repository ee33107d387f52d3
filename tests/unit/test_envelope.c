/*
 * test_envelope.c - unit tests for queue/envelope.c: the text format round
 * trip (every field, escaped values), what the file looks like, INCOMPLETE
 * for every cut-short prefix, CORRUPT for each kind of damage (with the line
 * number in the reason), what envelope_format() refuses, and the helpers;
 * version 2 (msg-size, msg-crc32c) beside version 1.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/envelope.h"

static void full_envelope(struct envelope *env)
{
    envelope_init(env);
    strcpy(env->id, "1712345678-0000002a-9f3a0c1d2e3b4a5f");
    envelope_set(&env->sender, "alice@example.org");
    env->created = 1712345678;
    env->next_attempt = 1712349999;
    env->ret = RET_HDRS;
    envelope_set(&env->envid, "QQ+2B314");
    env->smtputf8 = true;
    env->eightbitmime = true;
    envelope_set(&env->helo, "client.example.org");
    envelope_set(&env->peer, "[2001:db8::1]:40000");
    envelope_set(&env->auth_user, "alice");
    env->delay_warned = true;

    struct env_rcpt *r =
        envelope_add_rcpt(env, "bob@example.net", "info@example.net", "maildir:/home/bob/Maildir");
    envelope_set(&r->orcpt, "rfc822;info@example.net");
    r->notify = NOTIFY_FAILURE | NOTIFY_DELAY;
    envelope_rcpt_result(r, ENV_RCPT_PENDING, 1712345700, "451 4.2.0 mailbox busy");

    r = envelope_add_rcpt(env, "carol@example.net", NULL, "pipe:/usr/bin/x --y");
    r->notify = NOTIFY_NEVER;
    /* every awkward octet: controls, the escape char, spaces at the ends, UTF-8 */
    envelope_rcpt_result(r, ENV_RCPT_FAILED, 1712345800,
                         " 550 5.1.1 no\r\nsuch\tuser 100% \x01\x7f gr\xc3\xbc\xc3\x9f ");

    r = envelope_add_rcpt(env, "d\xc3\xa9@example.net", NULL, "smtp");
    r->status = ENV_RCPT_SENT;
    r->notify = NOTIFY_SUCCESS;
}

static void parse_ok(const char *text, size_t len, struct envelope *out)
{
    char why[256];
    int rc = envelope_parse(text, len, out, why, sizeof(why));
    if (rc != ENV_OK)
        fail_msg("parse failed (%d): %s\n%.*s", rc, why, (int)len, text);
}

static void test_round_trip(void **state)
{
    (void)state;
    struct envelope a, b;
    struct buf text = {0}, again = {0};
    full_envelope(&a);
    assert_int_equal(envelope_format(&a, &text), 0);
    parse_ok(text.p, text.len, &b);
    assert_true(envelope_equal(&a, &b));
    assert_string_equal(b.rcpts[1].error,
                        " 550 5.1.1 no\r\nsuch\tuser 100% \x01\x7f gr\xc3\xbc\xc3\x9f ");
    assert_int_equal(b.rcpts[0].attempts, 1);
    assert_int_equal(b.rcpts[1].last_attempt, 1712345800);
    /* formatting is deterministic */
    assert_int_equal(envelope_format(&b, &again), 0);
    assert_int_equal(again.len, text.len);
    assert_memory_equal(again.p, text.p, text.len);
    envelope_free(&a);
    envelope_free(&b);
    buf_free(&text);
    buf_free(&again);
}

static bool has_line(const struct buf *b, const char *line)
{
    char want[512];
    snprintf(want, sizeof(want), "\n%s\n", line);
    return memmem(b->p, b->len, want, strlen(want)) != NULL;
}

static void test_text_looks_right(void **state)
{
    (void)state;
    struct envelope a;
    struct buf text = {0};
    full_envelope(&a);
    assert_int_equal(envelope_format(&a, &text), 0);
    assert_true(text.len > 20);
    assert_memory_equal(text.p, "tern-envelope 1\n", 16);
    assert_memory_equal(text.p + text.len - 5, "\nend\n", 5);
    assert_true(has_line(&text, "id 1712345678-0000002a-9f3a0c1d2e3b4a5f"));
    assert_true(has_line(&text, "sender <alice@example.org>"));
    assert_true(has_line(&text, "ret hdrs"));
    assert_true(has_line(&text, "rcpt bob@example.net"));
    assert_true(has_line(&text, "notify failure,delay"));
    assert_true(has_line(&text, "notify never"));
    assert_true(has_line(&text, "status failed"));
    assert_true(has_line(&text, "target pipe:/usr/bin/x --y"));
    assert_true(has_line(
        &text, "error %20550 5.1.1 no%0D%0Asuch%09user 100%25 %01%7F gr\xc3\xbc\xc3\x9f%20"));
    /* no raw control character except the line ends */
    for (size_t i = 0; i < text.len; i++) {
        unsigned char c = (unsigned char)text.p[i];
        assert_true(c == '\n' || (c >= 0x20 && c != 0x7f));
    }
    /* the null sender */
    envelope_set(&a.sender, "");
    text.len = 0;
    assert_int_equal(envelope_format(&a, &text), 0);
    assert_true(has_line(&text, "sender <>"));
    struct envelope b;
    parse_ok(text.p, text.len, &b);
    assert_string_equal(b.sender, "");
    envelope_free(&b);
    envelope_free(&a);
    buf_free(&text);
}

#define HEAD "tern-envelope 1\nid abc\ncreated 5\nsender <a@b>\n"
#define HEAD2 "tern-envelope 2\nid abc\ncreated 5\nsender <a@b>\n"

/* Version 2: the message's size and checksum; version 1 is still read (and
 * written back as version 1 while no checksum is known). */
static void test_version2(void **state)
{
    (void)state;
    struct envelope a, b;
    struct buf text = {0};
    full_envelope(&a);
    a.msg_sum = true;
    a.msg_size = 123456789012ull;
    a.msg_crc = 0x0a1b2c3du;
    assert_int_equal(envelope_format(&a, &text), 0);
    assert_memory_equal(text.p, "tern-envelope 2\n", 16);
    assert_true(has_line(&text, "msg-size 123456789012"));
    assert_true(has_line(&text, "msg-crc32c 0a1b2c3d"));
    parse_ok(text.p, text.len, &b);
    assert_int_equal(b.version, 2);
    assert_true(b.msg_sum);
    assert_true(envelope_equal(&a, &b));
    envelope_free(&b);
    /* every proper prefix is INCOMPLETE, and says it is version 2 once line 1 is there */
    for (size_t n = 0; n < text.len; n++) {
        assert_int_equal(envelope_parse(text.p, n, &b, NULL, 0), ENV_INCOMPLETE);
        assert_int_equal(b.version, n >= 16 ? 2 : 0);
        envelope_free(&b);
    }
    /* a different checksum is a different envelope; upper case hex reads the same */
    b.msg_crc = 0;
    const char *t = HEAD2 "msg-size 7\nmsg-crc32c ABCDEF01\nrcpt x@y\nend\n";
    parse_ok(t, strlen(t), &b);
    assert_int_equal(b.msg_size, 7);
    assert_int_equal(b.msg_crc, 0xabcdef01u);
    assert_false(envelope_equal(&a, &b));
    envelope_free(&b);
    /* format refuses a size the parser would refuse */
    a.msg_size = ENV_MSG_SIZE_MAX + 1;
    text.len = 0;
    assert_int_equal(envelope_format(&a, &text), -1);
    envelope_free(&a);

    /* version 1 still parses, has no checksum and formats as version 1 */
    t = HEAD "rcpt x@y\nend\n";
    parse_ok(t, strlen(t), &a);
    assert_int_equal(a.version, 1);
    assert_false(a.msg_sum);
    text.len = 0;
    assert_int_equal(envelope_format(&a, &text), 0);
    assert_memory_equal(text.p, "tern-envelope 1\n", 16);
    assert_false(has_line(&text, "msg-size 0"));
    envelope_free(&a);
    buf_free(&text);
}

static void test_minimal(void **state)
{
    (void)state;
    const char *t = "tern-envelope 1\n"
                    "id abc\n"
                    "created 5\n"
                    "sender <>\n"
                    "rcpt x@y\n"
                    "end\n";
    struct envelope e;
    parse_ok(t, strlen(t), &e);
    assert_string_equal(e.id, "abc");
    assert_int_equal(e.created, 5);
    assert_int_equal(e.next_attempt, 0);
    assert_int_equal(e.ret, RET_NONE);
    assert_int_equal(e.nrcpt, 1);
    assert_string_equal(e.rcpts[0].addr, "x@y");
    assert_string_equal(e.rcpts[0].orig, "");
    assert_int_equal(e.rcpts[0].status, ENV_RCPT_PENDING);
    assert_int_equal(e.rcpts[0].notify, 0);
    envelope_free(&e);
}

/* Every proper prefix of a valid file is INCOMPLETE: a crash during the write. */
static void test_every_prefix_incomplete(void **state)
{
    (void)state;
    struct envelope a, b;
    struct buf text = {0};
    full_envelope(&a);
    assert_int_equal(envelope_format(&a, &text), 0);
    for (size_t n = 0; n < text.len; n++) {
        char why[128];
        int rc = envelope_parse(text.p, n, &b, why, sizeof(why));
        if (rc != ENV_INCOMPLETE)
            fail_msg("prefix of %zu octets: %d (%s)", n, rc, why);
        assert_non_null(strstr(why, "line "));
        envelope_free(&b);
    }
    assert_int_equal(envelope_parse(text.p, text.len, &b, NULL, 0), ENV_OK);
    envelope_free(&b);
    envelope_free(&a);
    buf_free(&text);
}

struct bad_case {
    const char *text;
    int result;
    const char *why; /* substring of the reason */
};

static const struct bad_case bad_cases[] = {
    {"garbage\n", ENV_CORRUPT, "line 1: not a tern envelope"},
    {"garbage", ENV_CORRUPT, "line 1"},
    {"\0\0\0\0", ENV_CORRUPT, "line 1"},
    {"tern-envelope 3\nid abc\nend\n", ENV_CORRUPT, "unsupported envelope version 3"},
    {"tern-envelope 0\nid abc\nend\n", ENV_CORRUPT, "unsupported envelope version 0"},
    {"tern-envelope 2\nid abc\nend\n", ENV_CORRUPT, "no created line"},
    {HEAD "msg-size 5\nrcpt x@y\nend\n", ENV_CORRUPT, "line 5: msg-size in a version 1"},
    {HEAD "msg-crc32c 00000000\nrcpt x@y\nend\n", ENV_CORRUPT, "msg-crc32c in a version 1"},
    {HEAD2 "rcpt x@y\nend\n", ENV_CORRUPT, "no msg-size or msg-crc32c line"},
    {HEAD2 "msg-size 5\nrcpt x@y\nend\n", ENV_CORRUPT, "no msg-size or msg-crc32c line"},
    {HEAD2 "msg-crc32c 0000000a\nrcpt x@y\nend\n", ENV_CORRUPT, "no msg-size or msg-crc32c"},
    {HEAD2 "msg-size x\n", ENV_CORRUPT, "msg-size: not a size"},
    {HEAD2 "msg-size 1099511627777\n", ENV_CORRUPT, "msg-size: not a size"},
    {HEAD2 "msg-crc32c 123\n", ENV_CORRUPT, "msg-crc32c: expected 8 hexadecimal digits"},
    {HEAD2 "msg-crc32c 1234567g\n", ENV_CORRUPT, "msg-crc32c: expected 8"},
    {HEAD2 "msg-size 5\nmsg-size 5\n", ENV_CORRUPT, "msg-size given twice"},
    {HEAD2 "rcpt x@y\nmsg-size 5\n", ENV_CORRUPT, "msg-size after the first rcpt"},
    {HEAD2 "msg-size 5\nmsg-crc32c 0000000a\nrcpt x@y\n", ENV_INCOMPLETE, "cut short"},
    {"tern-envelope 2", ENV_INCOMPLETE, "cut short"},
    {"tern-envelope x\n", ENV_CORRUPT, "version"},
    {"tern-env", ENV_INCOMPLETE, "cut short"},
    {HEAD "rcpt x@y\nfoo bar\nend\n", ENV_CORRUPT, "line 6: unknown key \"foo\""},
    {HEAD "rcpt x@y\nend\nid x\n", ENV_CORRUPT, "line 7: data after the end line"},
    {HEAD "rcpt x@y\nend\n\n", ENV_CORRUPT, "data after the end line"},
    {HEAD "rcpt x@y\nerror a\rb\nend\n", ENV_CORRUPT, "line 6: raw control character 0x0d"},
    {HEAD "rcpt x@y\nerror a\tb\nend\n", ENV_CORRUPT, "raw control character 0x09"},
    {HEAD "rcpt x@y\nerror a%00b\nend\n", ENV_CORRUPT, "NUL"},
    {HEAD "rcpt x@y\nerror a%4\nend\n", ENV_CORRUPT, "escape"},
    {HEAD "rcpt x@y\nerror a%zz\nend\n", ENV_CORRUPT, "escape"},
    {HEAD "rcpt x@y\nstatus done\nend\n", ENV_CORRUPT, "status"},
    {HEAD "rcpt x@y\nstatus sent\nstatus sent\nend\n", ENV_CORRUPT, "line 7: status given twice"},
    {HEAD "id def\nrcpt x@y\nend\n", ENV_CORRUPT, "id given twice"},
    {HEAD "rcpt x@y\nhelo h\nend\n", ENV_CORRUPT, "helo after the first rcpt"},
    {"tern-envelope 1\nstatus sent\nend\n", ENV_CORRUPT, "status before any rcpt"},
    {"tern-envelope 1\nid a/b\nend\n", ENV_CORRUPT, "id"},
    {"tern-envelope 1\nid ..\nend\n", ENV_CORRUPT, "id"},
    {"tern-envelope 1\ncreated 5\nsender <>\nrcpt x@y\nend\n", ENV_CORRUPT, "no id line"},
    {"tern-envelope 1\nid a\nsender <>\nrcpt x@y\nend\n", ENV_CORRUPT, "no created line"},
    {"tern-envelope 1\nid a\ncreated 1\nrcpt x@y\nend\n", ENV_CORRUPT, "no sender line"},
    {HEAD "end\n", ENV_CORRUPT, "no rcpt"},
    {HEAD "rcpt\nend\n", ENV_CORRUPT, "rcpt: empty address"},
    {"tern-envelope 1\nid abc\ncreated -5\n", ENV_CORRUPT, "created: not a time"},
    {"tern-envelope 1\nid abc\ncreated 999999999999999\n", ENV_CORRUPT, "created"},
    {"tern-envelope 1\nid abc\nsender a@b\n", ENV_CORRUPT, "sender: expected"},
    {"tern-envelope 1\nid abc\nsmtputf8 maybe\n", ENV_CORRUPT, "smtputf8: expected yes or no"},
    {"tern-envelope 1\nid abc\nret some\n", ENV_CORRUPT, "ret: expected"},
    {HEAD "rcpt x@y\nnotify never,delay\n", ENV_CORRUPT, "notify"},
    {HEAD "rcpt x@y\nnotify delay,delay\n", ENV_CORRUPT, "notify"},
    {HEAD "rcpt x@y\nnotify delay,\n", ENV_CORRUPT, "notify"},
    {HEAD "rcpt x@y\nattempts 1000001\n", ENV_CORRUPT, "attempts"},
    {HEAD "rcpt x@y\nerror 451 busy\n", ENV_INCOMPLETE, "line 7: cut short"},
    {HEAD "rcpt x@y\nend", ENV_INCOMPLETE, "cut short"},
    {"", ENV_INCOMPLETE, "cut short"},
};

static void test_bad(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *c = &bad_cases[i];
        /* the NUL case has embedded NULs: its length is fixed */
        size_t len = c->text[0] == '\0' && c->result == ENV_CORRUPT ? 4 : strlen(c->text);
        struct envelope e;
        char why[256] = "";
        int rc = envelope_parse(c->text, len, &e, why, sizeof(why));
        if (rc != c->result || !strstr(why, c->why))
            fail_msg("case %zu: got %d \"%s\", want %d \"%s\"", i, rc, why, c->result, c->why);
        envelope_free(&e);
    }
}

static void test_value_limit(void **state)
{
    (void)state;
    struct envelope a, b;
    struct buf text = {0};
    full_envelope(&a);
    char *big = malloc(ENV_VALUE_MAX + 2);
    assert_non_null(big);
    memset(big, '%', ENV_VALUE_MAX); /* the worst case: every octet escaped */
    big[ENV_VALUE_MAX] = '\0';
    envelope_set(&a.helo, big);
    assert_int_equal(envelope_format(&a, &text), 0);
    parse_ok(text.p, text.len, &b);
    assert_string_equal(b.helo, big);
    envelope_free(&b);

    big[ENV_VALUE_MAX] = 'x';
    big[ENV_VALUE_MAX + 1] = '\0';
    envelope_set(&a.helo, big);
    size_t before = text.len;
    assert_int_equal(envelope_format(&a, &text), -1);
    assert_int_equal(text.len, before); /* untouched */

    /* a hand-written over-long value is refused too */
    memset(big, 'a', ENV_VALUE_MAX + 1);
    struct buf t2 = {0};
    const char *h = HEAD "rcpt x@y\nerror ";
    buf_append(&t2, h, strlen(h));
    buf_append(&t2, big, strlen(big));
    buf_append(&t2, "\nend\n", 5);
    char why[128];
    assert_int_equal(envelope_parse(t2.p, t2.len, &b, why, sizeof(why)), ENV_CORRUPT);
    assert_non_null(strstr(why, "value longer than"));
    envelope_free(&b);

    /* envelope_rcpt_result() truncates, at a UTF-8 boundary */
    memset(big, 'a', ENV_VALUE_MAX - 1);
    memcpy(big + ENV_VALUE_MAX - 1, "\xc3\xbc", 3); /* "ü" straddles the limit */
    envelope_rcpt_result(&a.rcpts[0], ENV_RCPT_FAILED, 7, big);
    assert_int_equal(strlen(a.rcpts[0].error), ENV_VALUE_MAX - 1);
    envelope_set(&a.helo, "h");
    text.len = 0;
    assert_int_equal(envelope_format(&a, &text), 0);

    free(big);
    buf_free(&t2);
    buf_free(&text);
    envelope_free(&a);
}

static void test_format_refuses(void **state)
{
    (void)state;
    struct envelope a;
    struct buf text = {0};

    full_envelope(&a);
    strcpy(a.id, "../etc");
    assert_int_equal(envelope_format(&a, &text), -1);
    strcpy(a.id, "");
    assert_int_equal(envelope_format(&a, &text), -1);
    strcpy(a.id, "-x");
    assert_int_equal(envelope_format(&a, &text), -1);
    strcpy(a.id, "ok_1-2");
    assert_int_equal(envelope_format(&a, &text), 0);
    text.len = 0;

    a.created = -1;
    assert_int_equal(envelope_format(&a, &text), -1);
    a.created = 1;
    a.rcpts[0].notify = NOTIFY_NEVER | NOTIFY_DELAY;
    assert_int_equal(envelope_format(&a, &text), -1);
    a.rcpts[0].notify = 0;
    envelope_set(&a.rcpts[0].addr, "");
    assert_int_equal(envelope_format(&a, &text), -1);
    assert_int_equal(text.len, 0);
    envelope_free(&a);

    envelope_init(&a); /* no recipient */
    strcpy(a.id, "abc");
    assert_int_equal(envelope_format(&a, &text), -1);
    envelope_free(&a);
    buf_free(&text);
}

static void test_helpers(void **state)
{
    (void)state;
    struct envelope a;
    full_envelope(&a);
    assert_int_equal(envelope_count(&a, ENV_RCPT_PENDING), 1);
    assert_int_equal(envelope_count(&a, ENV_RCPT_FAILED), 1);
    assert_int_equal(envelope_count(&a, ENV_RCPT_SENT), 1);
    struct env_rcpt *r = &a.rcpts[0];
    envelope_rcpt_result(r, ENV_RCPT_SENT, 99, NULL);
    assert_int_equal(r->attempts, 2);
    assert_int_equal(r->last_attempt, 99);
    assert_string_equal(r->error, "");
    assert_int_equal(envelope_count(&a, ENV_RCPT_SENT), 2);
    /* many recipients: the array grows */
    for (int i = 0; i < 1000; i++) {
        char addr[32];
        snprintf(addr, sizeof(addr), "u%d@example.com", i);
        envelope_add_rcpt(&a, addr, NULL, NULL);
    }
    assert_int_equal(a.nrcpt, 1003);
    assert_string_equal(a.rcpts[1002].addr, "u999@example.com");
    assert_true(envelope_id_valid("A-b_9"));
    assert_false(envelope_id_valid("a.b"));
    assert_false(envelope_id_valid("_a"));
    assert_false(
        envelope_id_valid("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
    assert_string_equal(envelope_status_name(ENV_RCPT_FAILED), "failed");
    envelope_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_text_looks_right),
        cmocka_unit_test(test_minimal),
        cmocka_unit_test(test_version2),
        cmocka_unit_test(test_every_prefix_incomplete),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_value_limit),
        cmocka_unit_test(test_format_refuses),
        cmocka_unit_test(test_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
