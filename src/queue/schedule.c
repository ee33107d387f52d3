/*
 * schedule.c - the delivery scheduler (see schedule.h for the model).
 *
 * Structures: items and destinations live in two open-addressing hash tables
 * (linear probing, backward-shift deletion, no tombstones; grown above 69 % load
 * and shrunk below 1/8).  An item is one malloc'd block with its id inline;
 * a WAITING item stores its index in the binary min-heap (s->heap), a DUE
 * item its links in a doubly-linked FIFO (its destination's, or the global
 * ready FIFO when the flag IT_READY is set): the two share one union, since
 * an item is never in both.  A destination is interned (lower-cased) and
 * counts the items that name it (freed at zero), its attempts in flight, and
 * its items in the ready FIFO ("reservations": in flight + reserved never
 * exceeds per_dest while any are reserved; a reload that lowers per_dest
 * takes the excess back).  Destinations whose FIFO is
 * not empty are also linked in s->blocked, so that a reload and the stats
 * visit only those.
 *
 * Invariants (schedule_check() verifies them all): an item is in exactly one
 * of heap / a destination FIFO / the ready FIFO / in flight / held; a
 * destination with a non-empty FIFO has no free slot; no item is handed out
 * twice without a schedule_done() between.
 *
 * Never: reads a clock, does I/O, or keeps a pointer given by the caller.
 */
#include "queue/schedule.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

/* flags of an item */
#define IT_READY 1u /* DUE and in the ready FIFO (else DUE in its destination's) */
#define IT_RETRY 2u /* INFLIGHT: due at once when done */
#define IT_HOLD 4u  /* INFLIGHT: held when done */

struct sched_item;

struct sched_fifo {
    struct sched_item *head, *tail;
};

struct sched_item {
    int64_t due;
    struct sched_dest *dest;
    union {
        size_t heap; /* WAITING: index in s->heap */
        struct {
            struct sched_item *prev, *next;
        } link; /* DUE: place in a FIFO */
    } at;
    uint32_t hash;
    uint8_t state; /* enum schedule_state */
    uint8_t flags; /* IT_* */
    char id[];
};

struct sched_dest {
    struct sched_fifo fifo;           /* DUE items waiting for a slot */
    struct sched_dest *bprev, *bnext; /* in s->blocked while the FIFO is not empty */
    size_t refs;                      /* items naming this destination */
    size_t inflight;                  /* its attempts running */
    size_t reserved;                  /* its items in the ready FIFO */
    uint32_t hash;
    char name[];
};

/* Open addressing over entries that carry their hash and key at fixed offsets. */
struct sched_table {
    void **slot;
    size_t mask; /* capacity - 1 (a power of two); slot NULL = empty table */
    size_t count;
    size_t hash_off, key_off;
    bool fold; /* keys compare ASCII case-insensitively (stored lower-case) */
};

struct schedule {
    struct schedule_limits lim;
    struct sched_table items, dests;
    struct sched_item **heap;
    size_t heap_len, heap_cap;
    struct sched_fifo ready;
    struct sched_dest *blocked;
    size_t inflight, waiting, due, held;
    size_t bytes;
    uint64_t steps;
    uint64_t seed;
};

#define TABLE_MIN 16
#define HEAP_MIN 16

/* ---- strings and hashing ------------------------------------------------ */

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

