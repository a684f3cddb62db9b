/*
 * Pure HTTP/1.1 request-head parser (RFC 9112 sections 2-3 and 5-6), following HTTP.sys where it
 * is stricter or more lenient than the RFC.
 *
 * Each call re-parses the whole head, as picohttpparser does, so the parser keeps no state
 * between calls and can run on any thread. A call works in two passes:
 *
 *   1. The length pass walks the lines looking for the empty line that ends the head, applies
 *      the size limits (request line, each header line, whole head) and refuses bare CRs. It
 *      resumes at the start of the line that was incomplete at last_len, so a client that
 *      trickles bytes in does not make the server rescan the head from the start on every read.
 *      It is also the only pass that runs on an incomplete head, and it reports the fault a
 *      byte-at-a-time reader would meet first, which keeps the outcome of a trickled head equal
 *      to the outcome of a single call on the whole input.
 *   2. The syntax pass runs once the head is complete: request line, header fields, and the
 *      framing facts (Content-Length, Transfer-Encoding, Host, Connection, Expect).
 *
 * The outputs are slices into buf; nothing is copied or allocated.
 */
#include "http1.h"

#include <limits.h>
#include <stdio.h>

#include "httpsys.h"

/* Content-Length values above 2^62 are refused: they fit in int64_t with room for arithmetic. */
#define CONTENT_LENGTH_MAX ((uint64_t)1 << 62)

/* Facts collected from the header fields that are only judged once every field has been seen. */
typedef struct framing {
    unsigned te_seen : 1;    /* a Transfer-Encoding field was present */
    unsigned te_chunked : 1; /* "chunked" was seen in Transfer-Encoding */
    unsigned te_bad : 1;     /* a coding other than chunked, or anything after chunked */
    unsigned headers_started : 1;
} framing_t;

static int fail(hs_http1_request_t *req, int reject)
{
    req->reject = reject;
    return HS_ERROR;
}

/*
 * RFC 9110 5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_"
 *                 / "`" / "|" / "~" / DIGIT / ALPHA
 */
static int is_tchar(unsigned char c)
{
    static const char specials[] = "!#$%&'*+-.^_`|~";

    if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))
        return 1;
    return c != 0 && memchr(specials, c, sizeof(specials) - 1) != NULL;
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* RFC 9110 5.6.3: OWS = *( SP / HTAB ). Field values and list elements are trimmed of it. */
static hs_str_t trim_ows(const char *p, size_t n)
{
    while (n > 0 && is_ows(p[0])) {
        p++;
        n--;
    }
    while (n > 0 && is_ows(p[n - 1]))
        n--;
    return (hs_str_t){p, n};
}

/*
 * RFC 9112 2.2: "a server that is expecting to receive and parse a request-line SHOULD ignore at
 * least one empty line (CRLF) received prior to the request-line." Clients that send a stray CRLF
 * after a POST body on a kept-alive connection rely on this. Returns the number of bytes to skip.
 */
static size_t skip_empty_lines(const char *buf, size_t len)
{
    size_t i = 0;

    for (;;) {
        if (i < len && buf[i] == '\n')
            i += 1;
        else if (i + 1 < len && buf[i] == '\r' && buf[i + 1] == '\n')
            i += 2;
        else
            return i;
    }
}

/*
 * Returns the start of the line that was still incomplete when the caller last saw last_len bytes,
 * so that the length pass does not walk the complete lines again. The contract (as in
 * picohttpparser) is that the previous call on buf[0..last_len) returned HS_AGAIN, so every line
 * that ended before last_len already passed the length checks and none of them was empty.
 */
static size_t resume_point(const char *buf, size_t skip, size_t last_len)
{
    size_t i = last_len;

    if (last_len <= skip)
        return skip;
    while (i > skip && buf[i - 1] != '\n')
        i--;
    return i;
}

