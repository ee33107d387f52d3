/*
 * test_csv.c - unit tests for send/csv.c: RFC 4180 quoting (commas, doubled
 * quotes, newlines inside quotes) with the right start line for every row,
 * BOM, empty lines, CRLF / LF / CR files, rows with missing or extra fields,
 * header errors (duplicate or empty names) and malformed quoting, each
 * reported as "FILE:LINE: what"; csv_load() from a real file, including a
 * CRLF split across its read blocks.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "send/csv.h"

static int parse(const char *text, struct csv_table *t, char *why, size_t whysize)
{
    return csv_table_parse("list.csv", text, strlen(text), t, why, whysize);
}

static void test_basic(void **state)
{
    (void)state;
    struct csv_table t;
    char why[256];

    assert_int_equal(parse("email,name\na@x.org,Ann\nb@x.org,Bob\n", &t, why, sizeof(why)), 0);
    assert_string_equal(t.name, "list.csv");
    assert_int_equal(t.ncols, 2);
    assert_string_equal(t.cols[0], "email");
    assert_string_equal(t.cols[1], "name");
    assert_int_equal(t.nrows, 2);
    assert_int_equal(t.rows[0].line, 2);
    assert_string_equal(t.rows[0].fields[0], "a@x.org");
    assert_string_equal(t.rows[0].fields[1], "Ann");
    assert_int_equal(t.rows[1].line, 3);
    assert_string_equal(t.rows[1].fields[1], "Bob");
    assert_false(t.rows[1].bad_fields);
    assert_int_equal(csv_col(&t, "name"), 1);
    assert_int_equal(csv_col(&t, "nope"), -1);
    csv_table_free(&t);
    csv_table_free(&t); /* harmless twice */
}

static void test_quotes(void **state)
{
    (void)state;
    struct csv_table t;
    char why[256];
    const char *text = "email,note\n"
                       "a@x.org,\"one, two\"\n"            /* line 2 */
                       "b@x.org,\"say \"\"hi\"\"\"\n"      /* line 3 */
                       "c@x.org,\"line1\nline2\nline3\"\n" /* lines 4-6 */
                       "d@x.org,\"\"\n"                    /* line 7 */
                       "e@x.org,\"x\r\ny\"\r\n"            /* lines 8-9 */
                       "f@x.org, spaced \n";               /* line 10 */

    assert_int_equal(parse(text, &t, why, sizeof(why)), 0);
    assert_int_equal(t.nrows, 6);
    assert_string_equal(t.rows[0].fields[1], "one, two");
    assert_int_equal(t.rows[0].line, 2);
    assert_string_equal(t.rows[1].fields[1], "say \"hi\"");
    assert_int_equal(t.rows[1].line, 3);
    assert_string_equal(t.rows[2].fields[1], "line1\nline2\nline3");
    assert_int_equal(t.rows[2].line, 4);
    assert_string_equal(t.rows[3].fields[1], "");
    assert_int_equal(t.rows[3].line, 7);
    assert_string_equal(t.rows[4].fields[1], "x\r\ny");
    assert_int_equal(t.rows[4].line, 8);
    assert_string_equal(t.rows[5].fields[1], " spaced "); /* spaces are data */
    assert_int_equal(t.rows[5].line, 10);
    csv_table_free(&t);
}

static void test_bom_empty_lines_endings(void **state)
{
    (void)state;
    struct csv_table t;
    char why[256];

    /* BOM, CRLF, empty lines (also at the start and the end), no final line break */
    const char *crlf = "\xEF\xBB\xBF\r\n email , name \r\n\r\na@x.org,Ann\r\n\r\n\r\n"
                       "b@x.org,Bob";
    assert_int_equal(parse(crlf, &t, why, sizeof(why)), 0);
    assert_string_equal(t.cols[0], "email"); /* names trimmed, BOM gone */
    assert_string_equal(t.cols[1], "name");
    assert_int_equal(t.nrows, 2);
    assert_int_equal(t.rows[0].line, 4);
    assert_int_equal(t.rows[1].line, 7);
    assert_string_equal(t.rows[1].fields[1], "Bob");
    csv_table_free(&t);

    /* LF and old-Mac CR */
    assert_int_equal(parse("email\n\na@x.org\n", &t, why, sizeof(why)), 0);
    assert_int_equal(t.nrows, 1);
    assert_int_equal(t.rows[0].line, 3);
    csv_table_free(&t);
    assert_int_equal(parse("email\r\ra@x.org\rb@x.org\r", &t, why, sizeof(why)), 0);
    assert_int_equal(t.nrows, 2);
    assert_int_equal(t.rows[0].line, 3);
    assert_int_equal(t.rows[1].line, 4);
    csv_table_free(&t);

    /* header only */
    assert_int_equal(parse("email,name\n", &t, why, sizeof(why)), 0);
    assert_int_equal(t.nrows, 0);
    csv_table_free(&t);
}

