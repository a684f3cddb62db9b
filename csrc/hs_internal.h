/*
 * Shared internal vocabulary of the C core: string slices, return codes and small helpers.
 * Nothing here is visible to Python; httpsys.h is the only header the cffi build reads.
 */
#ifndef HS_INTERNAL_H
#define HS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "status.h"

/* Internal functions return HS_OK, HS_AGAIN, HS_ERROR (detail in an out-parameter) or -errno. */
#define HS_OK 0
#define HS_ERROR (-1)
#define HS_AGAIN (-2)
#define HS_DONE 1

/* A slice of bytes that is not NUL-terminated (nginx ngx_str_t, h2o h2o_iovec_t). */
typedef struct hs_str {
    const char *base;
    size_t len;
} hs_str_t;

#define HS_STR_LIT(s) ((hs_str_t){(s), sizeof(s) - 1})

static inline int hs__str_eq(hs_str_t a, const char *b, size_t blen)
{
    return a.len == blen && memcmp(a.base, b, blen) == 0;
}

static inline char hs__lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

/* ASCII case-insensitive equality of two slices of the same length. */
static inline int hs__str_ieq(hs_str_t a, const char *b, size_t blen)
{
    if (a.len != blen)
        return 0;
    for (size_t i = 0; i < blen; i++)
        if (hs__lower(a.base[i]) != hs__lower(b[i]))
            return 0;
    return 1;
}

#define HS_UNUSED(x) ((void)(x))

#endif
