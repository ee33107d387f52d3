/*
 * throttle.c - a fixed-size table of failure counts (see throttle.h).
 *
 * Buckets of THROTTLE_WAYS entries; a key's bucket is its seeded hash modulo
 * the number of buckets, and within the bucket the full 64-bit hash names
 * it (two keys would have to collide on 64 bits to share a count).  An entry
 * is forgotten `lockout` after its last failure or after its lock ends,
 * whichever is later; forgetting is lazy (checked when an entry is looked
 * at), so nothing ever has to sweep the table.
 */
#include "server/throttle.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/netaddr.h"

struct throttle_entry {
    uint64_t hash; /* 0: free */
    uint64_t last_ms, locked_until_ms;
    unsigned count;
};

struct throttle {
    uint64_t seed;
    size_t nbuckets;
    struct throttle_entry *v; /* nbuckets * THROTTLE_WAYS */
};

struct throttle *throttle_new(size_t entries, uint64_t seed)
{
    struct throttle *t = calloc(1, sizeof(*t));
    if (!t)
        fatal("out of memory");
    t->seed = seed;
    t->nbuckets = entries / THROTTLE_WAYS + (entries % THROTTLE_WAYS != 0);
    if (t->nbuckets == 0)
        t->nbuckets = 1;
    t->v = calloc(t->nbuckets * THROTTLE_WAYS, sizeof(*t->v));
    if (!t->v)
        fatal("out of memory");
    return t;
}

void throttle_free(struct throttle *t)
{
    if (!t)
        return;
    free(t->v);
    free(t);
}

/* FNV-1a, seeded, finished with murmur3's mixer; never 0 (0 marks a free entry). */
static uint64_t throttle_hash(const struct throttle *t, const char *key)
{
    uint64_t h = 0xcbf29ce484222325u ^ t->seed;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3u;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdu;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53u;
    h ^= h >> 33;
    return h ? h : 1;
}

static struct throttle_entry *throttle_bucket(const struct throttle *t, uint64_t h)
{
    return &t->v[(h % t->nbuckets) * THROTTLE_WAYS];
}

/* Forgotten: lockout after the last failure and after the end of any lock. */
static bool throttle_expired(const struct throttle_entry *e, uint64_t now_ms, uint64_t lockout_ms)
{
    uint64_t until = e->last_ms + lockout_ms;
    if (e->locked_until_ms > until)
        until = e->locked_until_ms;
    return now_ms >= until;
}

static struct throttle_entry *throttle_find(const struct throttle *t, uint64_t h)
{
    struct throttle_entry *b = throttle_bucket(t, h);
    for (size_t i = 0; i < THROTTLE_WAYS; i++)
        if (b[i].hash == h)
            return &b[i];
    return NULL;
}

uint64_t throttle_locked(struct throttle *t, const char *key, uint64_t now_ms)
{
    const struct throttle_entry *e = throttle_find(t, throttle_hash(t, key));
    if (!e || e->locked_until_ms <= now_ms)
        return 0;
    return e->locked_until_ms - now_ms;
}

/* How much an entry is worth keeping: higher is kept longer. */
static int throttle_rank(const struct throttle_entry *e, uint64_t now_ms, uint64_t lockout_ms)
{
    if (e->hash == 0 || throttle_expired(e, now_ms, lockout_ms))
        return 0;
    return e->locked_until_ms > now_ms ? 2 : 1;
}

unsigned throttle_fail(struct throttle *t, const char *key, uint64_t now_ms,
                       const struct throttle_conf *c, bool *locked)
{
    uint64_t h = throttle_hash(t, key);
    struct throttle_entry *e = throttle_find(t, h);
    *locked = false;
    if (e && throttle_expired(e, now_ms, c->lockout_ms))
        memset(e, 0, sizeof(*e));
    if (!e || e->hash == 0) {
        struct throttle_entry *b = throttle_bucket(t, h);
        e = &b[0];
        for (size_t i = 1; i < THROTTLE_WAYS; i++) {
            int ri = throttle_rank(&b[i], now_ms, c->lockout_ms);
            int re = throttle_rank(e, now_ms, c->lockout_ms);
            uint64_t ti = ri == 2 ? b[i].locked_until_ms : b[i].last_ms;
            uint64_t te = re == 2 ? e->locked_until_ms : e->last_ms;
            if (ri < re || (ri == re && ti < te))
                e = &b[i];
        }
        memset(e, 0, sizeof(*e));
        e->hash = h;
    }
    e->last_ms = now_ms;
    if (e->count < UINT32_MAX)
        e->count++;
    if (e->count >= c->max_failures && e->locked_until_ms <= now_ms) {
        e->locked_until_ms = now_ms + c->lockout_ms;
        *locked = true;
    }
    return e->count;
}

void throttle_clear(struct throttle *t, const char *key)
{
    struct throttle_entry *e = throttle_find(t, throttle_hash(t, key));
    if (e)
        memset(e, 0, sizeof(*e));
}

size_t throttle_count(const struct throttle *t, uint64_t now_ms, const struct throttle_conf *c)
{
    size_t n = 0;
    for (size_t i = 0; i < t->nbuckets * THROTTLE_WAYS; i++)
        n += t->v[i].hash != 0 && !throttle_expired(&t->v[i], now_ms, c->lockout_ms);
    return n;
}

unsigned throttle_delay_ms(unsigned n)
{
    unsigned d = THROTTLE_DELAY_BASE_MS;
    for (unsigned i = 1; i < n && d < THROTTLE_DELAY_MAX_MS; i++)
        d *= 2;
    return d < THROTTLE_DELAY_MAX_MS ? d : THROTTLE_DELAY_MAX_MS;
}

int throttle_net(const char *peer, char *net, size_t netsize, char *host, size_t hostsize)
{
    struct sockaddr_storage ss;
    socklen_t len;
    const char *why;
    char a[INET6_ADDRSTRLEN];

    if (netaddr_parse(peer, &ss, &len, &why) < 0)
        goto raw;
    if (ss.ss_family == AF_INET6) {
        struct in6_addr x = ((const struct sockaddr_in6 *)&ss)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(&x)) {
            struct in_addr v4;
            memcpy(&v4, &x.s6_addr[12], 4);
            if (!inet_ntop(AF_INET, &v4, a, sizeof(a)))
                goto raw;
            snprintf(host, hostsize, "%s", a);
            ((unsigned char *)&v4)[3] = 0;
            if (!inet_ntop(AF_INET, &v4, a, sizeof(a)))
                goto raw;
            snprintf(net, netsize, "%s/24", a);
            return 0;
        }
        if (!inet_ntop(AF_INET6, &x, a, sizeof(a)))
            goto raw;
        snprintf(host, hostsize, "%s", a);
        memset(&x.s6_addr[8], 0, 8);
        if (!inet_ntop(AF_INET6, &x, a, sizeof(a)))
            goto raw;
        snprintf(net, netsize, "%s/64", a);
        return 0;
    }
    if (ss.ss_family == AF_INET) {
        struct in_addr v4 = ((const struct sockaddr_in *)&ss)->sin_addr;
        if (!inet_ntop(AF_INET, &v4, a, sizeof(a)))
            goto raw;
        snprintf(host, hostsize, "%s", a);
        ((unsigned char *)&v4)[3] = 0;
        if (!inet_ntop(AF_INET, &v4, a, sizeof(a)))
            goto raw;
        snprintf(net, netsize, "%s/24", a);
        return 0;
    }
raw:
    snprintf(net, netsize, "%s", peer);
    snprintf(host, hostsize, "%s", peer);
    return -1;
}
