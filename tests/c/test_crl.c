/*
 * Unit tests of csrc/crl.c. The unit is included whole so that the static key encoding can be
 * checked directly. CRLs and certificates are built here with OpenSSL and signed with a fresh
 * P-256 key; every DER input is copied to end right before a PROT_NONE page, so a read past the
 * end of the CRL crashes instead of passing silently. Built with ASan and UBSan by the Makefile.
 */
#include "../../csrc/crl.c"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/evp.h>

#include "tap.h"

/* ------------------------------------------------------------------------------------------ */
/* Guard-page copies and builders                                                             */
/* ------------------------------------------------------------------------------------------ */

struct guarded {
    unsigned char *map;
    size_t maplen;
    unsigned char *p;
};

static const unsigned char *guard_copy(struct guarded *g, const unsigned char *s, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data = (len + page - 1) / page * page;

    g->maplen = data + page;
    g->map = mmap(NULL, g->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g->map == MAP_FAILED || mprotect(g->map + data, page, PROT_NONE) != 0) {
        perror("guard_copy");
        exit(2);
    }
    g->p = g->map + data - len;
    if (len > 0)
        memcpy(g->p, s, len);
    return g->p;
}

static void guard_free(struct guarded *g)
{
    munmap(g->map, g->maplen);
}

/* A serial as big-endian magnitude bytes plus a sign. */
struct serial {
    const unsigned char *b;
    size_t len;
    int negative;
};

static EVP_PKEY *ca_key;

static void die(const char *what)
{
    fprintf(stderr, "%s failed\n", what);
    exit(2);
}

static ASN1_INTEGER *asn1_serial(struct serial s)
{
    BIGNUM *bn = BN_bin2bn(s.b, (int)s.len, NULL);
    ASN1_INTEGER *ai;

    if (bn == NULL)
        die("BN_bin2bn");
    BN_set_negative(bn, s.negative);
    ai = BN_to_ASN1_INTEGER(bn, NULL);
    BN_free(bn);
    if (ai == NULL)
        die("BN_to_ASN1_INTEGER");
    return ai;
}

static X509_NAME *name_cn(const char *cn)
{
    X509_NAME *n = X509_NAME_new();

    if (n == NULL || !X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn,
                                                -1, -1, 0))
        die("X509_NAME");
    return n;
}

static void set_time(X509_CRL *crl, int64_t t, int next)
{
    ASN1_TIME *at = ASN1_TIME_set(NULL, (time_t)t);

    if (at == NULL || !(next ? X509_CRL_set1_nextUpdate(crl, at) : X509_CRL_set1_lastUpdate(crl, at)))
        die("ASN1_TIME_set");
    ASN1_TIME_free(at);
}

static void add_revoked(X509_CRL *crl, struct serial s)
{
    X509_REVOKED *r = X509_REVOKED_new();
    ASN1_INTEGER *ai = asn1_serial(s);
    ASN1_TIME *when = ASN1_TIME_set(NULL, 1000);

    if (r == NULL || when == NULL || !X509_REVOKED_set_serialNumber(r, ai) ||
        !X509_REVOKED_set_revocationDate(r, when) || !X509_CRL_add0_revoked(crl, r))
        die("X509_REVOKED");
    ASN1_INTEGER_free(ai);
    ASN1_TIME_free(when);
}

/* A signed DER CRL from issuer cn listing serials; next < 0 means no nextUpdate. The caller
 * frees *der with OPENSSL_free. */
static size_t make_crl(const char *cn, const struct serial *serials, size_t n, int64_t this_up,
                       int64_t next_up, unsigned char **der)
{
    X509_CRL *crl = X509_CRL_new();
    X509_NAME *issuer = name_cn(cn);
    int len;

    if (crl == NULL || !X509_CRL_set_version(crl, 1) || !X509_CRL_set_issuer_name(crl, issuer))
        die("X509_CRL_new");
    set_time(crl, this_up, 0);
    if (next_up >= 0)
        set_time(crl, next_up, 1);
    for (size_t i = 0; i < n; i++)
        add_revoked(crl, serials[i]);
    if (X509_CRL_sign(crl, ca_key, EVP_sha256()) <= 0)
        die("X509_CRL_sign");
    *der = NULL;
    len = i2d_X509_CRL(crl, der);
    if (len <= 0)
        die("i2d_X509_CRL");
    X509_NAME_free(issuer);
    X509_CRL_free(crl);
    return (size_t)len;
}

