/*
 * bench/schedule-bench.c - micro-benchmark of the delivery scheduler
 * (src/queue/schedule.c) at large queue sizes, without I/O.
 *
 *   schedule-bench [N ...]          (default: 100000 1000000)
 *
 * For each N: N items with queue-style ids ("<unix>-<counter>-<16 hex>"),
 * spread over DESTS remote domains (per_dest 4, max_inflight 16, as the
 * defaults of [remote]), due at random times over one hour.  Measured, in
 * nanoseconds per operation (wall clock, CLOCK_MONOTONIC):
 *   add        schedule_add() of each item (the recovery path)
 *   has        schedule_has() of random known ids
 *   event      one due item: schedule_next() + schedule_done() back to WAITING
 *              an hour later + schedule_wakeup() (the trickle of retries)
 *   retry_all  schedule_retry_all() (SIGUSR1), per item
 *   drain      schedule_next() + schedule_done(remove) until empty, per item
 * and the memory: schedule_stats().bytes (requested from malloc) and the
 * growth of the resident set (/proc/self/statm) per item.  Single thread,
 * seeded, bounded: every loop runs at most N (or EVENTS) times.
 *
 * Build (not part of the default build):
 *   cc -O2 -D_GNU_SOURCE -Isrc bench/schedule-bench.c src/queue/schedule.c src/core/log.c
 * or the CMake target schedule-bench.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "queue/schedule.h"

#define DESTS 1000
#define EVENTS 200000 /* at most this many trickle events per N */
#define HAS_OPS 200000
#define HOUR_MS 3600000LL

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t next_rand(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static long rss_bytes(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * sysconf(_SC_PAGESIZE);
}

static void run(size_t n)
{
    char(*ids)[SCHEDULE_ID_MAX + 1] = malloc(n * sizeof(*ids));
    char(*dests)[32] = malloc(DESTS * sizeof(*dests));
    if (!ids || !dests) {
        fprintf(stderr, "schedule-bench: out of memory for %zu ids\n", n);
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        snprintf(ids[i], sizeof(ids[i]), "%010d-%08zx-%016" PRIx64, 1795600000, i, next_rand());
    for (unsigned d = 0; d < DESTS; d++)
        snprintf(dests[d], sizeof(dests[d]), "dest%u.example", d);

    struct schedule_limits lim = {.max_inflight = 16, .per_dest = 4};
    long rss0 = rss_bytes();
    struct schedule *s = schedule_new(&lim);
    int64_t t0 = 1795600000000LL;

    double a = now_ns();
    for (size_t i = 0; i < n; i++)
        if (schedule_add(s, ids[i], dests[i % DESTS], t0 + (int64_t)(next_rand() % HOUR_MS)) < 0) {
            fprintf(stderr, "schedule-bench: add %s failed\n", ids[i]);
            exit(1);
        }
    double add_ns = (now_ns() - a) / (double)n;
    long rss1 = rss_bytes();
    struct schedule_stats st;
    schedule_stats(s, &st);

    a = now_ns();
    size_t found = 0;
    for (size_t k = 0; k < HAS_OPS; k++)
        found += schedule_has(s, ids[next_rand() % n]);
    double has_ns = (now_ns() - a) / HAS_OPS;
    if (found != HAS_OPS)
        fprintf(stderr, "schedule-bench: has() missed %zu\n", HAS_OPS - found);

    /* the trickle: time jumps to the next wake-up, one item starts and ends */
    size_t events = n < EVENTS ? n : EVENTS;
    int64_t now = t0;
    size_t done = 0;
    a = now_ns();
    while (done < events) {
        const char *dest;
        const char *id = schedule_next(s, now, &dest);
        if (!id) {
            int64_t w = schedule_wakeup(s, now);
            if (w == INT64_MAX)
                break;
            now = w > now ? w : now;
            continue;
        }
        char idc[SCHEDULE_ID_MAX + 1], dc[32];
        snprintf(idc, sizeof(idc), "%s", id); /* valid until done() */
        snprintf(dc, sizeof(dc), "%s", dest);
        schedule_done(s, idc, false, dc, now + HOUR_MS + (int64_t)(next_rand() % 60000), now);
        done++;
    }
    (void)schedule_wakeup(s, now);
    double event_ns = (now_ns() - a) / (double)(done ? done : 1);

    a = now_ns();
    schedule_retry_all(s, now);
    double retry_ns = (now_ns() - a) / (double)n;

    a = now_ns();
    size_t drained = 0;
    for (size_t guard = 0; guard < 2 * n + 16; guard++) {
        const char *dest;
        const char *id = schedule_next(s, now, &dest);
        if (!id)
            break;
        char idc[SCHEDULE_ID_MAX + 1];
        snprintf(idc, sizeof(idc), "%s", id);
        schedule_done(s, idc, true, NULL, 0, now);
        drained++;
    }
    double drain_ns = (now_ns() - a) / (double)(drained ? drained : 1);

    printf("| %zu | %.0f | %.0f | %.0f | %.0f | %.0f | %.1f | %.0f |\n", n,
           (double)st.bytes / (double)n, (double)(rss1 - rss0) / (double)n, add_ns, has_ns,
           event_ns, retry_ns, drain_ns);
    fflush(stdout);
    if (done < events || drained != n)
        fprintf(stderr, "schedule-bench: N=%zu: %zu of %zu events, %zu of %zu drained\n", n, done,
                events, drained, n);
    schedule_free(s);
    free(ids);
    free(dests);
}

int main(int argc, char **argv)
{
    printf("| items | bytes/item (requested) | RSS bytes/item | add ns | has ns | "
           "event ns (next+done+wakeup) | retry_all ns/item | drain ns/item |\n");
    printf("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
    if (argc < 2) {
        run(100000);
        run(1000000);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        char *end;
        unsigned long long n = strtoull(argv[i], &end, 10);
        if (*end || n == 0 || n > 100000000ULL) {
            fprintf(stderr, "usage: schedule-bench [N ...] (1..100000000)\n");
            return 2;
        }
        run((size_t)n);
    }
    return 0;
}
