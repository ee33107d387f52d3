/*
 * store.h - the sink's in-memory message store.
 *
 * One record per message, with all its recipients.  Records form a list,
 * newest first, bounded by a count and a byte total: adding beyond either
 * drops the oldest records (never the one being added).  The store owns
 * every record and every string in it.
 */
#ifndef TERN_SINK_STORE_H
#define TERN_SINK_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mime_msg;

struct sink_msg {
    uint64_t id;
    int64_t received_ms; /* Unix time in milliseconds */
    char *mail_from;     /* envelope sender, "" for <> */
    char **rcpts;        /* envelope recipients */
    size_t nrcpt;
    char *raw; /* the message as received (dot-unstuffed), not NUL-terminated */
    size_t size;
    /* header values (unfolded) and session facts: never NULL, "" when absent */
    char *subject, *hdr_from, *hdr_to, *helo, *peer, *auth_user;
    bool tls;
    bool read; /* Mailpit's Read flag: set by GET /api/v1/message/ID or PUT /api/v1/messages */
    struct mime_msg *mime; /* parsed on first API use (sink_msg_mime), NULL before */
    struct sink_msg *newer, *older;
};

struct sink_store {
    struct sink_msg *newest, *oldest;
    size_t count, max_count;
    uint64_t bytes, max_bytes;
    uint64_t next_id;
    uint64_t received; /* ever added */
    uint64_t dropped;  /* dropped to keep within the limits */
    /* called for every record leaving the store (drop, delete, clear) before it
     * is freed; NULL for none (--store DIR removes the files: sink/disk.c) */
    void (*on_remove)(void *ctx, const struct sink_msg *m);
    void *remove_ctx;
};

/* A filter: NULL fields match everything.  Substring match, case-insensitive,
 * unless exact (then whole-value, case-insensitive; used by the mail-test-srv API).
 * to: an envelope recipient or the To header; from: the envelope sender or From header. */
struct sink_filter {
    const char *to, *from, *subject;
    bool exact;
};

void store_init(struct sink_store *st, size_t max_count, uint64_t max_bytes);
/* Takes ownership of m (allocated with calloc; strings with malloc); assigns the id,
 * unless m->id is already set (loaded from disk: later ids continue after it). */
struct sink_msg *store_add(struct sink_store *st, struct sink_msg *m);
struct sink_msg *store_get(struct sink_store *st, uint64_t id);
int store_delete(struct sink_store *st, uint64_t id);
void store_clear(struct sink_store *st);
bool store_match(const struct sink_msg *m, const struct sink_filter *f);
void store_msg_free(struct sink_msg *m);

#endif
