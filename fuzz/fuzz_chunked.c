/*
 * libFuzzer target for the chunked decoder (csrc/chunked.c).
 *
 * Input: [step] then a request body. The body is decoded once as one read, and once as reads of
 * step bytes (1 for 0) arriving in a connection buffer that keeps the unconsumed tail and appends
 * the next read, as conn.c does. Each call sees an exact-size copy of its window.
 *
 * Invariants:
 *   - each call returns HS_OK (with data), HS_AGAIN (all input consumed), HS_DONE or HS_ERROR
 *     with a reject code the connection knows how to answer; consumed <= len, the data slice lies
 *     inside the consumed bytes, and nothing is read outside the window;
 *   - the end states are sticky: after HS_DONE or HS_ERROR a call consumes nothing;
 *   - both runs give the same answer, the same decoded bytes, and stop at the same byte; a
 *     complete body ends with the LF of its final empty line;
 *   - the decoded bytes of a complete body, re-encoded as chunks, decode to the same bytes.
 */
#include "../csrc/chunked.c"

#include "fuzz_util.h"

#define MAX_INPUT (64 * 1024)

typedef struct run {
    int code;        /* HS_DONE, HS_AGAIN, or 100 + the reject code */
    size_t consumed; /* input bytes used */
    size_t data_len;
    char data[MAX_INPUT];
} run_t;

static void take(run_t *r, hs_str_t d, const char *win, size_t took)
{
    FUZZ_CHECK(inside(d.base, d.len, win, took), "data slice outside the consumed bytes");
    FUZZ_CHECK(d.len <= MAX_INPUT - r->data_len, "more data than input");
    if (d.len > 0)
        memcpy(r->data + r->data_len, d.base, d.len);
    r->data_len += d.len;
}

/* Decodes the window until the decoder needs more input or stops; returns that answer. */
static int feed(hs_chunked_t *st, const char *p, size_t n, run_t *r, size_t *used)
{
    char *win = dup_exact(p, n);
    size_t pos = 0;
    int rc;

    for (;;) {
        size_t took = 99;
        hs_str_t d;

        rc = hs__chunked_decode(st, win + pos, n - pos, &took, &d);
        FUZZ_CHECK(took <= n - pos, "consumed %zu of %zu", took, n - pos);
        take(r, d, win + pos, took);
        pos += took;
        if (rc != HS_OK)
            break;
        FUZZ_CHECK(d.len > 0, "HS_OK without data");
    }
    FUZZ_CHECK(rc == HS_AGAIN || rc == HS_DONE || rc == HS_ERROR, "return value %d", rc);
    FUZZ_CHECK(rc != HS_AGAIN || pos == n, "HS_AGAIN with %zu bytes left", n - pos);
    if (rc == HS_ERROR)
        FUZZ_CHECK(st->reject == HS_REJECT_BAD_REQUEST || st->reject == HS_REJECT_BAD_NUMBER ||
                       st->reject == HS_REJECT_INVALID_CRLF,
                   "reject %d", st->reject);
    if (rc != HS_AGAIN) {
        /* The end states are sticky and consume nothing more. */
        size_t took = 99;
        hs_str_t d;
        int again = hs__chunked_decode(st, win + pos, n - pos, &took, &d);

        FUZZ_CHECK(again == rc && took == 0 && d.len == 0, "end state %d not sticky", rc);
    }
    free(win);
    *used = pos;
    return rc;
}

static void run_pieces(const char *in, size_t n, size_t step, run_t *r)
{
    hs_chunked_t st = {0};
    size_t pos = 0, avail = 0;

    r->data_len = 0;
    for (;;) {
        size_t used = 0;
        int rc;

        avail = n - avail > step ? avail + step : n;
        rc = feed(&st, in + pos, avail - pos, r, &used);
        pos += used;
        if (rc != HS_AGAIN || avail == n) {
            r->code = rc == HS_ERROR ? 100 + st.reject : rc;
            r->consumed = pos;
            return;
        }
    }
}

/* Re-encodes data as chunks whose sizes come from the data itself, with a trailer. */
static size_t encode(const char *data, size_t n, char *out)
{
    size_t w = 0, i = 0;

    while (i < n) {
        size_t len = 1 + (unsigned char)data[i] % 37;

        if (len > n - i)
            len = n - i;
        w += (size_t)sprintf(out + w, "%zX;x=y\r\n", len);
        memcpy(out + w, data + i, len);
        w += len;
        memcpy(out + w, "\r\n", 2);
        w += 2;
        i += len;
    }
    memcpy(out + w, "0\r\nT: v\r\n\r\n", 11);
    return w + 11;
}

static run_t whole, split, again;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data + 1;
    size_t n = size - 1;

    if (size < 1 || n > MAX_INPUT)
        return 0;
    run_pieces(in, n, n > 0 ? n : 1, &whole);
    run_pieces(in, n, data[0] != 0 ? data[0] : 1, &split);
    FUZZ_CHECK(split.code == whole.code && split.consumed == whole.consumed,
               "reads of %u: %d after %zu bytes, one read: %d after %zu", data[0], split.code,
               split.consumed, whole.code, whole.consumed);
    FUZZ_CHECK(split.data_len == whole.data_len &&
                   memcmp(split.data, whole.data, whole.data_len) == 0,
               "decoded bytes differ");
    FUZZ_CHECK(whole.code != HS_AGAIN || whole.consumed == n, "HS_AGAIN left bytes");

    if (whole.code == HS_DONE) {
        FUZZ_CHECK(whole.consumed > 0 && in[whole.consumed - 1] == '\n',
                   "a complete body that does not end with LF");
        /* Every chunk costs at least one framing byte per data byte in the worst case (1-byte
         * chunks: "1;x=y\r\n" + byte + "\r\n"), so 10 bytes per data byte bound the encoding. */
        char *enc = malloc(10 * whole.data_len + 16);
        size_t en;

        FUZZ_CHECK(enc != NULL, "out of memory");
        en = encode(whole.data, whole.data_len, enc);
        run_pieces(enc, en, en, &again);
        FUZZ_CHECK(again.code == HS_DONE && again.consumed == en &&
                       again.data_len == whole.data_len &&
                       memcmp(again.data, whole.data, whole.data_len) == 0,
                   "re-encoded body decodes to %d after %zu of %zu", again.code, again.consumed,
                   en);
        free(enc);
    }
    return 0;
}
