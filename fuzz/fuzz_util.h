/*
 * Shared by the libFuzzer targets in fuzz/: a check that aborts with a message (libFuzzer then
 * saves the input as a crash artifact), and exact-size copies of inputs so that AddressSanitizer
 * sees a read one byte past what the code under test was given.
 */
#ifndef HS_FUZZ_UTIL_H
#define HS_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "invariant broken at %s:%d: %s: ", __FILE__, __LINE__, #cond);         \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A heap copy of exactly n bytes (one byte for n == 0, which the caller never reads). */
static char *dup_exact(const void *p, size_t n)
{
    char *d = malloc(n > 0 ? n : 1);

    FUZZ_CHECK(d != NULL, "out of memory");
    if (n > 0)
        memcpy(d, p, n);
    return d;
}

/* A slice is inside buf[0..n) (empty slices may point anywhere). */
static int inside(const char *base, size_t len, const char *buf, size_t n)
{
    return len == 0 || (base >= buf && len <= n && base - buf <= (ptrdiff_t)(n - len));
}

#endif
