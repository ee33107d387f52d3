/*
 * store.h - the durable spool of `tern serve` on disk.
 *
 * Layout under the spool directory DIR (each created 0700 if absent):
 *   DIR/tmp/         files being written; anything here after a crash is junk
 *   DIR/queue/       ID.msg (the message as received) and ID.env (its envelope)
 *   DIR/quarantine/  items that could not be read, kept for a person to look at,
 *                    with ID.why saying why
 *
 * An item exists once queue/ID.env exists.  qstore_commit() writes and
 * fsyncs queue/ID.msg, then writes and fsyncs tmp/ID.env (envelope version
 * 2: it records the .msg's size and CRC-32C), renames it to queue/ID.env
 * and fsyncs the queue directory before it returns 0, which is the moment
 * the server may answer 250.  A crash at any earlier instant leaves nothing
 * that recovery keeps (tmp/ is emptied, a .msg without an .env removed).
 * Since a version 2 .env arrives in queue/ whole, recovery tells the two
 * kinds of trouble apart: "incomplete" is only a version 1 .env without
 * its end line (written in place by an older tern: removed, as it always
 * was), while a version 2 .env cut short, a corrupt .env, or a .msg whose
 * size or checksum differs from its envelope's was damaged after the 250:
 * quarantined with a reason, logged as an error, never delivered.  The
 * delivery path checks the .msg again (qstore_read_item).  Version 1 items
 * (no checksum) are still recovered and delivered.  Every function is
 * synchronous, reports failure as -1 with errno set (ENOSPC and EDQUOT are
 * passed through so that the caller can answer 452) and may run in several
 * threads at once on different ids: a store's only mutable state is atomic
 * (the id counter and the item count).
 */
#ifndef TERN_QUEUE_STORE_H
#define TERN_QUEUE_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/buf.h"
#include "queue/envelope.h"

#define QSTORE_ENV_MAX (16u << 20) /* largest .env read back (16 MiB) */
/* qstore_read_item(): the .msg differs from its envelope's size or checksum
 * (after ENV_OK = 0, ENV_INCOMPLETE, ENV_CORRUPT). */
#define QSTORE_DAMAGED 3
#define QSTORE_MSG_MAX (1024u << 20) /* largest .msg read into memory (1 GiB) */

struct qstore;

/* The system calls the store writes through: a seam for tests (ENOSPC, EIO). */
struct qstore_io {
    ssize_t (*write)(int fd, const void *p, size_t n);
    int (*fsync)(int fd);
};

/* What qstore_recover() did. */
struct qstore_stats {
    size_t recovered;   /* complete items handed to the callback */
    size_t incomplete;  /* version 1 .env without its end line: removed with its .msg */
    size_t orphans;     /* .msg without .env: removed */
    size_t quarantined; /* files moved to quarantine/ */
    size_t tmp_removed; /* leftovers removed from tmp/ */
    size_t errors;      /* items left in place because of an I/O error (logged) */
};

/* Refusal thresholds for qstore_check_room(); 0 disables each. */
struct qstore_limits {
    uint64_t min_free_bytes;  /* free space that must remain after the message */
    uint64_t min_free_inodes; /* free inodes that must remain */
    size_t max_items;         /* items in the queue */
};

/*
 * Recovery callback.  env is complete and its .msg exists.  The callback may
 * keep the envelope by moving it: copy *env, then envelope_init(env).
 * Whatever is left in *env is freed when the callback returns.
 */
typedef void (*qstore_item_fn)(void *ctx, struct envelope *env);

/* Open (creating if needed) the spool at dir.  NULL with why on failure. */
struct qstore *qstore_open(const char *dir, char *why, size_t whylen);
void qstore_close(struct qstore *s);
const char *qstore_dir(const struct qstore *s);

/* Replace the write/fsync functions (NULL restores the system calls).
 * Call before the store is shared between threads. */
void qstore_set_io(struct qstore *s, const struct qstore_io *io);

/* A new unique id: "<unix time>-<counter hex>-<64 random bits hex>". */
void qstore_new_id(struct qstore *s, char out[ENV_ID_MAX + 1]);

