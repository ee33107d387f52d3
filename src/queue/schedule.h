/*
 * schedule.h - the delivery scheduler: which queue item may start an attempt
 * now, and when to ask again.
 *
 * A pure, event-driven structure owned by one thread.  It knows an item only
 * by its id (1 to SCHEDULE_ID_MAX characters of [A-Za-z0-9_-], copied) and
 * its destination (a remote domain, lower-cased and interned here, or "" for
 * local work, which has no per-destination limit), and time only as the
 * int64_t milliseconds its caller passes in: no clock, no I/O, no envelopes,
 * no event loop.  Every item is in exactly one state:
 *   WAITING   in a min-heap by due time
 *   DUE       due, but its destination is at per_dest: in that destination's
 *             FIFO, or in the global ready FIFO once one of its slots freed
 *   INFLIGHT  handed out by schedule_next(), until schedule_done()
 *   HELD      kept but never handed out until schedule_release()
 * The owner's loop: call schedule_next() until it returns NULL, start those
 * attempts, arm one timer for schedule_wakeup(), call schedule_done() when an
 * attempt ends, and loop again.  At most max_inflight attempts run in all, at
 * most per_dest per destination other than "" (0 = unlimited).
 *
 * Cost: O(log n) or amortised O(1) per call in the number of items n, except
 * schedule_retry_all(), schedule_each(), schedule_check(), schedule_free()
 * (O(n)), schedule_stats() (O(destinations with blocked items), at most the
 * number in flight) and schedule_set_limits() (that, plus the ready FIFO and
 * the items a raised limit lets through).  Strings
 * returned stay valid until schedule_done() or schedule_remove() of that
 * item.  Allocation failure is fatal(); nothing else is.
 */
#ifndef TERN_QUEUE_SCHEDULE_H
#define TERN_QUEUE_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCHEDULE_ID_MAX 64 /* longest id, as ENV_ID_MAX in queue/envelope.h */

struct schedule;

enum schedule_state {
    SCHEDULE_NONE = 0, /* not scheduled (what schedule_state_of() says of an unknown id) */
    SCHEDULE_WAITING,
    SCHEDULE_DUE,
    SCHEDULE_INFLIGHT,
    SCHEDULE_HELD,
};

struct schedule_limits {
    unsigned max_inflight; /* attempts running at once; 0 = unlimited */
    unsigned per_dest;     /* per destination; 0 = unlimited; never applies to dest "" */
};

struct schedule_stats {
    size_t total, waiting, due, inflight, held; /* items, and items per state */
    size_t dests;          /* distinct destinations named by items ("" included) */
    int64_t oldest_due_ms; /* earliest due of WAITING and DUE items (a DUE item counts
                              by the head of its FIFO); INT64_MAX if there are none */
    size_t bytes;          /* memory requested from malloc (allocator overhead excluded) */
    uint64_t steps;        /* internal work done so far (heap moves, probes, list moves) */
};

/* lim NULL: unlimited. */
struct schedule *schedule_new(const struct schedule_limits *lim);
void schedule_free(struct schedule *s);

/* Reload the limits.  In-flight items are not touched (a lowered limit is
 * reached again as they end; slots reserved beyond it are given back); a
 * raised one lets blocked items start. */
void schedule_set_limits(struct schedule *s, const struct schedule_limits *lim);

/* Add an item, WAITING until due_ms (dest NULL = "").  Returns 0, or -1 if the
 * id is already scheduled (errno EEXIST) or not a valid id (EINVAL); nothing
 * changes then. */
int schedule_add(struct schedule *s, const char *id, const char *dest, int64_t due_ms);

bool schedule_has(const struct schedule *s, const char *id);
/* SCHEDULE_NONE if id is not scheduled. */
enum schedule_state schedule_state_of(const struct schedule *s, const char *id);
/* As schedule_state_of(), also giving the item's destination and due time
 * (for an INFLIGHT item, the due time it was handed out at); either may be NULL. */
enum schedule_state schedule_lookup(const struct schedule *s, const char *id, const char **dest,
                                    int64_t *due_ms);

