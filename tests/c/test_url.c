/*
 * Unit tests of csrc/url.c. The unit is included whole so that static helpers can be tested,
 * and every input is copied so that it ends right before a PROT_NONE page: a read past the
 * end of the input, or a write past the output capacity, crashes instead of passing silently.
 * Build with -fsanitize=address,undefined (tests/c/Makefile does).
 */
#include "../../csrc/url.c"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------ */
/* A TAP-style ok() and guard-page buffers                                                    */
/* ------------------------------------------------------------------------------------------ */

#include "tap.h"

struct guarded {
    char *map;
    size_t maplen;
    char *p;
};

/* Returns len writable bytes that end exactly where a PROT_NONE page begins. */
static char *guard_alloc(struct guarded *g, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data = (len + page - 1) / page * page;

    g->maplen = data + page;
    g->map = mmap(NULL, g->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g->map == MAP_FAILED || mprotect(g->map + data, page, PROT_NONE) != 0) {
        perror("guard_alloc");
        exit(2);
    }
    g->p = g->map + data - len;
    return g->p;
}

static const char *guard_copy(struct guarded *g, const char *s, size_t len)
{
    char *p = guard_alloc(g, len);

    if (len > 0)
        memcpy(p, s, len);
    return p;
}

static void guard_free(struct guarded *g)
{
    munmap(g->map, g->maplen);
}

/* ------------------------------------------------------------------------------------------ */
/* Canonicalisation                                                                           */
/* ------------------------------------------------------------------------------------------ */

/* Canonicalises in[0..len) with the given limits; expect NULL means "rejected as Invalid URL".
 * The output buffer has exactly the promised capacity, len + 1, and ends at a guard page. */
static void canon_n(const char *in, size_t len, size_t maxlen, size_t maxcount, const char *expect)
{
    struct guarded gin, gout;
    const char *p = guard_copy(&gin, in, len);
    char *out = guard_alloc(&gout, len + 1);
    hs_url_limits_t lim = {maxlen, maxcount};
    size_t out_len = 99;
    int reject = -1;
    int rc = hs__url_canonicalize((hs_str_t){p, len}, &lim, out, &out_len, &reject);

    if (expect == NULL) {
        ok(rc == HS_ERROR && reject == HS_REJECT_INVALID_URL && out_len == 0,
           "canonicalize(\"%.*s\") is rejected (rc %d, reject %d)", (int)(len > 60 ? 60 : len),
           in, rc, reject);
    } else {
        ok(rc == HS_OK && reject == HS_REJECT_NONE && out_len == strlen(expect) &&
               memcmp(out, expect, out_len) == 0 && out[out_len] == '\0',
           "canonicalize(\"%.*s\") = \"%s\" (rc %d, got \"%.*s\")", (int)(len > 60 ? 60 : len),
           in, expect, rc, rc == HS_OK ? (int)out_len : 0, out);
    }
    guard_free(&gin);
    guard_free(&gout);
}

static void canon(const char *in, const char *expect)
{
    canon_n(in, strlen(in), 260, 255, expect);
}

static void test_decoding(void)
{
    canon("/", "/");
    canon("/index.html", "/index.html");
    canon("/a%20b", "/a b");
    canon("/%41%62%63", "/Abc");
    canon("/%7e%7E", "/~~");
    /* %2F is decoded and then separates segments, as HTTP.sys does. */
    canon("/a%2Fb", "/a/b");
    canon("/a%2fb/%2e%2e/c", "/a/c");
    canon("/a/b%2F..%2Fc", "/a/c");
    /* Percent-encoded dots are dot segments once decoded. */
    canon("/%2e/x", "/x");
    canon("/a/%2E%2e", "/");
    canon("/%2e%2e/x", NULL);
    /* A decoded '%' is data, not the start of another escape (no double decoding). */
    canon("/%2541", "/%41");
    canon("/%", NULL);
    canon("/%4", NULL);
    canon("/a%4g", NULL);
    canon("/a%g4", NULL);
    canon("/%%41", NULL);
    /* HTTP.sys's %uNNNN form (PercentUAllowed): UTF-16 code units decoded into UTF-8. */
    canon("/%u0041", "/A");
    canon("/%uD83D%uDE00", "/\xF0\x9F\x98\x80");
    canon("/%uD83D", NULL);
    canon("/%u004", NULL);
    canon("a/b", NULL);
    canon_n("", 0, 260, 255, NULL);
    canon("\\a", NULL);
}

