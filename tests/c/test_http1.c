/*
 * Unit tests of csrc/http1.c. The .c file is included so static helpers can be tested too.
 *
 * Every case in the tests/http1_cases files (except chunked*.txt) runs three ways, each with the
 * input placed against a PROT_NONE page so that an over-read crashes: whole, byte at a time
 * (growing prefixes with last_len, as a connection would call it), and with trailing bytes
 * appended. A small mutation fuzzer then checks the parser's invariants on inputs no one wrote by
 * hand, above all that whole, byte-at-a-time and trailing-bytes calls give the same answer.
 */
#include "../../csrc/http1.c"

#include "case_file.h"

static const char *const reject_names[HS_REJECT_COUNT] = {
    [HS_REJECT_NONE] = "NONE",
    [HS_REJECT_BAD_REQUEST] = "BAD_REQUEST",
    [HS_REJECT_INVALID_HOSTNAME] = "INVALID_HOSTNAME",
    [HS_REJECT_INVALID_URL] = "INVALID_URL",
    [HS_REJECT_INVALID_HEADER] = "INVALID_HEADER",
    [HS_REJECT_INVALID_VERB] = "INVALID_VERB",
    [HS_REJECT_FIELD_LENGTH] = "FIELD_LENGTH",
    [HS_REJECT_REQUEST_LENGTH] = "REQUEST_LENGTH",
    [HS_REJECT_NOT_FOUND] = "NOT_FOUND",
    [HS_REJECT_LENGTH_REQUIRED] = "LENGTH_REQUIRED",
    [HS_REJECT_ENTITY_TOO_LARGE] = "ENTITY_TOO_LARGE",
    [HS_REJECT_URL_TOO_LONG] = "URL_TOO_LONG",
    [HS_REJECT_NOT_IMPLEMENTED] = "NOT_IMPLEMENTED",
    [HS_REJECT_QUEUE_FULL] = "QUEUE_FULL",
    [HS_REJECT_VERSION] = "VERSION",
    [HS_REJECT_INTERNAL] = "INTERNAL",
    [HS_REJECT_BAD_NUMBER] = "BAD_NUMBER",
    [HS_REJECT_INVALID_CRLF] = "INVALID_CRLF",
    [HS_REJECT_APP_OFFLINE] = "APP_OFFLINE",
};

#define EXPECT_UNKNOWN (-100)
#define OUT_CAP (64 * 1024)

/* What one case expects, built from its key lines. */
typedef struct expectation {
    int code;             /* HS_OK, HS_AGAIN or a reject code */
    size_t consumed;      /* head length for HS_OK */
    hs_http1_limits_t lim;
    long header_count;    /* >= 0: compare only the number of headers */
    size_t fixed_len;     /* bytes of blob before the headers */
    size_t blob_len;
    char blob[OUT_CAP];   /* the expected format_request() output */
} expectation_t;

static const char *code_name(int code)
{
    static char other[32];

    if (code == HS_OK)
        return "ok";
    if (code == HS_AGAIN)
        return "again";
    if (code > 0 && code < HS_REJECT_COUNT)
        return reject_names[code];
    snprintf(other, sizeof(other), "code %d", code);
    return other;
}

static int expect_code(const char *s)
{
    if (s == NULL)
        return EXPECT_UNKNOWN;
    if (strcmp(s, "ok") == 0)
        return HS_OK;
    if (strcmp(s, "again") == 0)
        return HS_AGAIN;
    for (int i = 1; i < HS_REJECT_COUNT; i++)
        if (strcmp(s, reject_names[i]) == 0)
            return i;
    return EXPECT_UNKNOWN;
}

static void blob_put(expectation_t *e, const test_case_t *c, const char *key, const char *dflt)
{
    size_t n;
    const char *v = case_get(c, key, &n);

    if (v == NULL) {
        v = dflt;
        n = strlen(dflt);
    }
    put_field(e->blob, sizeof(e->blob), &e->blob_len, v, n);
}

/* Appends every "header: Name: value" line as name and value, the value trimmed like a field. */
static void blob_put_headers(expectation_t *e, const test_case_t *c)
{
    for (size_t i = 0; i < c->nkv; i++) {
        const case_kv_t *kv = &c->kv[i];
        const char *colon = memchr(kv->val, ':', kv->len);
        hs_str_t value;

        if (strcmp(kv->key, "header") != 0)
            continue;
        ok(colon != NULL, "%s:%d %s: header line without a colon", c->file, c->line, c->name);
        if (colon == NULL)
            continue;
        value = trim_ows(colon + 1, (size_t)(kv->val + kv->len - colon - 1));
        put_field(e->blob, sizeof(e->blob), &e->blob_len, kv->val, (size_t)(colon - kv->val));
        put_field(e->blob, sizeof(e->blob), &e->blob_len, value.base, value.len);
    }
}