static bool id_valid(const char *id)
{
    size_t n = 0;
    if (!id)
        return false;
    for (; id[n]; n++) {
        unsigned char c = (unsigned char)id[n];
        if (n >= SCHEDULE_ID_MAX || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                      (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return n > 0;
}

/* FNV-1a over the (folded) bytes, seeded, finished with murmur3's mixer. */
static uint32_t hash_str(uint64_t seed, const char *p, bool fold)
{
    uint64_t h = 0xcbf29ce484222325u ^ seed;
    for (; *p; p++) {
        h ^= fold ? lower((unsigned char)*p) : (unsigned char)*p;
        h *= 0x100000001b3u;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdu;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53u;
    h ^= h >> 33;
    return (uint32_t)h;
}

/* stored is lower-case already. */
static bool key_equal(const char *stored, const char *key, bool fold)
{
    if (!fold)
        return strcmp(stored, key) == 0;
    for (; *stored && lower((unsigned char)*key) == (unsigned char)*stored; stored++, key++)
        ;
    return *stored == '\0' && *key == '\0';
}

/* ---- hash tables ------------------------------------------------------- */

static uint32_t entry_hash(const struct sched_table *t, const void *e)
{
    uint32_t h;
    memcpy(&h, (const char *)e + t->hash_off, sizeof(h));
    return h;
}

static const char *entry_key(const struct sched_table *t, const void *e)
{
    return (const char *)e + t->key_off;
}

static void *table_get(const struct sched_table *t, const char *key, uint32_t h)
{
    if (!t->slot)
        return NULL;
    for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
        void *e = t->slot[i];
        if (!e)
            return NULL;
        if (entry_hash(t, e) == h && key_equal(entry_key(t, e), key, t->fold))
            return e;
    }
}

static void table_place(struct schedule *s, void **slot, size_t mask, void *e, uint32_t h)
{
    size_t i = h & mask;
    while (slot[i]) {
        i = (i + 1) & mask;
        s->steps++;
    }
    slot[i] = e;
}

/* Rebuild t with cap slots (a power of two, larger than its count).  When
 * shrinking, a failed allocation just keeps the larger table. */
static void table_resize(struct schedule *s, struct sched_table *t, size_t cap, bool may_fail)
{
    if (cap > SIZE_MAX / sizeof(void *))
        fatal("out of memory");
    void **slot = calloc(cap, sizeof(void *));
    if (!slot) {
        if (may_fail)
            return;
        fatal("out of memory");
    }
    size_t oldcap = t->slot ? t->mask + 1 : 0;
    for (size_t i = 0; i < oldcap; i++) {
        if (t->slot[i])
            table_place(s, slot, cap - 1, t->slot[i], entry_hash(t, t->slot[i]));
    }
    s->steps += oldcap;
    s->bytes = s->bytes - oldcap * sizeof(void *) + cap * sizeof(void *);
    free(t->slot);
    t->slot = slot;
    t->mask = cap - 1;
}

/* Insert e (whose key is not in t). */
static void table_put(struct schedule *s, struct sched_table *t, void *e)
{
    size_t cap = t->slot ? t->mask + 1 : 0;
    if (cap == 0)
        table_resize(s, t, TABLE_MIN, false);
    else if (t->count + 1 > cap / 16 * 11) { /* load at most 69 % */
        if (cap > SIZE_MAX / 2)
            fatal("out of memory");
        table_resize(s, t, cap * 2, false);
    }
    table_place(s, t->slot, t->mask, e, entry_hash(t, e));
    t->count++;
}

/* Remove e (which is in t), shifting back the entries of its cluster. */
static void table_del(struct schedule *s, struct sched_table *t, const void *e)
{
    size_t mask = t->mask;
    size_t i = entry_hash(t, e) & mask;
    while (t->slot[i] != e) {
        i = (i + 1) & mask;
        s->steps++;
    }
    t->slot[i] = NULL;
    t->count--;
    for (size_t j = (i + 1) & mask; t->slot[j]; j = (j + 1) & mask) {
        size_t home = entry_hash(t, t->slot[j]) & mask;
        /* the entry at j may fill the hole at i unless its home lies in (i, j] */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        s->steps++;
        if (!stays) {
            t->slot[i] = t->slot[j];
            t->slot[j] = NULL;
            i = j;
        }
    }
    size_t cap = mask + 1;
    if (cap > TABLE_MIN && t->count < cap / 8)
        table_resize(s, t, cap / 2, true);
}

/* ---- the heap of WAITING items ----------------------------------------- */

static void heap_set(struct schedule *s, size_t i, struct sched_item *it)
{
    s->heap[i] = it;
    it->at.heap = i;
}

static void heap_up(struct schedule *s, size_t i)
{
    struct sched_item *it = s->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (s->heap[parent]->due <= it->due)
            break;
        heap_set(s, i, s->heap[parent]);
        i = parent;
        s->steps++;
    }
    heap_set(s, i, it);
}

static void heap_down(struct schedule *s, size_t i)
{
    struct sched_item *it = s->heap[i];
    size_t n = s->heap_len;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && s->heap[c + 1]->due < s->heap[c]->due)
            c++;
        if (s->heap[c]->due >= it->due)
            break;
        heap_set(s, i, s->heap[c]);
        i = c;
        s->steps++;
    }
    heap_set(s, i, it);
}

