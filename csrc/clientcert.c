/*
 * Client certificates (reference sections 4.3-4.7).
 *
 * Theory of operation
 * -------------------
 * A binding's policy (trust list, CRL indexes, revocation options) is built once, on the caller's
 * thread, when the binding is set, and hangs on its SSL_CTX as ex_data: immutable from then on,
 * freed with the context, so a handshake reads it with no lock while a newer binding is built
 * beside it.
 *
 * OpenSSL verifies the chain; our callback never fails the handshake. It records the first
 * failure on the connection (HTTP.sys's CertFlags) and checks revocation itself: for each
 * certificate below the top of the chain it finds the CRL of its issuer by name and looks the
 * serial up in that CRL's sorted index (crl.c), O(log n) and allocation-free, instead of
 * OpenSSL's X509_V_FLAG_CRL_CHECK, which searches the store's CRLs on every handshake. The URL
 * prefix's sslFlags then turn the recorded status into 403.x (conn.c).
 *
 * A resumed session runs no verification: its stored certificate is re-checked when the
 * handshake finishes (dates, and the CRLs loaded now), so a revocation reaches clients that hold
 * a session too.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "clientcert.h"
#include "conn.h"
#include "crl.h"
#include "crlfetch.h"
#include "loop.h"
#include "server.h"

typedef struct hs_cc_policy {
    int flags;
    uint32_t freshness_s;
    uint32_t retrieval_ms;
    size_t n_crls;
    hs_crl_index_t **crls; /* one per issuer, the newest given */
    STACK_OF(X509) *cas;   /* the trust list: issuers of fetched CRLs when no chain is at hand */
} hs_cc_policy_t;

static int policy_index = -1;
static pthread_once_t policy_once = PTHREAD_ONCE_INIT;

static void policy_free(hs_cc_policy_t *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n_crls; i++)
        hs__crl_index_free(p->crls[i]);
    free(p->crls);
    sk_X509_pop_free(p->cas, X509_free);
    free(p);
}

static void policy_free_cb(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                           void *argp)
{
    HS_UNUSED(parent);
    HS_UNUSED(ad);
    HS_UNUSED(idx);
    HS_UNUSED(argl);
    HS_UNUSED(argp);
    policy_free(ptr);
}

static void make_policy_index(void)
{
    policy_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, policy_free_cb);
}

static const hs_cc_policy_t *policy_of(SSL *ssl)
{
    return policy_index < 0 ? NULL : SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), policy_index);
}

/* ---- what a failure means ---------------------------------------------------------------- */

static int classify(long e)
{
    switch (e) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
    case X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD:
    case X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD:
        return HS_CERT_EXPIRED;
    case X509_V_ERR_CERT_REVOKED:
        return HS_CERT_REVOKED;
    case X509_V_ERR_UNABLE_TO_GET_CRL:
    case X509_V_ERR_CRL_HAS_EXPIRED:
    case X509_V_ERR_CRL_NOT_YET_VALID:
        return HS_CERT_REVOCATION_UNKNOWN;
    case X509_V_ERR_INVALID_PURPOSE:
        return HS_CERT_WRONG_USAGE;
    default:
        return HS_CERT_UNTRUSTED;
    }
}

/* The Windows status HTTP.sys would put in CertFlags for a failure (httpsys.client_cert_error). */
static unsigned long cert_flags(int status, long e)
{
    switch (status) {
    case HS_CERT_EXPIRED:
        return 0x800B0101ul; /* CERT_E_EXPIRED */
    case HS_CERT_REVOKED:
        return 0x800B010Cul; /* CERT_E_REVOKED */
    case HS_CERT_REVOCATION_UNKNOWN:
        return 0x80092013ul; /* CRYPT_E_REVOCATION_OFFLINE */
    case HS_CERT_WRONG_USAGE:
        return 0x800B0110ul; /* CERT_E_WRONG_USAGE */
    case HS_CERT_UNTRUSTED:
        if (e == X509_V_ERR_CERT_SIGNATURE_FAILURE)
            return 0x80096004ul; /* TRUST_E_CERT_SIGNATURE */
        if (e == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
            e == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT || e == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
            e == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT || e == X509_V_ERR_CERT_UNTRUSTED)
            return 0x800B0109ul; /* CERT_E_UNTRUSTEDROOT */
        return 0x800B010Aul;     /* CERT_E_CHAINING */
    default:
        return 0;
    }
}

