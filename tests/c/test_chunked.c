/*
 * Unit tests of csrc/chunked.c. The .c file is included so static helpers can be tested too.
 *
 * Every case in tests/http1_cases/chunked*.txt runs whole, in pieces of 1, 2, 3, 7 and 64 bytes
 * (a connection buffer that keeps the unconsumed tail and appends the next read), and with
 * trailing bytes appended. Each call sees only its window of input, placed against a PROT_NONE
 * page so that an over-read crashes. A mutation fuzzer then checks that every way of splitting an
 * input gives the same answer.
 */
#include "../../csrc/chunked.c"

#include "case_file.h"

#define DATA_CAP (64 * 1024)

typedef struct run_result {
    int code;        /* HS_OK (body complete), HS_AGAIN, or the reject code */
    size_t consumed; /* input bytes used */
    size_t data_len;
    char data[DATA_CAP];
} run_result_t;

static const struct {
    const char *name;
    int code;
} codes[] = {
    {"ok", HS_OK},
    {"again", HS_AGAIN},
    {"BAD_REQUEST", HS_REJECT_BAD_REQUEST},
    {"BAD_NUMBER", HS_REJECT_BAD_NUMBER},
    {"INVALID_CRLF", HS_REJECT_INVALID_CRLF},
};

static int expect_code(const char *s)
{
    for (size_t i = 0; s != NULL && i < sizeof(codes) / sizeof(codes[0]); i++)
        if (strcmp(s, codes[i].name) == 0)
            return codes[i].code;
    return -100;
}

/* Appends a data slice to r after checking that it lies inside the bytes the call consumed. */
static void take_data(run_result_t *r, hs_str_t d, const char *win, size_t took)
{
    ok(d.len == 0 || (d.base >= win && d.base + d.len <= win + took),
       "data slice outside the consumed input");
    if (d.len > 0 && d.len <= DATA_CAP - r->data_len) {
        memcpy(r->data + r->data_len, d.base, d.len);
        r->data_len += d.len;
    }
}

/* Decodes in[0..n) arriving in reads of step bytes (0: one read). */
static void run_pieces(const char *in, size_t n, size_t step, run_result_t *r)
{
    hs_chunked_t st = {0};
    size_t pos = 0, avail = 0;

    r->data_len = 0;
    if (step == 0)
        step = n > 0 ? n : 1;
    for (;;) {
        avail = n - avail > step ? avail + step : n;
        for (;;) {
            const char *win = guard_place(in + pos, avail - pos);
            size_t took = 0;
            hs_str_t d;
            int rc = hs__chunked_decode(&st, win, avail - pos, &took, &d);

            ok(took <= avail - pos, "consumed more than it was given");
            take_data(r, d, win, took);
            pos += took;
            if (rc == HS_OK) {
                ok(d.len > 0, "HS_OK without data");
                continue;
            }
            if (rc == HS_AGAIN) {
                ok(pos == avail, "HS_AGAIN left input unconsumed");
                break;
            }
            ok(rc == HS_DONE || rc == HS_ERROR, "unexpected return %d", rc);
            r->code = rc == HS_DONE ? HS_OK : st.reject;
            r->consumed = pos;
            return;
        }
        if (avail == n) {
            r->code = HS_AGAIN;
            r->consumed = pos;
            return;
        }
    }
}

static void check_run(const test_case_t *c, const char *mode, size_t step, int want,
                      const char *data, size_t data_len, size_t n, const run_result_t *r)
{
    ok(r->code == want, "%s:%d %s [%s %zu]: got %d, want %d", c->file, c->line, c->name, mode,
       step, r->code, want);
    if (want == HS_OK || want == HS_AGAIN) {
        ok(r->data_len == data_len && memcmp(r->data, data, data_len) == 0,
           "%s:%d %s [%s %zu]: data differs (%zu bytes, want %zu)", c->file, c->line, c->name,
           mode, step, r->data_len, data_len);
        ok(r->consumed == n, "%s:%d %s [%s %zu]: consumed %zu of %zu", c->file, c->line, c->name,
           mode, step, r->consumed, n);
    }
}

/* The exported test entry point must agree with the direct runs. */
static void check_entry_point(const test_case_t *c, int want, const char *in, size_t n,
                              const run_result_t *r)
{
    static char out[DATA_CAP];
    size_t outlen = 0, consumed = 0;

    for (size_t step = 0; step < 3; step++) {
        int rc = hs_test_chunked_decode(in, n, step, out, sizeof(out), &outlen, &consumed);

        ok(rc == want, "%s: hs_test_chunked_decode step %zu gave %d", c->name, step, rc);
        if (want == HS_OK || want == HS_AGAIN)
            ok(outlen == r->data_len && memcmp(out, r->data, outlen) == 0 && consumed == n,
               "%s: hs_test_chunked_decode step %zu output", c->name, step);
    }
}

#define MAX_SEEDS 128
static char *seeds[MAX_SEEDS];
static size_t seed_lens[MAX_SEEDS];
static size_t n_seeds;
static size_t n_cases;

