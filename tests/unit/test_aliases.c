/*
 * test_aliases.c - aliases files and recipient resolution (conf/aliases.c, deliver/route.c)
 * over local domains loaded from a mkdtemp data_dir (conf/policy.c):
 * several targets, whole pipe commands, catch-all, drop characters and
 * suffixes, the depth limit, loops, unknown users, relay-unsafe forms,
 * and the AUTH / sender rules of the policy.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../support/testutil.h"
#include "conf/aliases.h"
#include "conf/config.h"
#include "conf/policy.h"
#include "conf/users.h"
#include "deliver/route.h"

#define HASH "$y$j9T$vHWZ5pvAKAXJDIjJdjR0Y0$X1mxaEAkl8MVZv00M6miHuaUMV0XE1TbqMRtElz/en2"

struct fixture {
    char dir[64];
    struct conf conf;
    struct policy policy;
};

static void write_file(const char *dir, const char *rel, const char *text)
{
    char path[512];
    tu_write_file(tu_join(path, sizeof(path), dir, rel), text, 0666);
}

static void make_dir(const char *dir, const char *rel)
{
    char path[512];
    assert_int_equal(mkdir(tu_join(path, sizeof(path), dir, rel), 0700), 0);
}

static const char example_aliases[] =
    "# aliases of example.org\n"
    "list: bob, carol@other.org, dave@remote.net\n"
    "prog: | /usr/bin/filter --to x, y, z\n"
    "mixed: alice, |/bin/cat -n\n"
    "Post.Master: bob\n"
    "keep: bob, keep\n"
    "bob: bob, bob@backup.net\n"
    "loop1: loop2\n"
    "loop2: loop3\n"
    "loop3: loop1\n"
    "half: loop1, alice\n"
    "ghost: nobody\n"
    "d0: d1\nd1: d2\nd2: d3\nd3: d4\nd4: d5\nd5: d6\nd6: d7\nd7: d8\nd8: d9\nd9: d10\n"
    "d10: d11\nd11: alice\n"
    "w0: w1, w1, w1, w1\nw1: w2, w2, w2, w2\nw2: w3, w3, w3, w3\nw3: w4, w4, w4, w4\n"
    "w4: w5, w5, w5, w5\nw5: w6, w6, w6, w6\nw6: w7, w7, w7, w7\nw7: w8, w8, w8, w8\n"
    "w8: w9, w9, w9, w9\nw9: alice\n";

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct conf_errors e = {0};
    char text[256];

    if (!f)
        return -1;
    if (!tu_tmpdir(f->dir, sizeof(f->dir), "tern-aliases"))
        return -1;
    make_dir(f->dir, "domains");
    make_dir(f->dir, "domains/example.org");
    make_dir(f->dir, "domains/other.org");
    write_file(f->dir, "domains/example.org/users",
               "bob:" HASH "\nalice:" HASH "\nfirstlast:" HASH "\n");
    write_file(f->dir, "domains/example.org/aliases", example_aliases);
    write_file(f->dir, "domains/other.org/users", "carol:" HASH "\n");
    write_file(f->dir, "domains/other.org/aliases", "*: carol\n");
    snprintf(text, sizeof(text), "[server]\nhostname = mx.example.org\ndata_dir = %s\n", f->dir);
    if (conf_parse_string(text, strlen(text), "t.conf", NULL, &f->conf, &e) < 0)
        return -1;
    if (policy_load(&f->conf, &f->policy, &e) < 0) {
        for (size_t i = 0; i < e.n; i++)
            fprintf(stderr, "%s\n", e.v[i]);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    policy_free(&f->policy);
    if (tu_rmtree(f->dir) != 0)
        return -1;
    free(f);
    return 0;
}

static const struct route_target *find(const struct route_result *r, enum route_kind k,
                                       const char *value)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->v[i].kind == k && strcmp(r->v[i].value, value) == 0)
            return &r->v[i];
    return NULL;
}

static bool has_note(const struct route_result *r, const char *part)
{
    for (size_t i = 0; i < r->n_notes; i++)
        if (strstr(r->notes[i], part))
            return true;
    return false;
}

static void test_multi_targets(void **state)
{
    struct fixture *f = *state;
    struct route_result r;

    /* bob is also an alias ("bob: bob, bob@backup.net"): followed, and bob keeps a copy */
    assert_int_equal(route_resolve_str(&f->policy, "list@example.org", &r), ROUTE_OK);
    assert_int_equal(r.n, 4);
    assert_string_equal(find(&r, ROUTE_REMOTE, "bob@backup.net")->chain,
                        "list@example.org -> bob@example.org -> bob@backup.net");
    const struct route_target *t = find(&r, ROUTE_LOCAL, "bob@example.org");
    assert_non_null(t);
    assert_string_equal(t->user, "bob");
    assert_string_equal(t->domain, "example.org");
    assert_string_equal(t->chain, "list@example.org -> bob@example.org");
    /* a target in another local domain goes through that domain (catch-all there) */
    t = find(&r, ROUTE_LOCAL, "carol@other.org");
    assert_non_null(t);
    t = find(&r, ROUTE_REMOTE, "dave@remote.net");
    assert_non_null(t);
    assert_string_equal(t->chain, "list@example.org -> dave@remote.net");
    assert_string_equal(r.original, "list@example.org");
    route_result_free(&r);

    /* a user is final */
    assert_int_equal(route_resolve_str(&f->policy, "<alice@EXAMPLE.org>", &r), ROUTE_OK);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.v[0].value, "alice@example.org");
    assert_string_equal(r.v[0].chain, "alice@example.org");
    route_result_free(&r);
}

