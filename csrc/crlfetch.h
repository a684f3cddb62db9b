/*
 * CRLs fetched from certificates' distribution points (reference 4.6): a per-server cache keyed
 * by URL. The I/O threads only look entries up and queue fetches; a Python thread (which may
 * block, and owns the network client) takes the URLs with hs_server_crl_next_fetch and hands the
 * answers back, never the other way round: no I/O thread ever waits for the network or calls
 * into Python. A request that needs a verdict meanwhile waits in HS_CONN_WAIT_CRL, bounded by
 * the binding's urlretrievaltimeout.
 */
#ifndef HS_CRLFETCH_H
#define HS_CRLFETCH_H

#include <pthread.h>
#include <stdint.h>

#include <openssl/x509.h>

typedef struct hs_fetch hs_fetch_t;

typedef struct hs_crl_cache {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* the fetcher waits here for work */
    hs_fetch_t *entries;
    int shutdown; /* the fetcher is stopping: hs__crlcache_next returns at once */
} hs_crl_cache_t;

/* Answers of hs__crlcache_check. */
enum hs_fetch_verdict {
    HS_FETCH_GOOD = 0,    /* a fresh fetched CRL of the certificate's issuer does not list it */
    HS_FETCH_REVOKED = 1, /* it does */
    HS_FETCH_PENDING = 2, /* a fetch is queued or running: ask again when it ends */
    HS_FETCH_FAILED = 3   /* the last fetch failed (or gave a CRL of another issuer): unknown */
};

/* How long a failed URL is not tried again, so a dead distribution point costs one timeout per
 * interval rather than one per handshake. */
#define HS_FETCH_RETRY_MS 10000u
/* urlretrievaltimeout=0: CryptoAPI's default URL retrieval timeout. */
#define HS_FETCH_DEFAULT_TIMEOUT_MS 15000u

void hs__crlcache_init(hs_crl_cache_t *cc);
void hs__crlcache_destroy(hs_crl_cache_t *cc);

/*
 * The revocation status of cert from the CRL fetched from url. issuer (may be NULL when not at
 * hand) verifies that CRL's signature when a fetch is queued now. A fetched CRL is used while its
 * nextUpdate has not passed and, with freshness_s > 0, while it is younger than freshness_s;
 * otherwise a new fetch is queued. Any thread; takes the cache lock briefly.
 */
int hs__crlcache_check(hs_crl_cache_t *cc, const char *url, X509 *cert, X509 *issuer,
                       uint32_t timeout_ms, uint32_t freshness_s, int64_t now_s,
                       uint64_t now_ms);

/* Copies the first http:// CRL distribution point of cert into out; returns 1, or 0 when it has
 * none (or only ldap:// and the like, which we do not fetch) or it does not fit. */
int hs__crl_http_url(X509 *cert, char *out, size_t cap);

/* The fetcher: waits up to wait_ms for a URL to fetch; returns 1 with url and its timeout, or 0. */
int hs__crlcache_next(hs_crl_cache_t *cc, int wait_ms, char *url, size_t cap, uint32_t *timeout_ms);

/* Wakes the fetcher for good (the server is closing). */
void hs__crlcache_shutdown(hs_crl_cache_t *cc);

/* The fetcher's answer for url: the DER it got, or der == NULL when the fetch failed. Checks the
 * CRL's signature against the issuer recorded with the URL. Returns 0, or -1 with err filled
 * (the entry then counts as failed). */
int hs__crlcache_done(hs_crl_cache_t *cc, const char *url, const unsigned char *der, size_t len,
                      int64_t now_s, uint64_t now_ms, char *err, size_t errlen);

#endif