static void test_backslash_and_dots(void)
{
    canon("/a\\b", "/a/b");
    canon("/a%5Cb", "/a/b");
    canon("/a\\..\\b", "/b");
    canon("/a/%5c..%5c..%5cetc", "/etc");
    canon("/%5c..%5c..%5cetc", NULL);
    canon("/./a", "/a");
    canon("/a/.", "/a/");
    canon("/a/./", "/a/");
    canon("/a/b/..", "/a/");
    canon("/a/b/../", "/a/");
    canon("/a/b/../../c", "/c");
    canon("/a/..", "/");
    canon("/..", NULL);
    canon("/../a", NULL);
    canon("/a/../..", NULL);
    canon("/a/../../b", NULL);
    canon("/./..", NULL);
    /* Segments that merely contain dots are ordinary. */
    canon("/...", "/...");
    canon("/.a/a./..b", "/.a/a./..b");
    canon("/a.b/c", "/a.b/c");
    /* Repeated slashes are empty segments: kept, and ".." removes one of them. */
    canon("//", "//");
    canon("/a//b", "/a//b");
    canon("/a//../b", "/a/b");
    canon("/a//..", "/a/");
}

static void test_restricted_bytes(void)
{
    canon("/a%00b", NULL);
    canon("/a%0Ab", NULL);
    canon("/a%0d%0aSet-Cookie:x", NULL);
    canon("/a%1F", NULL);
    canon("/a%7F", NULL);
    canon_n("/a\0b", 4, 260, 255, NULL);
    canon("/a\tb", NULL);
    canon("/a\x7f", NULL);
    canon("/a%20", "/a ");
    canon("/a%7E", "/a~");
}

static void test_utf8(void)
{
    canon("/caf%C3%A9", "/caf\xC3\xA9");
    canon("/caf\xC3\xA9", "/caf\xC3\xA9");
    canon("/%E2%82%AC", "/\xE2\x82\xAC");
    canon("/%F0%9F%98%80", "/\xF0\x9F\x98\x80");
    canon("/%EF%BF%BF", "/\xEF\xBF\xBF");
    canon("/%F4%8F%BF%BF", "/\xF4\x8F\xBF\xBF");
    canon("/%C2%A0", "/\xC2\xA0");
    /* Overlong forms, including the classic overlong '/' and '.', must not become separators. */
    canon("/%C0%AF", NULL);
    canon("/%C1%9C", NULL);
    canon("/%C0%AE%C0%AE/x", NULL);
    canon("/%E0%80%AF", NULL);
    canon("/%E0%9F%BF", NULL);
    canon("/%F0%80%80%AF", NULL);
    canon("/%F0%8F%BF%BF", NULL);
    /* UTF-16 surrogates and code points above U+10FFFF. */
    canon("/%ED%A0%80", NULL);
    canon("/%ED%BF%BF", NULL);
    canon("/%ED%9F%BF", "/\xED\x9F\xBF");
    canon("/%F4%90%80%80", NULL);
    canon("/%F5%80%80%80", NULL);
    canon("/%FF", NULL);
    /* Truncated and stray continuation bytes. */
    canon("/%C3", NULL);
    canon("/%E2%82", NULL);
    canon("/%F0%9F%98", NULL);
    canon("/%80", NULL);
    canon("/%C3%28", NULL);
    canon("/\xC3", NULL);
    /* C1 controls U+0080-U+009F are restricted characters too (reference section 3.1). */
    canon("/%C2%80", NULL);
    canon("/%C2%9F", NULL);
}

static void test_segment_limits(void)
{
    char buf[1200];

    /* One segment of exactly 260 bytes passes; 261 fails; 0 means unlimited. */
    buf[0] = '/';
    memset(buf + 1, 'a', 261);
    buf[261] = '\0';
    canon_n(buf, 261, 260, 255, buf);
    buf[261] = 'a';
    buf[262] = '\0';
    canon_n(buf, 262, 260, 255, NULL);
    canon_n(buf, 262, 0, 255, buf);
    /* Limits count what is decoded: 3 escapes are 3 characters, ... */
    canon_n("/%41%42%43", 10, 3, 0, "/ABC");
    canon_n("/%41%42%43%44", 13, 3, 0, NULL);
    /* ... but characters of UTF-8, as HTTP.sys counts them (UTF-16: U+1F600 is two). */
    canon_n("/\xC3\xA9\xC3\xA9\xC3\xA9", 7, 3, 0, "/\xC3\xA9\xC3\xA9\xC3\xA9");
    canon_n("/\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9", 9, 3, 0, NULL);
    canon_n("/a\xF0\x9F\x98\x80", 6, 3, 0, "/a\xF0\x9F\x98\x80");
    canon_n("/ab\xF0\x9F\x98\x80", 7, 3, 0, NULL);
    /* A segment removed by ".." does not count against the length limit. */
    canon_n("/aaaa/../b", 10, 3, 0, "/b");
    canon_n("/aaaa/b", 7, 3, 0, NULL);

    /* 255 segments pass and 256 fail; the empty segment after a trailing '/' is not counted. */
    size_t n = 0;
    for (int i = 0; i < 255; i++) {
        buf[n++] = '/';
        buf[n++] = 'x';
    }
    buf[n] = '\0';
    canon_n(buf, n, 260, 255, buf);
    buf[n] = '/';
    buf[n + 1] = '\0';
    canon_n(buf, n + 1, 260, 255, buf);
    buf[n + 1] = 'x';
    buf[n + 2] = '\0';
    canon_n(buf, n + 2, 260, 255, NULL);
    canon_n(buf, n + 2, 260, 0, buf);
    canon_n("/", 1, 1, 1, "/");
    canon_n("/a/", 3, 1, 1, "/a/");
    canon_n("/a//", 4, 1, 1, NULL);
    canon_n("/a/b/..", 7, 1, 1, "/a/");
}

