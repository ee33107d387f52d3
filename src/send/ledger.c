/*
 * ledger.c - the durable record of `tern send`, in one SQLite table:
 *
 *   sends(campaign, rcpt, "window", status, attempts, detail, updated)
 *   primary key (campaign, rcpt, "window")
 *
 * The database runs in WAL mode with no explicit transactions: every
 * ledger_put() is one autocommitted UPSERT, in the WAL when the call returns,
 * so a run killed at any instant loses nothing it was told; with power_safe
 * (synchronous=FULL) it is fsynced too, else synchronous=NORMAL.  Recipients are stored lower-cased
 * (by SQLite's ASCII lower()), status as text ("sent", "transient", "permanent"), updated as UTC
 * ISO 8601.  Statements are prepared once in ledger_open() and reset after
 * every use.  busy_timeout 5000 ms lets a second reader (a report) wait for
 * a writer.  Errors are returned, never printed; the struct ledger owns the
 * connection and the statements.
 */
#include "send/ledger.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

struct ledger {
    sqlite3 *db;
    sqlite3_stmt *get, *put, *minwin, *report;
};

static const char ledger_schema[] =
    "CREATE TABLE IF NOT EXISTS sends ("
    " campaign TEXT NOT NULL,"
    " rcpt TEXT NOT NULL,"
    " \"window\" TEXT NOT NULL,"
    " status TEXT NOT NULL CHECK (status IN ('sent','transient','permanent')),"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " detail TEXT NOT NULL DEFAULT '',"
    " updated TEXT NOT NULL,"
    " PRIMARY KEY (campaign, rcpt, \"window\")"
    ") WITHOUT ROWID";

static const char *ledger_status_name(enum ledger_status st)
{
    switch (st) {
    case LEDGER_SENT:
        return "sent";
    case LEDGER_TRANSIENT:
        return "transient";
    case LEDGER_PERMANENT:
        return "permanent";
    case LEDGER_NONE:
        break;
    }
    return NULL;
}

static enum ledger_status ledger_status_parse(const char *s)
{
    if (s == NULL)
        return LEDGER_NONE;
    if (strcmp(s, "sent") == 0)
        return LEDGER_SENT;
    if (strcmp(s, "transient") == 0)
        return LEDGER_TRANSIENT;
    if (strcmp(s, "permanent") == 0)
        return LEDGER_PERMANENT;
    return LEDGER_NONE;
}

static int ledger_exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

void ledger_close(struct ledger *l)
{
    if (l == NULL)
        return;
    sqlite3_finalize(l->get);
    sqlite3_finalize(l->put);
    sqlite3_finalize(l->minwin);
    sqlite3_finalize(l->report);
    sqlite3_close(l->db);
    free(l);
}

struct ledger *ledger_open(const char *path, bool power_safe, char *why, size_t whysize)
{
    struct ledger *l = calloc(1, sizeof(*l));
    sqlite3_stmt *st = NULL;

