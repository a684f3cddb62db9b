/*
 * Decoder for the chunked transfer coding (RFC 9112 section 7.1):
 *
 *   chunked-body   = *chunk last-chunk trailer-section CRLF
 *   chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   chunk-size     = 1*HEXDIG
 *   last-chunk     = 1*("0") [ chunk-ext ] CRLF
 *   chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
 *   trailer-section = *( field-line CRLF )
 *
 * Framing bytes go through a byte-at-a-time state machine whose whole state is the zeroed
 * hs_chunked_t the caller owns, so input may be split anywhere. Chunk data is not copied: the
 * decoder returns slices of the input. Extensions and trailer fields are checked for line length,
 * bare CR and control characters, then discarded, as nothing downstream uses them.
 */
#include "chunked.h"

#include <stdlib.h>

#include "httpsys.h"

/*
 * A size line (digits and extensions) or a trailer line longer than this is refused: without a
 * bound a client could keep the decoder busy forever on a line that never carries data.
 */
#define LINE_MAX_BYTES 4096

/* Fifteen hex digits keep a chunk size below 2^60, far from overflowing uint64_t. */
#define SIZE_MAX_DIGITS 15

enum chunked_state {
    ST_SIZE = 0,    /* start of a size line: the first hex digit is required */
    ST_SIZE_DIGITS, /* more hex digits, or the end of the size */
    ST_SIZE_BWS,    /* whitespace after the size, which only a ";" may follow */
    ST_EXT,         /* inside chunk extensions, skipped up to the line end */
    ST_SIZE_LF,     /* CR seen at the end of a size line */
    ST_DATA,        /* chunk data; remaining bytes left */
    ST_DATA_END,    /* the CRLF after chunk data */
    ST_DATA_LF,     /* CR seen after chunk data */
    ST_TRAILER_START, /* start of a trailer line, or the final empty line */
    ST_TRAILER,     /* inside a trailer line */
    ST_TRAILER_LF,  /* CR seen at the end of a trailer line */
    ST_END_LF,      /* CR seen on the final empty line */
    ST_DONE,
    ST_ERROR
};