/* The output never grows: each step only drops bytes. A path made only of escapes and dots
 * must still fit in len + 1 bytes; the guard page after out catches any overflow. */
static void test_capacity(void)
{
    canon("/%2e/%2e/%2e/./.", "/");
    canon("/a/%2e%2e/%2e%2e/", NULL);
    canon("/%2F%2F%2F", "////");
}

/* Invariants over random inputs built from the interesting bytes: either a rejection, or a
 * result that starts with '/', has no control bytes and no "." or ".." segment left. */
static void test_random(void)
{
    static const char alphabet[] = "/./.%2e%2E%2F%5c\\a%C3%A9%00%e2%82%ac%ff%%";
    uint64_t s = 0x9E3779B97F4A7C15ULL;
    int bad = 0;

    for (int iter = 0; iter < 20000 && !bad; iter++) {
        char in[48];
        size_t len = 1 + (size_t)(iter % 47);
        in[0] = '/';
        for (size_t i = 1; i < len; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            in[i] = alphabet[s % (sizeof(alphabet) - 1)];
        }
        struct guarded gin, gout;
        const char *p = guard_copy(&gin, in, len);
        char *out = guard_alloc(&gout, len + 1);
        hs_url_limits_t lim = {0, 0};
        size_t out_len;
        int reject;
        if (hs__url_canonicalize((hs_str_t){p, len}, &lim, out, &out_len, &reject) == HS_OK) {
            bad |= out_len == 0 || out_len > len || out[0] != '/' || out[out_len] != '\0';
            bad |= strstr(out, "/./") != NULL || strstr(out, "/../") != NULL;
            bad |= strlen(out) != out_len || strchr(out, '\\') != NULL;
            bad |= (out_len >= 2 && strcmp(out + out_len - 2, "/.") == 0);
            bad |= (out_len >= 3 && strcmp(out + out_len - 3, "/..") == 0);
        } else {
            bad |= reject != HS_REJECT_INVALID_URL;
        }
        if (bad)
            printf("# random input \"%.*s\" broke an invariant\n", (int)len, in);
        guard_free(&gin);
        guard_free(&gout);
    }
    ok(!bad, "random inputs keep the canonical-path invariants");
}

/* hs_test_url_canonicalize: the cffi entry point checks the capacity before writing. */
static void test_entry_point(void)
{
    char out[16];
    size_t out_len = 7;

    ok(hs_test_url_canonicalize("/a/../b", 7, 260, 255, out, 8, &out_len) == 0 && out_len == 2 &&
           strcmp(out, "/b") == 0,
       "hs_test_url_canonicalize canonicalises");
    ok(hs_test_url_canonicalize("/a/../b", 7, 260, 255, out, 7, &out_len) == HS_REJECT_INTERNAL,
       "hs_test_url_canonicalize refuses an output smaller than len + 1");
    ok(hs_test_url_canonicalize("/..", 3, 260, 255, out, 4, &out_len) == HS_REJECT_INVALID_URL,
       "hs_test_url_canonicalize returns the reject code");
    ok(hs_test_url_canonicalize("/aa", 3, 1, 255, out, 4, &out_len) == HS_REJECT_INVALID_URL,
       "hs_test_url_canonicalize passes the segment length limit");
}

/* ------------------------------------------------------------------------------------------ */
/* Request-target and Host splitting                                                          */
/* ------------------------------------------------------------------------------------------ */

static int slice_is(hs_str_t s, const char *expect)
{
    return s.len == strlen(expect) && (s.len == 0 || memcmp(s.base, expect, s.len) == 0);
}