/*
 * Judges one line of the length pass (a complete line, or the incomplete last one) for the two
 * faults that can be seen before the head is complete:
 *   - RFC 9112 2.2: "A recipient of such a bare CR MUST consider that element to be invalid or
 *     replace each bare CR with SP"; HTTP.sys refuses it (HTTPERR Invalid_CR/LF).
 *   - MaxFieldLength bounds the request line (414 Request URL Too Long, HTTPERR URL_Length) and
 *     each header line (400 Request Too Long, HTTPERR FieldLength).
 * When a line has both, the fault a byte-at-a-time reader meets first wins, so that a trickled
 * head gets the same answer as one read: a bare CR at j shows with the byte after it (prefix
 * j + 2), the excess length with byte s + max_field + 1 (prefix s + max_field + 1), or one byte
 * later if byte s + max_field is a CR, which is left out of an incomplete line. On a tie the
 * length is the one reported.
 */
static int check_line(const char *buf, size_t s, size_t end, int request_line, size_t max_field)
{
    const char *cr = memchr(buf + s, '\r', end - s);
    size_t too_long_at = 0;

    if (end - s > max_field)
        too_long_at = s + max_field + 1 + (buf[s + max_field] == '\r');
    if (cr != NULL && (too_long_at == 0 || (size_t)(cr - buf) + 2 < too_long_at))
        return HS_REJECT_INVALID_CRLF;
    if (too_long_at != 0)
        return request_line ? HS_REJECT_URL_TOO_LONG : HS_REJECT_FIELD_LENGTH;
    return HS_REJECT_NONE;
}

/*
 * The length pass. Returns the head length (bytes through the empty line), HS_AGAIN, or HS_ERROR.
 * Only buf[0..max_request_bytes] is looked at, which makes the first fault found on a growing
 * prefix the same one a single call on the whole input reports. A line's length excludes its
 * terminator; a CR at the very end of an incomplete line is left out of the line because it may
 * turn out to be half of a CRLF.
 */
static int scan_head(const char *buf, size_t len, size_t last_len, size_t skip,
                     const hs_http1_limits_t *lim, hs_http1_request_t *req)
{
    size_t scan_len = len;
    size_t s;

    if (lim->max_request_bytes < len)
        scan_len = lim->max_request_bytes + 1;
    s = resume_point(buf, skip, last_len < scan_len ? last_len : scan_len);
    while (s < scan_len) {
        const char *nl = memchr(buf + s, '\n', scan_len - s);
        size_t e = nl != NULL ? (size_t)(nl - buf) : scan_len;
        size_t end = e;
        int rc;

        if (end > s && buf[end - 1] == '\r')
            end--;
        rc = check_line(buf, s, end, s == skip, lim->max_field_length);
        if (rc != HS_REJECT_NONE)
            return fail(req, rc);
        if (nl == NULL)
            break;
        if (end == s && s != skip) {
            /* MaxRequestBytes bounds the request line plus the headers. */
            if (e + 1 > lim->max_request_bytes || e + 1 > (size_t)INT_MAX)
                return fail(req, HS_REJECT_REQUEST_LENGTH);
            return (int)(e + 1);
        }
        s = e + 1;
    }
    if (len > lim->max_request_bytes)
        return fail(req, HS_REJECT_REQUEST_LENGTH);
    return HS_AGAIN;
}

/*
 * RFC 9112 3.1: method = token. HTTP.sys also refuses verbs with lower-case letters ("get") unless
 * AllowCaseInsensitiveVerbs is set, and answers both cases with 400 Invalid Verb.
 */
static int check_method(hs_str_t m)
{
    for (size_t i = 0; i < m.len; i++) {
        unsigned char c = (unsigned char)m.base[i];

        if (!is_tchar(c) || (c >= 'a' && c <= 'z'))
            return HS_REJECT_INVALID_VERB;
    }
    return HS_REJECT_NONE;
}

/*
 * RFC 9112 3.2: the request-target has no whitespace, and RFC 3986 has no control characters in a
 * URI. Bytes of 0x80 and above pass: HTTP.sys accepts raw UTF-8 and DBCS URLs (EnableNonUTF8), and
 * url.c decides what they mean.
 */