static void build_expectation(const test_case_t *c, size_t input_len, expectation_t *e)
{
    const char *limits = case_get(c, "limits", NULL);
    const char *consumed = case_get(c, "consumed", NULL);
    const char *count = case_get(c, "header-count", NULL);
    unsigned long field = 16384, request = 16384;

    e->code = expect_code(case_get(c, "expect", NULL));
    if (limits != NULL)
        ok(sscanf(limits, "%lu %lu", &field, &request) == 2, "%s: bad limits", c->name);
    e->lim = (hs_http1_limits_t){field, request};
    e->consumed = consumed != NULL ? strtoul(consumed, NULL, 10) : input_len;
    e->header_count = count != NULL ? strtol(count, NULL, 10) : -1;
    e->blob_len = 0;
    blob_put(e, c, "method", "");
    blob_put(e, c, "target", "");
    blob_put(e, c, "minor", "1");
    blob_put(e, c, "content-length", "-1");
    blob_put(e, c, "chunked", "0");
    blob_put(e, c, "expect-continue", "0");
    blob_put(e, c, "close", "0");
    blob_put(e, c, "keep-alive", "0");
    blob_put(e, c, "host", "");
    e->fixed_len = e->blob_len;
    blob_put_headers(e, c);
}

/* Every slice the parser returns must lie inside the head it parsed. */
static int slice_inside(hs_str_t s, const char *buf, size_t head_len)
{
    return s.len == 0 || (s.base >= buf && s.base + s.len <= buf + head_len);
}

static int slices_inside(const hs_http1_request_t *req, const char *buf, size_t head_len)
{
    int in = slice_inside(req->method, buf, head_len) && slice_inside(req->target, buf, head_len) &&
             slice_inside(req->host, buf, head_len);

    for (size_t i = 0; i < req->num_headers; i++)
        in = in && slice_inside(req->headers[i].name, buf, head_len) &&
             slice_inside(req->headers[i].value, buf, head_len);
    return in;
}

static void check_fields(const test_case_t *c, const char *mode, const expectation_t *e,
                         const hs_http1_request_t *req, const char *buf, size_t head_len)
{
    static char got[OUT_CAP];
    size_t got_len = 0;

    ok(slices_inside(req, buf, head_len), "%s:%d %s [%s]: a slice points outside the head",
       c->file, c->line, c->name, mode);
    ok(format_request(req, got, sizeof(got), &got_len) == 0, "%s: format", c->name);
    if (e->header_count >= 0) {
        ok(got_len >= e->fixed_len && memcmp(got, e->blob, e->fixed_len) == 0 &&
               (long)req->num_headers == e->header_count,
           "%s:%d %s [%s]: fields or header count (%zu) differ", c->file, c->line, c->name, mode,
           req->num_headers);
        return;
    }
    ok(got_len == e->blob_len && memcmp(got, e->blob, got_len) == 0,
       "%s:%d %s [%s]: parsed fields differ from the expected ones", c->file, c->line, c->name,
       mode);
}

static void check_outcome(const test_case_t *c, const char *mode, const expectation_t *e, int rc,
                          const hs_http1_request_t *req, const char *buf)
{
    int got = rc > 0 ? HS_OK : rc == HS_AGAIN ? HS_AGAIN : req->reject;

    ok(rc == HS_AGAIN || rc == HS_ERROR || rc > 0, "%s: return value %d", c->name, rc);
    ok(got == e->code, "%s:%d %s [%s]: got %s, want %s", c->file, c->line, c->name, mode,
       code_name(got), code_name(e->code));
    if (got == HS_OK && e->code == HS_OK) {
        ok((size_t)rc == e->consumed, "%s:%d %s [%s]: head length %d, want %zu", c->file, c->line,
           c->name, mode, rc, e->consumed);
        check_fields(c, mode, e, req, buf, (size_t)rc);
    }
}

static hs_http1_request_t req_storage;

static void run_whole(const test_case_t *c, const expectation_t *e, const char *in, size_t n)
{
    const char *buf = guard_place(in, n);
    int rc = hs__http1_parse_request(buf, n, 0, &e->lim, &req_storage);

    check_outcome(c, "whole", e, rc, &req_storage, buf);
}

/* Feeds growing prefixes with last_len as a connection does; the first answer that is not
 * HS_AGAIN must be the expected one and come at the right length. */