static void run_case(const test_case_t *c)
{
    static const size_t steps[] = {0, 1, 2, 3, 7, 64};
    static run_result_t r;
    static char joined[DATA_CAP];
    size_t n, data_len;
    char *in = case_concat(c, "input", &n);
    char *data = case_concat(c, "data", &data_len);
    int want = expect_code(case_get(c, "expect", NULL));

    n_cases++;
    ok(want != -100, "%s:%d %s: unknown expect value", c->file, c->line, c->name);
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        run_pieces(in, n, steps[i], &r);
        check_run(c, "pieces", steps[i], want, data, data_len, n, &r);
    }
    check_entry_point(c, want, in, n, &r);
    if (want != HS_AGAIN && n + 32 <= sizeof(joined)) {
        /* A pipelined request after the body must be left for the next parse. */
        memcpy(joined, in, n);
        memcpy(joined + n, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27);
        run_pieces(joined, n + 27, 0, &r);
        check_run(c, "trailing", 0, want, data, data_len, n, &r);
        run_pieces(joined, n + 27, 1, &r);
        check_run(c, "trailing", 1, want, data, data_len, n, &r);
    }
    free(data);
    if (n_seeds < MAX_SEEDS && n < 1024) {
        seeds[n_seeds] = in;
        seed_lens[n_seeds++] = n;
    } else {
        free(in);
    }
}

/* ---- tests of the helpers ------------------------------------------------------------------ */

static void test_hex_value(void)
{
    static const char digits[] = "0123456789abcdef";

    for (int c = 0; c < 256; c++) {
        const char *p = c != 0 ? strchr(digits, c >= 'A' && c <= 'F' ? c + 32 : c) : NULL;
        int want = p != NULL ? (int)(p - digits) : -1;

        ok(hex_value((unsigned char)c) == want, "hex_value(0x%02x)", c);
    }
}

/* After HS_DONE or HS_ERROR the decoder keeps answering the same and consumes nothing. */
static void test_sticky_end_states(void)
{
    hs_chunked_t st = {0};
    size_t took = 99;
    hs_str_t d;

    ok(hs__chunked_decode(&st, "0\r\n\r\nXYZ", 8, &took, &d) == HS_DONE && took == 5,
       "done after the empty trailer line, consumed %zu", took);
    ok(hs__chunked_decode(&st, "XYZ", 3, &took, &d) == HS_DONE && took == 0 && d.len == 0,
       "HS_DONE again without consuming");
    memset(&st, 0, sizeof(st));
    ok(hs__chunked_decode(&st, "z", 1, &took, &d) == HS_ERROR && st.reject == HS_REJECT_BAD_NUMBER,
       "bad size is an error");
    ok(hs__chunked_decode(&st, "5\r\n", 3, &took, &d) == HS_ERROR && took == 0 &&
           st.reject == HS_REJECT_BAD_NUMBER,
       "HS_ERROR again without consuming");
}

/* A chunk larger than the input returns all of it as data and keeps the remainder. */
static void test_partial_chunk(void)
{
    hs_chunked_t st = {0};
    const char *in = guard_place("10\r\nabcdef", 10);
    size_t took;
    hs_str_t d;

    ok(hs__chunked_decode(&st, in, 10, &took, &d) == HS_OK && took == 10 && d.len == 6 &&
           d.base == in + 4 && st.remaining == 10,
       "partial chunk: data slice and remaining");
    ok(hs__chunked_decode(&st, in, 0, &took, &d) == HS_AGAIN && took == 0, "empty input");
}

/* ---- mutation fuzzing ---------------------------------------------------------------------- */

static uint64_t rng_state = 0x2545f4914f6cdd1du;

static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static size_t mutate(char *buf, size_t n, size_t cap)
{
    static const char interesting[] = "\r\n ;\t0Ff=\x00";
    size_t edits = 1 + rng() % 3;

    for (size_t i = 0; i < edits; i++) {
        size_t at = n > 0 ? rng() % n : 0;
        uint32_t op = rng() % 3;

        if (op == 0 && n > 0) {
            buf[at] = interesting[rng() % (sizeof(interesting) - 1)];
        } else if (op == 1 && n < cap) {
            memmove(buf + at + 1, buf + at, n - at);
            buf[at] = interesting[rng() % (sizeof(interesting) - 1)];
            n++;
        } else if (n > 0) {
            memmove(buf + at, buf + at + 1, n - at - 1);
            n--;
        }
    }
    return n;
}

static void test_fuzz(void)
{
    static run_result_t whole, split;
    static char buf[2048];
    int before = tests_failed;

    for (int iter = 0; iter < 20000 && n_seeds > 0 && tests_failed - before < 5; iter++) {
        size_t s = rng() % n_seeds;
        size_t n = seed_lens[s] < sizeof(buf) / 2 ? seed_lens[s] : sizeof(buf) / 2;
        size_t step = 1 + rng() % 5;

        memcpy(buf, seeds[s], n);
        n = mutate(buf, n, sizeof(buf) / 2);
        run_pieces(buf, n, 0, &whole);
        run_pieces(buf, n, step, &split);
        ok(whole.code == split.code && whole.consumed == split.consumed &&
               whole.data_len == split.data_len &&
               memcmp(whole.data, split.data, whole.data_len) == 0,
           "fuzz: step %zu gave %d/%zu, whole gave %d/%zu", step, split.code, split.consumed,
           whole.code, whole.consumed);
    }
}

int main(void)
{
    guard_init();
    test_hex_value();
    test_sticky_end_states();
    test_partial_chunk();
    ok(case_files_run(1, run_case) >= 1, "chunked case files found");
    ok(n_cases >= 20, "at least 20 chunked cases, found %zu", n_cases);
    test_fuzz();
    for (size_t i = 0; i < n_seeds; i++)
        free(seeds[i]);
    return tests_done("test_chunked");
}
