/*
 * libFuzzer target for the request-head parser (csrc/http1.c).
 *
 * Input: [limits][max_request][step] then the bytes a client sent. If the first byte has its top
 * bit set, small limits are used (MaxFieldLength 1..128 from its low bits, MaxRequestBytes 1..256
 * from the second byte), so the limit paths are reached with short inputs; otherwise the HTTP.sys
 * defaults (16384, 16384). The third byte is the read size of the split run: 0 is byte at a time.
 *
 * Invariants (h11's "parse or reject", plus what a caller relies on):
 *   - the parser returns a head length in 1..len, HS_AGAIN, or HS_ERROR with a known reject code,
 *     and never reads outside the buffer it was given (every call sees an exact-size copy);
 *   - a parsed head obeys its own grammar: slices inside the head, a token method without lower
 *     case, a target without controls or spaces, token field names, trimmed values without
 *     controls, no line above MaxFieldLength, the head within MaxRequestBytes, consistent framing;
 *   - reading the input in pieces (growing prefixes with last_len, as conn.c does) gives the same
 *     answer and the same fields as one call on the whole input, and bytes after a head that was
 *     answered do not change the answer;
 *   - a parsed head written back out in its plain form parses to the same fields;
 *   - under small limits, any answer but a limit one (FieldLength, URL_Length, RequestLength) is
 *     also the answer under the default limits.
 */
#include "../csrc/http1.c"

#include "fuzz_util.h"

#define OUT_CAP (64 * 1024)
#define HEAD_BYTES 3

/* The outcome of one call: head length, HS_AGAIN, or -(100 + reject). */
static int outcome_of(int rc, const hs_http1_request_t *req)
{
    if (rc > 0)
        return rc;
    if (rc == HS_AGAIN)
        return rc;
    FUZZ_CHECK(rc == HS_ERROR, "return value %d", rc);
    FUZZ_CHECK(req->reject > HS_REJECT_NONE && req->reject < HS_REJECT_COUNT, "reject %d",
               req->reject);
    return -100 - req->reject;
}

static int is_upper_tchar(unsigned char c)
{
    return is_tchar(c) && !(c >= 'a' && c <= 'z');
}

static void check_token(hs_str_t s, int upper, const char *what)
{
    FUZZ_CHECK(s.len > 0, "empty %s", what);
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.base[i];

        FUZZ_CHECK(upper ? is_upper_tchar(c) : is_tchar(c), "%s byte 0x%02x", what, c);
    }
}

static void check_value(hs_str_t v)
{
    if (v.len > 0)
        FUZZ_CHECK(!is_ows(v.base[0]) && !is_ows(v.base[v.len - 1]), "value not trimmed");
    for (size_t i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char)v.base[i];

        FUZZ_CHECK(c == '\t' || (c >= 0x20 && c != 0x7f), "value byte 0x%02x", c);
    }
}

/* Every line of the head is within MaxFieldLength, and none holds a CR but at its end. */
static void check_lines(const char *buf, size_t head_len, const hs_http1_limits_t *lim)
{
    size_t s = 0;

    while (s < head_len) {
        const char *nl = memchr(buf + s, '\n', head_len - s);
        size_t e, end;

        FUZZ_CHECK(nl != NULL, "head does not end with LF");
        e = (size_t)(nl - buf);
        end = e > s && buf[e - 1] == '\r' ? e - 1 : e;
        FUZZ_CHECK(end - s <= lim->max_field_length, "line of %zu bytes", end - s);
        FUZZ_CHECK(memchr(buf + s, '\r', end - s) == NULL, "bare CR in a parsed head");
        s = e + 1;
    }
}

