/*
 * Pure HTTP/1.1 request-head parser: bytes in, slices out. It never touches an fd, an SSL* or
 * the clock (picohttpparser's model: re-parse the whole head on each call, last_len lets it skip
 * the scan for the end of the head over bytes it has already seen).
 */
#ifndef HS_HTTP1_H
#define HS_HTTP1_H

#include "hs_internal.h"

#define HS_HTTP1_MAX_HEADERS 128

typedef struct hs_header {
    hs_str_t name;
    hs_str_t value;
} hs_header_t;

typedef struct hs_http1_limits {
    size_t max_field_length;  /* MaxFieldLength: each header line and the request line */
    size_t max_request_bytes; /* MaxRequestBytes: request line + headers */
} hs_http1_limits_t;

typedef struct hs_http1_request {
    hs_str_t method;
    hs_str_t target; /* raw request-target as sent */
    int minor_version; /* HTTP/1.<minor> */
    size_t num_headers;
    hs_header_t headers[HS_HTTP1_MAX_HEADERS];

    /* Framing and connection facts derived from the headers while parsing. */
    int64_t content_length; /* -1: no Content-Length header */
    hs_str_t host;          /* Host header value (empty slice if absent) */
    unsigned chunked : 1;   /* Transfer-Encoding: chunked (the final coding) */
    unsigned expect_continue : 1;
    unsigned conn_close : 1;     /* Connection: close */
    unsigned conn_keepalive : 1; /* Connection: keep-alive */

    int reject; /* enum hs_reject, set when the parser returns HS_ERROR */
} hs_http1_request_t;

/*
 * Parses the request head at buf[0..len). last_len is the len of the previous call for the same
 * head (0 on the first call).
 * Returns the head length (> 0, the bytes up to and including the empty line), HS_AGAIN when the
 * head is incomplete and within limits, or HS_ERROR with req->reject set.
 */
int hs__http1_parse_request(const char *buf, size_t len, size_t last_len,
                            const hs_http1_limits_t *lim, hs_http1_request_t *req);

#endif
