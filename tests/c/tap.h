/*
 * A TAP-style ok() for the C unit tests of url.c and route.c: prints "ok N - ..." or
 * "not ok N - ..." with the failing line, and counts failures for main()'s exit status.
 */
#ifndef HS_TEST_TAP_H
#define HS_TEST_TAP_H

#include <stdarg.h>
#include <stdio.h>

struct tally {
    int run;
    int failed;
};

static struct tally tally;

#define ok(cond, ...) ok_at(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

static void ok_at(int pass, const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    tally.run++;
    printf("%s %d - ", pass ? "ok" : "not ok", tally.run);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    if (!pass) {
        tally.failed++;
        printf("#   failed at %s:%d\n", file, line);
    }
}


#endif
