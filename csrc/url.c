/*
 * Pure URL handling (reference section 3.2): splitting a request-target into authority, path
 * and query, splitting a Host value into name and port, and building the canonical path that
 * HTTP.sys calls the "cooked URL" and matches against URL prefixes.
 *
 * Canonicalisation runs in three passes over the caller's output buffer:
 *   1. decode every %XX and map '\' to '/', rejecting malformed escapes and control bytes;
 *   2. check that the decoded bytes are UTF-8 (HTTP.sys with FavorUTF8 tries UTF-8 first; we
 *      have no ANSI code page to fall back to, so anything else is rejected);
 *   3. remove "." and ".." segments in place (RFC 3986 section 5.2.4) and enforce the segment
 *      limits on the result, which is what the application and the router see.
 * Decoding comes first so that "%2e%2e" and "..%2f" cannot slip past the dot-segment pass: the
 * router and the application must agree on what a path means.
 */
#include "url.h"

#include "httpsys.h"

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Request-target forms                                                                       */
/* ------------------------------------------------------------------------------------------ */

/* The scheme of an absolute-form target is case-insensitive: RFC 3986 section 3.1 says
 * "schemes are case-insensitive", so "HTTPS://" is as valid as "https://". Returns the length of
 * the "scheme://" part, or 0 if target does not start with http:// or https://. */
static size_t scheme_length(hs_str_t target)
{
    static const char http[] = "http://";
    static const char https[] = "https://";

    if (target.len >= sizeof(https) - 1 &&
        hs__str_ieq((hs_str_t){target.base, sizeof(https) - 1}, https, sizeof(https) - 1))
        return sizeof(https) - 1;
    if (target.len >= sizeof(http) - 1 &&
        hs__str_ieq((hs_str_t){target.base, sizeof(http) - 1}, http, sizeof(http) - 1))
        return sizeof(http) - 1;
    return 0;
}

/* Splits "path[?query]" (the part of the target from its first '/' or '?') into path and query.
 * An empty path, as in "http://host" or "http://host?q", means "/" (RFC 9112 section 3.2.2:
 * "if the target URI's path component is empty, the client MUST send '/' as the path"). */
static void split_path_query(hs_str_t rest, hs_str_t *path, hs_str_t *query)
{
    const char *q = memchr(rest.base, '?', rest.len);
    size_t plen = q != NULL ? (size_t)(q - rest.base) : rest.len;

    if (plen == 0)
        *path = HS_STR_LIT("/");
    else
        *path = (hs_str_t){rest.base, plen};
    if (q != NULL)
        *query = (hs_str_t){q + 1, rest.len - plen - 1};
    else
        *query = (hs_str_t){rest.base + rest.len, 0};
}