/* Builds the index through a guard-page copy of the DER. */
static hs_crl_index_t *index_of(const unsigned char *der, size_t len, char *err, size_t errlen)
{
    struct guarded g;
    hs_crl_index_t *ix = hs__crl_index_new(guard_copy(&g, der, len), len, err, errlen);

    guard_free(&g);
    return ix;
}

static int revoked(const hs_crl_index_t *ix, const unsigned char *b, size_t len)
{
    struct guarded g;
    int r = hs__crl_is_revoked(ix, guard_copy(&g, b, len), len);

    guard_free(&g);
    return r;
}

/* A certificate from issuer cn with the given serial, signed by ca_key (its own key: the index
 * reads only the issuer name and the serial). */
static X509 *make_cert(const char *cn, struct serial s)
{
    X509 *x = X509_new();
    X509_NAME *issuer = name_cn(cn), *subject = name_cn("client");
    ASN1_INTEGER *ai = asn1_serial(s);

    if (x == NULL || !X509_set_version(x, 2) || !X509_set_serialNumber(x, ai) ||
        !X509_set_issuer_name(x, issuer) || !X509_set_subject_name(x, subject) ||
        X509_gmtime_adj(X509_getm_notBefore(x), 0) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), 3600) == NULL || !X509_set_pubkey(x, ca_key) ||
        X509_sign(x, ca_key, EVP_sha256()) <= 0)
        die("make_cert");
    ASN1_INTEGER_free(ai);
    X509_NAME_free(issuer);
    X509_NAME_free(subject);
    return x;
}

#define S(...) ((struct serial){(const unsigned char[]){__VA_ARGS__}, \
                                sizeof((const unsigned char[]){__VA_ARGS__}), 0})
#define NEG(...) ((struct serial){(const unsigned char[]){__VA_ARGS__}, \
                                  sizeof((const unsigned char[]){__VA_ARGS__}), 1})

static const unsigned char max20[20] = {0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe};
static const unsigned char top20[20] = {0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                        0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};

/* ------------------------------------------------------------------------------------------ */
/* Key encoding                                                                               */
/* ------------------------------------------------------------------------------------------ */

static void test_keys(void)
{
    crl_key_t a, b;
    unsigned char long21[21];

    ok(make_key(&a, (const unsigned char *)"\x01", 1, 0) == HS_OK &&
           make_key(&b, (const unsigned char *)"\x00\x00\x01", 3, 0) == HS_OK &&
           memcmp(a.b, b.b, KEY_LEN) == 0,
       "leading zero octets do not change the key");
    ok(make_key(&a, NULL, 0, 0) == HS_OK && a.b[0] == 0 &&
           make_key(&b, (const unsigned char *)"\x00", 1, 1) == HS_OK && memcmp(a.b, b.b, KEY_LEN) == 0,
       "zero has one key, with or without a sign or padding");
    ok(make_key(&a, (const unsigned char *)"\x05", 1, 1) == HS_OK &&
           make_key(&b, (const unsigned char *)"\x05", 1, 0) == HS_OK && memcmp(a.b, b.b, KEY_LEN) != 0,
       "-5 and 5 have different keys");
    ok(make_key(&a, (const unsigned char *)"\xff", 1, 0) == HS_OK &&
           make_key(&b, (const unsigned char *)"\x01\x00", 2, 0) == HS_OK &&
           memcmp(a.b, b.b, KEY_LEN) < 0,
       "memcmp order is numeric order for non-negative serials (255 < 256)");
    memset(long21, 0x11, sizeof(long21));
    ok(make_key(&a, max20, 20, 0) == HS_OK, "a 20-octet serial has a key");
    ok(make_key(&a, long21, 21, 0) == HS_ERROR, "a 21-octet magnitude has none");
    long21[0] = 0;
    ok(make_key(&a, long21, 21, 0) == HS_OK, "21 octets with a leading zero are 20 octets");
}