static void heap_resize(struct schedule *s, size_t cap, bool may_fail)
{
    if (cap > SIZE_MAX / sizeof(*s->heap))
        fatal("out of memory");
    struct sched_item **h = realloc(s->heap, cap * sizeof(*h));
    if (!h) {
        if (may_fail)
            return;
        fatal("out of memory");
    }
    s->bytes = s->bytes - s->heap_cap * sizeof(*h) + cap * sizeof(*h);
    s->heap = h;
    s->heap_cap = cap;
}

static void heap_push(struct schedule *s, struct sched_item *it)
{
    if (s->heap_len == s->heap_cap) {
        if (s->heap_cap > SIZE_MAX / 2)
            fatal("out of memory");
        heap_resize(s, s->heap_cap ? s->heap_cap * 2 : HEAP_MIN, false);
    }
    s->heap[s->heap_len] = it;
    it->at.heap = s->heap_len++;
    heap_up(s, it->at.heap);
}

static void heap_remove(struct schedule *s, struct sched_item *it)
{
    size_t i = it->at.heap;
    struct sched_item *last = s->heap[--s->heap_len];
    if (last != it) {
        heap_set(s, i, last);
        if (i > 0 && s->heap[(i - 1) / 2]->due > last->due)
            heap_up(s, i);
        else
            heap_down(s, i);
    }
    if (s->heap_cap > HEAP_MIN && s->heap_len < s->heap_cap / 4)
        heap_resize(s, s->heap_cap / 2, true);
}

/* ---- FIFOs --------------------------------------------------------------- */

static void fifo_push_back(struct sched_fifo *f, struct sched_item *it)
{
    it->at.link.next = NULL;
    it->at.link.prev = f->tail;
    if (f->tail)
        f->tail->at.link.next = it;
    else
        f->head = it;
    f->tail = it;
}

static void fifo_push_front(struct sched_fifo *f, struct sched_item *it)
{
    it->at.link.prev = NULL;
    it->at.link.next = f->head;
    if (f->head)
        f->head->at.link.prev = it;
    else
        f->tail = it;
    f->head = it;
}

static void fifo_unlink(struct sched_fifo *f, struct sched_item *it)
{
    if (it->at.link.prev)
        it->at.link.prev->at.link.next = it->at.link.next;
    else
        f->head = it->at.link.next;
    if (it->at.link.next)
        it->at.link.next->at.link.prev = it->at.link.prev;
    else
        f->tail = it->at.link.prev;
}

/* ---- destinations -------------------------------------------------------- */

static bool dest_limited(const struct schedule *s, const struct sched_dest *d)
{
    return s->lim.per_dest != 0 && d->name[0] != '\0';
}

/* No slot for another attempt. */
static bool dest_full(const struct schedule *s, const struct sched_dest *d)
{
    return dest_limited(s, d) && d->inflight >= s->lim.per_dest;
}

/* A slot that no item in the ready FIFO has reserved. */
static bool dest_free_slot(const struct schedule *s, const struct sched_dest *d)
{
    return !dest_limited(s, d) || d->inflight + d->reserved < s->lim.per_dest;
}

static void blocked_link(struct schedule *s, struct sched_dest *d)
{
    d->bprev = NULL;
    d->bnext = s->blocked;
    if (s->blocked)
        s->blocked->bprev = d;
    s->blocked = d;
}

static void blocked_unlink(struct schedule *s, struct sched_dest *d)
{
    if (d->bprev)
        d->bprev->bnext = d->bnext;
    else
        s->blocked = d->bnext;
    if (d->bnext)
        d->bnext->bprev = d->bprev;
    d->bprev = d->bnext = NULL;
}

static void dest_fifo_add(struct schedule *s, struct sched_dest *d, struct sched_item *it,
                          bool front)
{
    if (!d->fifo.head)
        blocked_link(s, d);
    if (front)
        fifo_push_front(&d->fifo, it);
    else
        fifo_push_back(&d->fifo, it);
}

static void dest_fifo_unlink(struct schedule *s, struct sched_dest *d, struct sched_item *it)
{
    fifo_unlink(&d->fifo, it);
    if (!d->fifo.head)
        blocked_unlink(s, d);
}

/* Move d's oldest DUE items to the ready FIFO while it has unreserved slots. */
static void dest_fill(struct schedule *s, struct sched_dest *d)
{
    while (d->fifo.head && dest_free_slot(s, d)) {
        struct sched_item *it = d->fifo.head;
        dest_fifo_unlink(s, d, it);
        fifo_push_back(&s->ready, it);
        it->flags |= IT_READY;
        d->reserved++;
        s->steps++;
    }
}

