/*
 * The cache of CRLs fetched from distribution points (crlfetch.h). Entries are never removed
 * while the server runs (one per distinct URL, a handful in practice); an entry's index is
 * replaced when a newer CRL arrives and the old one is freed under the lock, which readers also
 * hold while they look a serial up (a lookup is a binary search: microseconds at most).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "crl.h"
#include "crlfetch.h"
#include "hs_internal.h"

struct hs_fetch {
    struct hs_fetch *next;
    char *url;
    X509 *issuer;            /* verifies what is fetched (NULL until one is known) */
    hs_crl_index_t *ix;      /* the newest CRL fetched, NULL before the first */
    int64_t fetched_s;       /* when ix arrived (wall clock, for revocationfreshnesstime) */
    uint64_t failed_ms;      /* when the last fetch failed (monotonic), 0 if it did not */
    uint32_t timeout_ms;     /* for the fetcher */
    unsigned queued : 1;     /* waiting for the fetcher */
    unsigned running : 1;    /* the fetcher has it */
};

void hs__crlcache_init(hs_crl_cache_t *cc)
{
    memset(cc, 0, sizeof(*cc));
    pthread_mutex_init(&cc->mu, NULL);
    pthread_cond_init(&cc->cv, NULL);
}

void hs__crlcache_destroy(hs_crl_cache_t *cc)
{
    for (hs_fetch_t *f = cc->entries, *next; f != NULL; f = next) {
        next = f->next;
        free(f->url);
        X509_free(f->issuer);
        hs__crl_index_free(f->ix);
        free(f);
    }
    cc->entries = NULL;
    pthread_mutex_destroy(&cc->mu);
    pthread_cond_destroy(&cc->cv);
}

static hs_fetch_t *find(hs_crl_cache_t *cc, const char *url)
{
    for (hs_fetch_t *f = cc->entries; f != NULL; f = f->next)
        if (strcmp(f->url, url) == 0)
            return f;
    return NULL;
}

static int usable(const hs_fetch_t *f, uint32_t freshness_s, int64_t now_s)
{
    return f->ix != NULL && hs__crl_is_fresh(f->ix, now_s) &&
           (freshness_s == 0 || now_s - f->fetched_s <= (int64_t)freshness_s);
}

/* Queues a fetch of f unless one is on its way or a recent one failed. Returns the verdict for
 * now. Called with the lock held. */
static int queue_fetch(hs_crl_cache_t *cc, hs_fetch_t *f, X509 *issuer, uint32_t timeout_ms,
                       uint64_t now_ms)
{
    if (f->queued || f->running)
        return HS_FETCH_PENDING;
    /* now_ms is the loop's clock, read at the start of its iteration: it may be a little older
     * than failed_ms, so compare without subtracting. */
    if (f->failed_ms != 0 && now_ms < f->failed_ms + HS_FETCH_RETRY_MS)
        return HS_FETCH_FAILED;
    if (f->issuer == NULL && issuer != NULL && X509_up_ref(issuer) == 1)
        f->issuer = issuer;
    f->timeout_ms = timeout_ms ? timeout_ms : HS_FETCH_DEFAULT_TIMEOUT_MS;
    f->queued = 1;
    pthread_cond_signal(&cc->cv);
    return HS_FETCH_PENDING;
}

int hs__crlcache_check(hs_crl_cache_t *cc, const char *url, X509 *cert, X509 *issuer,
                       uint32_t timeout_ms, uint32_t freshness_s, int64_t now_s,
                       uint64_t now_ms)
{
    int verdict;
    pthread_mutex_lock(&cc->mu);
    hs_fetch_t *f = find(cc, url);
    if (f == NULL) {
        f = calloc(1, sizeof(*f));
        if (f == NULL || (f->url = strdup(url)) == NULL) {
            free(f);
            pthread_mutex_unlock(&cc->mu);
            return HS_FETCH_FAILED;
        }
        f->next = cc->entries;
        cc->entries = f;
    }
    if (usable(f, freshness_s, now_s)) {
        int r = hs__crl_check_cert(f->ix, cert);
        verdict = r == HS_CRL_REVOKED ? HS_FETCH_REVOKED
                  : r == HS_CRL_GOOD  ? HS_FETCH_GOOD
                                      : HS_FETCH_FAILED; /* a CRL of another issuer says nothing */
    } else {
        verdict = queue_fetch(cc, f, issuer, timeout_ms, now_ms);
    }
    pthread_mutex_unlock(&cc->mu);
    return verdict;
}

