/*
 * test_users.c - users files (server/users.c): yescrypt hashes, the
 * add / check / remove round trip in a mkdtemp folder, atomic rewrites
 * that keep comments, and problems reported by line.
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

#include "../support/testutil.h"
#include "conf/users.h"

struct fixture {
    char dir[64];
    char path[128];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    if (!tu_tmpdir(f->dir, sizeof(f->dir), "tern-users"))
        return -1;
    snprintf(f->path, sizeof(f->path), "%s/users", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    tu_rmtree(f->dir);
    free(f);
    return 0;
}

static void test_round_trip(void **state)
{
    struct fixture *f = *state;
    struct users u;
    struct conf_errors e = {0};
    char why[512];

    assert_int_equal(users_add(f->path, "Bob", "s3cret pass", false, why, sizeof(why)), 0);
    assert_int_equal(users_load(f->path, &u, &e), 0);
    assert_int_equal(u.n, 1);
    assert_string_equal(u.v[0].name, "bob"); /* written in lower case */
    assert_true(strncmp(u.v[0].hash, "$y$", 3) == 0);
    assert_true(users_check(&u, "bob", "s3cret pass"));
    assert_true(users_check(&u, "BOB", "s3cret pass"));
    assert_false(users_check(&u, "bob", "s3cret pas"));
    assert_false(users_check(&u, "bob", ""));
    assert_false(users_check(&u, "alice", "s3cret pass"));
    users_free(&u);

    /* a second add is refused; with replace the hash changes in place */
    assert_int_equal(users_add(f->path, "bob", "other", false, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "already exists"));
    assert_int_equal(users_add(f->path, "alice", "pw-a", false, why, sizeof(why)), 0);
    assert_int_equal(users_add(f->path, "bob", "new pw", true, why, sizeof(why)), 0);
    assert_int_equal(users_load(f->path, &u, &e), 0);
    assert_int_equal(u.n, 2);
    assert_string_equal(u.v[0].name, "bob");
    assert_true(users_check(&u, "bob", "new pw"));
    assert_false(users_check(&u, "bob", "s3cret pass"));
    assert_true(users_check(&u, "alice", "pw-a"));
    users_free(&u);

    assert_int_equal(users_remove(f->path, "BOB", why, sizeof(why)), 0);
    assert_int_equal(users_remove(f->path, "bob", why, sizeof(why)), -1);
    assert_non_null(strstr(why, "no user 'bob'"));
    assert_int_equal(users_load(f->path, &u, &e), 0);
    assert_int_equal(u.n, 1);
    assert_null(users_find(&u, "bob"));
    assert_false(users_check(&u, "bob", "new pw"));
    users_free(&u);
    assert_int_equal(tu_count_entries(f->dir, NULL, 0), 1); /* no temporary file left behind */
    conf_errors_free(&e);
}

static void test_rewrite_keeps_comments_atomically(void **state)
{
    struct fixture *f = *state;
    char why[512], hash[256];
    struct stat before, after;

    assert_int_equal(users_hash("x", hash, sizeof(hash)), 0);
    char text[1024];
    snprintf(text, sizeof(text),
             "# users of example.org\n"
             "\n"
             "carol:%s\n"
             "   # indented comment\n"
             "dave:%s", /* no final newline */
             hash, hash);
    tu_write_file(f->path, text, 0666);
    assert_int_equal(chmod(f->path, 0600), 0);
    assert_int_equal(stat(f->path, &before), 0);

    assert_int_equal(users_add(f->path, "erin", "pw", false, why, sizeof(why)), 0);
    assert_int_equal(stat(f->path, &after), 0);
    assert_true(before.st_ino != after.st_ino); /* replaced by rename, not edited in place */
    assert_int_equal(after.st_mode & 07777, 0600);
    char *now = tu_slurp(f->path, NULL);
    assert_true(strncmp(now, text, strlen(text)) == 0); /* everything before is untouched */
    assert_true(strncmp(now + strlen(text), "\nerin:$y$", 9) == 0);

    assert_int_equal(users_remove(f->path, "carol", why, sizeof(why)), 0);
    free(now);
    now = tu_slurp(f->path, NULL);
    assert_non_null(strstr(now, "# users of example.org\n\n   # indented comment\ndave:"));
    assert_null(strstr(now, "carol"));
    assert_non_null(strstr(now, "erin:$y$"));
    free(now);
    assert_int_equal(tu_count_entries(f->dir, NULL, 0), 1);
}