/* ------------------------------------------------------------------------------------------ */
/* Lookups                                                                                    */
/* ------------------------------------------------------------------------------------------ */

static void test_lookup(void)
{
    const struct serial listed[] = {
        S(0x01), S(0x02), S(0x7f), S(0x80), S(0xff), S(0x01, 0x00),
        S(0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0),
        {max20, 20, 0}, {top20, 20, 0}, NEG(0x05),
    };
    unsigned char *der;
    size_t len = make_crl("Test CA", listed, sizeof(listed) / sizeof(listed[0]), 1000, 2000, &der);
    char err[256];
    hs_crl_index_t *ix = index_of(der, len, err, sizeof(err));
    unsigned char buf[21];

    ok(ix != NULL, "a CRL of ten serials builds (%s)", ix == NULL ? err : "ok");
    if (ix == NULL)
        return;
    ok(hs__crl_count(ix) == 10, "count is 10 (got %zu)", hs__crl_count(ix));
    for (size_t i = 0; i + 1 < sizeof(listed) / sizeof(listed[0]); i++)
        ok(revoked(ix, listed[i].b, listed[i].len), "listed serial %zu (%zu octets) is found", i,
           listed[i].len);
    ok(!revoked(ix, (const unsigned char *)"\x05", 1), "5 is not revoked when -5 is listed");
    ok(!revoked(ix, (const unsigned char *)"\x00", 1) && !revoked(ix, NULL, 0), "0 is absent");
    ok(!revoked(ix, (const unsigned char *)"\x03", 1), "3, a neighbour of 2, is absent");
    ok(!revoked(ix, (const unsigned char *)"\x81", 1), "0x81 is absent");
    ok(!revoked(ix, (const unsigned char *)"\x01\x01", 2), "0x101 is absent");
    ok(revoked(ix, (const unsigned char *)"\x00\x80", 2), "0x0080 (DER sign padding) is found");
    ok(revoked(ix, (const unsigned char *)"\x00\x00\x00\x01", 4), "0x00000001 is found");
    ok(!revoked(ix, (const unsigned char *)"\x01\x00\x00", 3), "0x10000 is absent");
    buf[0] = 0;
    memcpy(buf + 1, max20, 20);
    ok(revoked(ix, buf, 21), "the 20-octet serial with a 0x00 prefix is found");
    buf[20] = 0xff;
    ok(!revoked(ix, buf, 21), "its successor is absent");
    memset(buf, 0xff, sizeof(buf));
    ok(!revoked(ix, buf, 21), "a 21-octet serial is absent, without reading past it");
    ok(hs__crl_this_update(ix) == 1000 && hs__crl_next_update(ix) == 2000, "times are kept");
    hs__crl_index_free(ix);
    OPENSSL_free(der);
}

static void test_empty(void)
{
    unsigned char *der;
    size_t len = make_crl("Empty CA", NULL, 0, 1000, -1, &der);
    char err[256];
    hs_crl_index_t *ix = index_of(der, len, err, sizeof(err));

    ok(ix != NULL && hs__crl_count(ix) == 0, "an empty CRL builds with count 0");
    if (ix != NULL) {
        ok(!revoked(ix, (const unsigned char *)"\x01", 1) && !revoked(ix, NULL, 0),
           "nothing is revoked by an empty CRL");
        ok(hs__crl_next_update(ix) == -1, "no nextUpdate is reported as -1");
    }
    hs__crl_index_free(ix);
    hs__crl_index_free(NULL);
    OPENSSL_free(der);
}

/* ------------------------------------------------------------------------------------------ */
/* Freshness                                                                                  */
/* ------------------------------------------------------------------------------------------ */

