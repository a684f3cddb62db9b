/*
 * A growable byte buffer with a read offset: bytes [off, len) are pending. Used for the
 * connection's ciphertext in/out and plaintext in.
 */
#ifndef HS_BUF_H
#define HS_BUF_H

#include <stdlib.h>
#include <string.h>

typedef struct hs_buf {
    char *base;
    size_t off, len, cap;
} hs_buf_t;

static inline size_t hs__buf_pending(const hs_buf_t *b)
{
    return b->len - b->off;
}

/* Makes room for at least n more bytes at the end, compacting first. Returns 0 or -1. */
static inline int hs__buf_reserve(hs_buf_t *b, size_t n)
{
    if (b->off > 0 && b->off == b->len) {
        b->off = b->len = 0;
    }
    if (b->cap - b->len >= n)
        return 0;
    if (b->off > 0) {
        memmove(b->base, b->base + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->cap - b->len >= n)
            return 0;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < n)
        cap *= 2;
    char *p = realloc(b->base, cap);
    if (p == NULL)
        return -1;
    b->base = p;
    b->cap = cap;
    return 0;
}

static inline int hs__buf_append(hs_buf_t *b, const void *p, size_t n)
{
    if (hs__buf_reserve(b, n) != 0)
        return -1;
    memcpy(b->base + b->len, p, n);
    b->len += n;
    return 0;
}

static inline void hs__buf_consume(hs_buf_t *b, size_t n)
{
    b->off += n;
    if (b->off == b->len)
        b->off = b->len = 0;
}

static inline void hs__buf_free(hs_buf_t *b)
{
    free(b->base);
    b->base = NULL;
    b->off = b->len = b->cap = 0;
}

#endif