static int check_target(hs_str_t t)
{
    for (size_t i = 0; i < t.len; i++) {
        unsigned char c = (unsigned char)t.base[i];

        if (c < 0x21 || c == 0x7f)
            return HS_REJECT_INVALID_URL;
    }
    return HS_REJECT_NONE;
}

/*
 * RFC 9112 2.3: HTTP-version = HTTP-name "/" DIGIT "." DIGIT, HTTP-name = %s"HTTP" (case
 * sensitive). A well-formed version whose major number is not 1 gets 505 (HTTP.sys logs
 * Version_N/S for "HTTP/2.0" in an HTTP/1 request line). RFC 9110 2.5: a higher minor version
 * within major version 1 is processed "as if it were in the highest minor version within that
 * major version", so HTTP/1.2 is treated as HTTP/1.1.
 */
static int check_version(hs_str_t v, int *minor)
{
    const char *p = v.base;

    if (v.len != 8 || memcmp(p, "HTTP/", 5) != 0 || p[5] < '0' || p[5] > '9' || p[6] != '.' ||
        p[7] < '0' || p[7] > '9')
        return HS_REJECT_BAD_REQUEST;
    if (p[5] != '1')
        return HS_REJECT_VERSION;
    *minor = p[7] == '0' ? 0 : 1;
    return HS_REJECT_NONE;
}

/*
 * RFC 9112 3: request-line = method SP request-target SP HTTP-version. Exactly one SP separates
 * the parts; a line with fewer than three parts (including HTTP/0.9's "GET /") is a bad request.
 * The parts are checked left to right so the reported reason is deterministic.
 */
static int parse_request_line(const char *p, size_t n, hs_http1_request_t *req)
{
    const char *end = p + n;
    const char *sp1 = memchr(p, ' ', n);
    const char *sp2;
    int rc;

    if (sp1 == NULL || sp1 == p)
        return HS_REJECT_BAD_REQUEST;
    sp2 = memchr(sp1 + 1, ' ', (size_t)(end - (sp1 + 1)));
    if (sp2 == NULL || sp2 == sp1 + 1)
        return HS_REJECT_BAD_REQUEST;
    req->method = (hs_str_t){p, (size_t)(sp1 - p)};
    req->target = (hs_str_t){sp1 + 1, (size_t)(sp2 - sp1 - 1)};
    if ((rc = check_method(req->method)) != HS_REJECT_NONE)
        return rc;
    if ((rc = check_target(req->target)) != HS_REJECT_NONE)
        return rc;
    return check_version((hs_str_t){sp2 + 1, (size_t)(end - sp2 - 1)}, &req->minor_version);
}

/*
 * Returns the next element of a comma-separated list (RFC 9110 5.6.1: #element), trimmed of OWS,
 * or 0 when the list is exhausted. Empty elements come back as empty slices; an empty value is one
 * empty element.
 */
static int next_element(hs_str_t list, size_t *pos, hs_str_t *elem)
{
    size_t s = *pos;
    size_t e = s;

    if (s > list.len)
        return 0;
    while (e < list.len && list.base[e] != ',')
        e++;
    *elem = trim_ows(list.base + s, e - s);
    *pos = e + 1;
    return 1;
}

