/*
 * limits.c - sessions, clients and body memory shared by all SMTP sessions
 * (see limits.h).
 *
 * The client table is a fixed pool of entries chained in hash buckets, with
 * index 0 meaning "none".  An entry's key is its kind (IPv4 address, IPv4
 * /24, IPv6 /64) and the masked address; it counts live sessions and keeps
 * the connection rate as a GCRA "theoretical arrival time" (one number: a
 * client may connect while it is less than a minute ahead of the clock, and
 * each connection moves it on by a minute divided by the rate).  The pool
 * holds room for two entries per session plus CLIENTS_IDLE idle ones, so an
 * entry in use is never evicted and a flood of new addresses only costs old
 * rate history.
 */
#include "smtp/limits.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/log.h"

#define CLIENTS_IDLE 8192
#define SESSIONS_CAP 20000 /* the largest derived max_sessions */
#define NET_FACTOR 4       /* an IPv4 /24 may hold this many times an address's share */
#define MINUTE_MS 60000

enum key_kind { KEY_V4 = 1, KEY_V4_NET, KEY_V6_NET };

struct entry {
    uint8_t key[17];
    bool used;
    uint32_t next;  /* bucket chain, or free list */
    uint32_t count; /* live sessions */
    uint64_t tat;   /* GCRA theoretical arrival time, ms */
};

struct smtp_limits {
    struct smtp_limits_conf conf;
    unsigned sessions;
    uint64_t body_used;
    struct entry *pool; /* pool[0] unused */
    uint32_t npool, free_head, hand;
    uint32_t *buckets;
    uint32_t nbuckets; /* a power of two */
    uint64_t last_sweep;
};

unsigned smtp_limits_default_sessions(uint64_t nofile)
{
    /* room for the queue, the workers, pipes and the listeners */
    if (nofile < 64 + 16)
        return 8;
    uint64_t n = (nofile - 64) * 3 / 4;
    return n > SESSIONS_CAP ? SESSIONS_CAP : (unsigned)n;
}

struct smtp_limits *smtp_limits_new(const struct smtp_limits_conf *conf)
{
    struct smtp_limits *l = calloc(1, sizeof(*l));
    if (!l)
        fatal("out of memory");
    struct rlimit rl;
    uint64_t nofile = 1024;
    l->conf = *conf;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        nofile = rl.rlim_cur;
    if (!l->conf.max_sessions)
        l->conf.max_sessions = smtp_limits_default_sessions(nofile);
    else if (l->conf.max_sessions > smtp_limits_default_sessions(nofile))
        log_warn("max_sessions %u is more than the open-files limit (%llu) leaves room for "
                 "(%u): accepting will pause when descriptors run out",
                 l->conf.max_sessions, (unsigned long long)nofile,
                 smtp_limits_default_sessions(nofile));
    l->npool = 2 * l->conf.max_sessions + CLIENTS_IDLE + 1;
    l->nbuckets = 1024;
    while (l->nbuckets < l->npool)
        l->nbuckets *= 2;
    l->pool = calloc(l->npool, sizeof(*l->pool));
    l->buckets = calloc(l->nbuckets, sizeof(*l->buckets));
    if (!l->pool || !l->buckets)
        fatal("out of memory");
    for (uint32_t i = l->npool - 1; i >= 1; i--) {
        l->pool[i].next = l->free_head;
        l->free_head = i;
    }
    l->hand = 1;
    return l;
}

void smtp_limits_free(struct smtp_limits *l)
{
    if (!l)
        return;
    free(l->pool);
    free(l->buckets);
    free(l);
}

unsigned smtp_limits_max_sessions(const struct smtp_limits *l)
{
    return l->conf.max_sessions;
}

unsigned smtp_limits_sessions(const struct smtp_limits *l)
{
    return l->sessions;
}

static uint32_t limits_hash(const struct smtp_limits *l, const uint8_t *key)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < 17; i++)
        h = (h ^ key[i]) * 16777619u;
    return h & (l->nbuckets - 1);
}

static void limits_release(struct smtp_limits *l, uint32_t i)
{
    uint32_t *pp = &l->buckets[limits_hash(l, l->pool[i].key)];
    while (*pp && *pp != i)
        pp = &l->pool[*pp].next;
    if (*pp)
        *pp = l->pool[i].next;
    memset(&l->pool[i], 0, sizeof(l->pool[i]));
    l->pool[i].next = l->free_head;
    l->free_head = i;
}

static bool limits_idle(const struct entry *e, uint64_t now)
{
    return e->used && e->count == 0 && e->tat <= now;
}

