/*
 * syncgroup.h - group fsync: threads that each need an fsync of the same
 * file or directory share one.
 *
 * A caller's change (a write, a rename into a directory) is durable once an
 * fsync of the object STARTED after the change has succeeded.  So each caller
 * queues itself and waits; whoever finds no fsync running takes every caller
 * queued so far (itself included), runs ONE fsync with its own descriptor,
 * hands each of them that fsync's result and wakes them.  Callers that
 * arrive while it runs queue for the next one: an fsync already running may
 * have started before their change.  A failed fsync fails exactly the callers
 * of its group (each gets its errno); the next group tries again.
 *
 * Nothing is allocated: each waiter lives on its caller's stack.  The group
 * must outlive every call on it; the descriptors are the callers' (any of
 * them, open on the same object, will do).
 */
#ifndef TERN_CORE_SYNCGROUP_H
#define TERN_CORE_SYNCGROUP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* One caller, on its stack (declared here for the tests' eyes only). */
struct syncgroup_waiter {
    struct syncgroup_waiter *next;
    int err;   /* its group's fsync: 0 or errno */
    bool done; /* err is set; under mu */
};

struct syncgroup {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool syncing;                     /* an fsync runs (outside mu) */
    struct syncgroup_waiter *waiting; /* queued for the next fsync */
    _Atomic uint64_t started;         /* fsyncs begun (numbered from 1) */
    _Atomic uint64_t succeeded;       /* the number of the last one that succeeded */
};

/* Aborts (fatal) when the lock cannot be made: no recovery is possible. */
void syncgroup_init(struct syncgroup *g);
/* Only when no call is in progress. */
void syncgroup_destroy(struct syncgroup *g);

/*
 * fsync fd's object, shared with the concurrent callers of g, through fsync_fn
 * (fsync when NULL; a test can inject a slow or failing one).  Returns 0 once
 * an fsync started after this call succeeded, or -1 with errno from the
 * fsync of this caller's group.  Blocks: call it from a worker thread.
 */
int syncgroup_fsync(struct syncgroup *g, int fd, int (*fsync_fn)(int));

/*
 * For "is what I did at time T durable yet?" without waiting: take
 * syncgroup_started() after the change; the change is durable once
 * syncgroup_succeeded() is greater than that number (an fsync that began
 * after it has succeeded).
 */
uint64_t syncgroup_started(struct syncgroup *g);
uint64_t syncgroup_succeeded(struct syncgroup *g);

#endif