static void test_parse_errors(void **state)
{
    struct fixture *f = *state;
    struct users u;
    struct conf_errors e = {0};
    char why[512];
    const char *text =
        "# comment\n"
        "bob:$y$j9T$vHWZ5pvAKAXJDIjJdjR0Y0$X1mxaEAkl8MVZv00M6miHuaUMV0XE1TbqMRtElz/en2\n"
        "no colon here\n"
        "bad/name:$y$j9T$vHWZ5pvAKAXJDIjJdjR0Y0$X1mxaEAkl8MVZv00M6miHuaUMV0XE1TbqMRtElz/en2\n"
        "carol:plaintext\n"
        "BOB:$y$j9T$vHWZ5pvAKAXJDIjJdjR0Y0$X1mxaEAkl8MVZv00M6miHuaUMV0XE1TbqMRtElz/en2\n"
        ".dot:$y$j9T$vHWZ5pvAKAXJDIjJdjR0Y0$X1mxaEAkl8MVZv00M6miHuaUMV0XE1TbqMRtElz/en2\n";
    assert_int_equal(users_parse(text, strlen(text), "users", &u, &e), -1);
    assert_int_equal(e.n, 5);
    assert_string_equal(e.v[0], "users:3: expected 'user:HASH'");
    assert_true(strncmp(e.v[1], "users:4: 'bad/name' is not a valid user name", 44) == 0);
    assert_true(strncmp(e.v[2], "users:5: user 'carol': not a crypt(3) password hash", 51) == 0);
    assert_string_equal(e.v[3], "users:6: user 'BOB' is listed twice (first on line 2)");
    assert_true(strncmp(e.v[4], "users:7: '.dot' is not a valid user name", 40) == 0);
    assert_int_equal(u.n, 1); /* the good line is kept */
    users_free(&u);
    conf_errors_free(&e);

    /* a file with problems is never rewritten */
    tu_write_file(f->path, text, 0666);
    assert_int_equal(users_add(f->path, "erin", "pw", false, why, sizeof(why)), -1);
    assert_non_null(strstr(why, ":3: expected 'user:HASH'"));
    char *now = tu_slurp(f->path, NULL);
    assert_string_equal(now, text);
    free(now);

    /* a missing file is an empty set */
    char missing[256];
    snprintf(missing, sizeof(missing), "%s/nope", f->dir);
    assert_int_equal(users_load(missing, &u, &e), 0);
    assert_int_equal(u.n, 0);
    assert_int_equal(e.n, 0);
}

static void test_names_and_passwords(void **state)
{
    struct fixture *f = *state;
    char why[512], big[USERS_PASSWORD_MAX + 2];

    assert_true(users_name_ok("bob"));
    assert_true(users_name_ok("first.last"));
    assert_true(users_name_ok("a-b_c=d+e~f'g&h"));
    assert_false(users_name_ok(""));
    assert_false(users_name_ok(".bob"));
    assert_false(users_name_ok("bob."));
    assert_false(users_name_ok("a..b"));
    assert_false(users_name_ok("a/b"));
    assert_false(users_name_ok("a%b"));
    assert_false(users_name_ok("a!b"));
    assert_false(users_name_ok("a@b"));
    assert_false(users_name_ok("a b"));
    assert_false(users_name_ok("*"));
    assert_false(users_name_ok("caf\xc3\xa9"));
    memset(big, 'a', 65);
    big[65] = '\0';
    assert_false(users_name_ok(big));

    assert_int_equal(users_add(f->path, "a b", "pw", false, why, sizeof(why)), -1);
    assert_int_equal(users_add(f->path, "ok", "", false, why, sizeof(why)), -1);
    assert_int_equal(users_add(f->path, "ok", "two\nlines", false, why, sizeof(why)), -1);
    memset(big, 'p', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(users_add(f->path, "ok", big, false, why, sizeof(why)), -1);
    assert_int_equal(tu_count_entries(f->dir, NULL, 0), 0); /* nothing was created */

    /* two hashes of one password differ (random salt) and both verify */
    char h1[256], h2[256];
    assert_int_equal(users_hash("same", h1, sizeof(h1)), 0);
    assert_int_equal(users_hash("same", h2, sizeof(h2)), 0);
    assert_string_not_equal(h1, h2);
    assert_int_equal(users_hash("same", h1, 10), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rewrite_keeps_comments_atomically, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names_and_passwords, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
