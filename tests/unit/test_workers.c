/*
 * test_workers.c - the thread pool of tern serve (src/server/workers.c):
 * every job runs once on a worker thread, its done() runs once on the loop
 * thread, and workers_free() finishes what was submitted.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "server/workers.h"

static pthread_t loop_thread;
static atomic_int ran, done_on_loop, done_elsewhere;

struct job {
    int n;
    pthread_t ran_on;
};

static void job_run(void *arg)
{
    struct job *j = arg;
    j->ran_on = pthread_self();
    ran++;
}

static void job_done(void *arg)
{
    struct job *j = arg;
    if (pthread_equal(pthread_self(), loop_thread) && !pthread_equal(j->ran_on, loop_thread))
        done_on_loop++;
    else
        done_elsewhere++;
    free(j);
}

static void test_jobs_come_back_on_the_loop(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    loop_thread = pthread_self();
    struct workers *w = workers_new(base, 4);
    for (int i = 0; i < 200; i++) {
        struct job *j = calloc(1, sizeof(*j));
        j->n = i;
        workers_submit(w, job_run, job_done, j);
    }
    assert_int_equal(workers_pending(w), 200);
    for (int i = 0; i < 2000 && workers_pending(w) > 0; i++)
        event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(workers_pending(w), 0);
    assert_int_equal(ran, 200);
    assert_int_equal(done_on_loop, 200);
    assert_int_equal(done_elsewhere, 0);
    /* jobs still queued at free time are finished, done() included */
    for (int i = 0; i < 50; i++)
        workers_submit(w, job_run, job_done, calloc(1, sizeof(struct job)));
    workers_free(w);
    assert_int_equal(ran, 250);
    assert_int_equal(done_on_loop + done_elsewhere, 250);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jobs_come_back_on_the_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