/* Bytes of a destination whose name has len characters. */
static size_t dest_size(size_t len)
{
    size_t size = offsetof(struct sched_dest, name) + len + 1;
    return size < sizeof(struct sched_dest) ? sizeof(struct sched_dest) : size;
}

/* The destination named name (any case; NULL = ""), created if new; one more reference. */
static struct sched_dest *dest_ref(struct schedule *s, const char *name)
{
    if (!name)
        name = "";
    uint32_t h = hash_str(s->seed, name, true);
    struct sched_dest *d = table_get(&s->dests, name, h);
    if (!d) {
        size_t len = strlen(name);
        if (len > SIZE_MAX - sizeof(*d) - 1)
            fatal("out of memory");
        size_t size = dest_size(len);
        d = calloc(1, size);
        if (!d)
            fatal("out of memory");
        for (size_t i = 0; i <= len; i++)
            d->name[i] = (char)lower((unsigned char)name[i]);
        d->hash = h;
        s->bytes += size;
        table_put(s, &s->dests, d);
    }
    d->refs++;
    return d;
}

static void dest_unref(struct schedule *s, struct sched_dest *d)
{
    if (--d->refs > 0)
        return;
    table_del(s, &s->dests, d);
    s->bytes -= dest_size(strlen(d->name));
    free(d);
}

/* ---- items -------------------------------------------------------------- */

/* Bytes of an item whose id has len characters. */
static size_t item_size(size_t len)
{
    size_t size = offsetof(struct sched_item, id) + len + 1;
    return size < sizeof(struct sched_item) ? sizeof(struct sched_item) : size;
}

static struct sched_item *item_get(const struct schedule *s, const char *id)
{
    if (!id_valid(id))
        return NULL;
    return table_get(&s->items, id, hash_str(s->seed, id, false));
}

static bool global_full(const struct schedule *s)
{
    return s->lim.max_inflight != 0 && s->inflight >= s->lim.max_inflight;
}

static void wait_at(struct schedule *s, struct sched_item *it, int64_t due)
{
    it->state = SCHEDULE_WAITING;
    it->due = due;
    heap_push(s, it);
    s->waiting++;
}

static void hold_at(struct schedule *s, struct sched_item *it, int64_t due)
{
    it->state = SCHEDULE_HELD;
    it->due = due;
    s->held++;
}

/* Take a WAITING, DUE or HELD item out of wherever it is. */
static void item_detach(struct schedule *s, struct sched_item *it)
{
    struct sched_dest *d = it->dest;
    switch (it->state) {
    case SCHEDULE_WAITING:
        heap_remove(s, it);
        s->waiting--;
        break;
    case SCHEDULE_DUE:
        if (it->flags & IT_READY) {
            fifo_unlink(&s->ready, it);
            it->flags &= (uint8_t)~IT_READY;
            d->reserved--;
            dest_fill(s, d); /* the slot it had reserved goes to the next one */
        } else {
            dest_fifo_unlink(s, d, it);
        }
        s->due--;
        break;
    case SCHEDULE_HELD:
        s->held--;
        break;
    default:
        fatal("schedule: detaching item %s in state %d", it->id, it->state);
    }
    it->state = SCHEDULE_NONE;
}

static void item_forget(struct schedule *s, struct sched_item *it)
{
    table_del(s, &s->items, it);
    dest_unref(s, it->dest);
    s->bytes -= item_size(strlen(it->id));
    free(it);
}

static const char *item_start(struct schedule *s, struct sched_item *it, const char **dest)
{
    it->state = SCHEDULE_INFLIGHT;
    it->flags = 0;
    it->dest->inflight++;
    s->inflight++;
    if (dest)
        *dest = it->dest->name;
    return it->id;
}

/* ---- the API ------------------------------------------------------------- */

struct schedule *schedule_new(const struct schedule_limits *lim)
{
    struct schedule *s = calloc(1, sizeof(*s));
    if (!s)
        fatal("out of memory");
    if (lim)
        s->lim = *lim;
    s->items.hash_off = offsetof(struct sched_item, hash);
    s->items.key_off = offsetof(struct sched_item, id);
    s->dests.hash_off = offsetof(struct sched_dest, hash);
    s->dests.key_off = offsetof(struct sched_dest, name);
    s->dests.fold = true;
    /* a per-instance seed, so that the layout of the tables cannot be chosen from outside */
    s->seed = (uint64_t)(uintptr_t)s * 0x9e3779b97f4a7c15u;
    s->bytes = sizeof(*s);
    return s;
}