static void test_pipe_kept_whole(void **state)
{
    struct fixture *f = *state;
    struct route_result r;

    assert_int_equal(route_resolve_str(&f->policy, "prog@example.org", &r), ROUTE_OK);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.v[0].kind, ROUTE_PIPE);
    assert_string_equal(r.v[0].value, "/usr/bin/filter --to x, y, z");
    assert_string_equal(r.v[0].user, "prog");
    assert_string_equal(r.v[0].domain, "example.org");
    route_result_free(&r);

    assert_int_equal(route_resolve_str(&f->policy, "mixed@example.org", &r), ROUTE_OK);
    assert_int_equal(r.n, 2);
    assert_non_null(find(&r, ROUTE_LOCAL, "alice@example.org"));
    assert_non_null(find(&r, ROUTE_PIPE, "/bin/cat -n"));
    route_result_free(&r);
}

static void test_catchall_and_unknown(void **state)
{
    struct fixture *f = *state;
    struct route_result r;

    /* other.org has a catch-all */
    assert_int_equal(route_resolve_str(&f->policy, "anyone@other.org", &r), ROUTE_OK);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.v[0].value, "carol@other.org");
    assert_string_equal(r.v[0].chain, "anyone@other.org -> carol@other.org");
    route_result_free(&r);

    /* example.org has none */
    assert_int_equal(route_resolve_str(&f->policy, "nobody@example.org", &r), ROUTE_UNKNOWN);
    assert_int_equal(r.n, 0);
    route_result_free(&r);

    /* an alias to an unknown name: unknown, and the note says how it was reached */
    assert_int_equal(route_resolve_str(&f->policy, "ghost@example.org", &r), ROUTE_UNKNOWN);
    assert_true(has_note(&r, "unknown user nobody@example.org (reached by ghost@example.org)"));
    route_result_free(&r);
}

static void test_drop_chars_and_suffixes(void **state)
{
    struct fixture *f = *state;
    struct route_result r;
    char key[USERS_NAME_MAX + 1];

    alias_key("First.Last+tag", ".", "+", key);
    assert_string_equal(key, "firstlast");
    alias_key("+tag", ".", "+", key); /* nothing before the separator: kept whole */
    assert_string_equal(key, "+tag");
    alias_key("a-b_c", "-_", "", key);
    assert_string_equal(key, "abc");

    assert_int_equal(route_resolve_str(&f->policy, "First.Last+news@example.org", &r), ROUTE_OK);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.v[0].value, "firstlast@example.org");
    route_result_free(&r);

    assert_int_equal(route_resolve_str(&f->policy, "BOB+x@example.org", &r), ROUTE_OK);
    assert_non_null(find(&r, ROUTE_LOCAL, "bob@example.org"));
    route_result_free(&r);

    /* an alias name with a drop character matches without it, in any case */
    assert_int_equal(route_resolve_str(&f->policy, "postmaster@example.org", &r), ROUTE_OK);
    assert_non_null(find(&r, ROUTE_LOCAL, "bob@example.org"));
    route_result_free(&r);
    assert_int_equal(route_resolve_str(&f->policy, "p.o.s.t.m.a.s.t.e.r+x@example.org", &r),
                     ROUTE_OK);
    route_result_free(&r);
}