int hs__crl_http_url(X509 *cert, char *out, size_t cap)
{
    STACK_OF(DIST_POINT) *dps = X509_get_ext_d2i(cert, NID_crl_distribution_points, NULL, NULL);
    int found = 0;
    for (int i = 0; !found && i < sk_DIST_POINT_num(dps); i++) {
        DIST_POINT_NAME *dpn = sk_DIST_POINT_value(dps, i)->distpoint;
        if (dpn == NULL || dpn->type != 0) /* 0: fullName, a list of GeneralNames */
            continue;
        for (int j = 0; !found && j < sk_GENERAL_NAME_num(dpn->name.fullname); j++) {
            GENERAL_NAME *gn = sk_GENERAL_NAME_value(dpn->name.fullname, j);
            if (gn->type != GEN_URI)
                continue;
            const unsigned char *u = ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
            int n = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
            if (n > 7 && (size_t)n < cap && strncasecmp((const char *)u, "http://", 7) == 0 &&
                memchr(u, '\0', (size_t)n) == NULL) {
                memcpy(out, u, (size_t)n);
                out[n] = '\0';
                found = 1;
            }
        }
    }
    sk_DIST_POINT_pop_free(dps, DIST_POINT_free);
    ERR_clear_error();
    return found;
}

/* ---- the fetcher's side (httpsys.h) ------------------------------------------------------ */

int hs__crlcache_next(hs_crl_cache_t *cc, int wait_ms, char *url, size_t cap, uint32_t *timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&cc->mu);
    while (!cc->shutdown) {
        for (hs_fetch_t *f = cc->entries; f != NULL; f = f->next) {
            if (!f->queued || strlen(f->url) >= cap)
                continue;
            f->queued = 0;
            f->running = 1;
            strcpy(url, f->url);
            *timeout_ms = f->timeout_ms;
            pthread_mutex_unlock(&cc->mu);
            return 1;
        }
        if (pthread_cond_timedwait(&cc->cv, &cc->mu, &until) != 0)
            break;
    }
    pthread_mutex_unlock(&cc->mu);
    return 0;
}

void hs__crlcache_shutdown(hs_crl_cache_t *cc)
{
    pthread_mutex_lock(&cc->mu);
    cc->shutdown = 1;
    pthread_cond_broadcast(&cc->cv);
    pthread_mutex_unlock(&cc->mu);
}

int hs__crlcache_done(hs_crl_cache_t *cc, const char *url, const unsigned char *der, size_t len,
                      int64_t now_s, uint64_t now_ms, char *err, size_t errlen)
{
    hs_crl_index_t *ix = NULL;
    int ok = 0;
    pthread_mutex_lock(&cc->mu);
    hs_fetch_t *f = find(cc, url);
    if (f == NULL) {
        snprintf(err, errlen, "url: %s was not asked for", url);
        pthread_mutex_unlock(&cc->mu);
        return -1;
    }
    f->running = 0;
    if (der != NULL) {
        /* The signature first: an index is only built from a CRL its issuer signed. */
        const unsigned char *q = der;
        X509_CRL *crl = d2i_X509_CRL(NULL, &q, (long)len);
        if (crl == NULL || q != der + len)
            snprintf(err, errlen, "crl: what %s returned is not one DER CRL", url);
        else if (f->issuer == NULL || X509_NAME_cmp(X509_CRL_get_issuer(crl),
                                                    X509_get_subject_name(f->issuer)) != 0)
            snprintf(err, errlen, "crl: the CRL from %s is not from the certificate's issuer", url);
        else if (X509_CRL_verify(crl, X509_get0_pubkey(f->issuer)) != 1)
            snprintf(err, errlen, "crl: the signature of the CRL from %s does not verify", url);
        else
            ix = hs__crl_index_new(der, len, err, errlen);
        X509_CRL_free(crl);
        ERR_clear_error();
    }
    if (ix != NULL) {
        hs__crl_index_free(f->ix);
        f->ix = ix;
        f->fetched_s = now_s;
        f->failed_ms = 0;
        ok = 1;
    } else {
        f->failed_ms = now_ms ? now_ms : 1;
    }
    pthread_mutex_unlock(&cc->mu);
    return ok ? 0 : -1;
}
