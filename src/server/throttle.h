/*
 * throttle.h - failure counts shared by all sessions, to slow down and then
 * stop password guessing (receive.c counts failed AUTH per client network and
 * per user name).
 *
 * A key's failures are counted until none has come for `lockout`; when the
 * count reaches max_failures the key is locked for `lockout` (the caller then
 * refuses at once, without checking anything).  The table has a fixed size
 * chosen at creation: THROTTLE_WAYS entries per bucket, and a new key takes
 * the least valuable entry of its bucket (a forgotten one, else the unlocked
 * one whose last failure is oldest, else the lock that ends first), so a
 * flood of new keys can cost old counts but never memory.  Keys are kept as
 * a 64-bit hash with a seed chosen at creation, so a client cannot aim its
 * keys at one bucket.
 *
 * No clock (now_ms is passed in), no I/O, no locks: one thread owns a table.
 */
#ifndef TERN_SERVER_THROTTLE_H
#define TERN_SERVER_THROTTLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define THROTTLE_WAYS 8
#define THROTTLE_DELAY_BASE_MS 500 /* the first failure's delay, doubling with each... */
#define THROTTLE_DELAY_MAX_MS 4000 /* ...up to this */

struct throttle_conf {
    unsigned max_failures; /* >= 1 */
    uint64_t lockout_ms;   /* how long failures are remembered, and a lock lasts */
};

struct throttle;

/* A table of at least `entries` entries (rounded up to whole buckets). */
struct throttle *throttle_new(size_t entries, uint64_t seed);
void throttle_free(struct throttle *t);

/* Milliseconds until key's lock ends; 0 if it is not locked. */
uint64_t throttle_locked(struct throttle *t, const char *key, uint64_t now_ms);
/* Count one failure of key; returns its count (>= 1).  *locked is set when this
 * failure reached max_failures and locked the key. */
unsigned throttle_fail(struct throttle *t, const char *key, uint64_t now_ms,
                       const struct throttle_conf *c, bool *locked);
/* Forget key (a successful login). */
void throttle_clear(struct throttle *t, const char *key);
/* Keys with an entry that is not forgotten yet (for tests and metrics). */
size_t throttle_count(const struct throttle *t, uint64_t now_ms, const struct throttle_conf *c);

/* The delay before answering the n-th failure (n >= 1): base doubling, capped. */
unsigned throttle_delay_ms(unsigned n);

/*
 * The network of a session's peer ("1.2.3.4:587", "[2001:db8::1]:25", as
 * smtp_session_peer() gives it): "1.2.3.0/24" for IPv4 (an IPv4-mapped IPv6
 * address counts as IPv4), "2001:db8::/64" for IPv6, into net; the address
 * alone into host.  Returns 0, or -1 if peer is no IP address (both then
 * hold peer as it is, cut to fit).
 */
int throttle_net(const char *peer, char *net, size_t netsize, char *host, size_t hostsize);

#endif
