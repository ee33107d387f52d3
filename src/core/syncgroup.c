/*
 * syncgroup.c - group fsync (see syncgroup.h).
 *
 * The leader is whichever waiter finds no fsync running: it takes the whole
 * queue under the lock, so every waiter it takes had queued (and so made its
 * change) before the fsync starts, then runs the fsync without the lock.
 * Waiters arriving meanwhile queue up and are taken by the next leader, one
 * of themselves, woken by the broadcast that ends the running fsync.  A
 * waiter's "done" is only touched under the lock, and the leader reads a
 * waiter's next pointer before setting its done (after which the waiter may
 * return and its stack frame be gone).
 */
#include "core/syncgroup.h"

#include <errno.h>
#include <unistd.h>

#include "core/log.h"

void syncgroup_init(struct syncgroup *g)
{
    if (pthread_mutex_init(&g->mu, NULL) != 0 || pthread_cond_init(&g->cv, NULL) != 0)
        fatal("cannot create the locks of an fsync group");
    g->syncing = false;
    g->waiting = NULL;
    atomic_init(&g->started, 0);
    atomic_init(&g->succeeded, 0);
}

uint64_t syncgroup_started(struct syncgroup *g)
{
    return atomic_load(&g->started);
}

uint64_t syncgroup_succeeded(struct syncgroup *g)
{
    return atomic_load(&g->succeeded);
}

void syncgroup_destroy(struct syncgroup *g)
{
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

int syncgroup_fsync(struct syncgroup *g, int fd, int (*fsync_fn)(int))
{
    struct syncgroup_waiter me = {.next = NULL, .err = 0, .done = false};

    if (!fsync_fn)
        fsync_fn = fsync;
    pthread_mutex_lock(&g->mu);
    me.next = g->waiting;
    g->waiting = &me;
    while (!me.done) {
        if (g->syncing) {
            pthread_cond_wait(&g->cv, &g->mu);
            continue;
        }
        struct syncgroup_waiter *group = g->waiting;
        g->waiting = NULL;
        g->syncing = true;
        uint64_t gen = atomic_fetch_add(&g->started, 1) + 1;
        pthread_mutex_unlock(&g->mu);
        int err = fsync_fn(fd) != 0 ? (errno ? errno : EIO) : 0;
        pthread_mutex_lock(&g->mu);
        if (!err) /* fsyncs of one group run one at a time: in order */
            atomic_store(&g->succeeded, gen);
        for (struct syncgroup_waiter *w = group, *next; w; w = next) {
            next = w->next; /* w may be gone once done is set */
            w->err = err;
            w->done = true;
        }
        g->syncing = false;
        pthread_cond_broadcast(&g->cv);
    }
    pthread_mutex_unlock(&g->mu);
    if (me.err == 0)
        return 0;
    errno = me.err;
    return -1;
}
