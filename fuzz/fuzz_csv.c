/*
 * fuzz_csv.c - libFuzzer harness for send/csv.c.
 *
 * Parses arbitrary bytes as a recipient list.  On success: the header has
 * 1..CSV_MAX_COLS unique, non-empty, trimmed names; rows' line numbers are
 * >= 2 and non-decreasing; every row has ncols NUL-terminated fields no
 * longer than CSV_MAX_FIELD; bad_fields matches nfields.  On failure: why is
 * "NAME:LINE: ..." and the table is empty.  ASan/LSan catch the rest.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "send/csv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct csv_table t;
    char why[256];

    if (csv_table_parse("f.csv", (const char *)data, size, &t, why, sizeof(why)) != 0) {
        if (strncmp(why, "f.csv:", 6) != 0 || why[6] < '1' || why[6] > '9')
            abort();
        if (t.cols != NULL || t.rows != NULL || t.nrows != 0 || t.ncols != 0 || t.name != NULL)
            abort();
        return 0;
    }
    if (t.ncols == 0 || t.ncols > CSV_MAX_COLS || strcmp(t.name, "f.csv") != 0)
        abort();
    for (size_t i = 0; i < t.ncols; i++) {
        size_t n = strlen(t.cols[i]);
        if (n == 0 || t.cols[i][0] == ' ' || t.cols[i][n - 1] == ' ' ||
            csv_col(&t, t.cols[i]) != (int)i)
            abort();
    }
    unsigned long prev = 1;
    for (size_t r = 0; r < t.nrows; r++) {
        const struct csv_row *row = &t.rows[r];
        if (row->line < 2 || row->line < prev)
            abort();
        prev = row->line;
        if (row->bad_fields != (row->nfields != t.ncols) || row->nfields == 0)
            abort();
        for (size_t i = 0; i < t.ncols; i++) {
            size_t n = strnlen(row->fields[i], CSV_MAX_FIELD + 1);
            if (n > CSV_MAX_FIELD || row->fields[i][n] != '\0')
                abort();
            if (i >= row->nfields && n != 0)
                abort();
        }
    }
    csv_table_free(&t);
    return 0;
}