static int set_error(hs_chunked_t *st, int code)
{
    st->state = ST_ERROR;
    st->reject = code;
    return HS_ERROR;
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Control characters other than HTAB have no place in extensions or trailer fields (RFC 9110
 * 5.5 field-content, RFC 9112 7.1.1 chunk-ext-val as token or quoted-string). */
static int is_ctl(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

/* Counts one more byte of the current line against LINE_MAX_BYTES. */
static int grow_line(hs_chunked_t *st)
{
    if (++st->line_len > LINE_MAX_BYTES)
        return set_error(st, HS_REJECT_BAD_REQUEST);
    return HS_OK;
}

/* A size line ended: the last chunk (size 0) leads to the trailer section, others to data. */
static int size_line_done(hs_chunked_t *st)
{
    st->line_len = 0;
    st->state = st->remaining == 0 ? ST_TRAILER_START : ST_DATA;
    return HS_OK;
}

/* After the size or inside extensions: a line end, or (outside ST_SIZE_BWS) any other byte. */
static int size_line_tail(hs_chunked_t *st, unsigned char c)
{
    if (c == '\r') {
        st->state = ST_SIZE_LF;
        return HS_OK;
    }
    if (c == '\n')
        return size_line_done(st);
    if (is_ctl(c))
        return set_error(st, HS_REJECT_BAD_REQUEST);
    return grow_line(st);
}

/* One byte of a size line (chunk-size [ chunk-ext ] CRLF). */
static int step_size_line(hs_chunked_t *st, unsigned char c)
{
    int v = hex_value(c);

    switch (st->state) {
    case ST_SIZE:
        /* chunk-size = 1*HEXDIG: an empty size or a non-hex byte is a bad number. */
        if (v < 0)
            return set_error(st, HS_REJECT_BAD_NUMBER);
        st->remaining = (uint64_t)v;
        st->line_len = 1;
        st->state = ST_SIZE_DIGITS;
        return HS_OK;
    case ST_SIZE_DIGITS:
        if (v >= 0) {
            if (st->line_len >= SIZE_MAX_DIGITS)
                return set_error(st, HS_REJECT_BAD_NUMBER);
            st->remaining = st->remaining * 16 + (uint64_t)v;
            st->line_len++;
            return HS_OK;
        }
        if (c == ';' || c == ' ' || c == '\t')
            st->state = c == ';' ? ST_EXT : ST_SIZE_BWS;
        else if (c != '\r' && c != '\n')
            return set_error(st, HS_REJECT_BAD_NUMBER);
        return size_line_tail(st, c);
    case ST_SIZE_BWS:
        /* chunk-ext = *( BWS ";" ... ): whitespace after the size must lead to an extension. */
        if (c == ';')
            st->state = ST_EXT;
        else if (c != ' ' && c != '\t')
            return set_error(st, HS_REJECT_BAD_REQUEST);
        return grow_line(st);
    case ST_EXT:
        return size_line_tail(st, c);
    default: /* ST_SIZE_LF */
        if (c != '\n')
            return set_error(st, HS_REJECT_INVALID_CRLF);
        return size_line_done(st);
    }
}

/* One byte of the CRLF after chunk data, or of the trailer section. Returns HS_DONE at the end. */
static int step_after_data(hs_chunked_t *st, unsigned char c)
{
    int s = st->state;

    if (s == ST_DATA_LF || s == ST_TRAILER_LF || s == ST_END_LF) {
        /* RFC 9112 2.2: a bare CR is invalid; HTTP.sys logs it as Invalid_CR/LF. */
        if (c != '\n')
            return set_error(st, HS_REJECT_INVALID_CRLF);
        st->line_len = 0;
        st->state = s == ST_DATA_LF ? ST_SIZE : s == ST_TRAILER_LF ? ST_TRAILER_START : ST_DONE;
        return st->state == ST_DONE ? HS_DONE : HS_OK;
    }
    if (c == '\r') {
        st->state = s == ST_DATA_END ? ST_DATA_LF : s == ST_TRAILER ? ST_TRAILER_LF : ST_END_LF;
        return HS_OK;
    }
    if (c == '\n') {
        /* Bare LF ends a line, as HTTP.sys accepts it. */
        st->line_len = 0;
        st->state = s == ST_DATA_END ? ST_SIZE : s == ST_TRAILER ? ST_TRAILER_START : ST_DONE;
        return st->state == ST_DONE ? HS_DONE : HS_OK;
    }
    /* Data longer than its chunk-size announced: the framing is broken. */
    if (s == ST_DATA_END || is_ctl(c))
        return set_error(st, HS_REJECT_BAD_REQUEST);
    st->state = ST_TRAILER;
    return grow_line(st);
}

static int step_byte(hs_chunked_t *st, unsigned char c)
{
    if (st->state <= ST_SIZE_LF)
        return step_size_line(st, c);
    return step_after_data(st, c);
}

int hs__chunked_decode(hs_chunked_t *st, const char *in, size_t len, size_t *consumed,
                       hs_str_t *data)
{
    size_t i = 0;

    data->base = in;
    data->len = 0;
    *consumed = 0;
    if (st->state == ST_ERROR)
        return HS_ERROR;
    if (st->state == ST_DONE)
        return HS_DONE;
    while (i < len) {
        int rc;

        if (st->state == ST_DATA) {
            size_t n = len - i;

            if ((uint64_t)n > st->remaining)
                n = (size_t)st->remaining;
            data->base = in + i;
            data->len = n;
            st->remaining -= n;
            if (st->remaining == 0)
                st->state = ST_DATA_END;
            *consumed = i + n;
            return HS_OK;
        }
        rc = step_byte(st, (unsigned char)in[i++]);
        if (rc != HS_OK) {
            *consumed = i;
            return rc;
        }
    }
    *consumed = i;
    return HS_AGAIN;
}

/*
 * Runs the decoder over one window of input until it needs more, finishes or fails, appending the
 * data to out. The window is copied into a buffer of its exact size first so that a sanitizer
 * build catches any read past the bytes the connection actually has.
 */
static int feed_window(hs_chunked_t *st, const char *win, size_t n, char *out, size_t outcap,
                       size_t *outlen, size_t *used)
{
    char *copy = malloc(n > 0 ? n : 1);
    size_t pos = 0;
    int rc;

    if (copy == NULL)
        return HS_REJECT_INTERNAL;
    memcpy(copy, win, n);
    for (;;) {
        size_t took;
        hs_str_t data;

        rc = hs__chunked_decode(st, copy + pos, n - pos, &took, &data);
        pos += took;
        if (data.len > outcap - *outlen) {
            rc = HS_REJECT_INTERNAL;
            break;
        }
        if (data.len > 0)
            memcpy(out + *outlen, data.base, data.len);
        *outlen += data.len;
        if (rc != HS_OK)
            break;
    }
    free(copy);
    *used = pos;
    return rc;
}

int hs_test_chunked_decode(const char *buf, size_t len, size_t step, char *out, size_t outcap,
                           size_t *outlen, size_t *consumed)
{
    hs_chunked_t st = {0};
    size_t pos = 0;
    size_t avail = 0;

    *outlen = 0;
    *consumed = 0;
    if (step == 0)
        step = len > 0 ? len : 1;
    for (;;) {
        size_t used = 0;
        int rc;

        /* A connection receives the next piece and keeps the unconsumed tail in front of it. */
        avail = len - avail > step ? avail + step : len;
        rc = feed_window(&st, buf + pos, avail - pos, out, outcap, outlen, &used);
        pos += used;
        *consumed = pos;
        if (rc == HS_DONE)
            return HS_OK;
        if (rc == HS_ERROR)
            return st.reject;
        if (rc != HS_AGAIN)
            return rc;
        if (avail == len)
            return HS_AGAIN;
    }
}
