/*
 * workers.c - thread pool with completions delivered on the event loop
 * (see workers.h).
 *
 * Two queues under one mutex: todo (for the threads, a condition variable
 * wakes them) and finished (for the loop, a byte on a pipe wakes it).  The
 * pipe is non-blocking; one byte per wake-up is enough because the loop
 * drains the whole finished queue each time.
 */
#include "server/workers.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

#define WORKERS_MAX 64

struct job {
    workers_fn run, done;
    void *arg;
    struct job *next;
};

struct workers {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *todo, *todo_tail;
    struct job *finished, *finished_tail;
    size_t pending;
    bool stopping;
    pthread_t threads[WORKERS_MAX];
    unsigned nthreads;
    int pipe[2];
    struct event *ev;
    void (*thread_exit)(void);
};

static void workers_push(struct job **head, struct job **tail, struct job *j)
{
    j->next = NULL;
    if (*tail)
        (*tail)->next = j;
    else
        *head = j;
    *tail = j;
}

static struct job *workers_pop(struct job **head, struct job **tail)
{
    struct job *j = *head;
    if (j) {
        *head = j->next;
        if (!*head)
            *tail = NULL;
    }
    return j;
}

static void *workers_thread(void *arg)
{
    struct workers *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        struct job *j = workers_pop(&w->todo, &w->todo_tail);
        if (!j) {
            if (w->stopping)
                break;
            pthread_cond_wait(&w->cv, &w->mu);
            continue;
        }
        pthread_mutex_unlock(&w->mu);
        j->run(j->arg);
        pthread_mutex_lock(&w->mu);
        bool wake = w->finished == NULL;
        workers_push(&w->finished, &w->finished_tail, j);
        if (wake) {
            char b = 1;
            while (write(w->pipe[1], &b, 1) < 0 && errno == EINTR)
                ;
        }
    }
    pthread_mutex_unlock(&w->mu);
    if (w->thread_exit)
        w->thread_exit();
    return NULL;
}

void workers_on_thread_exit(struct workers *w, void (*fn)(void))
{
    w->thread_exit = fn;
}

/* On the loop thread: run done() for every finished job. */
static void workers_drain(struct workers *w)
{
    char buf[64];
    while (read(w->pipe[0], buf, sizeof(buf)) > 0)
        ;
    pthread_mutex_lock(&w->mu);
    struct job *list = w->finished;
    w->finished = w->finished_tail = NULL;
    pthread_mutex_unlock(&w->mu);
    while (list) {
        struct job *j = list;
        list = j->next;
        if (j->done)
            j->done(j->arg);
        pthread_mutex_lock(&w->mu);
        w->pending--;
        pthread_mutex_unlock(&w->mu);
        free(j);
    }
}

static void workers_pipe_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    workers_drain(arg);
}

struct workers *workers_new(struct event_base *base, unsigned nthreads)
{
    struct workers *w = calloc(1, sizeof(*w));
    if (!w)
        fatal("out of memory");
    if (nthreads == 0)
        nthreads = 1;
    if (nthreads > WORKERS_MAX)
        nthreads = WORKERS_MAX;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (pipe2(w->pipe, O_NONBLOCK | O_CLOEXEC) < 0)
        fatal("pipe: %s", strerror(errno));
    w->ev = event_new(base, w->pipe[0], EV_READ | EV_PERSIST, workers_pipe_cb, w);
    if (!w->ev || event_add(w->ev, NULL) < 0)
        fatal("cannot watch the worker pipe");
    for (unsigned i = 0; i < nthreads; i++) {
        if (pthread_create(&w->threads[i], NULL, workers_thread, w) != 0)
            fatal("cannot start a worker thread");
        w->nthreads++;
    }
    return w;
}

void workers_submit(struct workers *w, workers_fn run, workers_fn done, void *arg)
{
    struct job *j = malloc(sizeof(*j));
    if (!j)
        fatal("out of memory");
    j->run = run;
    j->done = done;
    j->arg = arg;
    pthread_mutex_lock(&w->mu);
    workers_push(&w->todo, &w->todo_tail, j);
    w->pending++;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

size_t workers_pending(const struct workers *w)
{
    return w->pending;
}

void workers_free(struct workers *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    for (unsigned i = 0; i < w->nthreads; i++)
        pthread_join(w->threads[i], NULL);
    workers_drain(w);
    event_free(w->ev);
    close(w->pipe[0]);
    close(w->pipe[1]);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
