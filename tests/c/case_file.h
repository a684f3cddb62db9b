/*
 * Test support shared by test_http1.c and test_chunked.c: a TAP-style ok() macro, a guard page
 * that makes any read past the end of an input crash, and a reader for the data-driven cases in
 * tests/http1_cases/ (its README.md describes the format).
 *
 * Everything is static: each test program includes this header once, after the .c under test.
 */
#ifndef HS_TEST_CASE_FILE_H
#define HS_TEST_CASE_FILE_H

#include <glob.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef HS_TEST_DIR
#define HS_TEST_DIR "."
#endif
#define CASES_GLOB HS_TEST_DIR "/../http1_cases/*.txt"

/* ---- ok() ---------------------------------------------------------------------------------- */

static int tests_run;
static int tests_failed;

static void __attribute__((format(printf, 4, 5)))
ok_at(int cond, const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    tests_run++;
    if (cond)
        return;
    tests_failed++;
    printf("not ok %d - ", tests_run);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf(" (%s:%d)\n", file, line);
}

/* Counts one check; on failure prints the message with printf-style arguments. */
#define ok(cond, ...) ok_at(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

/* Prints the TAP plan and the summary; the exit status is non-zero if anything failed. */
static int tests_done(const char *name)
{
    printf("1..%d\n# %s: %d checks, %d failed\n", tests_run, name, tests_run, tests_failed);
    return tests_failed == 0 ? 0 : 1;
}

/* ---- guard page ---------------------------------------------------------------------------- */

/*
 * One mapping of GUARD_AREA bytes followed by a PROT_NONE page. guard_place() copies an input so
 * that its last byte is the last readable byte: reading one byte further faults, as in
 * picohttpparser's tests.
 */
#define GUARD_AREA (1u << 20)

static char *guard_base;

static void guard_init(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char *map = mmap(NULL, GUARD_AREA + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);

    if (map == MAP_FAILED || mprotect(map + GUARD_AREA, page, PROT_NONE) != 0) {
        perror("guard page");
        exit(2);
    }
    guard_base = map;
}

static char *guard_place(const char *data, size_t n)
{
    char *p = guard_base + GUARD_AREA - n;

    if (n > GUARD_AREA) {
        fprintf(stderr, "input of %zu bytes does not fit the guard area\n", n);
        exit(2);
    }
    if (n > 0)
        memmove(p, data, n);
    return p;
}

/* ---- case files ---------------------------------------------------------------------------- */

#define CASE_MAX_KEYS 64

typedef struct case_kv {
    char key[32];
    char *val; /* unescaped, NUL-terminated for convenience; len may include NULs */
    size_t len;
} case_kv_t;

typedef struct test_case {
    char file[256];
    int line;     /* line of the case's first line */
    int comments; /* number of # lines: must be exactly one */
    char name[96];
    size_t nkv;
    case_kv_t kv[CASE_MAX_KEYS];
} test_case_t;

/* Appends the unescaped form of s[0..n) to a growing buffer; returns -1 on a bad escape. */
static int unescape_into(const char *s, size_t n, char **buf, size_t *len, size_t *cap);

