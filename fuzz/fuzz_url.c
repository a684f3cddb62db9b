/*
 * libFuzzer target for the URL code (csrc/url.c): the request-target split, the Host split and
 * the canonicaliser, in the order conn.c calls them.
 *
 * Input: [limits] then a request-target. The low two bits of the first byte pick the segment
 * limits: HTTP.sys' defaults (260, 255), none (0, 0), or small ones from the next bits, so the
 * limit paths are reached with short inputs.
 *
 * Invariants:
 *   - every function returns HS_OK or HS_ERROR (with HS_REJECT_INVALID_URL from the
 *     canonicaliser) and never reads outside its input or writes outside path.len + 1 bytes;
 *   - split slices lie inside the target (or are the literal "/" for an empty path), and
 *     host + path + query account for the target;
 *   - a canonical path starts with '/', is NUL-terminated, is no longer than its input, holds no
 *     control character, '\', "." or ".." segment, is UTF-8 without C1 controls, and keeps the
 *     segment limits;
 *   - canonicalisation is idempotent: the canonical path with '%' written as "%25" canonicalises
 *     to itself;
 *   - it agrees, accept or reject and byte for byte, with a naive second implementation written
 *     here (decode, check UTF-8 by decoding code points, then a segment stack). The reference
 *     knows HTTP.sys's %uNNNN escapes and counts UrlSegmentMaxLength in UTF-16 units, as url.c
 *     does from the canon branch on; where url.c before it refuses (a %u escape, a segment with
 *     more bytes than the limit but not more units) a refusal is accepted too.
 */
#include "../csrc/url.c"

#include "fuzz_util.h"

/* ---- the naive reference --------------------------------------------------------------------- */

