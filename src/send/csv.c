/*
 * csv.c - the recipient list of `tern send`, parsed with libcsv.
 *
 * libcsv does the RFC 4180 work (strict quoting, no trimming of spaces,
 * an unterminated quote at the end is an error); this file feeds it and
 * builds the table.  Line numbers: the input is fed in pieces that end at
 * a line break (CRLF, LF or a lone CR) or after CSV_PIECE octets, so every
 * callback knows the line it happens on; a row starts on the first line,
 * since the previous row ended, that holds anything but a line break.
 *
 * Memory: the table owns everything.  Each row is one allocation (the
 * pointer array followed by its strings); column names and the name are
 * separate strings.  Limits (csv.h) bound every growth: a field is checked
 * against CSV_MAX_FIELD after every piece, fields past the column count are
 * counted but not kept.  On error the table is left empty and why says
 * "FILE:LINE: what"; this file never prints and never exits.
 */
#include <csv.h>

#include "send/csv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CSV_PIECE (16 * 1024) /* most octets handed to libcsv at once */

struct csv_ctx {
    const char *name;
    struct csv_table *t;
    struct csv_parser p;
    unsigned long line;  /* line of the next octet */
    unsigned long start; /* line where the current row starts, 0 between rows */
    int prev_cr;         /* the last block ended with CR: an LF next ends the same line */
    int started;         /* past the BOM check */
    int have_header;
    size_t rows_cap;
    /* the current row: kept fields back to back in fbuf, offsets in off */
    char *fbuf;
    size_t flen, fcap;
    size_t *off;
    size_t nkept, keep; /* fields kept so far, most to keep */
    size_t nfields;     /* fields seen */
    int err;
    char *why;
    size_t whysize;
};

