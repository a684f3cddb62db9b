/*
 * The revocation index of one CRL (issue 4, "CRLs"): the core checks revocation in C on every
 * handshake, so the CRL is parsed once, when it is loaded, into something a handshake can search
 * in O(log n) without allocating, locking or touching OpenSSL's CRL structures.
 *
 * Choices:
 *   - Serials are fixed-size keys of 1 + HS_CRL_SERIAL_MAX octets. Octet 0 holds the length of
 *     the magnitude once leading zero octets are stripped (0..20), with 0x80 set for a negative
 *     serial; the magnitude follows, left-aligned, and the rest is zero. Every integer therefore
 *     has exactly one key, whatever padding the DER or the caller used (a DER INTEGER carries a
 *     0x00 sign octet when the top bit is set; cryptography and OpenSSL hand out magnitudes
 *     without it). memcmp orders keys first by sign and length, then by value, which for
 *     non-negative serials is the numeric order; any total order would do for the search.
 *   - RFC 5280 forbids serials longer than 20 octets. A CRL that lists one is refused rather
 *     than loaded without it: dropping an entry would let that certificate through, while
 *     refusing leaves revocation unknown, which the caller answers with 403.13 (fail closed).
 *     A certificate with a longer serial cannot be listed by a loaded CRL, so it is not revoked
 *     by it.
 *   - The entries are copied into one array in a single pass and sorted with one qsort. The
 *     X509_CRL is freed afterwards: the index owns only the array and a copy of the issuer name.
 *   - Issuers are compared with X509_NAME_cmp, which compares OpenSSL's canonical encoding
 *     (case-folded, whitespace-collapsed strings), the same rule chain building uses.
 *   - Not handled here, by design of this unit: indirect CRLs (a certificateIssuer entry
 *     extension naming another issuer), delta CRLs and removeFromCRL, and the signature check,
 *     which needs the issuer's key and belongs to whoever loads the CRL.
 */
#include "crl.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/err.h>

#include "hs_internal.h"
#include "httpsys.h"

#define KEY_LEN (1 + HS_CRL_SERIAL_MAX)
#define KEY_NEGATIVE 0x80

typedef struct crl_key {
    unsigned char b[KEY_LEN];
} crl_key_t;

struct hs_crl_index {
    X509_NAME *issuer;
    int64_t this_update;
    int64_t next_update; /* -1: the CRL has no nextUpdate */
    size_t count;
    crl_key_t *keys; /* sorted with memcmp; NULL when count is 0 */
};

static void set_err(char *err, size_t errlen, const char *msg)
{
    unsigned long e = ERR_get_error();
    char detail[160];

    if (err == NULL || errlen == 0) {
        ERR_clear_error();
        return;
    }
    if (e != 0) {
        ERR_error_string_n(e, detail, sizeof(detail));
        snprintf(err, errlen, "%s: %s", msg, detail);
    } else {
        snprintf(err, errlen, "%s", msg);
    }
    ERR_clear_error();
}

/* Builds the key of a serial given as big-endian magnitude. Returns HS_ERROR if the magnitude,
 * once leading zeros are stripped, is longer than HS_CRL_SERIAL_MAX octets. */
static int make_key(crl_key_t *k, const unsigned char *mag, size_t len, int negative)
{
    while (len > 0 && mag[0] == 0) {
        mag++;
        len--;
    }
    if (len > HS_CRL_SERIAL_MAX)
        return HS_ERROR;
    memset(k->b, 0, sizeof(k->b));
    k->b[0] = (unsigned char)len;
    if (negative && len > 0)
        k->b[0] |= KEY_NEGATIVE;
    if (len > 0)
        memcpy(k->b + 1, mag, len);
    return HS_OK;
}

static int key_from_asn1(crl_key_t *k, const ASN1_INTEGER *serial)
{
    /* OpenSSL keeps the magnitude in data and the sign in the type. */
    const unsigned char *data = ASN1_STRING_get0_data(serial);
    int len = ASN1_STRING_length(serial);

    if (data == NULL || len < 0)
        return HS_ERROR;
    return make_key(k, data, (size_t)len, ASN1_STRING_type(serial) == V_ASN1_NEG_INTEGER);
}

