/*
 * test_disk.c - `tern sink --store DIR` (src/sink/disk.c): the envelope
 * parser, a save/load round trip, removal into spares that later messages
 * write over (same inode), and the limits applied at load.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sink/disk.h"
#include "sink/store.h"

static char *dup_str(const char *s)
{
    char *d = strdup(s);
    assert_non_null(d);
    return d;
}

static struct sink_msg *new_msg(const char *subject, const char *rcpt2)
{
    struct sink_msg *m = calloc(1, sizeof(*m));
    char raw[256];
    assert_non_null(m);
    int n =
        snprintf(raw, sizeof(raw), "Subject: %s\r\nTo: <p@example.com>\r\n\r\nbody\r\n", subject);
    m->raw = malloc((size_t)n);
    assert_non_null(m->raw);
    memcpy(m->raw, raw, (size_t)n);
    m->size = (size_t)n;
    m->received_ms = 1700000000123;
    m->mail_from = dup_str("a@example.com");
    m->nrcpt = rcpt2 ? 2 : 1;
    m->rcpts = calloc(2, sizeof(char *));
    assert_non_null(m->rcpts);
    m->rcpts[0] = dup_str("p@example.com");
    if (rcpt2)
        m->rcpts[1] = dup_str(rcpt2);
    m->subject = dup_str(subject);
    m->hdr_from = dup_str("");
    m->hdr_to = dup_str("<p@example.com>");
    m->helo = dup_str("client.test");
    m->peer = dup_str("127.0.0.1:1234");
    m->auth_user = dup_str("ann");
    m->tls = true;
    return m;
}

static void test_parse(void **state)
{
    (void)state;
    const char *why = "";
    const char *ok = "{\"id\":5,\"received_ms\":42,\"from\":\"\",\"to\":[\"x@y\"],\"tls\":false}";
    char *raw = dup_str("Subject: s\r\n\r\n");
    struct sink_msg *m = disk_msg_parse(ok, strlen(ok), 5, raw, strlen(raw), &why);
    assert_non_null(m);
    assert_int_equal(m->received_ms, 42);
    assert_string_equal(m->subject, "s");
    assert_string_equal(m->helo, "");
    assert_int_equal(m->nrcpt, 1);
    assert_string_equal(m->rcpts[0], "x@y");
    store_msg_free(m);

    const char *bad[] = {"",
                         "{",
                         "[]",
                         "{\"id\":6,\"received_ms\":1,\"from\":\"\",\"to\":[]}",
                         "{\"id\":5,\"received_ms\":\"1\",\"from\":\"\",\"to\":[]}",
                         "{\"id\":5,\"received_ms\":1,\"to\":[]}",
                         "{\"id\":5,\"received_ms\":1,\"from\":\"\",\"to\":[1]}",
                         "{\"id\":5,\"id\":5,\"received_ms\":1,\"from\":\"\",\"to\":[]}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        raw = dup_str("x");
        why = "";
        assert_null(disk_msg_parse(bad[i], strlen(bad[i]), 5, raw, 1, &why));
        assert_true(why[0] != '\0');
        free(raw);
    }
}

static char dir[64];

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/tern-test-disk-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    DIR *dh = opendir(dir);
    struct dirent *de;
    char p[400];
    while (dh && (de = readdir(dh))) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
        unlink(p);
    }
    if (dh)
        closedir(dh);
    return rmdir(dir);
}

static ino_t inode_of(const char *name)
{
    char p[128];
    struct stat sb;
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return stat(p, &sb) == 0 ? sb.st_ino : 0;
}

static void test_round_trip_and_spares(void **state)
{
    (void)state;
    char why[256];
    struct sink_store st;
    struct sink_disk *d = disk_open(dir, why, sizeof(why));
    assert_non_null(d);
    store_init(&st, 10, 0);
    assert_int_equal(disk_load(d, &st), 0);
    st.on_remove = disk_remove;
    st.remove_ctx = d;
    for (int i = 0; i < 3; i++) {
        char subj[16];
        snprintf(subj, sizeof(subj), "m%d", i);
        struct sink_msg *m = store_add(&st, new_msg(subj, i == 1 ? "q@example.com" : NULL));
        assert_int_equal(disk_save(d, m), 0);
    }
    ino_t gone = inode_of("2.eml");
    assert_true(gone != 0);
    assert_int_equal(store_delete(&st, 2), 0);
    assert_int_equal(inode_of("2.eml"), 0);
    assert_int_equal(inode_of("2.json"), 0);
    struct sink_msg *m = store_add(&st, new_msg("m3", NULL));
    assert_int_equal(m->id, 4);
    assert_int_equal(disk_save(d, m), 0);
    assert_true(inode_of("4.eml") == gone || inode_of("4.json") == gone); /* a spare reused */
    st.on_remove = NULL;
    store_clear(&st);
    disk_close(d);

    /* a new process: ids 1, 3, 4 with their envelopes; new ids after 4 */
    d = disk_open(dir, why, sizeof(why));
    assert_non_null(d);
    store_init(&st, 10, 0);
    assert_int_equal(disk_load(d, &st), 3);
    assert_int_equal(st.newest->id, 4);
    assert_int_equal(st.oldest->id, 1);
    assert_null(store_get(&st, 2));
    assert_int_equal(st.received, 0);
    assert_int_equal(st.next_id, 5);
    struct sink_msg *one = store_get(&st, 1);
    assert_non_null(one);
    assert_string_equal(one->subject, "m0");
    assert_string_equal(one->auth_user, "ann");
    assert_string_equal(one->peer, "127.0.0.1:1234");
    assert_true(one->tls);
    assert_int_equal(one->received_ms, 1700000000123);
    store_clear(&st);
    disk_close(d);

    /* limits at load: the newest one only; the older files are removed */
    d = disk_open(dir, why, sizeof(why));
    store_init(&st, 1, 0);
    assert_int_equal(disk_load(d, &st), 1);
    assert_int_equal(st.newest->id, 4);
    assert_int_equal(inode_of("1.json"), 0);
    assert_int_equal(inode_of("3.eml"), 0);
    store_clear(&st);
    disk_close(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test_setup_teardown(test_round_trip_and_spares, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