/*
 * Hand out the next item that may start at now_ms: it is due, and the global
 * limit and its destination's limit allow it.  Marks it INFLIGHT and returns
 * its id, with its destination in *dest (dest may be NULL), or returns NULL
 * when nothing may start.  Order: items whose destination freed a slot (the
 * ready FIFO, oldest first) before the heap; in the heap, earliest due first
 * (equal due times in no particular order).  Due items of a full destination
 * met on the way are moved to that destination's FIFO.
 */
const char *schedule_next(struct schedule *s, int64_t now_ms, const char **dest);

/*
 * The attempt on id ended.  remove: forget the item.  Else it becomes WAITING
 * at due_ms with the (possibly new) dest; at min(due_ms, now_ms) if
 * schedule_retry_all() or schedule_retry() was called while it was in flight;
 * HELD instead if schedule_hold() was.  Frees one slot of its old destination,
 * whose oldest DUE item then moves to the ready FIFO.  Returns 0, or -1 if id
 * is not in flight.
 */
int schedule_done(struct schedule *s, const char *id, bool remove, const char *dest, int64_t due_ms,
                  int64_t now_ms);

/* Forget an item that is not in flight (admin delete); -1 if in flight or absent. */
int schedule_remove(struct schedule *s, const char *id);

/* WAITING/DUE -> HELD; an INFLIGHT item becomes HELD when done; 0 if already
 * held; -1 if absent. */
int schedule_hold(struct schedule *s, const char *id);
/* HELD -> WAITING at due_ms; an INFLIGHT item that was to be held when done
 * will not be.  -1 if the item is absent or neither. */
int schedule_release(struct schedule *s, const char *id, int64_t due_ms);

/* SIGUSR1: every WAITING item is due at now_ms (or earlier, if it already
 * was); INFLIGHT ones will be when done; HELD ones stay held.  O(n). */
void schedule_retry_all(struct schedule *s, int64_t now_ms);
/* `tern queue retry ID`: a WAITING item is due at now_ms (never later than it
 * was); an INFLIGHT one will be when done; a DUE one already is (0).  -1 if
 * the item is HELD or absent. */
int schedule_retry(struct schedule *s, const char *id, int64_t now_ms);

/*
 * When the owner should call schedule_next() again: now_ms if something may
 * start at now_ms, else the earliest due time in the heap, else INT64_MAX.
 * Items blocked by a full destination or by max_inflight wait for a
 * schedule_done(), not for time: with max_inflight reached this is INT64_MAX.
 * (A due heap item whose destination is full still gives now_ms until a
 * schedule_next() has moved it to its destination's FIFO: after
 * schedule_next() returned NULL this is always later than now_ms.)
 */
int64_t schedule_wakeup(const struct schedule *s, int64_t now_ms);

void schedule_stats(const struct schedule *s, struct schedule_stats *st);

/* Call fn for every item, in no particular order (fn must not change s). */
void schedule_each(const struct schedule *s,
                   void (*fn)(void *ctx, const char *id, const char *dest, enum schedule_state st,
                              int64_t due_ms),
                   void *ctx);

/* Attempts in flight to dest (0 for a destination without items). */
unsigned schedule_dest_inflight(const struct schedule *s, const char *dest);

/* Walk every structure and check the invariants (each item in exactly one
 * place, counts, limits, heap order).  0, or -1 with why filled in.  O(n):
 * for tests and debugging. */
int schedule_check(const struct schedule *s, char *why, size_t whylen);

/*
 * The retry delay after attempt number `attempts` (1 = after the first) from
 * a table of n delays in ms (non-decreasing; the last one repeats; attempts 0
 * counts as 1), scaled by a jitter factor 1 - spread + 2 * spread * u01, so
 * in [1 - spread, 1 + spread) for u01 in [0, 1) (spread is clamped to [0, 1],
 * u01 to [0, 1)).  Never less than 1000 ms (also for an empty table).  Pure.
 */
uint64_t schedule_retry_delay(const uint64_t *table, size_t n, unsigned attempts, double spread,
                              double u01);

#endif
