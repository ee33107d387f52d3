/*
 * ledger.c - the durable record of `tern send`, in one SQLite table:
 *
 *   sends(campaign, rcpt, "window", status, attempts, detail, updated)
 *   primary key (campaign, rcpt, "window")
 *
 * and, since schema version 2 (PRAGMA user_version; a version-1 file gets
 * the new tables when opened, its rows untouched):
 *
 *   bounces(rcpt primary key, kind 'hard'|'soft', status, detail, campaign,
 *           count, first, updated)
 *   tokens(token primary key, campaign, rcpt)
 *   meta(key primary key, value)
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
    sqlite3_stmt *bget, *bput, *tput, *tfind;
};

#define LEDGER_SCHEMA_VERSION 2

static const char ledger_schema_v2[] =
    "CREATE TABLE IF NOT EXISTS bounces ("
    " rcpt TEXT PRIMARY KEY,"
    " kind TEXT NOT NULL CHECK (kind IN ('hard','soft')),"
    " status TEXT NOT NULL DEFAULT '',"
    " detail TEXT NOT NULL DEFAULT '',"
    " campaign TEXT NOT NULL DEFAULT '',"
    " count INTEGER NOT NULL DEFAULT 1,"
    " first TEXT NOT NULL,"
    " updated TEXT NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS tokens ("
    " token TEXT PRIMARY KEY,"
    " campaign TEXT NOT NULL,"
    " rcpt TEXT NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID;"
    "PRAGMA user_version=2";

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
    sqlite3_finalize(l->bget);
    sqlite3_finalize(l->bput);
    sqlite3_finalize(l->tput);
    sqlite3_finalize(l->tfind);
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
    /* migration: version 1 (sends only) -> 2, in one transaction */
    if (sqlite3_prepare_v2(l->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW)
        goto fail;
    int version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    st = NULL;
    if (version > LEDGER_SCHEMA_VERSION) {
        snprintf(why, whysize, "%s: ledger schema version %d is newer than this tern's (%d)", path,
                 version, LEDGER_SCHEMA_VERSION);
        goto fail_quiet;
    }
    if (version < LEDGER_SCHEMA_VERSION) {
        if (ledger_exec(l->db, "BEGIN IMMEDIATE") != 0)
            goto fail;
        if (ledger_exec(l->db, ledger_schema_v2) != 0) {
            snprintf(why, whysize, "%s: sqlite: %s", path, sqlite3_errmsg(l->db));
            ledger_exec(l->db, "ROLLBACK");
            goto fail_quiet;
        }
        if (ledger_exec(l->db, "COMMIT") != 0)
            goto fail;
    }
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
                           -1, &l->report, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(l->db, "SELECT kind FROM bounces WHERE rcpt=lower(?1)", -1, &l->bget,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(l->db,
                           "INSERT INTO bounces (rcpt, kind, status, detail, campaign, count, "
                           "first, updated) VALUES (lower(?1), ?2, ?3, ?4, ?5, 1, "
                           "strftime('%Y-%m-%dT%H:%M:%SZ','now'), "
                           "strftime('%Y-%m-%dT%H:%M:%SZ','now')) "
                           "ON CONFLICT (rcpt) DO UPDATE SET count=count+1, "
                           "updated=excluded.updated, "
                           "kind=CASE WHEN kind='hard' THEN 'hard' ELSE excluded.kind END, "
                           "status=CASE WHEN kind='hard' AND excluded.kind='soft' THEN status "
                           "ELSE excluded.status END, "
                           "detail=CASE WHEN kind='hard' AND excluded.kind='soft' THEN detail "
                           "ELSE excluded.detail END, "
                           "campaign=CASE WHEN kind='hard' AND excluded.kind='soft' THEN campaign "
                           "ELSE excluded.campaign END",
                           -1, &l->bput, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(l->db,
                           "INSERT INTO tokens (token, campaign, rcpt) VALUES (?1, ?2, lower(?3)) "
                           "ON CONFLICT (token) DO UPDATE SET campaign=excluded.campaign, "
                           "rcpt=excluded.rcpt",
                           -1, &l->tput, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(l->db, "SELECT campaign, rcpt FROM tokens WHERE token=?1", -1, &l->tfind,
                           NULL) != SQLITE_OK)
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

/* ---- bulk-sender rules: bounces, tokens, the secret, counts ------------------------ */

int ledger_bounce_put(struct ledger *l, const char *rcpt, enum ledger_bounce kind,
                      const char *status, const char *detail, const char *campaign)
{
    int ret = -1;
    if (kind != LEDGER_BOUNCE_HARD && kind != LEDGER_BOUNCE_SOFT)
        return -1;
    if (sqlite3_bind_text(l->bput, 1, rcpt, -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_bind_text(l->bput, 2, kind == LEDGER_BOUNCE_HARD ? "hard" : "soft", -1,
                          SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_bind_text(l->bput, 3, status ? status : "", -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_bind_text(l->bput, 4, detail ? detail : "", -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_bind_text(l->bput, 5, campaign ? campaign : "", -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_step(l->bput) == SQLITE_DONE)
        ret = 0;
    ledger_done(l->bput);
    return ret;
}

int ledger_bounce_get(struct ledger *l, const char *rcpt, enum ledger_bounce *kind)
{
    int ret = -1, rc;
    *kind = LEDGER_BOUNCE_NONE;
    if (sqlite3_bind_text(l->bget, 1, rcpt, -1, SQLITE_STATIC) != SQLITE_OK)
        goto out;
    rc = sqlite3_step(l->bget);
    if (rc == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(l->bget, 0);
        *kind = k && strcmp(k, "hard") == 0 ? LEDGER_BOUNCE_HARD : LEDGER_BOUNCE_SOFT;
        ret = 0;
    } else if (rc == SQLITE_DONE) {
        ret = 0;
    }
out:
    ledger_done(l->bget);
    return ret;
}

int ledger_token_put(struct ledger *l, const char *token, const char *campaign, const char *rcpt)
{
    int ret = -1;
    if (sqlite3_bind_text(l->tput, 1, token, -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_bind_text(l->tput, 2, campaign, -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_bind_text(l->tput, 3, rcpt, -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_step(l->tput) == SQLITE_DONE)
        ret = 0;
    ledger_done(l->tput);
    return ret;
}

int ledger_token_find(struct ledger *l, const char *token, char *campaign, size_t csize, char *rcpt,
                      size_t rsize)
{
    int ret = -1, rc;
    if (sqlite3_bind_text(l->tfind, 1, token, -1, SQLITE_STATIC) != SQLITE_OK)
        goto out;
    rc = sqlite3_step(l->tfind);
    if (rc == SQLITE_ROW) {
        const char *c = (const char *)sqlite3_column_text(l->tfind, 0);
        const char *r = (const char *)sqlite3_column_text(l->tfind, 1);
        snprintf(campaign, csize, "%s", c ? c : "");
        snprintf(rcpt, rsize, "%s", r ? r : "");
        ret = 1;
    } else if (rc == SQLITE_DONE) {
        ret = 0;
    }
out:
    ledger_done(l->tfind);
    return ret;
}

int ledger_rcpt_known(struct ledger *l, const char *rcpt)
{
    sqlite3_stmt *st = NULL;
    int ret = -1;
    if (sqlite3_prepare_v2(l->db, "SELECT 1 FROM sends WHERE rcpt=lower(?1) LIMIT 1", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_bind_text(st, 1, rcpt, -1, SQLITE_STATIC) == SQLITE_OK) {
        int rc = sqlite3_step(st);
        ret = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
    }
    sqlite3_finalize(st);
    return ret;
}

int ledger_begin(struct ledger *l)
{
    return ledger_exec(l->db, "BEGIN IMMEDIATE");
}

int ledger_commit(struct ledger *l)
{
    return ledger_exec(l->db, "COMMIT");
}

int ledger_secret(struct ledger *l, unsigned char out[32])
{
    sqlite3_stmt *st = NULL;
    int ret = -1;
    unsigned char fresh[32];

    if (getentropy(fresh, sizeof(fresh)) != 0)
        return -1;
    /* the first one kept wins: a concurrent run inserting at the same time reads it back */
    if (sqlite3_prepare_v2(l->db, "INSERT OR IGNORE INTO meta (key, value) VALUES ('secret', ?1)",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_bind_blob(st, 1, fresh, sizeof(fresh), SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_DONE)
        goto out;
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(l->db, "SELECT value FROM meta WHERE key='secret'", -1, &st, NULL) !=
            SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW || sqlite3_column_bytes(st, 0) != 32)
        goto out;
    memcpy(out, sqlite3_column_blob(st, 0), 32);
    ret = 0;
out:
    explicit_bzero(fresh, sizeof(fresh));
    sqlite3_finalize(st);
    return ret;
}

static int ledger_count_query(struct ledger *l, const char *sql, const char *campaign,
                              unsigned long *out)
{
    sqlite3_stmt *st = NULL;
    int ret = -1;
    if (sqlite3_prepare_v2(l->db, sql, -1, &st, NULL) == SQLITE_OK &&
        (campaign == NULL || sqlite3_bind_text(st, 1, campaign, -1, SQLITE_STATIC) == SQLITE_OK) &&
        sqlite3_step(st) == SQLITE_ROW) {
        *out = (unsigned long)sqlite3_column_int64(st, 0);
        ret = 0;
    }
    sqlite3_finalize(st);
    return ret;
}

int ledger_counts(struct ledger *l, const char *campaign, struct ledger_counts *c)
{
    memset(c, 0, sizeof(*c));
    static const char *const by_status[2] = {
        "SELECT count(*) FROM sends WHERE status='%s'",
        "SELECT count(*) FROM sends WHERE status='%s' AND campaign=?1",
    };
    static const char *const by_bounce[2] = {
        "SELECT count(*) FROM bounces WHERE kind='%s'",
        "SELECT count(*) FROM bounces b WHERE b.kind='%s' AND EXISTS (SELECT 1 FROM sends s "
        "WHERE s.rcpt=b.rcpt AND s.campaign=?1)",
    };
    int k = campaign != NULL;
    char sql[256];
    const char *names[3] = {"sent", "transient", "permanent"};
    unsigned long *dst[3] = {&c->sent, &c->transient, &c->permanent};
    for (int i = 0; i < 3; i++) {
        snprintf(sql, sizeof(sql), by_status[k], names[i]);
        if (ledger_count_query(l, sql, campaign, dst[i]) != 0)
            return -1;
    }
    snprintf(sql, sizeof(sql), by_bounce[k], "hard");
    if (ledger_count_query(l, sql, campaign, &c->bounced_hard) != 0)
        return -1;
    snprintf(sql, sizeof(sql), by_bounce[k], "soft");
    return ledger_count_query(l, sql, campaign, &c->bounced_soft);
}