static void test_fresh(void)
{
    /* 2060-01-01T00:00:00Z is past 2049, so OpenSSL writes GeneralizedTime instead of UTCTime. */
    const int64_t t2060 = 2840140800;
    unsigned char *der;
    size_t len = make_crl("Fresh CA", NULL, 0, 1700000000, 1700086400, &der);
    hs_crl_index_t *ix = index_of(der, len, NULL, 0);

    ok(ix != NULL, "a CRL with thisUpdate and nextUpdate builds");
    ok(!hs__crl_is_fresh(ix, 1699999999), "one second before thisUpdate is not fresh");
    ok(hs__crl_is_fresh(ix, 1700000000), "thisUpdate itself is fresh");
    ok(hs__crl_is_fresh(ix, 1700086400), "nextUpdate itself is fresh");
    ok(!hs__crl_is_fresh(ix, 1700086401), "one second after nextUpdate is stale");
    hs__crl_index_free(ix);
    OPENSSL_free(der);

    len = make_crl("Fresh CA", NULL, 0, 1700000000, -1, &der);
    ix = index_of(der, len, NULL, 0);
    ok(ix != NULL && hs__crl_is_fresh(ix, INT64_MAX / 2), "without nextUpdate, fresh for ever");
    ok(!hs__crl_is_fresh(ix, 0), "but not before thisUpdate");
    hs__crl_index_free(ix);
    OPENSSL_free(der);

    len = make_crl("Fresh CA", NULL, 0, 1700000000, t2060, &der);
    ix = index_of(der, len, NULL, 0);
    ok(ix != NULL && hs__crl_next_update(ix) == t2060 && hs__crl_is_fresh(ix, t2060) &&
           !hs__crl_is_fresh(ix, t2060 + 1),
       "a GeneralizedTime nextUpdate (2060) converts exactly");
    hs__crl_index_free(ix);
    OPENSSL_free(der);
    ok(!hs__crl_is_fresh(NULL, 0), "no index is never fresh");
}

/* ------------------------------------------------------------------------------------------ */
/* Refusals                                                                                   */
/* ------------------------------------------------------------------------------------------ */

static void refused(const unsigned char *der, size_t len, const char *what)
{
    char err[256] = "untouched";
    hs_crl_index_t *ix = index_of(der, len, err, sizeof(err));

    ok(ix == NULL && err[0] != '\0' && strcmp(err, "untouched") != 0, "%s is refused: %s", what,
       err);
    ok(ERR_peek_error() == 0, "and the OpenSSL error queue is left empty");
    hs__crl_index_free(ix);
}

static void test_malformed(void)
{
    const struct serial one[] = {S(0x01)};
    unsigned char long21[21];
    const struct serial too_long[] = {{long21, 21, 0}};
    unsigned char *der, *longer;
    size_t len = make_crl("Bad CA", one, 1, 1000, 2000, &der);
    char tiny[8];

    refused((const unsigned char *)"garbage!", 8, "garbage");
    refused(der, len - 1, "a truncated CRL");
    refused(der, 0, "zero bytes");
    longer = malloc(len + 1);
    memcpy(longer, der, len);
    longer[len] = 0;
    refused(longer, len + 1, "a CRL with a trailing byte");
    free(longer);
    ok(hs__crl_index_new(NULL, 10, NULL, 0) == NULL, "NULL DER is refused without an err buffer");
    ok(hs__crl_index_new((const unsigned char *)"x", 1, tiny, sizeof(tiny)) == NULL &&
           strlen(tiny) == sizeof(tiny) - 1,
       "a short err buffer is truncated and terminated");
    OPENSSL_free(der);

    memset(long21, 0x42, sizeof(long21));
    len = make_crl("Bad CA", too_long, 1, 1000, 2000, &der);
    refused(der, len, "a CRL listing a 21-octet serial");
    OPENSSL_free(der);
}

/* ------------------------------------------------------------------------------------------ */
/* Certificates                                                                               */
/* ------------------------------------------------------------------------------------------ */