static void check_parsed(const char *buf, size_t len, int rc, const hs_http1_limits_t *lim,
                         const hs_http1_request_t *req)
{
    size_t n = (size_t)rc;
    int host_seen = 0;

    FUZZ_CHECK(n <= len && n <= lim->max_request_bytes, "head length %zu of %zu", n, len);
    FUZZ_CHECK(buf[n - 1] == '\n', "head does not end at a line end");
    FUZZ_CHECK(req->reject == HS_REJECT_NONE, "reject %d on success", req->reject);
    check_lines(buf, n, lim);
    FUZZ_CHECK(inside(req->method.base, req->method.len, buf, n), "method outside the head");
    FUZZ_CHECK(inside(req->target.base, req->target.len, buf, n), "target outside the head");
    FUZZ_CHECK(inside(req->host.base, req->host.len, buf, n), "host outside the head");
    check_token(req->method, 1, "method");
    FUZZ_CHECK(req->target.len > 0, "empty target");
    for (size_t i = 0; i < req->target.len; i++)
        FUZZ_CHECK((unsigned char)req->target.base[i] > 0x20 && req->target.base[i] != 0x7f,
                   "target byte 0x%02x", (unsigned char)req->target.base[i]);
    FUZZ_CHECK(req->minor_version == 0 || req->minor_version == 1, "minor %d",
               req->minor_version);
    FUZZ_CHECK(req->num_headers <= HS_HTTP1_MAX_HEADERS, "%zu headers", req->num_headers);
    for (size_t i = 0; i < req->num_headers; i++) {
        const hs_header_t *h = &req->headers[i];

        FUZZ_CHECK(inside(h->name.base, h->name.len, buf, n), "name outside the head");
        FUZZ_CHECK(inside(h->value.base, h->value.len, buf, n), "value outside the head");
        check_token(h->name, 0, "field name");
        check_value(h->value);
        if (NAME_IS(h, "host")) {
            FUZZ_CHECK(!host_seen && req->host.base == h->value.base, "Host field vs host");
            host_seen = 1;
        }
    }
    FUZZ_CHECK(host_seen == (req->host.base != NULL), "host without a Host field");
    FUZZ_CHECK(req->minor_version == 0 || host_seen, "HTTP/1.1 without Host");
    FUZZ_CHECK(req->content_length >= -1 && req->content_length <= (int64_t)CONTENT_LENGTH_MAX,
               "content length %lld", (long long)req->content_length);
    FUZZ_CHECK(!req->chunked || (req->content_length == -1 && req->minor_version == 1),
               "chunked with a Content-Length or on HTTP/1.0");
}

/* The fields of a parsed request as bytes, for comparing two parses. */
static size_t fields_of(const hs_http1_request_t *req, char *out)
{
    size_t n = 0;

    FUZZ_CHECK(format_request(req, out, OUT_CAP, &n) == 0, "format_request overflow");
    return n;
}

/* Parses buf[0..n) in place (buf must end where the allocation ends, so that ASan sees a read
 * past it); returns the outcome and leaves the fields in req and their bytes in fields. */
static int parse_at(const char *buf, size_t n, size_t last, const hs_http1_limits_t *lim,
                    hs_http1_request_t *req, char *fields, size_t *fields_len)
{
    int rc = hs__http1_parse_request(buf, n, last, lim, req);
    int out = outcome_of(rc, req);

    *fields_len = 0;
    if (rc > 0) {
        check_parsed(buf, n, rc, lim, req);
        *fields_len = fields_of(req, fields);
    }
    return out;
}

/* As parse_at, on an exact-size copy of a prefix; the slices in req die with the copy. */
static int parse_copy(const uint8_t *in, size_t n, size_t last, const hs_http1_limits_t *lim,
                      hs_http1_request_t *req, char *fields, size_t *fields_len)
{
    char *buf = dup_exact(in, n);
    int out = parse_at(buf, n, last, lim, req, fields, fields_len);

    free(buf);
    return out;
}

/* Feeds growing prefixes of step bytes (1 for 0) with last_len, as a connection reads. */
static int parse_split(const uint8_t *in, size_t n, size_t step, const hs_http1_limits_t *lim,
                       hs_http1_request_t *req, char *fields, size_t *fields_len, size_t *at)
{
    size_t last = 0;
    int out = HS_AGAIN;

    if (step == 0)
        step = 1;
    for (size_t k = step < n ? step : n; n > 0; k = n - k > step ? k + step : n) {
        out = parse_copy(in, k, last, lim, req, fields, fields_len);
        *at = k;
        if (out != HS_AGAIN || k == n)
            break;
        last = k;
    }
    return out;
}

/* Writes the parsed head in its plain form: single spaces, "name:value", LF line ends. It is
 * never longer than the head it came from, so it must parse within the same limits. */