static int buf_put(char **buf, size_t *len, size_t *cap, const char *p, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t ncap = (*cap + n + 1) * 2;
        char *nb = realloc(*buf, ncap);

        if (nb == NULL)
            return -1;
        *buf = nb;
        *cap = ncap;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

/* Expands \{N:text} at s[0..n) (s points after the backslash); returns bytes used or 0. */
static size_t unescape_repeat(const char *s, size_t n, char **buf, size_t *len, size_t *cap)
{
    const char *close = memchr(s, '}', n);
    const char *colon = memchr(s, ':', n);
    char *part = NULL;
    size_t plen = 0, pcap = 0;
    long count;

    if (close == NULL || colon == NULL || colon > close)
        return 0;
    count = strtol(s + 1, NULL, 10);
    if (unescape_into(colon + 1, (size_t)(close - colon - 1), &part, &plen, &pcap) != 0)
        count = -1;
    for (long i = 0; i < count; i++)
        if (buf_put(buf, len, cap, part, plen) != 0)
            count = -1;
    free(part);
    return count < 0 ? 0 : (size_t)(close - s) + 1;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes the escape at s[0..n) (s points at the backslash) into *out; returns its length or 0. */
static size_t unescape_one(const char *s, size_t n, char *out)
{
    if (n < 2)
        return 0;
    switch (s[1]) {
    case 'r':
        *out = '\r';
        return 2;
    case 'n':
        *out = '\n';
        return 2;
    case 't':
        *out = '\t';
        return 2;
    case '\\':
        *out = '\\';
        return 2;
    case 'x':
        if (n < 4 || hex_digit(s[2]) < 0 || hex_digit(s[3]) < 0)
            return 0;
        *out = (char)(hex_digit(s[2]) * 16 + hex_digit(s[3]));
        return 4;
    default:
        return 0;
    }
}

static int unescape_into(const char *s, size_t n, char **buf, size_t *len, size_t *cap)
{
    size_t i = 0;

    if (buf_put(buf, len, cap, "", 0) != 0)
        return -1;
    while (i < n) {
        char c = s[i];
        size_t used = 1;

        if (c == '\\' && i + 1 < n && s[i + 1] == '{') {
            used = unescape_repeat(s + i + 1, n - i - 1, buf, len, cap);
            if (used == 0)
                return -1;
            i += 1 + used;
            continue;
        }
        if (c == '\\' && (used = unescape_one(s + i, n - i, &c)) == 0)
            return -1;
        if (buf_put(buf, len, cap, &c, 1) != 0)
            return -1;
        i += used;
    }
    return 0;
}

static void case_free(test_case_t *c)
{
    for (size_t i = 0; i < c->nkv; i++)
        free(c->kv[i].val);
    c->nkv = 0;
}

/* Adds one "key: value" line to c; returns -1 if the line is malformed. */
static int case_add_line(test_case_t *c, const char *line, size_t n)
{
    const char *colon = memchr(line, ':', n);
    case_kv_t *kv = &c->kv[c->nkv];
    size_t klen, cap = 0;
    const char *v;

    if (colon == NULL || c->nkv == CASE_MAX_KEYS || (size_t)(colon - line) >= sizeof(kv->key))
        return -1;
    klen = (size_t)(colon - line);
    memcpy(kv->key, line, klen);
    kv->key[klen] = '\0';
    v = colon + 1;
    if (v < line + n && *v == ' ')
        v++;
    kv->val = NULL;
    kv->len = 0;
    if (unescape_into(v, (size_t)(line + n - v), &kv->val, &kv->len, &cap) != 0)
        return -1;
    c->nkv++;
    if (strcmp(kv->key, "name") == 0)
        snprintf(c->name, sizeof(c->name), "%s", kv->val);
    return 0;
}

/* Returns the first value of key (and its length), or NULL. */
static const char *case_get(const test_case_t *c, const char *key, size_t *len)
{
    for (size_t i = 0; i < c->nkv; i++) {
        if (strcmp(c->kv[i].key, key) == 0) {
            if (len != NULL)
                *len = c->kv[i].len;
            return c->kv[i].val;
        }
    }
    return NULL;
}

/* Returns all values of key concatenated, in a malloc'd buffer (free it), and the length. */
static char *case_concat(const test_case_t *c, const char *key, size_t *len)
{
    char *buf = NULL;
    size_t cap = 0;

    *len = 0;
    buf_put(&buf, len, &cap, "", 0);
    for (size_t i = 0; i < c->nkv; i++)
        if (strcmp(c->kv[i].key, key) == 0)
            buf_put(&buf, len, &cap, c->kv[i].val, c->kv[i].len);
    return buf;
}

typedef void (*case_fn)(const test_case_t *c);

/* Hands every case of one file to fn. A block that has no name (a preamble) is skipped. */
static void case_file_run(const char *path, case_fn fn)
{
    static test_case_t c; /* large; one at a time */
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t lcap = 0;
    ssize_t n;
    int lineno = 0;

    ok(f != NULL, "open %s", path);
    if (f == NULL)
        return;
    memset(&c, 0, sizeof(c));
    for (;;) {
        n = getline(&line, &lcap, f);
        lineno++;
        while (n > 0 && line[n - 1] == '\n')
            n--;
        if (n <= 0) {
            if (c.name[0] != '\0') {
                ok(c.comments == 1, "%s:%d: case %s needs exactly one # comment line", path,
                   c.line, c.name);
                fn(&c);
            }
            case_free(&c);
            memset(&c, 0, sizeof(c));
            if (n < 0)
                break;
            continue;
        }
        if (c.line == 0) {
            snprintf(c.file, sizeof(c.file), "%s", strrchr(path, '/') + 1);
            c.line = lineno;
        }
        if (line[0] == '#')
            c.comments++;
        else
            ok(case_add_line(&c, line, (size_t)n) == 0, "%s:%d: malformed line", path, lineno);
    }
    free(line);
    fclose(f);
}

/* Runs fn over every case in the files whose basename starts (want_chunked) or does not start
 * with "chunked". Returns the number of files read. */
static int case_files_run(int want_chunked, case_fn fn)
{
    glob_t g;
    int files = 0;

    if (glob(CASES_GLOB, 0, NULL, &g) != 0) {
        ok(0, "no case files match %s", CASES_GLOB);
        return 0;
    }
    for (size_t i = 0; i < g.gl_pathc; i++) {
        const char *base = strrchr(g.gl_pathv[i], '/') + 1;

        if ((strncmp(base, "chunked", 7) == 0) != want_chunked)
            continue;
        case_file_run(g.gl_pathv[i], fn);
        files++;
    }
    globfree(&g);
    return files;
}

#endif