    if (whysize > 0)
        why[0] = '\0';
    if (l == NULL) {
        snprintf(why, whysize, "%s: out of memory", path);
        return NULL;
    }
    if (sqlite3_open_v2(path, &l->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK)
        goto fail;
    if (sqlite3_busy_timeout(l->db, 5000) != SQLITE_OK)
        goto fail;
    /* journal_mode answers with the mode it ended up in */
    if (sqlite3_prepare_v2(l->db, "PRAGMA journal_mode=WAL", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW)
        goto fail;
    const unsigned char *mode = sqlite3_column_text(st, 0);
    if (mode == NULL || strcmp((const char *)mode, "wal") != 0) {
        snprintf(why, whysize, "%s: the database refused WAL mode (journal_mode=%s)", path,
                 mode ? (const char *)mode : "?");
        goto fail_quiet;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (ledger_exec(l->db, power_safe ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL") !=
            0 ||
        ledger_exec(l->db, ledger_schema) != 0)
        goto fail;
    if (sqlite3_prepare_v2(l->db,
                           "SELECT status FROM sends WHERE campaign=?1 AND rcpt=lower(?2) "
                           "AND \"window\"=?3",
                           -1, &l->get, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(l->db,
                           "INSERT INTO sends (campaign, rcpt, \"window\", status, attempts, "
                           "detail, updated) VALUES (?1, lower(?2), ?3, ?4, 1, ?5, "
                           "strftime('%Y-%m-%dT%H:%M:%SZ','now')) "
                           "ON CONFLICT (campaign, rcpt, \"window\") DO UPDATE SET "
                           "status=excluded.status, attempts=attempts+1, "
                           "detail=excluded.detail, updated=excluded.updated",
                           -1, &l->put, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(l->db,
                           "SELECT min(CAST(\"window\" AS INTEGER)) FROM sends "
                           "WHERE campaign=?1 AND rcpt=lower(?2) AND status='sent' "
                           "AND \"window\"<>''",
                           -1, &l->minwin, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(l->db,
                           "SELECT rcpt, \"window\", attempts, detail FROM sends "
                           "WHERE campaign=?1 AND status='permanent' "
                           "ORDER BY rcpt, CAST(\"window\" AS INTEGER) DESC",
                           -1, &l->report, NULL) != SQLITE_OK)
        goto fail;
    return l;
fail:
    snprintf(why, whysize, "%s: sqlite: %s", path,
             l->db ? sqlite3_errmsg(l->db) : "cannot allocate a connection");
fail_quiet:
    sqlite3_finalize(st);
    ledger_close(l);
    return NULL;
}

static int ledger_bind_key(sqlite3_stmt *st, const char *campaign, const char *rcpt)
{
    if (sqlite3_bind_text(st, 1, campaign, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 2, rcpt, -1, SQLITE_STATIC) != SQLITE_OK)
        return -1;
    return 0;
}

static void ledger_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

int ledger_get(struct ledger *l, const char *campaign, const char *rcpt, const char *window,
               enum ledger_status *st)
{
    int rc, ret = -1;

    *st = LEDGER_NONE;
    if (ledger_bind_key(l->get, campaign, rcpt) != 0 ||
        sqlite3_bind_text(l->get, 3, window ? window : "", -1, SQLITE_STATIC) != SQLITE_OK)
        goto out;
    rc = sqlite3_step(l->get);
    if (rc == SQLITE_ROW) {
        *st = ledger_status_parse((const char *)sqlite3_column_text(l->get, 0));
        ret = 0;
    } else if (rc == SQLITE_DONE) {
        ret = 0;
    }
out:
    ledger_done(l->get);
    return ret;
}

int ledger_put(struct ledger *l, const char *campaign, const char *rcpt, const char *window,
               enum ledger_status st, const char *detail)
{
    const char *name = ledger_status_name(st);
    int ret = -1;

    if (name == NULL)
        return -1;
    if (ledger_bind_key(l->put, campaign, rcpt) == 0 &&
        sqlite3_bind_text(l->put, 3, window ? window : "", -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_bind_text(l->put, 4, name, -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_bind_text(l->put, 5, detail ? detail : "", -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_step(l->put) == SQLITE_DONE)
        ret = 0;
    ledger_done(l->put);
    return ret;
}

int64_t ledger_min_window_sent(struct ledger *l, const char *campaign, const char *rcpt)
{
    int64_t ret = -2;

    if (ledger_bind_key(l->minwin, campaign, rcpt) == 0 && sqlite3_step(l->minwin) == SQLITE_ROW) {
        if (sqlite3_column_type(l->minwin, 0) == SQLITE_NULL)
            ret = -1;
        else
            ret = sqlite3_column_int64(l->minwin, 0);
    }
    ledger_done(l->minwin);
    return ret;
}

/* One CSV field (RFC 4180): quoted when it holds a comma, quote, line break or edge space. */
static int ledger_csv_field(FILE *f, const char *s, int last)
{
    size_t n = strlen(s);
    int quote = strpbrk(s, ",\"\r\n") != NULL ||
                (n > 0 && (s[0] == ' ' || s[0] == '\t' || s[n - 1] == ' ' || s[n - 1] == '\t'));

    if (quote && fputc('"', f) == EOF)
        return -1;
    for (; *s; s++) {
        if (*s == '"' && quote && fputc('"', f) == EOF)
            return -1;
        if (fputc((unsigned char)*s, f) == EOF)
            return -1;
    }
    if (quote && fputc('"', f) == EOF)
        return -1;
    if (fputs(last ? "\r\n" : ",", f) == EOF)
        return -1;
    return 0;
}

int ledger_report(struct ledger *l, const char *campaign, const char *csv_path, char *why,
                  size_t whysize)
{
    FILE *f = fopen(csv_path, "w");
    int rc = SQLITE_DONE, ok = 1;

    if (whysize > 0)
        why[0] = '\0';
    if (f == NULL) {
        snprintf(why, whysize, "%s: %s", csv_path, strerror(errno));
        return -1;
    }
    if (fputs("email,window,attempts,detail\r\n", f) == EOF)
        ok = 0;
    if (sqlite3_bind_text(l->report, 1, campaign, -1, SQLITE_STATIC) != SQLITE_OK) {
        snprintf(why, whysize, "ledger: sqlite: %s", sqlite3_errmsg(l->db));
        ok = -1;
    }
    while (ok == 1 && (rc = sqlite3_step(l->report)) == SQLITE_ROW) {
        const char *rcpt = (const char *)sqlite3_column_text(l->report, 0);
        const char *window = (const char *)sqlite3_column_text(l->report, 1);
        const char *attempts = (const char *)sqlite3_column_text(l->report, 2);
        const char *detail = (const char *)sqlite3_column_text(l->report, 3);
        if (ledger_csv_field(f, rcpt ? rcpt : "", 0) != 0 ||
            ledger_csv_field(f, window ? window : "", 0) != 0 ||
            ledger_csv_field(f, attempts ? attempts : "0", 0) != 0 ||
            ledger_csv_field(f, detail ? detail : "", 1) != 0)
            ok = 0;
    }
    if (ok == 1 && rc != SQLITE_DONE) {
        snprintf(why, whysize, "ledger: sqlite: %s", sqlite3_errmsg(l->db));
        ok = -1;
    }
    ledger_done(l->report);
    if (ok == 1 && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        ok = 0;
    if (ok == 0)
        snprintf(why, whysize, "%s: write error: %s", csv_path, strerror(errno));
    if (fclose(f) != 0 && ok == 1) {
        snprintf(why, whysize, "%s: close: %s", csv_path, strerror(errno));
        ok = 0;
    }
    return ok == 1 ? 0 : -1;
}
