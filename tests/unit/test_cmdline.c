/*
 * test_cmdline.c - command lines split without a shell and filled in with
 * envelope values (deliver/cmdline.c): quoting, escapes, errors with their
 * position, limits, and substitution that never adds a word or an option.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "deliver/cmdline.h"

static int split(const char *s, struct cmdline *c, struct cmdline_error *e)
{
    return cmdline_split(s, strlen(s), c, e);
}

static void assert_words(const struct cmdline *c, int n, ...)
{
    va_list ap;
    assert_int_equal(c->argc, n);
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        assert_string_equal(c->argv[i], va_arg(ap, const char *));
    va_end(ap);
    assert_null(c->argv[n]);
}

static void test_words(void **state)
{
    (void)state;
    struct cmdline c;
    struct cmdline_error e;
    assert_int_equal(split("/usr/bin/procmail -d %to_user%", &c, &e), 0);
    assert_words(&c, 3, "/usr/bin/procmail", "-d", "%to_user%");
    assert_int_equal(split("  \t a  \tb\t ", &c, &e), 0);
    assert_words(&c, 2, "a", "b");
    /* shell syntax is just characters here */
    assert_int_equal(split("/bin/echo $HOME `id` ; | > * ~ &", &c, &e), 0);
    assert_words(&c, 9, "/bin/echo", "$HOME", "`id`", ";", "|", ">", "*", "~", "&");
}

static void test_quotes(void **state)
{
    (void)state;
    struct cmdline c;
    struct cmdline_error e;
    assert_int_equal(split("prog 'a b' \"c d\" e'f g'h \"\" ''", &c, &e), 0);
    assert_words(&c, 6, "prog", "a b", "c d", "ef gh", "", "");
    assert_int_equal(split("prog 'it\"s' \"it's\" '\\n'", &c, &e), 0);
    assert_words(&c, 4, "prog", "it\"s", "it's", "\\n");
    /* backslash outside single quotes escapes the next octet, whatever it is */
    assert_int_equal(split("prog a\\ b \\' \\\\ \"x\\\"y\\z\"", &c, &e), 0);
    assert_words(&c, 5, "prog", "a b", "'", "\\", "x\"yz");
    /* UTF-8 is just octets */
    assert_int_equal(split("prog caf\xc3\xa9", &c, &e), 0);
    assert_words(&c, 2, "prog", "caf\xc3\xa9");
}

static void test_errors(void **state)
{
    (void)state;
    struct cmdline c;
    struct cmdline_error e;
    char buf[128];

    assert_int_equal(split("prog 'abc", &c, &e), -1);
    assert_int_equal(e.code, CMDLINE_ESYNTAX);
    assert_int_equal(e.pos, 5);
    assert_int_equal(c.argc, 0);
    cmdline_error_format(&e, buf, sizeof(buf));
    assert_string_equal(buf, "column 6: unterminated single quote");

    assert_int_equal(split("prog \"a'b", &c, &e), -1);
    assert_int_equal(e.pos, 5);
    assert_string_equal(e.what, "unterminated double quote");

    assert_int_equal(split("prog abc\\", &c, &e), -1);
    assert_int_equal(e.pos, 8);
    assert_string_equal(e.what, "backslash at the end of the line");

    assert_int_equal(split("prog a\nb", &c, &e), -1);
    assert_int_equal(e.pos, 6);
    assert_string_equal(e.what, "control character");
    assert_int_equal(split("prog 'a\tb'", &c, &e), -1); /* tab only separates */
    assert_int_equal(e.pos, 7);
    assert_int_equal(split("prog a\\\rb", &c, &e), -1);
    assert_int_equal(e.code, CMDLINE_ESYNTAX);
    assert_int_equal(cmdline_split("prog a\0b", 8, &c, &e), -1);
    assert_int_equal(e.pos, 6);

    assert_int_equal(split("", &c, &e), -1);
    assert_string_equal(e.what, "empty command");
    assert_int_equal(split("  \t ", &c, &e), -1);
    assert_int_equal(split("''", &c, &e), 0);            /* one empty word: split accepts... */
    assert_int_equal(cmdline_check_program(&c, &e), -1); /* ...the program check does not */
    assert_int_equal(e.code, CMDLINE_EPROGRAM);
}

static void test_limits(void **state)
{
    (void)state;
    struct cmdline c;
    struct cmdline_error e;
    char line[CMDLINE_MAX_LEN + 2];
    size_t n = 0;

    for (int i = 0; i < CMDLINE_MAX_WORDS; i++)
        n += (size_t)snprintf(line + n, sizeof(line) - n, "w ");
    assert_int_equal(cmdline_split(line, n, &c, &e), 0);
    assert_int_equal(c.argc, CMDLINE_MAX_WORDS);
    n += (size_t)snprintf(line + n, sizeof(line) - n, "x");
    assert_int_equal(cmdline_split(line, n, &c, &e), -1);
    assert_int_equal(e.code, CMDLINE_ELIMIT);
    assert_int_equal(e.pos, 2 * CMDLINE_MAX_WORDS);

    memset(line, 'a', CMDLINE_MAX_LEN);
    assert_int_equal(cmdline_split(line, CMDLINE_MAX_LEN, &c, &e), 0);
    assert_int_equal(strlen(c.argv[0]), CMDLINE_MAX_LEN);
    line[CMDLINE_MAX_LEN] = 'a';
    assert_int_equal(cmdline_split(line, CMDLINE_MAX_LEN + 1, &c, &e), -1);
    assert_int_equal(e.code, CMDLINE_ELIMIT);
}

