/*
 * csv.h - the recipient list of `tern send`: an RFC 4180 CSV file with a
 * header row, read with libcsv.
 *
 * The whole table is loaded into memory (bounded: see the limits below).
 * A UTF-8 BOM at the start is skipped; empty lines are skipped; quoted
 * fields may hold commas, quotes ("") and newlines.  Column names are
 * trimmed and must be unique and non-empty.  Every row remembers the line
 * number where it starts, so errors can name it.  A row with a different
 * number of fields than the header is kept but marked (bad_fields) so the
 * caller can report and skip it without aborting the run.
 *
 * Naming: libcsv itself exports csv_parse() and csv_free(), so the table
 * functions that would clash carry the csv_table_ prefix.
 */
#ifndef TERN_SEND_CSV_H
#define TERN_SEND_CSV_H

#include <stddef.h>

#define CSV_MAX_COLS 256
#define CSV_MAX_FIELD (64 * 1024)
#define CSV_MAX_ROWS 10000000

struct csv_row {
    unsigned long line; /* 1-based line number where the row starts */
    char **fields;      /* ncols entries (missing ones are ""), NUL-terminated strings */
    size_t nfields;     /* how many fields the row really had */
    int bad_fields;     /* nfields != number of columns */
};

struct csv_table {
    char *name;  /* the file name given to the loader, for messages ("LIST:LINE: ...") */
    char **cols; /* column names */
    size_t ncols;
    struct csv_row *rows;
    size_t nrows;
};

/* Load path.  On error returns -1 with why = "FILE:LINE: what". */
int csv_load(const char *path, struct csv_table *t, char *why, size_t whysize);
/* Same, from memory (name is used in messages). */
int csv_table_parse(const char *name, const char *data, size_t len, struct csv_table *t, char *why,
                    size_t whysize);
/* Column index or -1. */
int csv_col(const struct csv_table *t, const char *name);
void csv_table_free(struct csv_table *t);

#endif
