/*
 * A revocation index for one CRL: built once when the CRL is loaded, then read on every
 * handshake with no allocation and no lock (it is immutable after hs__crl_index_new returns, so
 * any number of threads may read it while a newer index is being built beside it).
 */
#ifndef HS_CRL_H
#define HS_CRL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

/* The longest serial magnitude we index, in octets. RFC 5280 section 4.1.2.2: "Conforming CAs
 * MUST NOT use serialNumber values longer than 20 octets." */
#define HS_CRL_SERIAL_MAX 20

typedef struct hs_crl_index hs_crl_index_t;

/* Answers of hs__crl_check_cert. */
enum hs_crl_verdict {
    HS_CRL_GOOD = 0,         /* the index covers the certificate's issuer and does not list it */
    HS_CRL_REVOKED = 1,      /* the serial is listed */
    HS_CRL_OTHER_ISSUER = 2  /* the index is for another issuer: it says nothing */
};

/*
 * Parses one DER CRL and builds its index: the issuer name, thisUpdate/nextUpdate and the sorted
 * revoked serials. One pass over the entries plus one qsort. Returns NULL with a message in err
 * (always NUL-terminated when errlen > 0) for malformed DER, trailing bytes, unreadable times or
 * a serial longer than HS_CRL_SERIAL_MAX octets. The signature is not checked here: the caller
 * verifies the CRL against its issuer's key before trusting the index.
 */
hs_crl_index_t *hs__crl_index_new(const unsigned char *der, size_t len, char *err, size_t errlen);
void hs__crl_index_free(hs_crl_index_t *ix);

/* Whether a non-negative serial, given as big-endian magnitude bytes (leading zero octets are
 * allowed and ignored), is listed. Binary search, O(log n), no allocation. Returns 1 or 0. */
int hs__crl_is_revoked(const hs_crl_index_t *ix, const unsigned char *serial_be,
                       size_t serial_len);

/* Whether now_s (seconds since the epoch, passed in: the core never reads the clock here) lies
 * in [thisUpdate, nextUpdate], both ends included. A CRL without nextUpdate is always fresh
 * from thisUpdate on. Returns 1 or 0. */
int hs__crl_is_fresh(const hs_crl_index_t *ix, int64_t now_s);

size_t hs__crl_count(const hs_crl_index_t *ix);
int64_t hs__crl_this_update(const hs_crl_index_t *ix);
/* Returns -1 if the CRL has no nextUpdate. */
int64_t hs__crl_next_update(const hs_crl_index_t *ix);
/* The issuer name, owned by the index. */
const X509_NAME *hs__crl_issuer(const hs_crl_index_t *ix);

/* Checks a client certificate: HS_CRL_OTHER_ISSUER if its issuer name is not the CRL's issuer,
 * otherwise HS_CRL_REVOKED or HS_CRL_GOOD. Freshness is the caller's separate question. */
int hs__crl_check_cert(const hs_crl_index_t *ix, X509 *cert);

#endif