int hs__url_split(hs_str_t target, hs_str_t *host, hs_str_t *path, hs_str_t *query)
{
    *host = (hs_str_t){target.base, 0};
    *path = (hs_str_t){target.base, 0};
    *query = (hs_str_t){target.base, 0};
    if (target.len == 0)
        return HS_ERROR;

    /* asterisk-form = "*", only meaningful for OPTIONS (RFC 9112 section 3.2.4). */
    if (target.len == 1 && target.base[0] == '*') {
        *path = target;
        return HS_OK;
    }
    if (target.base[0] == '/') {
        split_path_query(target, path, query);
        return HS_OK;
    }

    size_t skip = scheme_length(target);
    if (skip == 0)
        return HS_ERROR;

    /* The authority runs to the next '/', '?' or the end (RFC 3986 section 3.2). */
    size_t end = skip;
    while (end < target.len && target.base[end] != '/' && target.base[end] != '?')
        end++;
    hs_str_t authority = {target.base + skip, end - skip};
    /* An http(s) URI needs a host, and RFC 9110 section 4.2.4 forbids userinfo: "A sender MUST
     * NOT generate the userinfo subcomponent", and recipients should treat it as an error. */
    if (authority.len == 0 || memchr(authority.base, '@', authority.len) != NULL)
        return HS_ERROR;
    *host = authority;
    split_path_query((hs_str_t){target.base + end, target.len - end}, path, query);
    return HS_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Host values                                                                                */
/* ------------------------------------------------------------------------------------------ */

/* port = 1*DIGIT with a value of 1-65535. Leading zeros are harmless in a request (the value is
 * what matters), but the digit loop stops early so a long run of digits cannot overflow. */
static int parse_port(hs_str_t s, unsigned *port)
{
    unsigned v = 0;

    if (s.len == 0)
        return HS_ERROR;
    for (size_t i = 0; i < s.len; i++) {
        if (s.base[i] < '0' || s.base[i] > '9')
            return HS_ERROR;
        v = v * 10 + (unsigned)(s.base[i] - '0');
        if (v > 65535)
            return HS_ERROR;
    }
    if (v == 0)
        return HS_ERROR;
    *port = v;
    return HS_OK;
}

/* reg-name = *( unreserved / pct-encoded / sub-delims ) (RFC 3986 section 3.2.2). Anything else,
 * such as '/', '@', a space or a control byte, makes the Host value invalid. */
static int is_reg_name_char(char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != '\0' && strchr("-._~%!$&'()*+,;=", c) != NULL;
}

/* The inside of "[...]": an IPv6 address (hex digits, ':' and the '.' of an embedded IPv4
 * part). Whether it is a well-formed address is for the router to decide; this only keeps
 * bytes that could never be part of one out of the request. */
static int is_ipv6_text(hs_str_t s)
{
    if (s.len == 0)
        return 0;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.base[i];
        if (hex_value(c) < 0 && c != ':' && c != '.')
            return 0;
    }
    return 1;
}

