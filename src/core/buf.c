/*
 * buf.c - growable byte buffer (see buf.h).
 */
#include "core/buf.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"

void buf_reserve(struct buf *b, size_t cap)
{
    if (cap <= b->cap)
        return;
    char *np = realloc(b->p, cap);
    if (!np)
        fatal("out of memory (buffer of %zu octets)", cap);
    b->p = np;
    b->cap = cap;
}

void buf_append(struct buf *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        buf_reserve(b, cap);
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

void buf_emit(void *ctx, const char *p, size_t n)
{
    buf_append(ctx, p, n);
}

void buf_free(struct buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}
