/*
 * buf.h - a growable byte buffer with one owner (message bodies, command
 * batches).  Growth doubles; allocation failure is fatal (the environment
 * is broken).  Callers bound what they append: the buffer states no limit
 * of its own.
 */
#ifndef TERN_CORE_BUF_H
#define TERN_CORE_BUF_H

#include <stddef.h>

struct buf {
    char *p;
    size_t len, cap;
};

void buf_reserve(struct buf *b, size_t cap);
void buf_append(struct buf *b, const void *p, size_t n);
/* data_emit_fn-compatible: ctx is a struct buf. */
void buf_emit(void *ctx, const char *p, size_t n);
void buf_free(struct buf *b);

#endif
