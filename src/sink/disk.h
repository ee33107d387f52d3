/*
 * disk.h - `tern sink --store DIR`: the inbox kept on disk, so that a
 * restart keeps it.
 *
 * Each message is two files: DIR/ID.eml, the message exactly as received
 * (dot-unstuffed, CRLF; it opens in a mail client), and DIR/ID.json, the
 * envelope and session facts (sender, recipients, time, HELO, peer, AUTH
 * user, TLS).  The .eml is written first, then the .json: a .json that
 * parses and names its own id is the commit marker (a torn write never
 * does), and an .eml without one is an interrupted write and is ignored.
 * No fsync: this is a test server; a killed process still leaves whole
 * pairs or ignorable files.  Removed
 * files are kept (up to 256, as N.spare.tmp) and written over, because
 * freeing and allocating inodes per message is slow on ext4.
 *
 * disk_load() fills the store at start, newest first within the store's
 * limits, keeps the ids and makes new ids continue after the highest one
 * seen; damaged files are skipped with a log line and left in place.
 * disk_save() runs on the event loop at end of data; disk_remove() is the
 * store's on_remove hook (API delete, clear and drops by the limits).
 */
#ifndef TERN_SINK_DISK_H
#define TERN_SINK_DISK_H

#include <stddef.h>
#include <stdint.h>

#include "sink/store.h"

struct sink_disk;

/* Open (and create, mode 0700) DIR; NULL with a reason in why. */
struct sink_disk *disk_open(const char *dir, char *why, size_t whysize);
void disk_close(struct sink_disk *d);
/* Load DIR into st (empty); returns the number loaded, -1 when DIR is unreadable. */
long disk_load(struct sink_disk *d, struct sink_store *st);
/* Write m; 0, or -1 after logging why (the message stays in memory). */
int disk_save(struct sink_disk *d, const struct sink_msg *m);
/* Pure: a message from its envelope (the .json text, whose "id" must be id) and
 * its raw octets (malloc'd; owned by the message on success).  NULL with why
 * when the envelope is damaged (raw is then still the caller's). */
struct sink_msg *disk_msg_parse(const char *json, size_t jlen, uint64_t id, char *raw,
                                size_t rawlen, const char **why);
/* Remove m's files (a store on_remove hook: ctx is the sink_disk). */
void disk_remove(void *ctx, const struct sink_msg *m);

#endif