/* Keeps the first failure: it is the one the client can do something about. */
static void record(hs_conn_t *c, int status, long code)
{
    if (c->cert_status > HS_CERT_OK)
        return;
    c->cert_status = (uint8_t)status;
    c->cert_code = code;
    free(c->cert_env); /* built before the verdict changed */
    c->cert_env = NULL;
}

static X509 *issuer_of(STACK_OF(X509) *cas, const X509_NAME *name)
{
    for (int i = 0; i < sk_X509_num(cas); i++)
        if (X509_NAME_cmp(X509_get_subject_name(sk_X509_value(cas, i)), name) == 0)
            return sk_X509_value(cas, i);
    return NULL;
}

/* ---- revocation -------------------------------------------------------------------------- */

static const hs_crl_index_t *crl_for(const hs_cc_policy_t *p, const X509_NAME *issuer)
{
    for (size_t i = 0; i < p->n_crls; i++)
        if (X509_NAME_cmp(hs__crl_issuer(p->crls[i]), issuer) == 0)
            return p->crls[i];
    return NULL;
}

/* A fetch of the certificate's CRL is on its way (internal to this file and conn.c's wait). */
#define CERT_PENDING 100

/* Whether a CRL given with the binding answers for now: within its nextUpdate and, with
 * revocationfreshnesstime, young enough. */
static int answers(const hs_cc_policy_t *p, const hs_crl_index_t *ix, int64_t now)
{
    return ix != NULL && hs__crl_is_fresh(ix, now) &&
           (p->freshness_s == 0 || now - hs__crl_this_update(ix) <= (int64_t)p->freshness_s);
}

/* HS_CERT_OK, HS_CERT_REVOKED, HS_CERT_REVOCATION_UNKNOWN or CERT_PENDING for one certificate
 * (issuer: the next one up the verified chain, NULL when not at hand).
 * 1. The binding's CRL for the issuer, when it answers for now.
 * 2. Otherwise the CRL fetched from the certificate's http distribution point (fetched now if
 *    need be, never with verifyrevocationwithcachedclientcertonly).
 * 3. Otherwise the binding's CRL while its nextUpdate has not passed, even if older than
 *    revocationfreshnesstime; none, or an expired one, means unknown for a certificate that names
 *    a distribution point (reference 4.6: 403.13, fail closed). A certificate without one and
 *    without a CRL of its issuer is good: nothing says a CRL exists. */
static int revocation(hs_conn_t *c, const hs_cc_policy_t *p, X509 *cert, X509 *issuer, long *code)
{
    int64_t now = (int64_t)time(NULL);
    const hs_crl_index_t *ix = crl_for(p, X509_get_issuer_name(cert));
    char url[1024];
    int has_cdp = X509_get_ext_by_NID(cert, NID_crl_distribution_points, -1) >= 0;
    if (!answers(p, ix, now) && has_cdp && !(p->flags & HS_BINDING_REVOCATION_CACHED_ONLY) &&
        hs__crl_http_url(cert, url, sizeof(url))) {
        if (issuer == NULL)
            issuer = issuer_of(p->cas, X509_get_issuer_name(cert));
        switch (hs__crlcache_check(&c->loop->server->crl_cache, url, cert, issuer, p->retrieval_ms,
                                   p->freshness_s, now, c->loop->now_ms)) {
        case HS_FETCH_GOOD:
            return HS_CERT_OK;
        case HS_FETCH_REVOKED:
            *code = X509_V_ERR_CERT_REVOKED;
            return HS_CERT_REVOKED;
        case HS_FETCH_PENDING:
            return CERT_PENDING;
        default:
            break; /* failed: what the binding has, if anything */
        }
    }
    if (ix == NULL) {
        if (!has_cdp)
            return HS_CERT_OK;
        *code = X509_V_ERR_UNABLE_TO_GET_CRL;
        return HS_CERT_REVOCATION_UNKNOWN;
    }
    if (!hs__crl_is_fresh(ix, now)) {
        *code = X509_V_ERR_CRL_HAS_EXPIRED;
        return HS_CERT_REVOCATION_UNKNOWN;
    }
    if (hs__crl_check_cert(ix, cert) == HS_CRL_REVOKED) {
        *code = X509_V_ERR_CERT_REVOKED;
        return HS_CERT_REVOKED;
    }
    return HS_CERT_OK;
}

