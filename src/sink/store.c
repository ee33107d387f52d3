/*
 * store.c - the sink's in-memory message store (see store.h).
 *
 * A doubly linked list, newest at the head.  Lookups by id walk the list:
 * the API is for tests and people, and the list is bounded; the hot path
 * (store_add) is O(1) plus whatever it drops.
 */
#include "sink/store.h"

#include "sink/mime.h"

#include <stdlib.h>
#include <string.h>

void store_init(struct sink_store *st, size_t max_count, uint64_t max_bytes)
{
    memset(st, 0, sizeof(*st));
    st->max_count = max_count ? max_count : 1;
    st->max_bytes = max_bytes;
    st->next_id = 1;
}

void store_msg_free(struct sink_msg *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nrcpt; i++)
        free(m->rcpts[i]);
    free(m->rcpts);
    free(m->mail_from);
    free(m->raw);
    free(m->subject);
    free(m->hdr_from);
    free(m->hdr_to);
    free(m->helo);
    free(m->peer);
    free(m->auth_user);
    mime_free(m->mime);
    free(m->mime);
    free(m);
}

static void store_unlink(struct sink_store *st, struct sink_msg *m)
{
    if (m->newer)
        m->newer->older = m->older;
    else
        st->newest = m->older;
    if (m->older)
        m->older->newer = m->newer;
    else
        st->oldest = m->newer;
    st->count--;
    st->bytes -= m->size;
    if (st->on_remove)
        st->on_remove(st->remove_ctx, m);
}

struct sink_msg *store_add(struct sink_store *st, struct sink_msg *m)
{
    if (m->id == 0)
        m->id = st->next_id++;
    else if (m->id >= st->next_id)
        st->next_id = m->id + 1;
    m->older = st->newest;
    m->newer = NULL;
    if (st->newest)
        st->newest->newer = m;
    else
        st->oldest = m;
    st->newest = m;
    st->count++;
    st->bytes += m->size;
    st->received++;
    while (st->oldest != m &&
           (st->count > st->max_count || (st->max_bytes && st->bytes > st->max_bytes))) {
        struct sink_msg *old = st->oldest;
        store_unlink(st, old);
        store_msg_free(old);
        st->dropped++;
    }
    return m;
}

struct sink_msg *store_get(struct sink_store *st, uint64_t id)
{
    for (struct sink_msg *m = st->newest; m; m = m->older)
        if (m->id == id)
            return m;
    return NULL;
}

int store_delete(struct sink_store *st, uint64_t id)
{
    struct sink_msg *m = store_get(st, id);
    if (!m)
        return -1;
    store_unlink(st, m);
    store_msg_free(m);
    return 0;
}

void store_clear(struct sink_store *st)
{
    while (st->newest) {
        struct sink_msg *m = st->newest;
        store_unlink(st, m);
        store_msg_free(m);
    }
}

static bool store_has(const char *hay, const char *needle, bool exact)
{
    if (!hay)
        hay = "";
    return exact ? strcasecmp(hay, needle) == 0 : strcasestr(hay, needle) != NULL;
}

bool store_match(const struct sink_msg *m, const struct sink_filter *f)
{
    if (f->from && !store_has(m->mail_from, f->from, f->exact) &&
        (f->exact || !store_has(m->hdr_from, f->from, false)))
        return false;
    if (f->subject && !store_has(m->subject, f->subject, f->exact))
        return false;
    if (f->to) {
        bool hit = !f->exact && store_has(m->hdr_to, f->to, false);
        for (size_t i = 0; !hit && i < m->nrcpt; i++)
            hit = store_has(m->rcpts[i], f->to, f->exact);
        if (!hit)
            return false;
    }
    return true;
}
