/*
 * Pure URL handling: splitting a request-target and canonicalising its path the way HTTP.sys
 * builds its "cooked URL" (percent-decoding, '\' as '/', dot-segment removal, limits).
 */
#ifndef HS_URL_H
#define HS_URL_H

#include "hs_internal.h"

typedef struct hs_url_limits {
    size_t segment_max_length; /* UrlSegmentMaxLength, 260; 0 = unlimited */
    size_t segment_max_count;  /* UrlSegmentMaxCount, 255; 0 = unlimited */
} hs_url_limits_t;

/*
 * Splits a request-target. origin-form "/p?q" gives path and query (query without '?', empty if
 * none); absolute-form "http://host:port/p?q" also gives the authority in *host (with port, as
 * sent); asterisk-form "*" gives path "*". Returns HS_OK or HS_ERROR (HS_REJECT_INVALID_URL).
 */
int hs__url_split(hs_str_t target, hs_str_t *host, hs_str_t *path, hs_str_t *query);

/*
 * Canonicalises an abs-path (must start with '/') into out (capacity >= path.len + 1; the result
 * is NUL-terminated but *out_len excludes the NUL). Decodes every %XX (including %2F), maps '\'
 * to '/', removes "." and ".." segments, rejects climbing above the root, decoded control
 * characters (U+0000-U+001F, U+007F) and invalid UTF-8, and enforces the segment limits.
 * Returns HS_OK, or HS_ERROR with *reject = HS_REJECT_INVALID_URL.
 */
int hs__url_canonicalize(hs_str_t path, const hs_url_limits_t *lim, char *out, size_t *out_len,
                         int *reject);

/* Splits a Host header value "name[:port]" or "[v6][:port]" into the name (brackets kept for
 * IPv6) and the port (0 if absent). Returns HS_OK or HS_ERROR for a malformed host. */
int hs__url_split_host(hs_str_t hostport, hs_str_t *name, unsigned *port);

#endif
