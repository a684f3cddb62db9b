/*
 * Pure decoder for the chunked transfer coding (RFC 9112 section 7.1), zero-copy: it consumes
 * framing bytes and hands back slices of chunk data that point into the input.
 */
#ifndef HS_CHUNKED_H
#define HS_CHUNKED_H

#include "hs_internal.h"

typedef struct hs_chunked {
    int state;          /* internal; zero-initialise the struct before the first call */
    uint64_t remaining; /* data bytes left in the current chunk */
    size_t line_len;    /* bytes of the current size/extension/trailer line seen so far */
    int reject;         /* enum hs_reject when HS_ERROR is returned */
} hs_chunked_t;

/*
 * Decodes from in[0..len). On return *consumed bytes of input are used up, and *data is a slice of
 * chunk data inside in (possibly empty). Returns:
 *   HS_OK    data returned (call again with the rest of the input),
 *   HS_AGAIN all input consumed, more needed,
 *   HS_DONE  the last chunk and the trailer section are complete (*consumed ends after them),
 *   HS_ERROR malformed (st->reject set: HS_REJECT_BAD_NUMBER for a bad or overflowing chunk size,
 *            HS_REJECT_INVALID_CRLF for a bare CR, HS_REJECT_BAD_REQUEST otherwise).
 */
int hs__chunked_decode(hs_chunked_t *st, const char *in, size_t len, size_t *consumed,
                       hs_str_t *data);

#endif