void schedule_free(struct schedule *s)
{
    if (!s)
        return;
    if (s->items.slot) {
        for (size_t i = 0; i <= s->items.mask; i++)
            free(s->items.slot[i]);
    }
    if (s->dests.slot) {
        for (size_t i = 0; i <= s->dests.mask; i++)
            free(s->dests.slot[i]);
    }
    free(s->items.slot);
    free(s->dests.slot);
    free(s->heap);
    free(s);
}

void schedule_set_limits(struct schedule *s, const struct schedule_limits *lim)
{
    static const struct schedule_limits none;
    s->lim = lim ? *lim : none;
    /* lowered: give back the reservations beyond the new limits, the newest first and each
     * to the front of its destination's FIFO, so that the order of the line holds */
    struct sched_item *it = s->ready.tail;
    while (it) {
        struct sched_item *prev = it->at.link.prev;
        struct sched_dest *d = it->dest;
        if (dest_limited(s, d) && d->inflight + d->reserved > s->lim.per_dest) {
            fifo_unlink(&s->ready, it);
            it->flags &= (uint8_t)~IT_READY;
            d->reserved--;
            dest_fifo_add(s, d, it, true);
        }
        s->steps++;
        it = prev;
    }
    /* raised: blocked destinations with a free slot pass it on */
    struct sched_dest *d = s->blocked;
    while (d) {
        struct sched_dest *next = d->bnext; /* dest_fill() may unlink d */
        dest_fill(s, d);
        d = next;
    }
}

int schedule_add(struct schedule *s, const char *id, const char *dest, int64_t due_ms)
{
    if (!id_valid(id)) {
        errno = EINVAL;
        return -1;
    }
    uint32_t h = hash_str(s->seed, id, false);
    if (table_get(&s->items, id, h)) {
        errno = EEXIST;
        return -1;
    }
    size_t len = strlen(id);
    size_t size = item_size(len);
    struct sched_item *it = malloc(size);
    if (!it)
        fatal("out of memory");
    memcpy(it->id, id, len + 1);
    it->hash = h;
    it->flags = 0;
    it->dest = dest_ref(s, dest);
    s->bytes += size;
    table_put(s, &s->items, it);
    wait_at(s, it, due_ms);
    return 0;
}

bool schedule_has(const struct schedule *s, const char *id)
{
    return item_get(s, id) != NULL;
}

enum schedule_state schedule_lookup(const struct schedule *s, const char *id, const char **dest,
                                    int64_t *due_ms)
{
    const struct sched_item *it = item_get(s, id);
    if (!it)
        return SCHEDULE_NONE;
    if (dest)
        *dest = it->dest->name;
    if (due_ms)
        *due_ms = it->due;
    return (enum schedule_state)it->state;
}

enum schedule_state schedule_state_of(const struct schedule *s, const char *id)
{
    return schedule_lookup(s, id, NULL, NULL);
}

const char *schedule_next(struct schedule *s, int64_t now_ms, const char **dest)
{
    for (;;) {
        s->steps++;
        if (global_full(s))
            return NULL;
        struct sched_item *it = s->ready.head;
        if (it) {
            struct sched_dest *d = it->dest;
            fifo_unlink(&s->ready, it);
            it->flags &= (uint8_t)~IT_READY;
            d->reserved--;
            if (dest_full(s, d)) {
                /* (cannot happen: schedule_set_limits() takes back reservations beyond a
                 * lowered limit; if it did, the item goes back to the head of its line) */
                dest_fifo_add(s, d, it, true);
                continue;
            }
            s->due--;
            return item_start(s, it, dest);
        }
        if (s->heap_len == 0 || s->heap[0]->due > now_ms)
            return NULL;
        it = s->heap[0];
        heap_remove(s, it);
        s->waiting--;
        struct sched_dest *d = it->dest;
        if (dest_full(s, d) || d->fifo.head) {
            /* (a FIFO with a free slot cannot happen; if it did, dest_fill() mends it) */
            it->state = SCHEDULE_DUE;
            s->due++;
            dest_fifo_add(s, d, it, false);
            dest_fill(s, d);
            continue;
        }
        return item_start(s, it, dest);
    }
}