static void test_self_reference_and_loops(void **state)
{
    struct fixture *f = *state;
    struct route_result r;

    /* "bob: bob, bob@backup.net": the user keeps a copy, no loop reported */
    assert_int_equal(route_resolve_str(&f->policy, "bob@example.org", &r), ROUTE_OK);
    assert_int_equal(r.n, 2);
    assert_non_null(find(&r, ROUTE_LOCAL, "bob@example.org"));
    assert_non_null(find(&r, ROUTE_REMOTE, "bob@backup.net"));
    assert_int_equal(r.n_notes, 0);
    route_result_free(&r);

    /* a loop of aliases that are not users: reported, and it terminates */
    assert_int_equal(route_resolve_str(&f->policy, "loop1@example.org", &r), ROUTE_ELOOP);
    assert_int_equal(r.n, 0);
    assert_true(has_note(&r, "alias loop: loop1@example.org -> loop2@example.org -> "
                             "loop3@example.org -> loop1@example.org"));
    route_result_free(&r);

    /* a loop in one branch does not stop the others */
    assert_int_equal(route_resolve_str(&f->policy, "half@example.org", &r), ROUTE_OK);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.v[0].value, "alice@example.org");
    assert_true(has_note(&r, "alias loop"));
    route_result_free(&r);

    /* an alias naming itself that is not a user (keep: bob, keep) */
    assert_int_equal(route_resolve_str(&f->policy, "keep@example.org", &r), ROUTE_OK);
    assert_int_equal(r.n, 2); /* bob and bob@backup.net through bob's alias */
    assert_true(has_note(&r, "alias loop: keep@example.org -> keep@example.org"));
    route_result_free(&r);
}

static void test_depth_and_width_limits(void **state)
{
    struct fixture *f = *state;
    struct route_result r;

    /* d2 -> ... -> d11 -> alice: 10 expansions, the limit */
    assert_int_equal(route_resolve_str(&f->policy, "d2@example.org", &r), ROUTE_OK);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.v[0].value, "alice@example.org");
    route_result_free(&r);
    /* d0 needs 12: refused with a note */
    assert_int_equal(route_resolve_str(&f->policy, "d0@example.org", &r), ROUTE_ELOOP);
    assert_true(has_note(&r, "alias expansion deeper than 10 levels"));
    route_result_free(&r);

    /* 4^9 paths to one user: bounded work, one result */
    assert_int_equal(route_resolve_str(&f->policy, "w0@example.org", &r), ROUTE_OK);
    assert_int_equal(r.n, 1);
    assert_true(has_note(&r, "addresses looked at"));
    route_result_free(&r);
}