/* Decodes the code point at s[0..n) by its bit pattern; returns its length, or 0 if invalid. */
static size_t ref_code_point(const unsigned char *s, size_t n, uint32_t *cp)
{
    static const uint32_t min_of[5] = {0, 0, 0x80, 0x800, 0x10000};
    size_t len;
    uint32_t v;

    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if ((s[0] & 0xe0) == 0xc0) {
        len = 2;
        v = s[0] & 0x1f;
    } else if ((s[0] & 0xf0) == 0xe0) {
        len = 3;
        v = s[0] & 0x0f;
    } else if ((s[0] & 0xf8) == 0xf0) {
        len = 4;
        v = s[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3f);
    }
    if (v < min_of[len] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

/* Writes code point v as UTF-8; returns its length. */
static size_t ref_utf8(uint32_t v, char *out)
{
    size_t len = v < 0x80 ? 1 : v < 0x800 ? 2 : v < 0x10000 ? 3 : 4;
    static const unsigned char lead[5] = {0, 0, 0xc0, 0xe0, 0xf0};

    for (size_t i = len - 1; i > 0; i--) {
        out[i] = (char)(0x80 | (v & 0x3f));
        v >>= 6;
    }
    out[0] = (char)(lead[len] | v);
    return len;
}

/* The UTF-16 unit of "%uNNNN" at p[0..n), or -1. */
static long ref_unit(const char *p, size_t n)
{
    long v = 0;

    if (n < 6 || p[0] != '%' || (p[1] != 'u' && p[1] != 'U'))
        return -1;
    for (size_t i = 2; i < 6; i++) {
        if (hex_value(p[i]) < 0)
            return -1;
        v = v * 16 + hex_value(p[i]);
    }
    return v;
}

/* Decodes %XX and HTTP.sys's %uNNNN (UTF-16, surrogate pairs as two escapes), maps '\' to '/',
 * and refuses controls (C0, DEL, C1) and non-UTF-8. *used_u says whether a %u escape was met:
 * url.c learns them on the canon branch, and refuses them before. */
static int ref_decode(const char *p, size_t n, char *out, size_t *out_len, int *used_u)
{
    size_t w = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];

        if (c == '%' && i + 1 < n && (p[i + 1] == 'u' || p[i + 1] == 'U')) {
            long hi = ref_unit(p + i, n - i), lo;
            uint32_t cp = (uint32_t)hi;

            *used_u = 1;
            if (hi < 0 || (hi >= 0xdc00 && hi <= 0xdfff))
                return -1;
            if (hi >= 0xd800 && hi <= 0xdbff) {
                lo = ref_unit(p + i + 6, n - i - 6);
                if (lo < 0xdc00 || lo > 0xdfff)
                    return -1;
                cp = 0x10000 + (((uint32_t)hi & 0x3ff) << 10) + ((uint32_t)lo & 0x3ff);
                i += 6;
            }
            i += 5;
            w += ref_utf8(cp, out + w);
            if (out[w - 1] == '\\')
                out[w - 1] = '/';
            continue;
        }
        if (c == '%') {
            if (i + 2 >= n || hex_value(p[i + 1]) < 0 || hex_value(p[i + 2]) < 0)
                return -1;
            c = (unsigned char)(hex_value(p[i + 1]) * 16 + hex_value(p[i + 2]));
            i += 2;
        }
        out[w++] = c == '\\' ? '/' : (char)c;
    }
    for (size_t i = 0; i < w;) {
        uint32_t cp = 0;
        size_t len = ref_code_point((const unsigned char *)out + i, w - i, &cp);

        if (len == 0 || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            return -1;
        i += len;
    }
    *out_len = w;
    return 0;
}

/* HTTP.sys counts a segment in UTF-16 units of its cooked URL: one per character, two outside
 * the BMP. url.c counts bytes before the canon branch and units after it. */
static size_t ref_units(const char *s, size_t n)
{
    size_t units = 0;

    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            units += (unsigned char)s[i] >= 0xf0 ? 2 : 1;
    return units;
}

/* RFC 3986 5.2.4 on a list of segments: "." goes, ".." drops the previous segment (refused with
 * none left), and a final "." or ".." leaves an empty last segment (a trailing '/').
 * *lenient is set when url.c may refuse what this accepts: a %u escape was decoded, or a segment
 * has more bytes than UrlSegmentMaxLength but not more UTF-16 units. */
static int ref_canonicalize(const char *p, size_t n, size_t max_len, size_t max_count, char *out,
                            size_t *out_len, int *lenient)
{
    char *dec = malloc(n + 1);
    size_t dn = 0, nseg = 0, w = 0, count = 0;
    size_t *seg_start = malloc((n + 1) * sizeof(size_t));
    size_t *seg_len = malloc((n + 1) * sizeof(size_t));
    int rc = -1;

    FUZZ_CHECK(dec != NULL && seg_start != NULL && seg_len != NULL, "out of memory");
    *lenient = 0;
    if (n == 0 || p[0] != '/' || ref_decode(p, n, dec, &dn, lenient) != 0)
        goto done;
    for (size_t s = 1;;) {
        size_t e = s;
        int last;

        while (e < dn && dec[e] != '/')
            e++;
        last = e >= dn;
        if (e - s == 2 && dec[s] == '.' && dec[s + 1] == '.') {
            if (nseg == 0)
                goto done;
            nseg--;
        }
        if ((e - s == 1 && dec[s] == '.') || (e - s == 2 && dec[s] == '.' && dec[s + 1] == '.')) {
            if (last) {
                seg_start[nseg] = s;
                seg_len[nseg++] = 0;
            }
        } else {
            seg_start[nseg] = s;
            seg_len[nseg++] = e - s;
        }
        if (last)
            break;
        s = e + 1;
    }
    for (size_t i = 0; i < nseg; i++) {
        if (max_len != 0 && ref_units(dec + seg_start[i], seg_len[i]) > max_len)
            goto done;
        if (max_len != 0 && seg_len[i] > max_len)
            *lenient = 1;
        if (seg_len[i] > 0 || i + 1 < nseg)
            count++;
        out[w++] = '/';
        memcpy(out + w, dec + seg_start[i], seg_len[i]);
        w += seg_len[i];
    }
    if (max_count != 0 && count > max_count)
        goto done;
    if (w == 0)
        out[w++] = '/';
    *out_len = w;
    rc = 0;
done:
    free(dec);
    free(seg_start);
    free(seg_len);
    return rc;
}

/* ---- the invariants -------------------------------------------------------------------------- */

static void check_canonical(const char *out, size_t len, size_t in_len, const hs_url_limits_t *lim)
{
    size_t count = 0;

    FUZZ_CHECK(len >= 1 && len <= in_len && out[0] == '/' && out[len] == '\0',
               "canonical length %zu of %zu", len, in_len);
    FUZZ_CHECK(check_utf8(out, len) == HS_OK, "canonical path is not UTF-8");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)out[i];

        FUZZ_CHECK(c >= 0x20 && c != 0x7f && c != '\\', "canonical byte 0x%02x", c);
    }
    for (size_t s = 1; s <= len;) {
        const char *slash = memchr(out + s, '/', len - s);
        size_t e = slash != NULL ? (size_t)(slash - out) : len;

        FUZZ_CHECK(!(e - s == 1 && out[s] == '.') &&
                       !(e - s == 2 && out[s] == '.' && out[s + 1] == '.'),
                   "dot segment left in %.*s", (int)len, out);
        FUZZ_CHECK(lim->segment_max_length == 0 ||
                       ref_units(out + s, e - s) <= lim->segment_max_length,
                   "segment of %zu bytes", e - s);
        if (e - s > 0 || e < len)
            count++;
        s = e + 1;
    }
    FUZZ_CHECK(lim->segment_max_count == 0 || count <= lim->segment_max_count, "%zu segments",
               count);
}

