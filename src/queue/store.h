/*
 * store.h - the durable spool of `tern serve` on disk.
 *
 * Layout under the spool directory DIR (each created 0700 if absent):
 *   DIR/tmp/         files being written; anything here after a crash is junk
 *   DIR/spare/       files of removed items kept for reuse (qstore_set_spares);
 *                    emptied at recovery
 *   DIR/queue/       one file per item, named by its id: the envelope text
 *                    (envelope.h, through its "end" line, with the message's
 *                    size and CRC-32C) immediately followed by the message
 *   DIR/quarantine/  items that could not be read, kept for a person to look at,
 *                    with ID.why saying why
 *
 * An item exists once queue/ID exists.  qstore_commit() writes the item to
 * a new tmp/ID or over a spare file, fsyncs it, renames it to queue/ID and
 * fsyncs the queue directory before it returns 0, which is the moment the
 * server may answer 250: the rename is the commit marker.  A crash at any
 * earlier instant leaves nothing that recovery keeps (tmp/ and spare/ are
 * emptied).  Since an item arrives in queue/ whole, anything wrong with a
 * file there -- no end line, an envelope that does not parse, a message
 * whose size or checksum differs from the envelope's -- happened after the
 * 250: the item is quarantined with a reason, logged as an error, never
 * delivered.  The delivery path checks the message again
 * (qstore_read_item).  Items of an older tern (queue/ID.env + queue/ID.msg,
 * envelope version 1 or 2) are converted into one file at recovery; a
 * version 1 .env without its end line is "incomplete" (written in place and
 * never acknowledged: removed), a .msg without .env an orphan (removed), a
 * damaged pair quarantined.  Every function is
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

#define QSTORE_ENV_MAX (16u << 20) /* largest envelope read back (16 MiB) */
/* qstore_read_item(): the message differs from its envelope's size or checksum
 * (after ENV_OK = 0, ENV_INCOMPLETE, ENV_CORRUPT). */
#define QSTORE_DAMAGED 3
#define QSTORE_MSG_MAX (1024u << 20) /* largest message read into memory (1 GiB) */
#define QSTORE_SPARE_SIZE_MAX 65536  /* larger items are unlinked, not kept as spares */

struct qstore;

/* The system calls the store writes through: a seam for tests (ENOSPC, EIO). */
struct qstore_io {
    ssize_t (*write)(int fd, const void *p, size_t n);
    int (*fsync)(int fd);
};

/* What qstore_recover() did. */
struct qstore_stats {
    size_t recovered;   /* complete items handed to the callback */
    size_t incomplete;  /* older tern: version 1 .env without its end line, removed */
    size_t orphans;     /* older tern: .msg without .env, removed */
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
 * Recovery callback.  env is complete and its message checked.  The callback may
 * keep the envelope by moving it: copy *env, then envelope_init(env).
 * Whatever is left in *env is freed when the callback returns.
 */
typedef void (*qstore_item_fn)(void *ctx, struct envelope *env);

/* Open (creating if needed) the spool at dir.  NULL with why on failure. */
struct qstore *qstore_open(const char *dir, char *why, size_t whylen);
void qstore_close(struct qstore *s);
const char *qstore_dir(const struct qstore *s);

/* Keep up to max files of removed items (of at most QSTORE_SPARE_SIZE_MAX
 * octets) in spare/ and write new items over them: no file created or
 * deleted per message (0, the default: qstore_remove() unlinks).  For the
 * one process that owns the queue (tern serve); `tern queue delete` unlinks.
 * Call before the store is shared between threads. */
void qstore_set_spares(struct qstore *s, size_t max);

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

/* Atomically replace the envelope of an existing item: the new envelope and
 * the same message to tmp/, fsync, rename over it, directory fsync.  ENOENT
 * if the item no longer exists, EIO if its file is not the envelope and
 * message that env describes (env must come from reading it). */
int qstore_update(struct qstore *s, const struct envelope *env, char *why, size_t whylen);

/* Remove an item (unlink queue/ID, or move it to spare/; an older tern's
 * pair is unlinked too).  No directory fsync: a crash may bring the item
 * back, never lose one.  0 if it did not exist either. */
int qstore_remove(struct qstore *s, const char *id, char *why, size_t whylen);

/* Read an item's message into out (appended), unchecked.  EFBIG over
 * QSTORE_MSG_MAX; EINVAL if the file has no envelope end line. */
int qstore_read_msg(struct qstore *s, const char *id, struct buf *out, char *why, size_t whylen);

/* Open an item for reading its message (O_CLOEXEC, positioned after the
 * envelope); the caller closes it. */
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

/*
 * Parse the whole file of an item named name (data[0..len)): the envelope
 * through its end line into env (initialised here; the caller frees it
 * whatever the result), *msgoff where the message starts, and the message
 * checked against the envelope's size and CRC-32C.  ENV_OK, or with why:
 * ENV_INCOMPLETE (no end line), ENV_CORRUPT (does not parse, another id, no
 * checksum), QSTORE_DAMAGED (the message).  Pure: no I/O.
 */
int qstore_item_parse(const char *data, size_t len, const char *name, struct envelope *env,
                      size_t *msgoff, char *why, size_t whylen);

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
 * Start-up recovery: empties tmp/ and spare/, then for each item in queue/
 * (in id order): whole, and its message matches the envelope's size and
 * CRC-32C -> fn; anything else -> quarantined, damage logged as an error.
 * An older tern's pair: converted (then fn), or as described at the top; a
 * file that is no item -> quarantined.  Sets the item count.  Returns 0 (details in
 * *stats, may be NULL), or -1 with why if the spool cannot be read at all.
 * Run it before any commit, from one thread.
 */
int qstore_recover(struct qstore *s, qstore_item_fn fn, void *ctx, struct qstore_stats *stats,
                   char *why, size_t whylen);

/* Read-only listing for `tern queue list`: fn gets each envelope that parses
 * (incomplete and corrupt ones are skipped), nothing is changed. */
int qstore_list(struct qstore *s, qstore_item_fn fn, void *ctx, char *why, size_t whylen);

/* As qstore_list(), for a spool whose items are taken by another process
 * (the pickup: `tern sendmail` writes, the server takes): an item whose
 * envelope is not whole is quarantined with an error (it arrived whole), so
 * that it is neither skipped forever nor silent. */
int qstore_take(struct qstore *s, qstore_item_fn fn, void *ctx, char *why, size_t whylen);

/* Remove the files of tmp/ not modified for age seconds before now: what a
 * writer of another process (a killed `tern sendmail`) left.  Younger ones
 * may still be being written and stay.  Returns how many went (logged). */
size_t qstore_clean_stale(struct qstore *s, int64_t now, int64_t age);

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