/* Checks one certificate and records the outcome. After the wait for a fetch ran out
 * (c->crl_gave_up), a fetch still pending counts as unknown. */
static void check_revocation(hs_conn_t *c, const hs_cc_policy_t *p, X509 *cert, X509 *issuer)
{
    long code = 0;
    int st = revocation(c, p, cert, issuer, &code);
    if (st == CERT_PENDING && c->crl_gave_up) {
        st = HS_CERT_REVOCATION_UNKNOWN;
        code = X509_V_ERR_UNABLE_TO_GET_CRL;
    }
    if (st == CERT_PENDING)
        c->crl_pending = 1;
    else if (st != HS_CERT_OK)
        record(c, st, code);
}

/* ---- verification ------------------------------------------------------------------------ */

/* Called by OpenSSL for every certificate of the chain (ok = 0 once per error found). Always
 * returns 1: the handshake goes on and the URL policy decides. The context's error is set to
 * the first failure recorded, so a session keeps that as its verify result. */
static int on_verify(int ok, X509_STORE_CTX *xs)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    hs_conn_t *c = ssl ? SSL_get_app_data(ssl) : NULL;
    const hs_cc_policy_t *p = ssl ? policy_of(ssl) : NULL;
    if (c == NULL || p == NULL)
        return ok;
    if (!ok) {
        long e = X509_STORE_CTX_get_error(xs);
        if (!(e == X509_V_ERR_INVALID_PURPOSE && (p->flags & HS_BINDING_NO_USAGE_CHECK)))
            record(c, classify(e), e);
    } else if (!(p->flags & HS_BINDING_NO_REVOCATION_CHECK)) {
        STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(xs);
        int depth = X509_STORE_CTX_get_error_depth(xs);
        /* The top of the chain is the trust anchor: nothing above it issues a CRL for it. */
        if (chain != NULL && depth + 1 < sk_X509_num(chain))
            check_revocation(c, p, sk_X509_value(chain, depth), sk_X509_value(chain, depth + 1));
    }
    X509_STORE_CTX_set_error(xs, c->cert_status > HS_CERT_OK ? (int)c->cert_code : X509_V_OK);
    return 1;
}

static int expired(X509 *x)
{
    return X509_cmp_current_time(X509_get0_notAfter(x)) < 0 ||
           X509_cmp_current_time(X509_get0_notBefore(x)) > 0;
}

void hs__clientcert_handshake_done(hs_conn_t *c)
{
    if (SSL_get_verify_mode(c->ssl) & SSL_VERIFY_PEER)
        c->cert_asked = 1;
    X509 *peer = SSL_get0_peer_certificate(c->ssl);
    if (peer == NULL) {
        c->cert_status = HS_CERT_NONE;
        return;
    }
    if (SSL_session_reused(c->ssl)) {
        const hs_cc_policy_t *p = policy_of(c->ssl);
        long v = SSL_get_verify_result(c->ssl);
        c->cert_status = HS_CERT_NONE;
        if (v != X509_V_OK)
            record(c, classify(v), v);
        if (expired(peer))
            record(c, HS_CERT_EXPIRED, X509_V_ERR_CERT_HAS_EXPIRED);
        if (p != NULL && !(p->flags & HS_BINDING_NO_REVOCATION_CHECK))
            check_revocation(c, p, peer, NULL);
    }
    if (c->cert_status == HS_CERT_NONE)
        c->cert_status = HS_CERT_OK;
}

/* ---- CRLs being fetched ------------------------------------------------------------------- */

void hs__clientcert_recheck(hs_conn_t *c)
{
    const hs_cc_policy_t *p = policy_of(c->ssl);
    c->crl_pending = 0;
    if (p == NULL)
        return;
    STACK_OF(X509) *chain = SSL_get0_verified_chain(c->ssl);
    X509 *peer = SSL_get0_peer_certificate(c->ssl);
    int n = chain != NULL ? sk_X509_num(chain) : 0;
    if (n >= 2) {
        for (int i = 0; i + 1 < n; i++)
            check_revocation(c, p, sk_X509_value(chain, i), sk_X509_value(chain, i + 1));
    } else if (peer != NULL) {
        check_revocation(c, p, peer, NULL); /* a resumed session: the leaf is all we have */
    }
}