/* Canonicalises p[0..n) from an exact-size copy into an exact-size output buffer. */
static int canon_copy(const char *p, size_t n, const hs_url_limits_t *lim, char *out,
                      size_t *out_len)
{
    char *in = dup_exact(p, n);
    char *o = malloc(n + 1);
    int reject = -1;
    int rc;

    FUZZ_CHECK(o != NULL, "out of memory");
    rc = hs__url_canonicalize((hs_str_t){in, n}, lim, o, out_len, &reject);
    FUZZ_CHECK((rc == HS_OK && reject == HS_REJECT_NONE) ||
                   (rc == HS_ERROR && reject == HS_REJECT_INVALID_URL && *out_len == 0),
               "canonicalize returned %d with reject %d", rc, reject);
    if (rc == HS_OK) {
        check_canonical(o, *out_len, n, lim);
        memcpy(out, o, *out_len);
    }
    free(o);
    free(in);
    return rc;
}

static void check_idempotent(const char *c, size_t n, const hs_url_limits_t *lim)
{
    char *esc = malloc(3 * n + 1);
    char *again = malloc(3 * n + 1);
    size_t en = 0, an = 0;

    FUZZ_CHECK(esc != NULL && again != NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (c[i] == '%') {
            memcpy(esc + en, "%25", 3);
            en += 3;
        } else {
            esc[en++] = c[i];
        }
    }
    FUZZ_CHECK(canon_copy(esc, en, lim, again, &an) == HS_OK, "canonical path refused again");
    FUZZ_CHECK(an == n && memcmp(again, c, n) == 0, "not idempotent: %.*s -> %.*s", (int)n, c,
               (int)an, again);
    free(esc);
    free(again);
}

static void fuzz_canonicalize(const char *p, size_t n, const hs_url_limits_t *lim)
{
    char *out = malloc(n + 1);
    char *ref = malloc(n + 1);
    size_t on = 0, rn = 0;
    int rc = canon_copy(p, n, lim, out, &on);
    int lenient = 0;
    int ref_rc = ref_canonicalize(p, n, lim->segment_max_length, lim->segment_max_count, ref, &rn,
                                  &lenient);

    FUZZ_CHECK(out != NULL && ref != NULL, "out of memory");
    FUZZ_CHECK((rc == HS_OK) == (ref_rc == 0) || (rc != HS_OK && lenient),
               "url.c %s, the reference %s: %.*s",
               rc == HS_OK ? "accepts" : "refuses", ref_rc == 0 ? "accepts" : "refuses", (int)n,
               p);
    if (rc == HS_OK) {
        FUZZ_CHECK(on == rn && memcmp(out, ref, on) == 0, "url.c %.*s, the reference %.*s",
                   (int)on, out, (int)rn, ref);
        check_idempotent(out, on, lim);
    }
    free(out);
    free(ref);
}

static void fuzz_split(const char *p, size_t n, const hs_url_limits_t *lim)
{
    char *t = dup_exact(p, n);
    hs_str_t host, path, query, name;
    unsigned port = 12345;
    int rc = hs__url_split((hs_str_t){t, n}, &host, &path, &query);

    FUZZ_CHECK(rc == HS_OK || rc == HS_ERROR, "split returned %d", rc);
    if (rc == HS_OK) {
        int literal_root = path.len == 1 && !inside(path.base, 1, t, n) && path.base[0] == '/';

        FUZZ_CHECK(inside(host.base, host.len, t, n) && inside(query.base, query.len, t, n) &&
                       (literal_root || inside(path.base, path.len, t, n)),
                   "split slice outside the target");
        FUZZ_CHECK(path.len > 0, "empty path");
        FUZZ_CHECK(host.len + (literal_root ? 0 : path.len) + query.len <= n,
                   "parts longer than the target");
        if (host.len > 0) {
            int hrc = hs__url_split_host(host, &name, &port);

            FUZZ_CHECK(hrc == HS_OK || hrc == HS_ERROR, "split_host returned %d", hrc);
            if (hrc == HS_OK)
                FUZZ_CHECK(name.len > 0 && inside(name.base, name.len, host.base, host.len) &&
                               port <= 65535,
                           "split_host name or port %u", port);
        }
        if (path.base[0] == '/')
            fuzz_canonicalize(path.base, path.len, lim);
    }
    /* The whole input as a path too, so that '?' and '#' reach the canonicaliser. */
    if (rc != HS_OK || path.len != n)
        fuzz_canonicalize(t, n, lim);
    /* The Host header value goes through the same split, on its own. */
    if (hs__url_split_host((hs_str_t){t, n}, &name, &port) == HS_OK)
        FUZZ_CHECK(name.len > 0 && inside(name.base, name.len, t, n) && port <= 65535,
                   "split_host name or port %u", port);
    free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hs_url_limits_t lim = {260, 255};

    if (size < 1 || size > 16 * 1024)
        return 0;
    switch (data[0] & 3) {
    case 1:
        lim = (hs_url_limits_t){0, 0};
        break;
    case 2:
    case 3:
        lim = (hs_url_limits_t){(size_t)(data[0] >> 2 & 7) + 1, (size_t)(data[0] >> 5) + 1};
        break;
    }
    fuzz_split((const char *)data + 1, size - 1, &lim);
    return 0;
}
