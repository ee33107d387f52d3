/*
 * test_syncgroup.c - core/syncgroup.c: many threads share fewer fsyncs than
 * they ask for, and each returns only once an fsync that started after its
 * change has ended (checked against a model: the fake fsync snapshots the
 * changes made when it starts and publishes them as durable when it ends);
 * a failed fsync fails the callers of its group and no one else.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/syncgroup.h"

#define THREADS 16
#define ROUNDS 25

static void nap(long usec)
{
    struct timespec ts = {.tv_sec = usec / 1000000, .tv_nsec = (usec % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- many threads: the durability model ------------------------------ */

static pthread_mutex_t model_mu = PTHREAD_MUTEX_INITIALIZER;
static int written[THREADS];              /* changes made by each thread so far */
static int durable[THREADS];              /* changes covered by an ended fsync */
static atomic_int fsyncs, running, wrong; /* wrong: a broken rule, seen off the main thread */
static struct syncgroup group;

static int slow_fsync(int fd)
{
    int snap[THREADS];
    if (fd != 42)
        atomic_fetch_add(&wrong, 1);
    /* never two at once on one object: the group serialises them */
    if (atomic_fetch_add(&running, 1) != 0)
        atomic_fetch_add(&wrong, 1);
    pthread_mutex_lock(&model_mu);
    memcpy(snap, written, sizeof(snap));
    pthread_mutex_unlock(&model_mu);
    nap(1000);
    pthread_mutex_lock(&model_mu);
    for (int i = 0; i < THREADS; i++)
        if (snap[i] > durable[i])
            durable[i] = snap[i];
    pthread_mutex_unlock(&model_mu);
    atomic_fetch_add(&fsyncs, 1);
    atomic_fetch_sub(&running, 1);
    return 0;
}

static void *hammer(void *arg)
{
    int me = (int)(intptr_t)arg;
    for (int r = 1; r <= ROUNDS; r++) {
        pthread_mutex_lock(&model_mu);
        written[me] = r;
        pthread_mutex_unlock(&model_mu);
        if (syncgroup_fsync(&group, 42, slow_fsync) != 0)
            return (void *)1;
        pthread_mutex_lock(&model_mu);
        int ok = durable[me] >= r;
        pthread_mutex_unlock(&model_mu);
        if (!ok)
            return (void *)2;
        if (r % 3 == 0)
            nap(300 * (me % 4)); /* stagger arrivals */
    }
    return NULL;
}

static void test_many_threads_share(void **state)
{
    (void)state;
    pthread_t t[THREADS];
    syncgroup_init(&group);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, (void *)(intptr_t)i), 0);
    for (int i = 0; i < THREADS; i++) {
        void *rv;
        assert_int_equal(pthread_join(t[i], &rv), 0);
        assert_null(rv);
    }
    assert_int_equal(atomic_load(&wrong), 0);
    int calls = THREADS * ROUNDS, n = atomic_load(&fsyncs);
    assert_true(n >= ROUNDS); /* each thread's calls are sequential */
    assert_true(n < calls / 2);
    assert_null(group.waiting);
    assert_false(group.syncing);
    syncgroup_destroy(&group);
}

/* ---- one caller alone, and the default fsync --------------------------- */

static void test_alone_real_fsync(void **state)
{
    (void)state;
    struct syncgroup g;
    syncgroup_init(&g);
    assert_int_equal(syncgroup_fsync(&g, 1 << 20, NULL), -1); /* not open */
    assert_int_equal(errno, EBADF);
    int fd = open(".", O_RDONLY | O_DIRECTORY);
    assert_true(fd >= 0);
    assert_int_equal(syncgroup_fsync(&g, fd, NULL), 0);
    close(fd);
    syncgroup_destroy(&g);
}

/* ---- a failed fsync fails its group only ----------------------------- */

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_open, first_started;
static atomic_int gated_calls;

/* 1st call: waits at the gate, then succeeds; 2nd: EIO; later ones succeed. */
static int gated_fsync(int fd)
{
    (void)fd;
    int n = atomic_fetch_add(&gated_calls, 1) + 1;
    if (n == 1) {
        pthread_mutex_lock(&gate_mu);
        first_started = true;
        pthread_cond_broadcast(&gate_cv);
        while (!gate_open)
            pthread_cond_wait(&gate_cv, &gate_mu);
        pthread_mutex_unlock(&gate_mu);
        return 0;
    }
    if (n == 2) {
        errno = EIO;
        return -1;
    }
    return 0;
}

struct caller {
    pthread_t t;
    int rc, err;
};

static void *call_once(void *arg)
{
    struct caller *c = arg;
    errno = 0;
    c->rc = syncgroup_fsync(&group, 7, gated_fsync);
    c->err = c->rc ? errno : 0;
    return NULL;
}

static int queued(void)
{
    int n = 0;
    pthread_mutex_lock(&group.mu);
    for (struct syncgroup_waiter *w = group.waiting; w; w = w->next)
        n++;
    pthread_mutex_unlock(&group.mu);
    return n;
}

static void test_failure_fails_its_group(void **state)
{
    (void)state;
    struct caller first, mid[3], last;
    syncgroup_init(&group);

    /* the first caller leads fsync 1, held at the gate */
    assert_int_equal(pthread_create(&first.t, NULL, call_once, &first), 0);
    pthread_mutex_lock(&gate_mu);
    while (!first_started)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);

    /* three more queue behind it: fsync 1 may have started before their
     * changes, so it must not answer them; they form group 2 */
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&mid[i].t, NULL, call_once, &mid[i]), 0);
    for (int spins = 0; queued() < 3; spins++) {
        assert_true(spins < 10000);
        nap(1000);
    }
    pthread_mutex_lock(&gate_mu);
    gate_open = true;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);

    assert_int_equal(pthread_join(first.t, NULL), 0);
    assert_int_equal(first.rc, 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pthread_join(mid[i].t, NULL), 0);
        assert_int_equal(mid[i].rc, -1);
        assert_int_equal(mid[i].err, EIO);
    }
    assert_int_equal(atomic_load(&gated_calls), 2);

    /* the failure is not sticky: the next caller gets a fresh fsync */
    assert_int_equal(pthread_create(&last.t, NULL, call_once, &last), 0);
    assert_int_equal(pthread_join(last.t, NULL), 0);
    assert_int_equal(last.rc, 0);
    assert_int_equal(atomic_load(&gated_calls), 3);
    syncgroup_destroy(&group);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_threads_share),
        cmocka_unit_test(test_alone_real_fsync),
        cmocka_unit_test(test_failure_fails_its_group),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
