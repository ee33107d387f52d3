/*
 * workers.h - a pool of threads for the blocking work of tern serve
 * (committing messages to the queue with fsync, running couriers), whose
 * results come back on the event loop's thread.
 *
 * workers_submit() hands a job to the pool: run(arg) executes on a worker
 * thread; done(arg) then executes on the loop thread (woken through a pipe),
 * so that done() may touch sessions, the scheduler and libevent freely.
 * Jobs run concurrently, which is what lets several fsyncs share one ext4
 * journal commit.  The pool owns nothing of a job but its slot.
 */
#ifndef TERN_SERVER_WORKERS_H
#define TERN_SERVER_WORKERS_H

#include <stddef.h>

struct event_base;
struct workers;

typedef void (*workers_fn)(void *arg);

struct workers *workers_new(struct event_base *base, unsigned nthreads);
void workers_submit(struct workers *w, workers_fn run, workers_fn done, void *arg);
/* Run fn on each worker thread as it stops (thread-local clean-up); set before jobs. */
void workers_on_thread_exit(struct workers *w, void (*fn)(void));
/* Jobs submitted and not yet done(). */
size_t workers_pending(const struct workers *w);
/* Finish every submitted job (run and done), then stop the threads. */
void workers_free(struct workers *w);

#endif