static void run_bytewise(const test_case_t *c, const expectation_t *e, const char *in, size_t n)
{
    size_t last = 0;

    for (size_t k = 1; k <= n; k++) {
        const char *buf = guard_place(in, k);
        int rc = hs__http1_parse_request(buf, k, last, &e->lim, &req_storage);

        if (rc == HS_AGAIN && k < n) {
            last = k;
            continue;
        }
        check_outcome(c, "bytewise", e, rc, &req_storage, buf);
        if (rc > 0)
            ok(k == e->consumed, "%s: head found at %zu bytes, want %zu", c->name, k, e->consumed);
        return;
    }
    ok(n > 0, "%s: empty input", c->name);
}

/* Bytes after the head (a pipelined request, or garbage) must not change the outcome. */
static void run_trailing(const test_case_t *c, const expectation_t *e, const char *in, size_t n)
{
    static const char *const tails[] = {"GET /next HTTP/1.1\r\nHost: b\r\n\r\n", "\r\n\r\n\x00\r"};
    static char joined[OUT_CAP];

    if (e->code == HS_AGAIN || n + 64 > sizeof(joined))
        return;
    for (size_t t = 0; t < 2; t++) {
        size_t tl = t == 0 ? strlen(tails[0]) : 6;
        const char *buf;
        int rc;

        memcpy(joined, in, n);
        memcpy(joined + n, tails[t], tl);
        buf = guard_place(joined, n + tl);
        rc = hs__http1_parse_request(buf, n + tl, 0, &e->lim, &req_storage);
        check_outcome(c, "trailing", e, rc, &req_storage, buf);
    }
}

#define MAX_SEEDS 256
static char *seeds[MAX_SEEDS];
static size_t seed_lens[MAX_SEEDS];
static size_t n_seeds;
static size_t n_cases;

static void run_case(const test_case_t *c)
{
    static expectation_t e;
    size_t n;
    char *in = case_concat(c, "input", &n);

    n_cases++;
    build_expectation(c, n, &e);
    ok(e.code != EXPECT_UNKNOWN, "%s:%d %s: unknown expect value", c->file, c->line, c->name);
    run_whole(c, &e, in, n);
    run_bytewise(c, &e, in, n);
    run_trailing(c, &e, in, n);
    if (n_seeds < MAX_SEEDS && n < 2048) {
        seeds[n_seeds] = in;
        seed_lens[n_seeds++] = n;
    } else {
        free(in);
    }
}

/* ---- tests of the helpers ------------------------------------------------------------------ */

static void test_tchar(void)
{
    const char *specials = "!#$%&'*+-.^_`|~";

    for (int c = 0; c < 256; c++) {
        int want = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                   (c != 0 && strchr(specials, c) != NULL);

        ok(is_tchar((unsigned char)c) == want, "is_tchar(0x%02x)", c);
    }
}

static void test_decimal(void)
{
    static const struct {
        const char *s;
        int rc;
        int64_t v;
    } t[] = {
        {"0", 0, 0},
        {"4611686018427387904", 0, (int64_t)1 << 62},
        {"4611686018427387905", -1, 0},
        {"18446744073709551616", -1, 0},
        {"000000000000000000000000007", 0, 7},
        {"", -1, 0},
        {"1 ", -1, 0},
        {"/", -1, 0},
        {":", -1, 0},
    };

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        int64_t v = -5;
        int rc = parse_decimal((hs_str_t){t[i].s, strlen(t[i].s)}, &v);

        ok(rc == t[i].rc && (rc != 0 || v == t[i].v), "parse_decimal(\"%s\")", t[i].s);
    }
}

static void test_list_elements(void)
{
    hs_str_t list = HS_STR_LIT(" a ,, b\t,");
    const char *want[] = {"a", "", "b", ""};
    size_t pos = 0, i = 0;
    hs_str_t elem;

    while (next_element(list, &pos, &elem)) {
        ok(i < 4 && hs__str_eq(elem, want[i], strlen(want[i])), "list element %zu", i);
        i++;
    }
    ok(i == 4, "list has 4 elements, got %zu", i);
}