/* RFC 9110 8.6: Content-Length = 1*DIGIT. Returns 0 and the value, or -1 if malformed or huge. */
static int parse_decimal(hs_str_t s, int64_t *out)
{
    uint64_t v = 0;

    if (s.len == 0)
        return -1;
    for (size_t i = 0; i < s.len; i++) {
        unsigned d = (unsigned)(unsigned char)s.base[i] - '0';

        if (d > 9 || v > (CONTENT_LENGTH_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = (int64_t)v;
    return 0;
}

/*
 * RFC 9110 8.6: a recipient may accept a list of identical values ("42, 42") or repeated identical
 * fields as one value, but differing values make the framing ambiguous (a request smuggling vector)
 * and HTTP.sys answers them with 400 Invalid Header. A value that is not a number is 400 Number.
 */
static int on_content_length(hs_http1_request_t *req, hs_str_t value)
{
    size_t pos = 0;
    hs_str_t elem;
    int64_t v;

    while (next_element(value, &pos, &elem)) {
        if (parse_decimal(elem, &v) != 0)
            return HS_REJECT_BAD_NUMBER;
        if (req->content_length >= 0 && req->content_length != v)
            return HS_REJECT_INVALID_HEADER;
        req->content_length = v;
    }
    return HS_REJECT_NONE;
}

/*
 * RFC 9112 6.1: Transfer-Encoding = #transfer-coding. The only coding implemented is chunked, and
 * it must be the final one (RFC 9112 6.3); anything else is 501 (HTTP.sys logs N/I). The list may
 * span several fields, so the state lives in fr. Empty list elements are ignored (RFC 9110 5.6.1).
 */
static void on_transfer_encoding(framing_t *fr, hs_str_t value)
{
    size_t pos = 0;
    hs_str_t elem;

    fr->te_seen = 1;
    while (next_element(value, &pos, &elem)) {
        if (elem.len == 0)
            continue;
        if (fr->te_chunked || !hs__str_ieq(elem, "chunked", 7))
            fr->te_bad = 1;
        else
            fr->te_chunked = 1;
    }
}

/*
 * RFC 9112 9.6 and 9.3: Connection = #connection-option; "close" ends the connection after the
 * response, "keep-alive" asks an HTTP/1.0 connection to persist. Options are case-insensitive.
 * RFC 9110 10.1.1: Expect = #expectation, and only "100-continue" is defined.
 */
static void on_token_list(hs_http1_request_t *req, hs_str_t value, int is_connection)
{
    size_t pos = 0;
    hs_str_t elem;

    while (next_element(value, &pos, &elem)) {
        if (!is_connection && hs__str_ieq(elem, "100-continue", 12))
            req->expect_continue = 1;
        else if (is_connection && hs__str_ieq(elem, "close", 5))
            req->conn_close = 1;
        else if (is_connection && hs__str_ieq(elem, "keep-alive", 10))
            req->conn_keepalive = 1;
    }
}

#define NAME_IS(h, lit) hs__str_ieq((h)->name, (lit), sizeof(lit) - 1)

/* Records the framing and connection facts a header field carries. Returns a reject or NONE. */
static int on_header(hs_http1_request_t *req, framing_t *fr, const hs_header_t *h)
{
    if (NAME_IS(h, "content-length"))
        return on_content_length(req, h->value);
    if (NAME_IS(h, "host")) {
        /* RFC 9112 3.2: a server MUST respond with 400 to a request that "contains more than one
         * Host header field line". HTTP.sys reports it as an invalid header. */
        if (req->host.base != NULL)
            return HS_REJECT_INVALID_HEADER;
        req->host = h->value;
    } else if (NAME_IS(h, "transfer-encoding")) {
        on_transfer_encoding(fr, h->value);
    } else if (NAME_IS(h, "connection")) {
        on_token_list(req, h->value, 1);
    } else if (NAME_IS(h, "expect")) {
        on_token_list(req, h->value, 0);
    }
    return HS_REJECT_NONE;
}

/*
 * RFC 9112 5: field-line = field-name ":" OWS field-value OWS, field-name = token.
 * RFC 9112 5.1: "No whitespace is allowed between the field name and colon", and a server MUST
 * reject such a line with 400 because proxies disagree about what it means.
 * RFC 9110 5.5: field-value = *field-content of VCHAR, SP, HTAB and obs-text; other control
 * characters (NUL in particular) are refused, as HTTP.sys does unless AllowWeakHeaderValueSyntax.
 */
static int parse_field_line(const char *p, size_t n, hs_header_t *h)
{
    size_t colon = 0;

    while (colon < n && is_tchar((unsigned char)p[colon]))
        colon++;
    if (colon == 0 || colon == n || p[colon] != ':')
        return HS_REJECT_INVALID_HEADER;
    for (size_t i = colon + 1; i < n; i++) {
        unsigned char c = (unsigned char)p[i];

        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return HS_REJECT_INVALID_HEADER;
    }
    h->name = (hs_str_t){p, colon};
    h->value = trim_ows(p + colon + 1, n - colon - 1);
    return HS_REJECT_NONE;
}

/*
 * Handles one line after the request line. RFC 9112 2.2 lets a server "consume each
 * whitespace-preceded line without further processing" when such lines come right after the
 * request line, and HTTP.sys accepts them; anywhere later a leading SP or HTAB is obs-fold, which
 * RFC 9112 5.2 allows a server to reject with 400, as we do.
 */
static int on_field_line(hs_http1_request_t *req, framing_t *fr, const char *p, size_t n)
{
    hs_header_t h;
    int rc;

    if (is_ows(p[0]))
        return fr->headers_started ? HS_REJECT_INVALID_HEADER : HS_REJECT_NONE;
    fr->headers_started = 1;
    if ((rc = parse_field_line(p, n, &h)) != HS_REJECT_NONE)
        return rc;
    /* A head with more fields than the table holds is treated as too long, like HTTP.sys does
     * when the headers exceed its buffers. */
    if (req->num_headers == HS_HTTP1_MAX_HEADERS)
        return HS_REJECT_REQUEST_LENGTH;
    req->headers[req->num_headers++] = h;
    return on_header(req, fr, &h);
}

/* Framing rules that need every field: judged after the empty line. */
static int finish_head(hs_http1_request_t *req, const framing_t *fr)
{
    if (fr->te_seen) {
        /* RFC 9112 6.1: a server that "receives an HTTP/1.0 message containing a
         * Transfer-Encoding header field MUST treat the message as if the framing is faulty". */
        if (req->minor_version == 0)
            return HS_REJECT_BAD_REQUEST;
        /* RFC 9112 6.3: both Transfer-Encoding and Content-Length "might indicate an attempt to
         * perform request smuggling ... and ought to be handled as an error". */
        if (req->content_length >= 0)
            return HS_REJECT_BAD_REQUEST;
        if (fr->te_bad)
            return HS_REJECT_NOT_IMPLEMENTED;
        /* A Transfer-Encoding without any coding leaves the body length undetermined. */
        if (!fr->te_chunked)
            return HS_REJECT_BAD_REQUEST;
        req->chunked = 1;
    }
    /* RFC 9112 3.2: "A server MUST respond with a 400 (Bad Request) status code to any HTTP/1.1
     * request message that lacks a Host header field". HTTP/1.0 may omit it. HTTP.sys answers
     * it as a host it cannot route: 400 Invalid Hostname (HTTPERR Hostname). */
    if (req->minor_version == 1 && req->host.base == NULL)
        return HS_REJECT_INVALID_HOSTNAME;
    return HS_REJECT_NONE;
}

/* Returns the end of the line content starting at s (before CRLF or LF) and its terminator. */
static size_t line_end(const char *buf, size_t s, size_t head_len, size_t *next)
{
    const char *nl = memchr(buf + s, '\n', head_len - s);
    size_t e = (size_t)(nl - buf);

    *next = e + 1;
    return (e > s && buf[e - 1] == '\r') ? e - 1 : e;
}

/*
 * The syntax pass over a complete head buf[skip..head_len). The length pass has already refused
 * bare CRs and over-long lines, so every line here ends in LF or CRLF and holds no other CR.
 */
static int parse_head(const char *buf, size_t skip, size_t head_len, hs_http1_request_t *req)
{
    framing_t fr = {0};
    size_t s = skip;
    size_t next;
    int rc = HS_REJECT_NONE;

    for (;;) {
        size_t end = line_end(buf, s, head_len, &next);

        if (end == s && s != skip)
            break;
        if (s == skip)
            rc = parse_request_line(buf + s, end - s, req);
        else
            rc = on_field_line(req, &fr, buf + s, end - s);
        if (rc != HS_REJECT_NONE)
            return rc;
        s = next;
    }
    return finish_head(req, &fr);
}

int hs__http1_parse_request(const char *buf, size_t len, size_t last_len,
                            const hs_http1_limits_t *lim, hs_http1_request_t *req)
{
    size_t skip = skip_empty_lines(buf, len);
    int head_len;
    int rc;

    req->method = (hs_str_t){NULL, 0};
    req->target = (hs_str_t){NULL, 0};
    req->minor_version = 0;
    req->num_headers = 0;
    req->content_length = -1;
    req->host = (hs_str_t){NULL, 0};
    req->chunked = 0;
    req->expect_continue = 0;
    req->conn_close = 0;
    req->conn_keepalive = 0;
    req->reject = HS_REJECT_NONE;

    head_len = scan_head(buf, len, last_len, skip, lim, req);
    if (head_len < 0)
        return head_len;
    rc = parse_head(buf, skip, (size_t)head_len, req);
    if (rc != HS_REJECT_NONE)
        return fail(req, rc);
    return head_len;
}

/* Appends s[0..n) and a NUL to out; returns -1 if it does not fit. */
static int put_field(char *out, size_t cap, size_t *pos, const char *s, size_t n)
{
    if (n >= cap - *pos)
        return -1;
    if (n > 0)
        memcpy(out + *pos, s, n);
    out[*pos + n] = '\0';
    *pos += n + 1;
    return 0;
}

static int put_number(char *out, size_t cap, size_t *pos, long long v)
{
    char num[32];
    int n = snprintf(num, sizeof(num), "%lld", v);

    return put_field(out, cap, pos, num, (size_t)n);
}

/*
 * Serialises a parsed request in the order hs_test_parse_request documents: method, target, minor
 * version, content length, chunked, expect_continue, conn_close, conn_keepalive, host, then each
 * header's name and value. Returns 0, or -1 if out is too small.
 */
static int format_request(const hs_http1_request_t *req, char *out, size_t cap, size_t *outlen)
{
    size_t pos = 0;
    int bad = 0;

    bad |= put_field(out, cap, &pos, req->method.base, req->method.len);
    bad |= put_field(out, cap, &pos, req->target.base, req->target.len);
    bad |= put_number(out, cap, &pos, req->minor_version);
    bad |= put_number(out, cap, &pos, (long long)req->content_length);
    bad |= put_number(out, cap, &pos, req->chunked);
    bad |= put_number(out, cap, &pos, req->expect_continue);
    bad |= put_number(out, cap, &pos, req->conn_close);
    bad |= put_number(out, cap, &pos, req->conn_keepalive);
    bad |= put_field(out, cap, &pos, req->host.base, req->host.len);
    for (size_t i = 0; i < req->num_headers && !bad; i++) {
        bad |= put_field(out, cap, &pos, req->headers[i].name.base, req->headers[i].name.len);
        bad |= put_field(out, cap, &pos, req->headers[i].value.base, req->headers[i].value.len);
    }
    *outlen = pos;
    return bad ? -1 : 0;
}

int hs_test_parse_request(const char *buf, size_t len, size_t max_field, size_t max_request,
                          char *out, size_t outcap, size_t *outlen, size_t *consumed)
{
    hs_http1_limits_t lim = {max_field, max_request};
    hs_http1_request_t req;
    int rc = hs__http1_parse_request(buf, len, 0, &lim, &req);

    *outlen = 0;
    *consumed = 0;
    if (rc == HS_AGAIN)
        return HS_AGAIN;
    if (rc < 0)
        return req.reject;
    *consumed = (size_t)rc;
    if (format_request(&req, out, outcap, outlen) != 0)
        return HS_REJECT_INTERNAL;
    return HS_OK;
}