static const struct courier_vars vars = {
    .from = "alice@example.org",
    .to = "bob@example.com",
    .to_user = "bob",
    .to_domain = "example.com",
    .orig_to = "postmaster@example.com",
};

static void test_expand(void **state)
{
    (void)state;
    struct cmdline t, c;
    struct cmdline_error e;

    assert_int_equal(split("/usr/lib/dovecot/dovecot-lda -f %from% -a %to% --orig=%orig_to% "
                           "%to_user%@%to_domain% date +%Y%m%d %to %foo% %%",
                           &t, &e),
                     0);
    assert_int_equal(cmdline_expand(&t, &vars, &c, &e), 0);
    /* unknown placeholders, a lone '%' and "%%" are kept as written */
    assert_words(&c, 12, "/usr/lib/dovecot/dovecot-lda", "-f", "alice@example.org", "-a",
                 "bob@example.com", "--orig=postmaster@example.com", "bob@example.com", "date",
                 "+%Y%m%d", "%to", "%foo%", "%%");

    /* NULL vars and NULL members are "" */
    assert_int_equal(split("/bin/prog x%from%y", &t, &e), 0);
    assert_int_equal(cmdline_expand(&t, NULL, &c, &e), 0);
    assert_words(&c, 2, "/bin/prog", "xy");
}

static void test_expand_never_splits(void **state)
{
    (void)state;
    struct cmdline t, c;
    struct cmdline_error e;
    struct courier_vars v = vars;

    /* a quoted local part with spaces and shell characters stays one word */
    v.from = "\"a b; rm -rf / `x` $(y) 'z'\"@example.org";
    v.to_user = "\"x -y\"";
    assert_int_equal(split("procmail -f %from% -d %to_user%", &t, &e), 0);
    assert_int_equal(cmdline_expand(&t, &v, &c, &e), 0);
    assert_words(&c, 5, "procmail", "-f", v.from, "-d", v.to_user);
    /* a value that looks like a placeholder is not substituted again */
    v.from = "%to%";
    assert_int_equal(cmdline_expand(&t, &v, &c, &e), 0);
    assert_string_equal(c.argv[2], "%to%");
}

static void test_expand_refusals(void **state)
{
    (void)state;
    struct cmdline t, c;
    struct cmdline_error e;
    struct courier_vars v = vars;
    char buf[128];

    assert_int_equal(split("/usr/bin/procmail -d %to_user%", &t, &e), 0);
    v.to_user = "-oQ/tmp/x";
    assert_int_equal(cmdline_expand(&t, &v, &c, &e), -1);
    assert_int_equal(e.code, CMDLINE_EVALUE);
    assert_string_equal(e.var, "%to_user%");
    assert_int_equal(e.word, 2);
    assert_int_equal(c.argc, 0);
    cmdline_error_format(&e, buf, sizeof(buf));
    assert_string_equal(buf, "%to_user% in word 3: the value starts with '-'");
    /* also inside a word, where it could not be an option: refused all the same */
    assert_int_equal(split("/usr/bin/procmail --user=%to_user%", &t, &e), 0);
    assert_int_equal(cmdline_expand(&t, &v, &c, &e), -1);
    /* a value that is not used is not checked */
    assert_int_equal(split("/usr/bin/procmail -d %to%", &t, &e), 0);
    assert_int_equal(cmdline_expand(&t, &v, &c, &e), 0);

    v = vars;
    v.to = "bob@example.com\r\nX: y";
    assert_int_equal(cmdline_expand(&t, &v, &c, &e), -1);
    assert_int_equal(e.code, CMDLINE_EVALUE);
    assert_string_equal(e.what, "the value has a control character");
    v.to = "bob\x7f@example.com";
    assert_int_equal(cmdline_expand(&t, &v, &c, &e), -1);

    /* the program word never takes a placeholder, and is never relative */
    assert_int_equal(split("%to_user% -x", &t, &e), 0);
    assert_int_equal(cmdline_expand(&t, &vars, &c, &e), -1);
    assert_int_equal(e.code, CMDLINE_EPROGRAM);
    assert_int_equal(split("/usr/lib/%to_domain%/lda", &t, &e), 0);
    assert_int_equal(cmdline_check_program(&t, &e), -1);
    assert_int_equal(split("bin/lda", &t, &e), 0);
    assert_int_equal(cmdline_check_program(&t, &e), -1);
    assert_int_equal(split("procmail", &t, &e), 0);
    assert_int_equal(cmdline_check_program(&t, &e), 0);
    assert_int_equal(split("/usr/bin/procmail", &t, &e), 0);
    assert_int_equal(cmdline_check_program(&t, &e), 0);
}

static void test_expand_limit(void **state)
{
    (void)state;
    struct cmdline t, c;
    struct cmdline_error e;
    char line[CMDLINE_MAX_LEN];
    char big[300];
    struct courier_vars v = vars;
    size_t n = (size_t)snprintf(line, sizeof(line), "/bin/prog");

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    v.to = big;
    for (int i = 0; i < 20; i++)
        n += (size_t)snprintf(line + n, sizeof(line) - n, " %%to%%");
    assert_int_equal(cmdline_split(line, n, &t, &e), 0);
    assert_int_equal(cmdline_expand(&t, &v, &c, &e), -1); /* 20 * 299 > 4096 */
    assert_int_equal(e.code, CMDLINE_ELIMIT);
    assert_int_equal(c.argc, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_words),           cmocka_unit_test(test_quotes),
        cmocka_unit_test(test_errors),          cmocka_unit_test(test_limits),
        cmocka_unit_test(test_expand),          cmocka_unit_test(test_expand_never_splits),
        cmocka_unit_test(test_expand_refusals), cmocka_unit_test(test_expand_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