static void csv_fail(struct csv_ctx *c, unsigned long line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void csv_fail(struct csv_ctx *c, unsigned long line, const char *fmt, ...)
{
    char what[256];
    va_list ap;

    if (c->err)
        return;
    c->err = 1;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (c->whysize > 0)
        snprintf(c->why, c->whysize, "%s:%lu: %s", c->name, line, what);
}

static void *csv_xrealloc(struct csv_ctx *c, void *p, size_t n)
{
    void *q = realloc(p, n);
    if (q == NULL)
        csv_fail(c, c->line, "out of memory");
    return q;
}

static int csv_space_none(unsigned char ch)
{
    (void)ch;
    return 0; /* RFC 4180: spaces are part of a field */
}

/* libcsv field callback. */
static void csv_on_field(void *s, size_t len, void *data)
{
    struct csv_ctx *c = data;

    if (c->err)
        return;
    if (len > CSV_MAX_FIELD) {
        csv_fail(c, c->start, "a field is longer than %d octets", CSV_MAX_FIELD);
        return;
    }
    c->nfields++;
    if (c->nkept >= c->keep)
        return;
    if (c->fcap - c->flen < len + 1) {
        size_t cap = c->fcap ? c->fcap : 256;
        while (cap - c->flen < len + 1)
            cap *= 2;
        char *nb = csv_xrealloc(c, c->fbuf, cap);
        if (nb == NULL)
            return;
        c->fbuf = nb;
        c->fcap = cap;
    }
    if (len > 0)
        memcpy(c->fbuf + c->flen, s, len);
    c->fbuf[c->flen + len] = '\0';
    c->off[c->nkept++] = c->flen;
    c->flen += len + 1;
}

static char *csv_trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

static void csv_take_header(struct csv_ctx *c)
{
    struct csv_table *t = c->t;

    if (c->nfields > CSV_MAX_COLS) {
        csv_fail(c, c->start, "more than %d columns", CSV_MAX_COLS);
        return;
    }
    t->cols = calloc(c->nkept, sizeof(*t->cols));
    if (t->cols == NULL) {
        csv_fail(c, c->start, "out of memory");
        return;
    }
    for (size_t i = 0; i < c->nkept; i++) {
        char *name = csv_trim(c->fbuf + c->off[i]);
        if (*name == '\0') {
            csv_fail(c, c->start, "column %zu has an empty name", i + 1);
            return;
        }
        for (size_t j = 0; j < t->ncols; j++) {
            if (strcmp(t->cols[j], name) == 0) {
                csv_fail(c, c->start, "column name '%s' appears twice (columns %zu and %zu)", name,
                         j + 1, i + 1);
                return;
            }
        }
        t->cols[t->ncols] = strdup(name);
        if (t->cols[t->ncols] == NULL) {
            csv_fail(c, c->start, "out of memory");
            return;
        }
        t->ncols++;
    }
    c->have_header = 1;
    c->keep = t->ncols;
}

static void csv_take_row(struct csv_ctx *c)
{
    struct csv_table *t = c->t;

    if (t->nrows >= CSV_MAX_ROWS) {
        csv_fail(c, c->start, "more than %d rows", CSV_MAX_ROWS);
        return;
    }
    if (t->nrows == c->rows_cap) {
        size_t cap = c->rows_cap ? c->rows_cap * 2 : 64;
        struct csv_row *nr = csv_xrealloc(c, t->rows, cap * sizeof(*nr));
        if (nr == NULL)
            return;
        t->rows = nr;
        c->rows_cap = cap;
    }
    /* one block: ncols pointers, the kept strings, then one "" for missing fields */
    size_t ptrs = t->ncols * sizeof(char *);
    char *block = malloc(ptrs + c->flen + 1);
    if (block == NULL) {
        csv_fail(c, c->start, "out of memory");
        return;
    }
    char **fields = (char **)(void *)block;
    char *strings = block + ptrs;
    if (c->flen > 0)
        memcpy(strings, c->fbuf, c->flen);
    strings[c->flen] = '\0';
    for (size_t i = 0; i < t->ncols; i++)
        fields[i] = i < c->nkept ? strings + c->off[i] : strings + c->flen;

    struct csv_row *r = &t->rows[t->nrows++];
    r->line = c->start;
    r->fields = fields;
    r->nfields = c->nfields;
    r->bad_fields = c->nfields != t->ncols;
}

/* libcsv row callback (ch is the terminator, or -1 at the end of input). */
static void csv_on_row(int ch, void *data)
{
    struct csv_ctx *c = data;

    (void)ch;
    if (c->err)
        return;
    if (!c->have_header)
        csv_take_header(c);
    else
        csv_take_row(c);
    c->start = 0;
    c->flen = 0;
    c->nkept = 0;
    c->nfields = 0;
}

static void csv_lib_error(struct csv_ctx *c)
{
    int e = csv_error(&c->p);
    if (e == CSV_EPARSE)
        csv_fail(c, c->line,
                 "malformed quoting (a quote inside an unquoted field, or text after "
                 "a closing quote)");
    else
        csv_fail(c, c->line, "%s", csv_strerror(e));
}

/* Hand one piece (no line break inside, at most one at its end) to libcsv. */
static void csv_push(struct csv_ctx *c, const char *d, size_t n)
{
    if (memchr(d, '\0', n) != NULL) {
        csv_fail(c, c->line, "NUL octet in the file");
        return;
    }
    if (c->start == 0 && d[0] != '\r' && d[0] != '\n')
        c->start = c->line;
    if (csv_parse(&c->p, d, n, csv_on_field, csv_on_row, c) != n) {
        csv_lib_error(c);
        return;
    }
    if (csv_get_buffer_size(&c->p) > (size_t)CSV_MAX_FIELD + CSV_PIECE + 1024)
        csv_fail(c, c->start, "a field is longer than %d octets", CSV_MAX_FIELD);
}

static void csv_feed(struct csv_ctx *c, const char *d, size_t n)
{
    size_t i = 0;

    if (!c->started) {
        c->started = 1;
        if (n >= 3 && memcmp(d, "\xEF\xBB\xBF", 3) == 0)
            i = 3;
    }
    while (i < n && !c->err) {
        if (c->prev_cr) {
            c->prev_cr = 0;
            if (d[i] == '\n') { /* the LF of a CRLF split between blocks */
                csv_push(c, d + i, 1);
                i++;
                continue;
            }
        }
        size_t j = i;
        while (j < n && d[j] != '\n' && d[j] != '\r' && j - i < CSV_PIECE)
            j++;
        int eol = 0;
        if (j < n && (d[j] == '\n' || d[j] == '\r')) {
            eol = 1;
            if (d[j] == '\r') {
                if (j + 1 == n)
                    c->prev_cr = 1;
                else if (d[j + 1] == '\n')
                    j++;
            }
            j++;
        }
        csv_push(c, d + i, j - i);
        if (eol)
            c->line++;
        i = j;
    }
}

static int csv_begin(struct csv_ctx *c, const char *name, struct csv_table *t, char *why,
                     size_t whysize)
{
    memset(c, 0, sizeof(*c));
    memset(t, 0, sizeof(*t));
    c->name = name;
    c->t = t;
    c->line = 1;
    c->why = why;
    c->whysize = whysize;
    c->keep = CSV_MAX_COLS + 1;
    if (whysize > 0)
        why[0] = '\0';
    c->off = malloc((CSV_MAX_COLS + 1) * sizeof(*c->off));
    t->name = strdup(name);
    if (c->off == NULL || t->name == NULL ||
        csv_init(&c->p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL) != 0) {
        free(c->off);
        free(t->name);
        t->name = NULL;
        if (whysize > 0)
            snprintf(why, whysize, "%s: out of memory", name);
        return -1;
    }
    csv_set_space_func(&c->p, csv_space_none);
    return 0;
}

static int csv_end(struct csv_ctx *c)
{
    if (!c->err && csv_fini(&c->p, csv_on_field, csv_on_row, c) != 0) {
        if (csv_error(&c->p) == CSV_EPARSE)
            csv_fail(c, c->start, "unterminated quoted field in the row starting here");
        else
            csv_lib_error(c);
    }
    if (!c->err && !c->have_header)
        csv_fail(c, c->line, "no header row (the file is empty)");
    csv_free(&c->p);
    free(c->fbuf);
    free(c->off);
    if (c->err) {
        csv_table_free(c->t);
        return -1;
    }
    return 0;
}

int csv_table_parse(const char *name, const char *data, size_t len, struct csv_table *t, char *why,
                    size_t whysize)
{
    struct csv_ctx c;

    if (csv_begin(&c, name, t, why, whysize) != 0)
        return -1;
    csv_feed(&c, data, len);
    return csv_end(&c);
}

int csv_load(const char *path, struct csv_table *t, char *why, size_t whysize)
{
    struct csv_ctx c;
    char *block = NULL;
    FILE *f = fopen(path, "rb");

    if (f == NULL) {
        memset(t, 0, sizeof(*t));
        if (whysize > 0)
            snprintf(why, whysize, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (csv_begin(&c, path, t, why, whysize) != 0) {
        fclose(f);
        return -1;
    }
    block = malloc(64 * 1024);
    if (block == NULL)
        csv_fail(&c, c.line, "out of memory");
    while (!c.err) {
        size_t n = fread(block, 1, 64 * 1024, f);
        if (n > 0)
            csv_feed(&c, block, n);
        if (n < 64 * 1024) {
            if (ferror(f))
                csv_fail(&c, c.line, "read error: %s", strerror(errno));
            break;
        }
    }
    free(block);
    if (fclose(f) != 0)
        csv_fail(&c, c.line, "close: %s", strerror(errno));
    return csv_end(&c);
}

int csv_col(const struct csv_table *t, const char *name)
{
    for (size_t i = 0; i < t->ncols; i++)
        if (strcmp(t->cols[i], name) == 0)
            return (int)i;
    return -1;
}

void csv_table_free(struct csv_table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->ncols; i++)
        free(t->cols[i]);
    free(t->cols);
    for (size_t i = 0; i < t->nrows; i++)
        free(t->rows[i].fields);
    free(t->rows);
    free(t->name);
    memset(t, 0, sizeof(*t));
}