/* A caller that passes a last_len beyond len (a bug) must not make the parser read past len. */
static void test_last_len_beyond_len(void)
{
    static const char in[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    hs_http1_limits_t lim = {16384, 16384};
    const char *buf = guard_place(in, 10);

    ok(hs__http1_parse_request(buf, 10, 1000, &lim, &req_storage) == HS_AGAIN, "last_len > len");
}

static void test_entry_point(void)
{
    static const char in[] = "GET /x HTTP/1.1\r\nHost: a\r\n\r\nBODY";
    static const char want[] = "GET\0/x\0" "1\0-1\0" "0\0" "0\0" "0\0" "0\0a\0Host\0a";
    char out[64];
    size_t outlen = 99, consumed = 99;
    int rc = hs_test_parse_request(in, sizeof(in) - 1, 16384, 16384, out, sizeof(out), &outlen,
                                   &consumed);

    ok(rc == HS_OK && consumed == sizeof(in) - 5, "hs_test_parse_request: rc %d consumed %zu", rc,
       consumed);
    ok(outlen == sizeof(want) && memcmp(out, want, outlen) == 0, "hs_test_parse_request output");
    rc = hs_test_parse_request(in, sizeof(in) - 1, 16384, 16384, out, 10, &outlen, &consumed);
    ok(rc == HS_REJECT_INTERNAL, "a small out buffer is HS_REJECT_INTERNAL, got %d", rc);
    rc = hs_test_parse_request(in, 10, 16384, 16384, out, sizeof(out), &outlen, &consumed);
    ok(rc == HS_AGAIN && outlen == 0 && consumed == 0, "incomplete input is HS_AGAIN");
    rc = hs_test_parse_request("get / HTTP/1.1\r\n\r\n", 18, 16384, 16384, out, sizeof(out),
                               &outlen, &consumed);
    ok(rc == HS_REJECT_INVALID_VERB, "a reject returns its code, got %d", rc);
}

/* ---- mutation fuzzing ---------------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static size_t mutate(char *buf, size_t n, size_t cap)
{
    static const char interesting[] = "\r\n :\t,;\x00\x7f" "aA0";
    size_t edits = 1 + rng() % 4;

    for (size_t i = 0; i < edits; i++) {
        size_t at = n > 0 ? rng() % n : 0;
        uint32_t op = rng() % 4;

        if (op == 0 && n > 0) {
            buf[at] = interesting[rng() % (sizeof(interesting) - 1)];
        } else if (op == 1 && n < cap) {
            memmove(buf + at + 1, buf + at, n - at);
            buf[at] = interesting[rng() % (sizeof(interesting) - 1)];
            n++;
        } else if (op == 2 && n > 0) {
            memmove(buf + at, buf + at + 1, n - at - 1);
            n--;
        } else if (n > 0) {
            buf[at] = (char)rng();
        }
    }
    return n;
}

/* The outcome of a call: head length, HS_AGAIN, or minus (100 + reject code). */
static int outcome(const char *in, size_t n, size_t last, const hs_http1_limits_t *lim)
{
    const char *buf = guard_place(in, n);
    int rc = hs__http1_parse_request(buf, n, last, lim, &req_storage);

    if (rc > 0) {
        ok((size_t)rc <= n && slices_inside(&req_storage, buf, (size_t)rc), "fuzz: bad slices");
        return rc;
    }
    if (rc == HS_ERROR) {
        ok(req_storage.reject > 0 && req_storage.reject < HS_REJECT_COUNT, "fuzz: bad reject");
        return -100 - req_storage.reject;
    }
    ok(rc == HS_AGAIN, "fuzz: unexpected return %d", rc);
    return rc;
}

/* Whole, byte-at-a-time and trailing-bytes calls on one input must agree. */
static void fuzz_one(const char *in, size_t n, const hs_http1_limits_t *lim)
{
    static char joined[4096];
    int whole = outcome(in, n, 0, lim);
    int inc = HS_AGAIN;
    size_t last = 0;

    for (size_t k = 1; k <= n && inc == HS_AGAIN; k++) {
        inc = outcome(in, k, last, lim);
        last = k;
    }
    ok(inc == whole, "fuzz: bytewise %d != whole %d for %.*s", inc, whole, (int)n, in);
    if (whole != HS_AGAIN && n + 4 <= sizeof(joined)) {
        memcpy(joined, in, n);
        memcpy(joined + n, "\n\r\nX", 4);
        ok(outcome(joined, n + 4, 0, lim) == whole, "fuzz: trailing bytes changed the outcome");
    }
}

static void test_fuzz(void)
{
    static const hs_http1_limits_t limits[] = {{16384, 16384}, {32, 64}, {20, 40}, {64, 48}};
    static char buf[4096];
    int before = tests_failed;

    for (int iter = 0; iter < 20000 && n_seeds > 0 && tests_failed - before < 5; iter++) {
        size_t s = rng() % n_seeds;
        size_t n = seed_lens[s] < sizeof(buf) / 2 ? seed_lens[s] : sizeof(buf) / 2;

        memcpy(buf, seeds[s], n);
        n = mutate(buf, n, sizeof(buf) / 2);
        fuzz_one(buf, n, &limits[rng() % 4]);
    }
}

int main(void)
{
    guard_init();
    test_tchar();
    test_decimal();
    test_list_elements();
    test_last_len_beyond_len();
    test_entry_point();
    ok(case_files_run(0, run_case) >= 1, "parser case files found");
    ok(n_cases >= 40, "at least 40 parser cases, found %zu", n_cases);
    test_fuzz();
    for (size_t i = 0; i < n_seeds; i++)
        free(seeds[i]);
    return tests_done("test_http1");
}