/* expect_host NULL means HS_ERROR is expected. */
static void split(const char *target, const char *expect_host, const char *expect_path,
                  const char *expect_query)
{
    struct guarded g;
    size_t len = strlen(target);
    const char *p = guard_copy(&g, target, len);
    hs_str_t host, path, query;
    int rc = hs__url_split((hs_str_t){p, len}, &host, &path, &query);

    if (expect_host == NULL)
        ok(rc == HS_ERROR, "split(\"%s\") is rejected", target);
    else
        ok(rc == HS_OK && slice_is(host, expect_host) && slice_is(path, expect_path) &&
               slice_is(query, expect_query),
           "split(\"%s\") = host \"%s\", path \"%s\", query \"%s\"", target, expect_host,
           expect_path, expect_query);
    guard_free(&g);
}

static void test_split(void)
{
    split("/", "", "/", "");
    split("/a/b?x=1&y", "", "/a/b", "x=1&y");
    split("/a?", "", "/a", "");
    split("/a?b?c", "", "/a", "b?c");
    split("*", "", "*", "");
    split("http://example.com/a?q", "example.com", "/a", "q");
    split("https://example.com:8443/a/b", "example.com:8443", "/a/b", "");
    split("HTTPS://Example.com/", "Example.com", "/", "");
    split("HtTp://h", "h", "/", "");
    split("https://h?q=1", "h", "/", "q=1");
    split("https://[::1]:443/x", "[::1]:443", "/x", "");
    split("", NULL, NULL, NULL);
    split("**", NULL, NULL, NULL);
    split("a/b", NULL, NULL, NULL);
    split("ftp://h/", NULL, NULL, NULL);
    split("https:/h/", NULL, NULL, NULL);
    split("https:///a", NULL, NULL, NULL);
    split("https://user@h/a", NULL, NULL, NULL);
    split("https://", NULL, NULL, NULL);
    split("http", NULL, NULL, NULL);
}

/* expect_name NULL means HS_ERROR is expected. */
static void split_host(const char *value, const char *expect_name, unsigned expect_port)
{
    struct guarded g;
    size_t len = strlen(value);
    const char *p = guard_copy(&g, value, len);
    hs_str_t name;
    unsigned port = 12345;
    int rc = hs__url_split_host((hs_str_t){p, len}, &name, &port);

    if (expect_name == NULL)
        ok(rc == HS_ERROR, "split_host(\"%s\") is rejected", value);
    else
        ok(rc == HS_OK && slice_is(name, expect_name) && port == expect_port,
           "split_host(\"%s\") = \"%s\" port %u (got port %u)", value, expect_name, expect_port,
           port);
    guard_free(&g);
}

static void test_split_host(void)
{
    split_host("example.com", "example.com", 0);
    split_host("Example.COM:443", "Example.COM", 443);
    split_host("h:1", "h", 1);
    split_host("h:65535", "h", 65535);
    split_host("h:0443", "h", 443);
    split_host("127.0.0.1:8443", "127.0.0.1", 8443);
    split_host("[::1]", "[::1]", 0);
    split_host("[::1]:8443", "[::1]", 8443);
    split_host("[2001:DB8::1]:1", "[2001:DB8::1]", 1);
    split_host("[::ffff:1.2.3.4]", "[::ffff:1.2.3.4]", 0);
    split_host("example.com.", "example.com.", 0);
    split_host("", NULL, 0);
    split_host(":443", NULL, 0);
    split_host("h:", NULL, 0);
    split_host("h:0", NULL, 0);
    split_host("h:65536", NULL, 0);
    split_host("h:99999999999999999999", NULL, 0);
    split_host("h:44a", NULL, 0);
    split_host("h:+44", NULL, 0);
    split_host("h:1:2", NULL, 0);
    split_host("::1", NULL, 0);
    split_host("[::1", NULL, 0);
    split_host("[]", NULL, 0);
    split_host("[::1]x", NULL, 0);
    split_host("[::1]:", NULL, 0);
    split_host("[::g]", NULL, 0);
    split_host("a b", NULL, 0);
    split_host("a/b", NULL, 0);
    split_host("a@b", NULL, 0);
    split_host("a\rb", NULL, 0);
}

int main(void)
{
    test_decoding();
    test_backslash_and_dots();
    test_restricted_bytes();
    test_utf8();
    test_segment_limits();
    test_capacity();
    test_random();
    test_entry_point();
    test_split();
    test_split_host();
    printf("1..%d\n", tally.run);
    if (tally.failed > 0)
        printf("# %d of %d tests failed\n", tally.failed, tally.run);
    return tally.failed > 0 ? 1 : 0;
}