static int key_cmp(const void *a, const void *b)
{
    return memcmp(a, b, KEY_LEN);
}

/* Seconds since the epoch of an ASN1_TIME (UTCTime or GeneralizedTime, always UTC in a CRL). */
static int time_to_epoch(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;

    if (ASN1_TIME_to_tm(t, &tm) != 1)
        return HS_ERROR;
    *out = (int64_t)timegm(&tm);
    return HS_OK;
}

static int read_times(hs_crl_index_t *ix, const X509_CRL *crl, char *err, size_t errlen)
{
    const ASN1_TIME *last = X509_CRL_get0_lastUpdate(crl);
    const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);

    if (last == NULL || time_to_epoch(last, &ix->this_update) != HS_OK) {
        set_err(err, errlen, "CRL thisUpdate is missing or unreadable");
        return HS_ERROR;
    }
    ix->next_update = -1;
    if (next != NULL && time_to_epoch(next, &ix->next_update) != HS_OK) {
        set_err(err, errlen, "CRL nextUpdate is unreadable");
        return HS_ERROR;
    }
    return HS_OK;
}

/* One pass over the revoked entries into the key array, then one qsort. */
static int fill_keys(hs_crl_index_t *ix, X509_CRL *crl, char *err, size_t errlen)
{
    STACK_OF(X509_REVOKED) *revoked = X509_CRL_get_REVOKED(crl);
    int n = revoked != NULL ? sk_X509_REVOKED_num(revoked) : 0;

    ix->count = 0;
    ix->keys = NULL;
    if (n <= 0)
        return HS_OK;
    ix->keys = malloc((size_t)n * sizeof(crl_key_t));
    if (ix->keys == NULL) {
        set_err(err, errlen, "out of memory for the CRL index");
        return HS_ERROR;
    }
    for (int i = 0; i < n; i++) {
        const X509_REVOKED *r = sk_X509_REVOKED_value(revoked, i);

        if (key_from_asn1(&ix->keys[i], X509_REVOKED_get0_serialNumber(r)) != HS_OK) {
            set_err(err, errlen, "CRL lists a serial number longer than 20 octets");
            return HS_ERROR;
        }
    }
    ix->count = (size_t)n;
    qsort(ix->keys, ix->count, sizeof(crl_key_t), key_cmp);
    return HS_OK;
}

static X509_CRL *parse_der(const unsigned char *der, size_t len, char *err, size_t errlen)
{
    const unsigned char *p = der;
    X509_CRL *crl;

    if (der == NULL || len == 0 || len > (size_t)LONG_MAX) {
        set_err(err, errlen, "CRL is empty or too large");
        return NULL;
    }
    crl = d2i_X509_CRL(NULL, &p, (long)len);
    if (crl == NULL) {
        set_err(err, errlen, "CRL is not valid DER");
        return NULL;
    }
    if (p != der + len) {
        X509_CRL_free(crl);
        set_err(err, errlen, "trailing bytes after the CRL");
        return NULL;
    }
    return crl;
}

hs_crl_index_t *hs__crl_index_new(const unsigned char *der, size_t len, char *err, size_t errlen)
{
    hs_crl_index_t *ix;
    X509_CRL *crl;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    ERR_clear_error();
    crl = parse_der(der, len, err, errlen);
    if (crl == NULL)
        return NULL;
    ix = calloc(1, sizeof(*ix));
    if (ix == NULL) {
        X509_CRL_free(crl);
        set_err(err, errlen, "out of memory for the CRL index");
        return NULL;
    }
    ix->issuer = X509_NAME_dup(X509_CRL_get_issuer(crl));
    if (ix->issuer == NULL) {
        set_err(err, errlen, "CRL issuer name is unreadable");
        goto fail;
    }
    if (read_times(ix, crl, err, errlen) != HS_OK || fill_keys(ix, crl, err, errlen) != HS_OK)
        goto fail;
    X509_CRL_free(crl);
    return ix;

fail:
    X509_CRL_free(crl);
    hs__crl_index_free(ix);
    return NULL;
}