int schedule_done(struct schedule *s, const char *id, bool remove, const char *dest, int64_t due_ms,
                  int64_t now_ms)
{
    struct sched_item *it = item_get(s, id);
    if (!it || it->state != SCHEDULE_INFLIGHT)
        return -1;
    struct sched_dest *old = it->dest;
    old->inflight--;
    s->inflight--;
    old->refs++; /* keep old alive until its freed slot is passed on */
    if (remove) {
        item_forget(s, it);
    } else {
        it->dest = dest_ref(s, dest); /* before old's reference goes: dest may be old->name */
        dest_unref(s, old);
        if ((it->flags & IT_RETRY) && now_ms < due_ms)
            due_ms = now_ms;
        if (it->flags & IT_HOLD)
            hold_at(s, it, due_ms);
        else
            wait_at(s, it, due_ms);
        it->flags = 0;
    }
    dest_fill(s, old);
    dest_unref(s, old);
    return 0;
}

int schedule_remove(struct schedule *s, const char *id)
{
    struct sched_item *it = item_get(s, id);
    if (!it || it->state == SCHEDULE_INFLIGHT)
        return -1;
    item_detach(s, it);
    item_forget(s, it);
    return 0;
}

int schedule_hold(struct schedule *s, const char *id)
{
    struct sched_item *it = item_get(s, id);
    if (!it)
        return -1;
    switch (it->state) {
    case SCHEDULE_INFLIGHT:
        it->flags |= IT_HOLD;
        return 0;
    case SCHEDULE_HELD:
        return 0;
    default:
        item_detach(s, it);
        hold_at(s, it, it->due);
        return 0;
    }
}

int schedule_release(struct schedule *s, const char *id, int64_t due_ms)
{
    struct sched_item *it = item_get(s, id);
    if (!it)
        return -1;
    if (it->state == SCHEDULE_INFLIGHT && (it->flags & IT_HOLD)) {
        it->flags &= (uint8_t)~IT_HOLD;
        return 0;
    }
    if (it->state != SCHEDULE_HELD)
        return -1;
    item_detach(s, it);
    wait_at(s, it, due_ms);
    return 0;
}

void schedule_retry_all(struct schedule *s, int64_t now_ms)
{
    /* min(due, now) is monotonic: applied to every heap entry, the heap stays a heap */
    for (size_t i = 0; i < s->heap_len; i++) {
        if (s->heap[i]->due > now_ms)
            s->heap[i]->due = now_ms;
    }
    if (!s->items.slot || s->inflight == 0)
        return;
    for (size_t i = 0; i <= s->items.mask; i++) {
        struct sched_item *it = s->items.slot[i];
        if (it && it->state == SCHEDULE_INFLIGHT)
            it->flags |= IT_RETRY;
    }
}

int schedule_retry(struct schedule *s, const char *id, int64_t now_ms)
{
    struct sched_item *it = item_get(s, id);
    if (!it)
        return -1;
    switch (it->state) {
    case SCHEDULE_WAITING:
        if (now_ms < it->due) {
            it->due = now_ms;
            heap_up(s, it->at.heap);
        }
        return 0;
    case SCHEDULE_DUE:
        return 0;
    case SCHEDULE_INFLIGHT:
        it->flags |= IT_RETRY;
        return 0;
    default:
        return -1;
    }
}

int64_t schedule_wakeup(const struct schedule *s, int64_t now_ms)
{
    if (global_full(s))
        return INT64_MAX;
    if (s->ready.head)
        return now_ms;
    if (s->heap_len == 0)
        return INT64_MAX;
    return s->heap[0]->due <= now_ms ? now_ms : s->heap[0]->due;
}

void schedule_stats(const struct schedule *s, struct schedule_stats *st)
{
    memset(st, 0, sizeof(*st));
    st->total = s->items.count;
    st->waiting = s->waiting;
    st->due = s->due;
    st->inflight = s->inflight;
    st->held = s->held;
    st->dests = s->dests.count;
    st->bytes = s->bytes;
    st->steps = s->steps;
    int64_t oldest = INT64_MAX;
    if (s->heap_len)
        oldest = s->heap[0]->due;
    if (s->ready.head && s->ready.head->due < oldest)
        oldest = s->ready.head->due;
    for (const struct sched_dest *d = s->blocked; d; d = d->bnext) {
        if (d->fifo.head->due < oldest)
            oldest = d->fifo.head->due;
    }
    st->oldest_due_ms = oldest;
}