static void test_remote_and_relay_safety(void **state)
{
    struct fixture *f = *state;
    struct route_result r;
    struct mailaddr a;

    assert_int_equal(route_resolve_str(&f->policy, "x@Remote.NET", &r), ROUTE_NOT_LOCAL);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.v[0].kind, ROUTE_REMOTE);
    assert_string_equal(r.v[0].value, "x@remote.net");
    route_result_free(&r);

    assert_int_equal(route_resolve_str(&f->policy, "a%b@remote.net", &r), ROUTE_EUNSAFE);
    assert_int_equal(r.n, 0);
    route_result_free(&r);
    assert_int_equal(route_resolve_str(&f->policy, "host!user@remote.net", &r), ROUTE_EUNSAFE);
    route_result_free(&r);
    assert_int_equal(route_resolve_str(&f->policy, "\"a@b\"@remote.net", &r), ROUTE_EUNSAFE);
    route_result_free(&r);
    assert_int_equal(route_resolve_str(&f->policy, "<@hop.net:user@remote.net>", &r),
                     ROUTE_EUNSAFE);
    route_result_free(&r);
    assert_int_equal(route_resolve_str(&f->policy, "<user@[192.0.2.1]>", &r), ROUTE_NOT_LOCAL);
    route_result_free(&r);
    assert_int_equal(route_resolve_str(&f->policy, "not an address", &r), ROUTE_EINVALID);
    route_result_free(&r);

    /* in a local domain these forms are just unknown names, never forwarded */
    assert_int_equal(route_resolve_str(&f->policy, "bob%remote.net@example.org", &r),
                     ROUTE_UNKNOWN);
    route_result_free(&r);

    assert_int_equal(addr_parse_mailbox("a.b@c.d", 7, 0, &a), 0);
    assert_true(route_relay_safe(&a));
    assert_int_equal(addr_parse_mailbox("\"a b\"@c.d", 9, 0, &a), 0);
    assert_true(route_relay_safe(&a)); /* quoted, but no '@' inside */
}

static void test_parse_errors(void **state)
{
    (void)state;
    struct aliases a;
    struct conf_errors e = {0};
    const char *text = "# comment\n"              /* 1 */
                       "good: bob\n"              /* 2 */
                       "no colon\n"               /* 3 */
                       "bad/name: bob\n"          /* 4 */
                       "empty: bob,, carol\n"     /* 5 */
                       "trailing: bob,\n"         /* 6 */
                       "addr: bob@\n"             /* 7 */
                       "relative: | bin/prog\n"   /* 8 */
                       "nocmd: bob, |   \n"       /* 9 */
                       "GOOD: carol\n"            /* 10 */
                       "none:\n"                  /* 11 */
                       "sp ace: bob\n"            /* 12 */
                       "*: postmaster\n"          /* 13 */
                       "pipe: | /bin/x a,b, c\n"; /* 14 */
    assert_int_equal(aliases_parse(text, strlen(text), "aliases", &a, &e), -1);
    for (size_t i = 0; i < e.n; i++)
        fprintf(stderr, "  %s\n", e.v[i]);
    assert_int_equal(e.n, 10);
    assert_string_equal(e.v[0], "aliases:3: expected 'name: target, target, ...'");
    assert_true(strncmp(e.v[1], "aliases:4: 'bad/name' is not a valid alias name", 46) == 0);
    assert_true(strncmp(e.v[2], "aliases:5: alias 'empty': empty target", 38) == 0);
    assert_string_equal(e.v[3], "aliases:6: alias 'trailing': comma at the end of the line");
    assert_true(strncmp(e.v[4], "aliases:7: alias 'addr': target 'bob@'", 38) == 0);
    assert_string_equal(
        e.v[5], "aliases:8: alias 'relative': pipe command must start with an absolute path");
    assert_string_equal(e.v[6], "aliases:9: alias 'nocmd': empty pipe command");
    assert_string_equal(e.v[7], "aliases:10: alias 'GOOD' is defined twice (first on line 2)");
    assert_string_equal(e.v[8], "aliases:11: alias 'none' has no target");
    assert_true(strncmp(e.v[9], "aliases:12: 'sp ace' is not a valid alias name", 46) == 0);
    /* the good lines are kept, the bad ones dropped whole */
    assert_int_equal(a.n, 3);
    assert_string_equal(a.v[0].name, "good");
    assert_string_equal(a.v[1].name, "*");
    assert_string_equal(a.v[2].t[0].s, "/bin/x a,b, c");
    aliases_free(&a);
    conf_errors_free(&e);
}