static void test_bad_fields(void **state)
{
    (void)state;
    struct csv_table t;
    char why[256];

    assert_int_equal(parse("a,b,c\n1,2\n1,2,3,4\n1,2,3\n", &t, why, sizeof(why)), 0);
    assert_int_equal(t.nrows, 3);
    assert_true(t.rows[0].bad_fields);
    assert_int_equal(t.rows[0].nfields, 2);
    assert_string_equal(t.rows[0].fields[2], ""); /* missing ones are "" */
    assert_true(t.rows[1].bad_fields);
    assert_int_equal(t.rows[1].nfields, 4);
    assert_string_equal(t.rows[1].fields[2], "3");
    assert_false(t.rows[2].bad_fields);
    assert_int_equal(t.rows[2].line, 4);
    csv_table_free(&t);
}

static void test_header_errors(void **state)
{
    (void)state;
    struct csv_table t;
    char why[256];

    assert_int_equal(parse("\n\nemail,name,email\n", &t, why, sizeof(why)), -1);
    assert_string_equal(why, "list.csv:3: column name 'email' appears twice (columns 1 and 3)");
    assert_null(t.cols);
    assert_int_equal(t.nrows, 0);
    assert_int_equal(parse("email, ,name\n", &t, why, sizeof(why)), -1);
    assert_string_equal(why, "list.csv:1: column 2 has an empty name");
    assert_int_equal(parse("", &t, why, sizeof(why)), -1);
    assert_string_equal(why, "list.csv:1: no header row (the file is empty)");
    assert_int_equal(parse("\xEF\xBB\xBF\n\n", &t, why, sizeof(why)), -1);
    assert_string_equal(why, "list.csv:3: no header row (the file is empty)");
}

static void test_quote_errors(void **state)
{
    (void)state;
    struct csv_table t;
    char why[256];

    /* unterminated: reported at the line where its row starts */
    assert_int_equal(
        parse("email,note\na@x.org,ok\nb@x.org,\"never\nclosed\n", &t, why, sizeof(why)), -1);
    assert_string_equal(why, "list.csv:3: unterminated quoted field in the row starting here");
    /* text after a closing quote */
    assert_int_equal(parse("email,note\n\na@x.org,\"x\"y\n", &t, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "list.csv:3: malformed quoting"));
    /* a quote inside an unquoted field */
    assert_int_equal(parse("email,note\na@x.org,ab\"c\n", &t, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "list.csv:2: malformed quoting"));
    /* the line counts past a multi-line field */
    assert_int_equal(parse("email,note\na,\"1\n2\n3\"\nb,x\"\n", &t, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "list.csv:5: malformed quoting"));
    /* NUL */
    assert_int_equal(csv_table_parse("l", "email\na\0b\n", 10, &t, why, sizeof(why)), -1);
    assert_string_equal(why, "l:2: NUL octet in the file");
}

static void test_limits(void **state)
{
    (void)state;
    struct csv_table t;
    char why[256];
    size_t n = CSV_MAX_FIELD + 100;
    char *big = malloc(n + 32);

    assert_non_null(big);
    memcpy(big, "email\n\"", 7);
    memset(big + 7, 'x', n);
    memcpy(big + 7 + n, "\"\n", 3);
    assert_int_equal(csv_table_parse("l", big, strlen(big), &t, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "l:2: a field is longer than"));
    /* unquoted too */
    memcpy(big, "email\nx", 7);
    memcpy(big + 7 + n, "\n", 2);
    assert_int_equal(csv_table_parse("l", big, strlen(big), &t, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "l:2: a field is longer than"));
    free(big);

    /* too many columns */
    char hdr[8 * (CSV_MAX_COLS + 2)];
    size_t o = 0;
    for (int i = 0; i <= CSV_MAX_COLS; i++)
        o += (size_t)snprintf(hdr + o, sizeof(hdr) - o, "%sc%d", i ? "," : "", i);
    assert_int_equal(csv_table_parse("l", hdr, o, &t, why, sizeof(why)), -1);
    assert_string_equal(why, "l:1: more than 256 columns");
}

static void test_load(void **state)
{
    (void)state;
    struct csv_table t;
    char why[256];
    char path[] = "/tmp/test_csv_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    /* the first read block is 64 KiB: put a CRLF across its end */
    fputs("email,note\r\n", f);
    size_t pos = 12;
    int line = 2;
    while (pos + 20 < 64 * 1024 - 1) {
        pos += (size_t)fprintf(f, "r%05d@x.org,n\r\n", line);
        line++;
    }
    while (pos < 64 * 1024 - 1 - 2) {
        fputc('y', f);
        pos++;
    }
    fputs(",z\r\nlast@x.org,\"multi\r\nline\"\r\n", f);
    assert_int_equal(fclose(f), 0);

    assert_int_equal(csv_load(path, &t, why, sizeof(why)), 0);
    assert_int_equal(t.nrows, (size_t)line);
    assert_int_equal(t.rows[line - 2].line, line);
    assert_string_equal(t.rows[line - 1].fields[0], "last@x.org");
    assert_int_equal(t.rows[line - 1].line, line + 1);
    csv_table_free(&t);
    unlink(path);

    assert_int_equal(csv_load("/nonexistent/x.csv", &t, why, sizeof(why)), -1);
    assert_string_equal(why, "/nonexistent/x.csv: No such file or directory");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_quotes),
        cmocka_unit_test(test_bom_empty_lines_endings),
        cmocka_unit_test(test_bad_fields),
        cmocka_unit_test(test_header_errors),
        cmocka_unit_test(test_quote_errors),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