/* A free entry; may forget idle ones, never `keep`. */
static uint32_t limits_alloc(struct smtp_limits *l, uint64_t now, uint32_t keep)
{
    if (!l->free_head && now - l->last_sweep >= 1000) {
        l->last_sweep = now;
        for (uint32_t i = 1; i < l->npool; i++)
            if (i != keep && limits_idle(&l->pool[i], now))
                limits_release(l, i);
    }
    for (uint32_t n = 0; !l->free_head && n < l->npool; n++) {
        uint32_t i = l->hand;
        l->hand = l->hand + 1 < l->npool ? l->hand + 1 : 1;
        if (i != keep && l->pool[i].used && l->pool[i].count == 0)
            limits_release(l, i);
    }
    uint32_t i = l->free_head;
    if (!i)
        fatal("client table full"); /* cannot happen: room for two per session */
    l->free_head = l->pool[i].next;
    return i;
}

static uint32_t limits_find(struct smtp_limits *l, const uint8_t *key, uint64_t now, uint32_t keep)
{
    uint32_t b = limits_hash(l, key);
    for (uint32_t i = l->buckets[b]; i; i = l->pool[i].next)
        if (memcmp(l->pool[i].key, key, 17) == 0)
            return i;
    uint32_t i = limits_alloc(l, now, keep);
    struct entry *e = &l->pool[i];
    memset(e, 0, sizeof(*e));
    memcpy(e->key, key, 17);
    e->used = true;
    e->next = l->buckets[b];
    l->buckets[b] = i;
    return i;
}

/* The keys of a peer: returns how many (0 for a non-IP peer). */
static int limits_keys(const struct sockaddr *sa, uint8_t keys[2][17])
{
    const uint8_t *v4 = NULL;
    memset(keys, 0, 2 * 17);
    if (sa->sa_family == AF_INET) {
        v4 = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            v4 = a->s6_addr + 12;
        } else {
            keys[0][0] = KEY_V6_NET;
            memcpy(keys[0] + 1, a->s6_addr, 8);
            return 1;
        }
    } else {
        return 0;
    }
    keys[0][0] = KEY_V4;
    memcpy(keys[0] + 1, v4, 4);
    keys[1][0] = KEY_V4_NET;
    memcpy(keys[1] + 1, v4, 3);
    return 2;
}

enum smtp_limits_verdict smtp_limits_connect(struct smtp_limits *l, const struct sockaddr *peer,
                                             uint64_t now, struct smtp_limits_hold *h)
{
    const struct smtp_limits_conf *c = &l->conf;
    uint8_t keys[2][17];
    uint32_t idx[2] = {0, 0};
    int nk;

    memset(h, 0, sizeof(*h));
    if (l->sessions >= c->max_sessions)
        return LIMITS_SESSIONS;
    nk = limits_keys(peer, keys);
    for (int k = 0; k < nk; k++) {
        unsigned factor = keys[k][0] == KEY_V4_NET ? NET_FACTOR : 1;
        idx[k] = limits_find(l, keys[k], now, k ? idx[0] : 0);
        struct entry *e = &l->pool[idx[k]];
        if (c->max_sessions_per_ip && e->count >= c->max_sessions_per_ip * factor)
            return LIMITS_CLIENT;
        if (c->max_connect_rate_per_ip) {
            uint64_t t = MINUTE_MS / ((uint64_t)c->max_connect_rate_per_ip * factor);
            uint64_t tat = e->tat > now ? e->tat : now;
            if (t == 0)
                t = 1;
            if (tat - now + t > MINUTE_MS)
                return LIMITS_RATE;
        }
    }
    for (int k = 0; k < nk; k++) {
        struct entry *e = &l->pool[idx[k]];
        unsigned factor = keys[k][0] == KEY_V4_NET ? NET_FACTOR : 1;
        e->count++;
        if (c->max_connect_rate_per_ip) {
            uint64_t t = MINUTE_MS / ((uint64_t)c->max_connect_rate_per_ip * factor);
            e->tat = (e->tat > now ? e->tat : now) + (t ? t : 1);
        }
        h->slot[k] = idx[k];
    }
    l->sessions++;
    return LIMITS_OK;
}

void smtp_limits_disconnect(struct smtp_limits *l, struct smtp_limits_hold *h)
{
    for (int k = 0; k < 2; k++) {
        if (h->slot[k] && l->pool[h->slot[k]].count > 0)
            l->pool[h->slot[k]].count--;
        h->slot[k] = 0;
    }
    if (l->sessions > 0)
        l->sessions--;
}

bool smtp_limits_body_take(struct smtp_limits *l, size_t n)
{
    if (l->conf.body_memory && l->body_used + n > l->conf.body_memory)
        return false;
    l->body_used += n;
    return true;
}

void smtp_limits_body_give(struct smtp_limits *l, size_t n)
{
    l->body_used = n > l->body_used ? 0 : l->body_used - n;
}

uint64_t smtp_limits_body_used(const struct smtp_limits *l)
{
    return l->body_used;
}