void hs__crl_index_free(hs_crl_index_t *ix)
{
    if (ix == NULL)
        return;
    X509_NAME_free(ix->issuer);
    free(ix->keys);
    free(ix);
}

static int contains(const hs_crl_index_t *ix, const crl_key_t *k)
{
    size_t lo = 0, hi = ix->count;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(ix->keys[mid].b, k->b, KEY_LEN);

        if (c == 0)
            return 1;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

int hs__crl_is_revoked(const hs_crl_index_t *ix, const unsigned char *serial_be,
                       size_t serial_len)
{
    crl_key_t k;

    if (ix == NULL || (serial_be == NULL && serial_len > 0))
        return 0;
    if (make_key(&k, serial_be, serial_len, 0) != HS_OK)
        return 0; /* longer than any serial a loaded CRL can list */
    return contains(ix, &k);
}

int hs__crl_is_fresh(const hs_crl_index_t *ix, int64_t now_s)
{
    if (ix == NULL || now_s < ix->this_update)
        return 0;
    return ix->next_update < 0 || now_s <= ix->next_update;
}

size_t hs__crl_count(const hs_crl_index_t *ix)
{
    return ix != NULL ? ix->count : 0;
}

int64_t hs__crl_this_update(const hs_crl_index_t *ix)
{
    return ix->this_update;
}

int64_t hs__crl_next_update(const hs_crl_index_t *ix)
{
    return ix->next_update;
}

const X509_NAME *hs__crl_issuer(const hs_crl_index_t *ix)
{
    return ix->issuer;
}

int hs__crl_check_cert(const hs_crl_index_t *ix, X509 *cert)
{
    crl_key_t k;

    if (X509_NAME_cmp(X509_get_issuer_name(cert), ix->issuer) != 0)
        return HS_CRL_OTHER_ISSUER;
    if (key_from_asn1(&k, X509_get0_serialNumber(cert)) != HS_OK)
        return HS_CRL_GOOD; /* longer than any serial a loaded CRL can list */
    return contains(ix, &k) ? HS_CRL_REVOKED : HS_CRL_GOOD;
}

/* ------------------------------------------------------------------------------------------ */
/* Test entry points (httpsys.h)                                                              */
/* ------------------------------------------------------------------------------------------ */

int hs_test_crl_build(const unsigned char *der, size_t len, void **out, char *err, size_t errlen)
{
    *out = hs__crl_index_new(der, len, err, errlen);
    return *out != NULL ? HS_OK : HS_ERROR;
}

int hs_test_crl_lookup(void *ix, const unsigned char *serial, size_t len)
{
    return hs__crl_is_revoked(ix, serial, len);
}

size_t hs_test_crl_lookup_many(void *ix, const unsigned char *serials, size_t each_len, size_t n)
{
    size_t hits = 0;

    for (size_t i = 0; i < n; i++)
        hits += (size_t)hs__crl_is_revoked(ix, serials + i * each_len, each_len);
    return hits;
}

int hs_test_crl_fresh(void *ix, int64_t now)
{
    return hs__crl_is_fresh(ix, now);
}

size_t hs_test_crl_count(void *ix)
{
    return hs__crl_count(ix);
}

int hs_test_crl_check_cert(void *ix, const unsigned char *cert_der, size_t len)
{
    const unsigned char *p = cert_der;
    X509 *cert = len <= (size_t)LONG_MAX ? d2i_X509(NULL, &p, (long)len) : NULL;
    int rc;

    if (cert == NULL) {
        ERR_clear_error();
        return HS_ERROR;
    }
    rc = hs__crl_check_cert(ix, cert);
    X509_free(cert);
    return rc;
}

void hs_test_crl_free(void *ix)
{
    hs__crl_index_free(ix);
}