uint64_t hs__clientcert_fetch_wait_ms(hs_conn_t *c)
{
    const hs_cc_policy_t *p = policy_of(c->ssl);
    uint32_t t = p != NULL && p->retrieval_ms ? p->retrieval_ms : HS_FETCH_DEFAULT_TIMEOUT_MS;
    return (uint64_t)t + 1000; /* the fetcher's own timeout ends first */
}

/* ---- certificates asked for after the handshake ------------------------------------------ */

/* Watches for the client's Finished, which ends its answer to our request (TLS 1.3: Certificate,
 * [CertificateVerify,] Finished; TLS 1.2: the whole renegotiation handshake). */
static void on_message(int write_p, int version, int content_type, const void *buf, size_t len,
                       SSL *ssl, void *arg)
{
    HS_UNUSED(version);
    HS_UNUSED(arg);
    if (write_p || content_type != SSL3_RT_HANDSHAKE || len == 0 ||
        ((const unsigned char *)buf)[0] != SSL3_MT_FINISHED)
        return;
    hs_conn_t *c = SSL_get_app_data(ssl);
    if (c != NULL && c->cert_waiting)
        c->cert_done = 1;
}

int hs__clientcert_request(hs_conn_t *c)
{
    SSL *ssl = c->ssl;
    int tls13 = SSL_version(ssl) == TLS1_3_VERSION;
    SSL_set_verify(ssl, SSL_VERIFY_PEER | (tls13 ? SSL_VERIFY_POST_HANDSHAKE : 0), on_verify);
    if (tls13) {
        /* Fails when the client did not offer post_handshake_auth. */
        if (SSL_verify_client_post_handshake(ssl) != 1)
            goto cannot;
    } else {
        /* A renegotiation the client could resume would bring no certificate. */
        SSL_set_options(ssl, SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION);
        if (!SSL_get_secure_renegotiation_support(ssl) || SSL_renegotiate(ssl) != 1)
            goto cannot;
    }
    SSL_set_msg_callback(ssl, on_message);
    c->cert_waiting = 1;
    c->cert_done = 0;
    c->cert_status = HS_CERT_NONE;
    int rc = SSL_do_handshake(ssl); /* writes the CertificateRequest / HelloRequest */
    if (rc <= 0) {
        int e = SSL_get_error(ssl, rc);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            c->cert_waiting = 0;
            SSL_set_msg_callback(ssl, NULL);
            goto cannot;
        }
    }
    ERR_clear_error();
    return HS_OK;
cannot:
    ERR_clear_error();
    return HS_ERROR;
}

/* ---- the binding's policy ---------------------------------------------------------------- */

/* Loads the trust list into the context's store and sends its subjects as acceptable CA names
 * (reference 4.5). The certificates stay in *cas for the CRL signature checks. */
static int load_trust(SSL_CTX *ctx, const hs_sslcert_options_t *o, STACK_OF(X509) *cas, char *err,
                      size_t errlen)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
    BIO *in = BIO_new_mem_buf(o->trusted_ca_pem, (int)o->trusted_ca_len);
    X509 *x;
    if (names == NULL || in == NULL)
        goto nomem;
    while ((x = PEM_read_bio_X509(in, NULL, NULL, NULL)) != NULL) {
        X509_NAME *n = X509_NAME_dup(X509_get_subject_name(x));
        if (sk_X509_push(cas, x) <= 0) {
            X509_free(x);
            X509_NAME_free(n);
            goto nomem;
        }
        if (X509_STORE_add_cert(store, x) != 1 || n == NULL || sk_X509_NAME_push(names, n) <= 0) {
            X509_NAME_free(n);
            goto nomem;
        }
    }
    ERR_clear_error(); /* the loop ends on "no start line" */
    BIO_free(in);
    if (sk_X509_num(cas) == 0) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        snprintf(err, errlen, "trusted_ca_pem: no PEM certificate found");
        return -1;
    }
    SSL_CTX_set_client_CA_list(ctx, names); /* takes ownership */
    return 0;
nomem:
    BIO_free(in);
    sk_X509_NAME_pop_free(names, X509_NAME_free);
    ERR_clear_error();
    snprintf(err, errlen, "trusted_ca_pem: cannot load (out of memory?)");
    return -1;
}

/* Checks one CRL's signature against its issuer in the trust list: an index is only trusted
 * once the CRL it came from is. */