static size_t write_plain(const hs_http1_request_t *req, char *out)
{
    size_t n = 0;

#define PUT(p, l)                                                                                  \
    do {                                                                                           \
        memcpy(out + n, (p), (l));                                                                 \
        n += (l);                                                                                  \
    } while (0)
    PUT(req->method.base, req->method.len);
    PUT(" ", 1);
    PUT(req->target.base, req->target.len);
    PUT(req->minor_version == 0 ? " HTTP/1.0\n" : " HTTP/1.1\n", 10);
    for (size_t i = 0; i < req->num_headers; i++) {
        PUT(req->headers[i].name.base, req->headers[i].name.len);
        PUT(":", 1);
        PUT(req->headers[i].value.base, req->headers[i].value.len);
        PUT("\n", 1);
    }
    PUT("\n", 1);
#undef PUT
    return n;
}

static hs_http1_request_t req_whole, req_split, req_again;
static char fields_whole[OUT_CAP], fields_split[OUT_CAP], fields_again[OUT_CAP];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hs_http1_limits_t lim = {16384, 16384};
    const uint8_t *in = data + HEAD_BYTES;
    size_t n = size - HEAD_BYTES, fw = 0, fs = 0, fa = 0, at = 0;
    int whole, split;

    if (size < HEAD_BYTES || n > 64 * 1024)
        return 0;
    if (data[0] & 0x80)
        lim = (hs_http1_limits_t){(size_t)(data[0] & 0x7f) + 1, (size_t)data[1] + 1};

    /* libFuzzer's buffer ends where the input ends, so the whole run needs no copy, and the
     * slices of req_whole stay valid for the plain form below. */
    whole = parse_at((const char *)in, n, 0, &lim, &req_whole, fields_whole, &fw);
    split = parse_split(in, n, data[2], &lim, &req_split, fields_split, &fs, &at);
    FUZZ_CHECK(split == whole, "read in pieces of %u: %d at %zu bytes, whole: %d", data[2], split,
               at, whole);
    FUZZ_CHECK(fs == fw && memcmp(fields_split, fields_whole, fw) == 0, "fields differ");

    if (whole != HS_AGAIN && n < 64 * 1024 - 8) {
        /* A pipelined request or garbage after an answered head changes nothing. */
        char *more = malloc(n + 8);

        FUZZ_CHECK(more != NULL, "out of memory");
        memcpy(more, in, n);
        memcpy(more + n, "\r\n\r\nX\r\x00\n", 8);
        FUZZ_CHECK(parse_copy((const uint8_t *)more, n + 8, 0, &lim, &req_again, fields_again,
                              &fa) == whole,
                   "trailing bytes changed the answer");
        FUZZ_CHECK(fa == fw && memcmp(fields_again, fields_whole, fw) == 0, "fields differ");
        free(more);
    }

    if (data[0] & 0x80) {
        /* Raising the limits can only turn a limit answer into another one: any other answer
         * under the small limits is the answer under the defaults too, fields included. */
        hs_http1_limits_t dflt = {16384, 16384};
        int big = parse_at((const char *)in, n, 0, &dflt, &req_again, fields_again, &fa);
        int limit = whole == -100 - HS_REJECT_FIELD_LENGTH ||
                    whole == -100 - HS_REJECT_URL_TOO_LONG ||
                    whole == -100 - HS_REJECT_REQUEST_LENGTH;

        FUZZ_CHECK(limit || big == whole, "limits %zu %zu: %d, defaults: %d", lim.max_field_length,
                   lim.max_request_bytes, whole, big);
        FUZZ_CHECK(limit || (fa == fw && memcmp(fields_again, fields_whole, fw) == 0),
                   "fields differ under the default limits");
    }

    if (whole > 0) {
        char *plain = malloc((size_t)whole);
        size_t pn;

        FUZZ_CHECK(plain != NULL, "out of memory");
        pn = write_plain(&req_whole, plain);
        FUZZ_CHECK(pn <= (size_t)whole, "plain form longer (%zu) than the head (%d)", pn, whole);
        FUZZ_CHECK(parse_copy((const uint8_t *)plain, pn, 0, &lim, &req_again, fields_again,
                              &fa) == (int)pn,
                   "the plain form of a parsed head does not parse");
        FUZZ_CHECK(fa == fw && memcmp(fields_again, fields_whole, fw) == 0,
                   "the plain form parses to other fields");
        free(plain);
    }
    return 0;
}