void schedule_each(const struct schedule *s,
                   void (*fn)(void *ctx, const char *id, const char *dest, enum schedule_state st,
                              int64_t due_ms),
                   void *ctx)
{
    if (!s->items.slot)
        return;
    for (size_t i = 0; i <= s->items.mask; i++) {
        const struct sched_item *it = s->items.slot[i];
        if (it)
            fn(ctx, it->id, it->dest->name, (enum schedule_state)it->state, it->due);
    }
}

unsigned schedule_dest_inflight(const struct schedule *s, const char *dest)
{
    if (!dest)
        dest = "";
    const struct sched_dest *d = table_get(&s->dests, dest, hash_str(s->seed, dest, true));
    if (!d)
        return 0;
    return d->inflight > UINT32_MAX ? UINT32_MAX : (unsigned)d->inflight;
}

/* ---- invariants ------------------------------------------------------- */

static int bad(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad(char *why, size_t whylen, const char *fmt, ...)
{
    if (why && whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Per-destination tallies rebuilt by schedule_check(), kept in a scratch table. */
struct check_dest {
    const struct sched_dest *d;
    size_t refs, inflight, queued, reserved;
};

static struct check_dest *check_slot(struct check_dest *tab, size_t mask,
                                     const struct sched_dest *d)
{
    size_t i = d->hash & mask;
    while (tab[i].d && tab[i].d != d)
        i = (i + 1) & mask;
    tab[i].d = d;
    return &tab[i];
}

static int check_fifo(const struct sched_fifo *f, const struct sched_dest *owner, size_t *n,
                      char *why, size_t whylen)
{
    const struct sched_item *prev = NULL;
    for (const struct sched_item *it = f->head; it; prev = it, it = it->at.link.next) {
        if (it->at.link.prev != prev)
            return bad(why, whylen, "%s: broken FIFO link", it->id);
        if (it->state != SCHEDULE_DUE)
            return bad(why, whylen, "%s: in a FIFO in state %d", it->id, it->state);
        if (owner ? (it->dest != owner || (it->flags & IT_READY)) : !(it->flags & IT_READY))
            return bad(why, whylen, "%s: in the wrong FIFO", it->id);
        if (++*n > SIZE_MAX / 2)
            return bad(why, whylen, "FIFO loops");
    }
    if (f->tail != prev)
        return bad(why, whylen, "FIFO tail is wrong");
    return 0;
}

int schedule_check(const struct schedule *s, char *why, size_t whylen)
{
    size_t n[5] = {0}, inready = 0, indest = 0;
    size_t dcap = TABLE_MIN;
    while (dcap < 2 * s->dests.count + 1)
        dcap *= 2;
    struct check_dest *tab = calloc(dcap, sizeof(*tab));
    if (!tab)
        fatal("out of memory");
    int rc = 0;
    size_t icap = s->items.slot ? s->items.mask + 1 : 0;
    for (size_t i = 0; i < icap && rc == 0; i++) {
        const struct sched_item *it = s->items.slot[i];
        if (!it)
            continue;
        if (table_get(&s->items, it->id, it->hash) != it)
            rc = bad(why, whylen, "%s: not found by its id", it->id);
        else if (it->state < SCHEDULE_WAITING || it->state > SCHEDULE_HELD)
            rc = bad(why, whylen, "%s: state %d", it->id, it->state);
        else if (table_get(&s->dests, it->dest->name, it->dest->hash) != it->dest)
            rc = bad(why, whylen, "%s: destination not interned", it->id);
        else if (it->state == SCHEDULE_WAITING &&
                 (it->at.heap >= s->heap_len || s->heap[it->at.heap] != it))
            rc = bad(why, whylen, "%s: WAITING but not in the heap", it->id);
        else if (it->state != SCHEDULE_INFLIGHT && (it->flags & (IT_RETRY | IT_HOLD)))
            rc = bad(why, whylen, "%s: in-flight flags on a state %d", it->id, it->state);
        if (rc)
            break;
        n[it->state]++;
        struct check_dest *cd = check_slot(tab, dcap - 1, it->dest);
        cd->refs++;
        cd->inflight += it->state == SCHEDULE_INFLIGHT;
        if (it->state == SCHEDULE_DUE && (it->flags & IT_READY))
            cd->reserved++;
        else if (it->state == SCHEDULE_DUE)
            cd->queued++;
    }
    for (size_t i = 0; i < s->heap_len && rc == 0; i++) {
        const struct sched_item *it = s->heap[i];
        if (it->state != SCHEDULE_WAITING || it->at.heap != i)
            rc = bad(why, whylen, "%s: heap slot %zu is wrong", it->id, i);
        else if (i > 0 && s->heap[(i - 1) / 2]->due > it->due)
            rc = bad(why, whylen, "%s: heap order broken at %zu", it->id, i);
    }
    if (rc == 0 && s->heap_len != n[SCHEDULE_WAITING])
        rc = bad(why, whylen, "heap holds %zu items, %zu are WAITING", s->heap_len,
                 n[SCHEDULE_WAITING]);
    if (rc == 0)
        rc = check_fifo(&s->ready, NULL, &inready, why, whylen);
    size_t dslots = s->dests.slot ? s->dests.mask + 1 : 0, nblocked = 0;
    for (size_t i = 0; i < dslots && rc == 0; i++) {
        const struct sched_dest *d = s->dests.slot[i];
        if (!d)
            continue;
        size_t q = 0;
        const struct check_dest *cd = check_slot(tab, dcap - 1, d);
        rc = check_fifo(&d->fifo, d, &q, why, whylen);
        if (rc)
            break;
        indest += q;
        nblocked += q > 0;
        if (d->refs == 0 || d->refs != cd->refs || d->inflight != cd->inflight ||
            d->reserved != cd->reserved || q != cd->queued)
            rc = bad(why, whylen,
                     "dest '%s': refs %zu/%zu inflight %zu/%zu reserved %zu/%zu queued %zu/%zu",
                     d->name, d->refs, cd->refs, d->inflight, cd->inflight, d->reserved,
                     cd->reserved, q, cd->queued);
        else if (q > 0 && dest_free_slot(s, d))
            rc = bad(why, whylen, "dest '%s': items wait in its FIFO beside a free slot", d->name);
        else if (d->reserved > 0 && dest_limited(s, d) &&
                 d->inflight + d->reserved > s->lim.per_dest)
            rc = bad(why, whylen, "dest '%s': %zu slots reserved beyond its limit", d->name,
                     d->reserved);
        else if (d->name[strcspn(d->name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ")] != '\0')
            rc = bad(why, whylen, "dest '%s' is not lower-case", d->name);
    }
    if (rc == 0) {
        size_t nb = 0;
        for (const struct sched_dest *d = s->blocked; d && rc == 0; d = d->bnext) {
            if (!d->fifo.head || (d->bnext && d->bnext->bprev != d) || ++nb > nblocked)
                rc = bad(why, whylen, "blocked list is wrong at '%s'", d->name);
        }
        if (rc == 0 && nb != nblocked)
            rc = bad(why, whylen, "blocked list holds %zu of %zu", nb, nblocked);
    }
    if (rc == 0 && (inready + indest != n[SCHEDULE_DUE] || s->due != n[SCHEDULE_DUE] ||
                    s->waiting != n[SCHEDULE_WAITING] || s->held != n[SCHEDULE_HELD] ||
                    s->inflight != n[SCHEDULE_INFLIGHT]))
        rc = bad(why, whylen,
                 "counts: due %zu+%zu/%zu/%zu waiting %zu/%zu held %zu/%zu inflight %zu/%zu",
                 inready, indest, n[SCHEDULE_DUE], s->due, n[SCHEDULE_WAITING], s->waiting,
                 n[SCHEDULE_HELD], s->held, n[SCHEDULE_INFLIGHT], s->inflight);
    free(tab);
    return rc;
}

/* ---- retry delays ------------------------------------------------------ */

uint64_t schedule_retry_delay(const uint64_t *table, size_t n, unsigned attempts, double spread,
                              double u01)
{
    const uint64_t floor_ms = 1000;
    if (!table || n == 0)
        return floor_ms;
    size_t i = attempts > 0 ? (size_t)attempts - 1 : 0;
    if (i >= n)
        i = n - 1;
    if (!(spread > 0)) /* also NaN */
        spread = 0;
    if (spread > 1)
        spread = 1;
    if (!(u01 > 0))
        u01 = 0;
    if (u01 >= 1)
        u01 = 0x1.fffffffffffffp-1; /* the largest double below 1 */
    double d = (double)table[i] * (1.0 - spread + 2.0 * spread * u01);
    if (d >= 18446744073709551616.0) /* 2^64 */
        return UINT64_MAX;
    uint64_t ms = (uint64_t)d;
    return ms < floor_ms ? floor_ms : ms;
}