static int check_crl(X509_CRL *crl, size_t nth, STACK_OF(X509) *cas, char *err, size_t errlen)
{
    X509 *issuer = issuer_of(cas, X509_CRL_get_issuer(crl));
    if (issuer != NULL && X509_CRL_verify(crl, X509_get0_pubkey(issuer)) == 1)
        return 0;
    char name[256];
    X509_NAME_oneline(X509_CRL_get_issuer(crl), name, sizeof(name));
    snprintf(err, errlen,
             issuer == NULL ? "crls: CRL %zu: its issuer %s is not in trusted_ca_pem"
                            : "crls: CRL %zu: the signature does not verify with %s's key",
             nth, name);
    ERR_clear_error();
    return -1;
}

/* Adds an index, keeping only the newest CRL of each issuer. */
static int add_index(hs_cc_policy_t *p, hs_crl_index_t *ix)
{
    for (size_t i = 0; i < p->n_crls; i++) {
        if (X509_NAME_cmp(hs__crl_issuer(p->crls[i]), hs__crl_issuer(ix)) != 0)
            continue;
        if (hs__crl_this_update(ix) > hs__crl_this_update(p->crls[i])) {
            hs__crl_index_free(p->crls[i]);
            p->crls[i] = ix;
        } else {
            hs__crl_index_free(ix);
        }
        return 0;
    }
    hs_crl_index_t **grown = realloc(p->crls, (p->n_crls + 1) * sizeof(*grown));
    if (grown == NULL) {
        hs__crl_index_free(ix);
        return -1;
    }
    p->crls = grown;
    p->crls[p->n_crls++] = ix;
    return 0;
}

static int load_crls(hs_cc_policy_t *p, const hs_sslcert_options_t *o, STACK_OF(X509) *cas,
                     char *err, size_t errlen)
{
    const unsigned char *q = o->crls_der, *end = o->crls_der + o->crls_len;
    for (size_t nth = 1; q < end; nth++) {
        /* Each DER CRL is one SEQUENCE; d2i tells where it ends. */
        const unsigned char *start = q;
        X509_CRL *crl = d2i_X509_CRL(NULL, &q, (long)(end - q));
        if (crl == NULL) {
            ERR_clear_error();
            snprintf(err, errlen, "crls: CRL %zu is not a DER or PEM CRL", nth);
            return -1;
        }
        int bad = check_crl(crl, nth, cas, err, errlen);
        X509_CRL_free(crl);
        if (bad)
            return -1;
        size_t len = (size_t)(q - start);
        char why[200];
        hs_crl_index_t *ix = hs__crl_index_new(start, len, why, sizeof(why));
        if (ix == NULL) {
            snprintf(err, errlen, "crls: CRL %zu: %s", nth, why);
            return -1;
        }
        if (add_index(p, ix) != 0) {
            snprintf(err, errlen, "crls: out of memory");
            return -1;
        }
    }
    return 0;
}

int hs__clientcert_configure(SSL_CTX *ctx, const hs_sslcert_options_t *o, char *err,
                             size_t errlen)
{
    pthread_once(&policy_once, make_policy_index);
    if (policy_index < 0) {
        snprintf(err, errlen, "cannot allocate the client certificate policy index");
        return -1;
    }
    if (o->crls_len > 0 && o->trusted_ca_len == 0) {
        snprintf(err, errlen, "crls: CRLs need trusted_ca_pem (their issuers' certificates)");
        return -1;
    }
    hs_cc_policy_t *p = calloc(1, sizeof(*p));
    STACK_OF(X509) *cas = sk_X509_new_null();
    if (p == NULL || cas == NULL) {
        free(p);
        sk_X509_free(cas);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    p->flags = o->flags;
    p->freshness_s = o->revocation_freshness_s;
    p->retrieval_ms = o->url_retrieval_timeout_ms;
    int rc = 0;
    if (o->trusted_ca_len > 0)
        rc = load_trust(ctx, o, cas, err, errlen);
    if (rc == 0 && o->crls_len > 0)
        rc = load_crls(p, o, cas, err, errlen);
    p->cas = cas;
    if (rc != 0 || SSL_CTX_set_ex_data(ctx, policy_index, p) != 1) {
        policy_free(p);
        ERR_clear_error();
        return -1;
    }
    if (o->flags & HS_BINDING_NEGOTIATE_CLIENT_CERT)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE, on_verify);
    return 0;
}

/* ---- to the application ------------------------------------------------------------------ */

typedef struct envbuf {
    char *p;
    size_t len, cap;
    int failed;
} envbuf_t;