/*
 * Write a new item: assigns env->id, writes msg[0..len) and the envelope
 * durably (see above).  Returns 0 once both are on disk.  On failure removes
 * whatever it wrote and returns -1 with errno preserved and why filled in;
 * env->id is then "".  The envelope must have at least one recipient.
 */
int qstore_commit(struct qstore *s, struct envelope *env, const char *msg, size_t len, char *why,
                  size_t whylen);

/* Atomically replace the .env of an existing item (tmp, fsync, rename,
 * directory fsync).  ENOENT if the item no longer exists. */
int qstore_update(struct qstore *s, const struct envelope *env, char *why, size_t whylen);

/* Remove an item: .env first (the item is then gone), then .msg, then fsync
 * the directory.  0 if it did not exist either. */
int qstore_remove(struct qstore *s, const char *id, char *why, size_t whylen);

/* Read an item's message into out (appended).  EFBIG over QSTORE_MSG_MAX. */
int qstore_read_msg(struct qstore *s, const char *id, struct buf *out, char *why, size_t whylen);

/* Open an item's message for reading (O_CLOEXEC); the caller closes it. */
int qstore_open_msg(struct qstore *s, const char *id);

/*
 * Read an item for delivery: its envelope into env (initialised here; freed
 * by the caller whatever the result) and its message appended to msg, checked
 * against the envelope's size and CRC-32C (version 2).  Returns 0;
 * ENV_INCOMPLETE or ENV_CORRUPT (the envelope), QSTORE_DAMAGED (the message;
 * nothing appended): why says what, and the item should be quarantined; or
 * -1 with errno on an I/O error (ENOENT: the item is gone).
 */
int qstore_read_item(struct qstore *s, const char *id, struct envelope *env, struct buf *msg,
                     char *why, size_t whylen);

/* 0 if msg[0..len) matches env's size and CRC-32C (or env has none: version
 * 1), else -1 with why ("message file damaged: ..."). */
int qstore_check_msg(const struct envelope *env, const char *msg, size_t len, char *why,
                     size_t whylen);

/* Read and parse an item's envelope.  Returns an enum env_parse_result (the
 * envelope must be envelope_free()d whatever the result), or -1 with errno
 * on an I/O error. */
int qstore_read_env(struct qstore *s, const char *id, struct envelope *env, char *why,
                    size_t whylen);

/* Move an item's files (whichever exist) to quarantine/ and write ID.why
 * with the reason; logged.  The item leaves the count. */
int qstore_quarantine(struct qstore *s, const char *id, const char *reason);

/*
 * Start-up recovery: empties tmp/, then for each item in queue/ (in id order):
 * complete, and its .msg matches the envelope's size and CRC-32C -> fn;
 * INCOMPLETE version 1 .env -> removed with its .msg; .msg without .env ->
 * removed; anything else (a CORRUPT .env, a version 2 .env cut short, a
 * .msg that is missing or damaged, a file that is no item) -> quarantined,
 * damage logged as an error.  Sets the item count.  Returns 0 (details in
 * *stats, may be NULL), or -1 with why if the spool cannot be read at all.
 * Run it before any commit, from one thread.
 */
int qstore_recover(struct qstore *s, qstore_item_fn fn, void *ctx, struct qstore_stats *stats,
                   char *why, size_t whylen);

/* Read-only listing for `tern queue list`: fn gets each envelope that parses
 * (incomplete and corrupt ones are skipped), nothing is changed. */
int qstore_list(struct qstore *s, qstore_item_fn fn, void *ctx, char *why, size_t whylen);

/* Items in the queue as this process knows them (recovered + committed -
 * removed - quarantined). */
size_t qstore_count(const struct qstore *s);
/* Another process (`tern sendmail`, `tern queue delete`) added or removed an item
 * this store has learnt about: keep the count used for max_items right. */
void qstore_count_adjust(struct qstore *s, int delta);

/* May a message of about size octets be accepted now?  0 if yes; -1 with
 * errno ENOSPC and why if the disk or the queue is too full (answer 452), or
 * with statvfs's errno if that failed. */
int qstore_check_room(struct qstore *s, const struct qstore_limits *lim, uint64_t size, char *why,
                      size_t whylen);

#endif