int hs__url_split_host(hs_str_t hostport, hs_str_t *name, unsigned *port)
{
    size_t name_len;

    *port = 0;
    *name = (hs_str_t){hostport.base, 0};
    if (hostport.len == 0)
        return HS_ERROR;

    if (hostport.base[0] == '[') {
        const char *close = memchr(hostport.base, ']', hostport.len);
        if (close == NULL)
            return HS_ERROR;
        name_len = (size_t)(close - hostport.base) + 1;
        if (!is_ipv6_text((hs_str_t){hostport.base + 1, name_len - 2}))
            return HS_ERROR;
    } else {
        const char *colon = memchr(hostport.base, ':', hostport.len);
        name_len = colon != NULL ? (size_t)(colon - hostport.base) : hostport.len;
        if (name_len == 0)
            return HS_ERROR;
        for (size_t i = 0; i < name_len; i++)
            if (!is_reg_name_char(hostport.base[i]))
                return HS_ERROR;
    }

    if (name_len < hostport.len) {
        /* Only ":port" may follow the name; "[::1]x" or a second ':' is malformed. */
        if (hostport.base[name_len] != ':')
            return HS_ERROR;
        hs_str_t digits = {hostport.base + name_len + 1, hostport.len - name_len - 1};
        if (parse_port(digits, port) != HS_OK)
            return HS_ERROR;
    }
    *name = (hs_str_t){hostport.base, name_len};
    return HS_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Canonicalisation                                                                           */
/* ------------------------------------------------------------------------------------------ */

/* The four hex digits of a %uNNNN escape at p[0..4), or -1. */
static long hex4(const char *p)
{
    long v = 0;

    for (int k = 0; k < 4; k++) {
        int d = hex_value(p[k]);
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Writes code point cp as UTF-8 at out; returns the number of bytes (1-4). */
static size_t put_utf8(char *out, unsigned long cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* HTTP.sys's %uNNNN notation (PercentUAllowed, on by default): one UTF-16 code unit, or a
 * high and a low surrogate as two escapes in a row. p[0..n) starts at the '%'. Returns the
 * bytes of input used (6 or 12) and the code point in *cp, or 0 if malformed, a lone surrogate
 * included. The UTF-8 written for it is never longer than the escape (3 bytes for 6, 4 for 12),
 * so the output still fits in a buffer of the input's size. */
static size_t percent_u(const char *p, size_t n, unsigned long *cp)
{
    long hi = n >= 6 ? hex4(p + 2) : -1;

    if (hi < 0)
        return 0;
    if (hi < 0xD800 || hi > 0xDFFF) {
        *cp = (unsigned long)hi;
        return 6;
    }
    if (hi > 0xDBFF || n < 12 || p[6] != '%' || (p[7] != 'u' && p[7] != 'U'))
        return 0;
    long lo = hex4(p + 8);
    if (lo < 0xDC00 || lo > 0xDFFF)
        return 0;
    *cp = 0x10000 + (((unsigned long)hi - 0xD800) << 10) + ((unsigned long)lo - 0xDC00);
    return 12;
}

/* Pass 1: percent-decoding. Every %XX is decoded, %2F included, and the decoded '/' then
 * separates segments as HTTP.sys does; every %uNNNN is decoded into UTF-8. '\' becomes '/'
 * whether it was sent raw, as %5C or as %u005C, so that one byte never means two things
 * depending on how the client spelled it. Control bytes (0x00-0x1F, 0x7F) are rejected raw or
 * decoded: HTTP.sys refuses them unless AllowRestrictedChars is set, and a NUL in a path
 * truncates it for C consumers. */
static int percent_decode(hs_str_t path, char *out, size_t *out_len)
{
    size_t w = 0;

    for (size_t i = 0; i < path.len; i++) {
        unsigned char c = (unsigned char)path.base[i];
        if (c == '%' && i + 1 < path.len && (path.base[i + 1] == 'u' || path.base[i + 1] == 'U')) {
            unsigned long cp;
            size_t used = percent_u(path.base + i, path.len - i, &cp);
            if (used == 0)
                return HS_ERROR;
            i += used - 1;
            if (cp >= 0x80) {
                w += put_utf8(out + w, cp); /* C1 controls are judged with the UTF-8 */
                continue;
            }
            c = (unsigned char)cp;
        } else if (c == '%') {
            /* Both hex digits must be inside the input: "%4" at the end is malformed. */
            if (path.len - i < 3)
                return HS_ERROR;
            int hi = hex_value(path.base[i + 1]);
            int lo = hex_value(path.base[i + 2]);
            if (hi < 0 || lo < 0)
                return HS_ERROR;
            c = (unsigned char)(hi * 16 + lo);
            i += 2;
        }
        if (c < 0x20 || c == 0x7F)
            return HS_ERROR;
        out[w++] = c == '\\' ? '/' : (char)c;
    }
    *out_len = w;
    return HS_OK;
}

/* Length of the UTF-8 sequence that starts at s[0..len), or 0 if it is not a valid sequence.
 * The ranges are those of RFC 3629 section 4 (UTF8-2, UTF8-3, UTF8-4), which exclude overlong
 * forms (C0, C1, E0 80-9F, F0 80-8F), UTF-16 surrogates (ED A0-BF) and code points above
 * U+10FFFF (F4 90-BF, F5-FF). */
static size_t utf8_sequence(const unsigned char *s, size_t len)
{
    unsigned char lo = 0x80, hi = 0xBF;
    size_t n;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        n = 2;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
        n = 3;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4)
        n = 4;
    else
        return 0;
    if (s[0] == 0xE0)
        lo = 0xA0;
    else if (s[0] == 0xED)
        hi = 0x9F;
    else if (s[0] == 0xF0)
        lo = 0x90;
    else if (s[0] == 0xF4)
        hi = 0x8F;

    if (len < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

/* Pass 2: the decoded path must be UTF-8. The C1 controls U+0080-U+009F (C2 80 to C2 9F) are
 * refused too: reference section 3.1 lists U+007F-U+009F with the restricted characters that
 * HTTP.sys rejects unless AllowRestrictedChars is set. */
static int check_utf8(const char *buf, size_t len)
{
    const unsigned char *s = (const unsigned char *)buf;

    for (size_t i = 0; i < len;) {
        size_t n = utf8_sequence(s + i, len - i);
        if (n == 0)
            return HS_ERROR;
        if (n == 2 && s[i] == 0xC2 && s[i + 1] <= 0x9F)
            return HS_ERROR;
        i += n;
    }
    return HS_OK;
}

/* Pass 3: dot-segment removal (RFC 3986 section 5.2.4) in place. buf[0..len) starts with '/',
 * and the output is built as a run of "/segment" units at the front of the same buffer; it
 * never grows faster than the input is read, so the copy is safe. A ".." with no unit left to
 * drop would climb above the root, which HTTP.sys rejects instead of clamping. A final "." or
 * ".." leaves a trailing '/', so "/a/b/.." becomes "/a/" as in the RFC. Repeated slashes are
 * empty segments and are kept. */
static int remove_dot_segments(char *buf, size_t len, size_t *out_len)
{
    size_t w = 0;
    size_t r = 0;

    while (r < len) {
        const char *next = memchr(buf + r + 1, '/', len - r - 1);
        size_t end = next != NULL ? (size_t)(next - buf) : len;
        size_t seg = end - r - 1;
        int dot = seg == 1 && buf[r + 1] == '.';
        int dotdot = seg == 2 && buf[r + 1] == '.' && buf[r + 2] == '.';

        if (dotdot) {
            if (w == 0)
                return HS_ERROR;
            while (buf[--w] != '/')
                ;
        }
        if (dot || dotdot) {
            if (end == len)
                buf[w++] = '/';
        } else {
            memmove(buf + w, buf + r, end - r);
            w += end - r;
        }
        r = end;
    }
    if (w == 0)
        buf[w++] = '/';
    *out_len = w;
    return HS_OK;
}

/* The length of valid UTF-8 in the characters HTTP.sys counts: its cooked URL is UTF-16, so a
 * character outside the BMP (a 4-byte sequence) is two, every other character one. */
static size_t utf16_length(const char *buf, size_t len)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)buf[i];
        if ((c & 0xC0) != 0x80)
            n += c >= 0xF0 ? 2 : 1;
    }
    return n;
}

/* Segment limits (UrlSegmentMaxLength, UrlSegmentMaxCount) on the canonical path, which is what
 * the application receives. A segment is what lies between two slashes; the empty segment after
 * a trailing '/' is not counted, so "/" has none and "/a/" has one, but the empty segments of
 * "//" are real. Lengths are in characters, as HTTP.sys counts them ("é" is one, not two). */
static int check_segments(const char *buf, size_t len, const hs_url_limits_t *lim)
{
    size_t count = 0;
    size_t r = 0;

    while (r < len) {
        const char *next = memchr(buf + r + 1, '/', len - r - 1);
        size_t end = next != NULL ? (size_t)(next - buf) : len;
        size_t seg = end - r - 1;

        /* A segment of no more bytes than the limit cannot have more characters. */
        if (lim->segment_max_length != 0 && seg > lim->segment_max_length &&
            utf16_length(buf + r + 1, seg) > lim->segment_max_length)
            return HS_ERROR;
        if (seg > 0 || end < len)
            count++;
        r = end;
    }
    if (lim->segment_max_count != 0 && count > lim->segment_max_count)
        return HS_ERROR;
    return HS_OK;
}

int hs__url_canonicalize(hs_str_t path, const hs_url_limits_t *lim, char *out, size_t *out_len,
                         int *reject)
{
    size_t len = 0;

    *out_len = 0;
    *reject = HS_REJECT_NONE;
    /* An abs-path starts with '/' (RFC 9112 section 3.2.1, origin-form = absolute-path). */
    if (path.len == 0 || path.base[0] != '/' || percent_decode(path, out, &len) != HS_OK ||
        check_utf8(out, len) != HS_OK || remove_dot_segments(out, len, &len) != HS_OK ||
        check_segments(out, len, lim) != HS_OK) {
        out[0] = '\0';
        *reject = HS_REJECT_INVALID_URL;
        return HS_ERROR;
    }
    out[len] = '\0';
    *out_len = len;
    return HS_OK;
}

int hs_test_url_canonicalize(const char *path, size_t len, size_t seg_max_len,
                             size_t seg_max_count, char *out, size_t outcap, size_t *outlen)
{
    hs_url_limits_t lim = {.segment_max_length = seg_max_len, .segment_max_count = seg_max_count};
    int reject = HS_REJECT_NONE;

    *outlen = 0;
    if (out == NULL || outcap < len + 1)
        return HS_REJECT_INTERNAL;
    if (hs__url_canonicalize((hs_str_t){path, len}, &lim, out, outlen, &reject) != HS_OK)
        return reject;
    return 0;
}