static void env_put(envbuf_t *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->p[b->len + n] = '\0';
    b->len += n + 1;
}

static void env_str(envbuf_t *b, const char *key, const char *value)
{
    env_put(b, key, strlen(key));
    env_put(b, value, strlen(value));
}

/* Writes what a BIO printer produced as the value of key. */
static void env_bio(envbuf_t *b, const char *key, BIO *m)
{
    char *data;
    long n = BIO_get_mem_data(m, &data);
    env_put(b, key, strlen(key));
    env_put(b, data, n > 0 ? (size_t)n : 0);
    BIO_reset(m);
}

static void env_cert(envbuf_t *b, X509 *x)
{
    BIO *m = BIO_new(BIO_s_mem());
    if (m == NULL) {
        b->failed = 1;
        return;
    }
    PEM_write_bio_X509(m, x);
    env_bio(b, "SSL_CLIENT_CERT", m);
    X509_NAME_print_ex(m, X509_get_subject_name(x), 0, XN_FLAG_RFC2253);
    env_bio(b, "SSL_CLIENT_S_DN", m);
    X509_NAME_print_ex(m, X509_get_issuer_name(x), 0, XN_FLAG_RFC2253);
    env_bio(b, "SSL_CLIENT_I_DN", m);
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    env_str(b, "SSL_CLIENT_M_SERIAL", hex ? hex : "");
    OPENSSL_free(hex);
    BN_free(bn);
    ASN1_TIME_print(m, X509_get0_notBefore(x)); /* mod_ssl's format: "Nov 25 15:00:00 2026 GMT" */
    env_bio(b, "SSL_CLIENT_V_START", m);
    ASN1_TIME_print(m, X509_get0_notAfter(x));
    env_bio(b, "SSL_CLIENT_V_END", m);
    BIO_free(m);
    ERR_clear_error();
}

/* mod_ssl's SSL_CLIENT_CERT_CHAIN_n: the certificates the client sent after its own, in the
 * order sent (n from 0); the ASGI TLS extension's client_cert_chain is built from them. */
static void env_chain(envbuf_t *b, SSL *ssl, X509 *leaf)
{
    STACK_OF(X509) *sent = SSL_get_peer_cert_chain(ssl); /* server side: without the leaf */
    BIO *m = BIO_new(BIO_s_mem());
    if (m == NULL) {
        b->failed = 1;
        return;
    }
    int n = 0;
    for (int i = 0; sent != NULL && i < sk_X509_num(sent) && i < 10; i++) {
        X509 *x = sk_X509_value(sent, i);
        if (X509_cmp(x, leaf) == 0) /* some builds list the leaf too */
            continue;
        char key[32];
        snprintf(key, sizeof(key), "SSL_CLIENT_CERT_CHAIN_%d", n++);
        PEM_write_bio_X509(m, x);
        env_bio(b, key, m);
    }
    BIO_free(m);
    ERR_clear_error();
}

static const char env_none[] = "SSL_CLIENT_VERIFY\0NONE\0httpsys.client_cert_error\0" "0";

const char *hs__clientcert_environ(hs_conn_t *c, size_t *len)
{
    X509 *peer = c->ssl ? SSL_get0_peer_certificate(c->ssl) : NULL;
    if (peer == NULL) {
        *len = sizeof(env_none);
        return env_none;
    }
    if (c->cert_env != NULL) {
        *len = c->cert_env_len;
        return c->cert_env;
    }
    envbuf_t b = {0};
    char verify[300], flags[16];
    if (c->cert_status > HS_CERT_OK)
        snprintf(verify, sizeof(verify), "FAILED:%s", X509_verify_cert_error_string(c->cert_code));
    else
        snprintf(verify, sizeof(verify), "SUCCESS");
    snprintf(flags, sizeof(flags), "%lu", cert_flags(c->cert_status, c->cert_code));
    env_str(&b, "SSL_CLIENT_VERIFY", verify);
    env_str(&b, "httpsys.client_cert_error", flags);
    env_cert(&b, peer);
    env_chain(&b, c->ssl, peer);
    if (b.failed) {
        free(b.p);
        *len = sizeof(env_none);
        return env_none;
    }
    c->cert_env = b.p;
    c->cert_env_len = b.len;
    *len = b.len;
    return b.p;
}

int hs__clientcert_cipher_bits(hs_conn_t *c)
{
    return c->ssl ? SSL_get_cipher_bits(c->ssl, NULL) : 0;
}