static void test_policy_problems(void **state)
{
    (void)state;
    char dir[64], text[256];
    struct conf c;
    struct policy p;
    struct conf_errors e = {0};

    assert_non_null(tu_tmpdir(dir, sizeof(dir), "tern-policy"));
    make_dir(dir, "domains");
    make_dir(dir, "domains/Example.org");
    make_dir(dir, "domains/bad_domain!");
    write_file(dir, "domains/stray-file", "x");
    write_file(dir, "domains/Example.org/users",
               "first.last:" HASH "\nfirstlast:" HASH "\nbob+x:" HASH "\n");
    write_file(dir, "domains/Example.org/aliases", "a.b: bob\nab: bob\n");
    snprintf(text, sizeof(text), "[server]\nhostname = mx.example.org\ndata_dir = %s\n", dir);
    assert_int_equal(conf_parse_string(text, strlen(text), "t.conf", NULL, &c, &e), 0);
    assert_int_equal(policy_load(&c, &p, &e), -1);
    for (size_t i = 0; i < e.n; i++)
        fprintf(stderr, "  %s\n", e.v[i]);
    assert_int_equal(e.n, 5);
    bool dup_user = false, sep = false, dup_alias = false, bad_dom = false, stray = false;
    for (size_t i = 0; i < e.n; i++) {
        dup_user |= strstr(e.v[i], "/users:2: user 'firstlast' is the same address as "
                                   "'first.last' (line 1)") != NULL;
        sep |= strstr(e.v[i], "/users:3: user 'bob+x' can never receive mail") != NULL;
        dup_alias |= strstr(e.v[i], "/aliases:2: alias 'ab' is the same address as 'a.b'") != NULL;
        bad_dom |= strstr(e.v[i], "is not a valid domain name") != NULL;
        stray |= strstr(e.v[i], "stray-file: not a folder") != NULL;
    }
    assert_true(dup_user && sep && dup_alias && bad_dom && stray);
    /* the domain is still there, in lower case */
    assert_int_equal(p.n, 1);
    assert_non_null(policy_domain(&p, "EXAMPLE.ORG"));
    policy_free(&p);
    conf_errors_free(&e);
    assert_int_equal(tu_rmtree(dir), 0);
}

static void test_auth_and_senders(void **state)
{
    struct fixture *f = *state;
    struct mailaddr from;
    char dir[64], path[256], why[256];
    struct users u;
    struct aliases a = {0};
    struct policy p;
    struct conf_errors e = {0};

    /* a policy built by hand with a real password */
    assert_non_null(tu_tmpdir(dir, sizeof(dir), "tern-auth"));
    snprintf(path, sizeof(path), "%s/users", dir);
    assert_int_equal(users_add(path, "john.doe", "pw1", false, why, sizeof(why)), 0);
    assert_int_equal(users_load(path, &u, &e), 0);
    policy_init(&p, &f->conf);
    assert_int_equal(policy_add(&p, "Example.COM", dir, &u, &a, path, "aliases", &e), 0);
    assert_true(policy_auth(&p, "john.doe@example.com", "pw1"));
    assert_true(policy_auth(&p, "JohnDoe@Example.Com", "pw1")); /* drop chars, case */
    assert_false(policy_auth(&p, "john.doe@example.com", "pw2"));
    assert_false(policy_auth(&p, "jane@example.com", "pw1"));
    assert_false(policy_auth(&p, "john.doe@example.net", "pw1"));
    assert_false(policy_auth(&p, "john.doe", "pw1"));

    assert_int_equal(addr_parse_mailbox("john@example.com", 16, 0, &from), 0);
    assert_true(policy_sender_allowed(&p, "john.doe@example.com", &from));
    assert_int_equal(addr_parse_mailbox("john@example.net", 16, 0, &from), 0);
    assert_false(policy_sender_allowed(&p, "john.doe@example.com", &from));
    p.senders_must_match = false;
    assert_true(policy_sender_allowed(&p, "john.doe@example.com", &from));
    p.senders_must_match = true;
    from.is_null = true;
    assert_true(policy_sender_allowed(&p, "john.doe@example.com", &from));
    policy_free(&p);
    conf_errors_free(&e);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_multi_targets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipe_kept_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_catchall_and_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_chars_and_suffixes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_self_reference_and_loops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_depth_and_width_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remote_and_relay_safety, setup, teardown),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_policy_problems),
        cmocka_unit_test_setup_teardown(test_auth_and_senders, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