static void test_check_cert(void)
{
    const struct serial listed[] = {S(0x10, 0x00), NEG(0x05)};
    unsigned char *der;
    size_t len = make_crl("Cert CA", listed, 2, 1000, 2000, &der);
    hs_crl_index_t *ix = index_of(der, len, NULL, 0);
    X509 *revoked_cert = make_cert("Cert CA", S(0x10, 0x00));
    X509 *good = make_cert("Cert CA", S(0x10, 0x01));
    X509 *neg = make_cert("Cert CA", NEG(0x05));
    X509 *other = make_cert("Other CA", S(0x10, 0x00));
    X509 *folded = make_cert("cert   ca", S(0x10, 0x00));

    ok(ix != NULL, "the CRL builds");
    ok(hs__crl_check_cert(ix, revoked_cert) == HS_CRL_REVOKED, "a listed certificate is revoked");
    ok(hs__crl_check_cert(ix, good) == HS_CRL_GOOD, "its neighbour is good");
    ok(hs__crl_check_cert(ix, neg) == HS_CRL_REVOKED, "a listed negative serial is revoked");
    ok(hs__crl_check_cert(ix, other) == HS_CRL_OTHER_ISSUER, "another issuer is not answered");
    ok(hs__crl_check_cert(ix, folded) == HS_CRL_REVOKED,
       "issuer names match by canonical form (case and spaces folded)");
    X509_free(revoked_cert);
    X509_free(good);
    X509_free(neg);
    X509_free(other);
    X509_free(folded);
    hs__crl_index_free(ix);
    OPENSSL_free(der);
}

/* ------------------------------------------------------------------------------------------ */
/* 100,000 entries                                                                            */
/* ------------------------------------------------------------------------------------------ */

static void be64(unsigned char *out, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (unsigned char)v;
        v >>= 8;
    }
}

static double seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_large(void)
{
    enum { N = 100000 };
    unsigned char(*bytes)[8] = malloc(sizeof(*bytes) * N);
    struct serial *serials = malloc(sizeof(*serials) * N);
    unsigned char *der, probe[8];
    size_t len, misses = 0, hits = 0;
    hs_crl_index_t *ix;
    double t0;

    /* Odd serials spread over 64 bits, in a scrambled order: even ones are all absent. */
    for (uint64_t i = 0; i < N; i++) {
        be64(bytes[i], ((i * 0x9e3779b97f4a7c15ull) | 1u));
        serials[i] = (struct serial){bytes[i], 8, 0};
    }
    len = make_crl("Big CA", serials, N, 1000, 2000, &der);
    t0 = seconds();
    ix = index_of(der, len, NULL, 0);
    printf("# built a %d-entry index from %zu bytes of DER in %.1f ms (ASan build)\n", N, len,
           (seconds() - t0) * 1e3);
    ok(ix != NULL && hs__crl_count(ix) == N, "a 100,000-entry CRL builds");
    for (size_t i = 0; ix != NULL && i < N; i++) {
        hits += (size_t)hs__crl_is_revoked(ix, bytes[i], 8);
        memcpy(probe, bytes[i], 8);
        probe[7] ^= 1; /* the even neighbour */
        misses += (size_t)!hs__crl_is_revoked(ix, probe, 8);
    }
    ok(hits == N, "every listed serial is found (%zu)", hits);
    ok(misses == N, "every even neighbour is absent (%zu)", misses);
    hs__crl_index_free(ix);
    OPENSSL_free(der);
    free(serials);
    free(bytes);
}

int main(void)
{
    ca_key = EVP_EC_gen("P-256");
    if (ca_key == NULL)
        die("EVP_EC_gen");
    test_keys();
    test_lookup();
    test_empty();
    test_fresh();
    test_malformed();
    test_check_cert();
    test_large();
    EVP_PKEY_free(ca_key);
    printf("1..%d\n", tally.run);
    if (tally.failed > 0)
        printf("# %d of %d tests failed\n", tally.failed, tally.run);
    return tally.failed > 0 ? 1 : 0;
}
