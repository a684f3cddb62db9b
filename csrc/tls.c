/*
 * TLS: server contexts per binding, and the per-connection glue to OpenSSL.
 *
 * Theory of operation
 * -------------------
 * The loop owns the socket. It recv()s ciphertext into c->wire_in and send()s c->wire_out; OpenSSL
 * sees neither the fd nor the kernel, only a BIO of ours whose read callback takes bytes from
 * wire_in and whose write callback appends to wire_out. So a request costs one recv() and one
 * send() however many records it spans, OpenSSL never blocks, and SSL_ERROR_WANT_READ simply
 * means "wire_in is empty". WANT_* is mapped to HS_AGAIN/HS_OK here and nowhere else.
 * SSL_get_error needs an empty error queue before each call. Rather than clearing it before every
 * SSL_read/SSL_write (ERR_clear_error costs a thread-local lookup each time, about 1% of a
 * keep-alive request), every path here that can leave an error clears it on the way out, and the
 * I/O threads run no other OpenSSL code, so the queue is always empty when a call starts.
 *
 * A context is built once per binding change on the caller's thread (hs__tls_ctx_new), never per
 * connection. Client-initiated renegotiation is refused (SSL_OP_ALLOW_CLIENT_RENEGOTIATION is
 * never set).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "clientcert.h"
#include "conn.h"
#include "httpsys.h"
#include "loop.h"
#include "server.h"
#include "tls.h"

/* Mozilla's "intermediate" profile (server side, version 5.7). */
static const char tls12_ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";
static const char tls13_suites[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
/* Set explicitly: OpenSSL 3.5's default list would negotiate X25519MLKEM768 with clients that
 * offer it, at about +67 us per handshake (DESIGN.md). */
static const char groups[] = "X25519:P-256:P-384";

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static int bio_write(BIO *b, const char *data, int len)
{
    hs_conn_t *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    if (hs__buf_append(&c->wire_out, data, (size_t)len) != 0)
        return -1;
    return len;
}

static int bio_read(BIO *b, char *out, int len)
{
    hs_conn_t *c = BIO_get_data(b);
    size_t avail = hs__buf_pending(&c->wire_in);
    BIO_clear_retry_flags(b);
    if (avail == 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n = avail < (size_t)len ? avail : (size_t)len;
    memcpy(out, c->wire_in.base + c->wire_in.off, n);
    hs__buf_consume(&c->wire_in, n);
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    HS_UNUSED(b);
    HS_UNUSED(num);
    HS_UNUSED(ptr);
    /* Writes land in wire_out at once, so there is never anything to flush. */
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void make_bio_method(void)
{
    bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "httpsys conn");
    BIO_meth_set_write(bio_method, bio_write);
    BIO_meth_set_read(bio_method, bio_read);
    BIO_meth_set_ctrl(bio_method, bio_ctrl);
    BIO_meth_set_create(bio_method, bio_create);
}

/* Moves the OpenSSL error queue into err so the caller's exception says what went wrong. */
static void consume_errors(const char *what, char *err, size_t errlen)
{
    unsigned long e = ERR_get_error();
    char detail[256] = "";
    if (e != 0)
        ERR_error_string_n(e, detail, sizeof(detail));
    snprintf(err, errlen, "%s%s%s", what, detail[0] ? ": " : "", detail);
    ERR_clear_error();
}

static int load_chain(SSL_CTX *ctx, const char *pem, size_t len, char *err, size_t errlen)
{
    BIO *in = BIO_new_mem_buf(pem, (int)len);
    X509 *x = in ? PEM_read_bio_X509(in, NULL, NULL, NULL) : NULL;
    if (x == NULL || SSL_CTX_use_certificate(ctx, x) != 1) {
        X509_free(x);
        BIO_free(in);
        consume_errors("cert_chain_pem: no usable PEM certificate", err, errlen);
        return -1;
    }
    X509_free(x);
    /* The rest of the PEM is the chain, sent as given: with SSL_MODE_NO_AUTO_CHAIN OpenSSL does
     * not rebuild it on every handshake (about 80 us, DESIGN.md). */
    while ((x = PEM_read_bio_X509(in, NULL, NULL, NULL)) != NULL) {
        if (SSL_CTX_add0_chain_cert(ctx, x) != 1) {
            X509_free(x);
            BIO_free(in);
            consume_errors("cert_chain_pem: bad chain certificate", err, errlen);
            return -1;
        }
    }
    ERR_clear_error(); /* the loop ends on "no start line", which is not an error */
    BIO_free(in);
    return 0;
}

static int load_key(SSL_CTX *ctx, const char *pem, size_t len, char *err, size_t errlen)
{
    BIO *in = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *k = in ? PEM_read_bio_PrivateKey(in, NULL, NULL, NULL) : NULL;
    BIO_free(in);
    if (k == NULL || SSL_CTX_use_PrivateKey(ctx, k) != 1) {
        EVP_PKEY_free(k);
        consume_errors("key_pem: no usable PEM private key", err, errlen);
        return -1;
    }
    EVP_PKEY_free(k);
    if (SSL_CTX_check_private_key(ctx) != 1) {
        consume_errors("key_pem: the private key does not match the certificate", err, errlen);
        return -1;
    }
    return 0;
}

/* Moves a connection to the context of its hostnameport binding. SSL_set_SSL_CTX switches the
 * certificate, key, trust store and CA names but leaves what SSL_new copied from the first
 * context: the verify mode (clientcertnegotiation), options (session tickets) and ticket count,
 * so those are copied here. The protocol versions are chosen before SNI is seen and stay the
 * first context's. */
static void adopt_ctx(SSL *ssl, SSL_CTX *ctx)
{
    SSL_set_SSL_CTX(ssl, ctx); /* takes its own reference */
    SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx), SSL_CTX_get_verify_callback(ctx));
    SSL_clear_options(ssl, SSL_get_options(ssl) & ~SSL_CTX_get_options(ctx));
    SSL_set_options(ssl, SSL_CTX_get_options(ctx));
    SSL_set_num_tickets(ssl, SSL_CTX_get_num_tickets(ctx));
}

/* Picks the hostnameport binding named by SNI (netsh hostnameport=). Without a match the
 * connection keeps its ipport binding; with none either, the handshake fails with
 * unrecognized_name, as HTTP.sys refuses a connection it has no certificate for. */
static int on_servername(SSL *ssl, int *alert, void *arg)
{
    HS_UNUSED(arg);
    hs_conn_t *c = SSL_get_app_data(ssl);
    if (c != NULL && c->acme_challenge)
        return SSL_TLSEXT_ERR_OK; /* the ClientHello callback chose the challenge context */
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    SSL_CTX *ctx = NULL;
    if (c != NULL && name != NULL)
        ctx = hs__bindings_lookup_host(&c->loop->server->bindings, name, c->local_port);
    if (ctx != NULL) {
        if (ctx != SSL_get_SSL_CTX(ssl))
            adopt_ctx(ssl, ctx);
        SSL_CTX_free(ctx);
        return SSL_TLSEXT_ERR_OK;
    }
    if (c != NULL && c->sni_required) {
        *alert = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* ---- TLS-ALPN-01 (RFC 8737) ----------------------------------------------------------------
 * An ACME server validates a name by connecting with SNI = the name and ALPN offering only
 * "acme-tls/1", and expects the challenge certificate (built in Python, set with
 * hs_server_set_acme_challenge) instead of the site's. The choice is made in the ClientHello
 * callback, before SNI and ALPN are processed, from the raw extensions: so it works on a port
 * whose name has no binding yet, and a normal client (no acme-tls/1) costs one length compare. */

static const unsigned char acme_alpn[] = "\x0a" "acme-tls/1";

/* 1 if the ClientHello's ALPN list is exactly one protocol, acme-tls/1 (RFC 8737 section 3). */
static int offers_only_acme_alpn(SSL *ssl)
{
    const unsigned char *p;
    size_t len;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &p,
                                  &len) != 1)
        return 0;
    return len == 2 + 11 && p[0] == 0 && p[1] == 11 && memcmp(p + 2, acme_alpn, 11) == 0;
}

/* The host_name of the ClientHello's server_name extension into out; 0 if there is none or it
 * is malformed (then no challenge is answered, and the normal path decides). */
static int client_hello_host(SSL *ssl, char *out, size_t cap)
{
    const unsigned char *p;
    size_t len;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) != 1 || len < 5)
        return 0;
    size_t list = ((size_t)p[0] << 8) | p[1];
    size_t n = ((size_t)p[3] << 8) | p[4];
    if (list + 2 != len || p[2] != TLSEXT_NAMETYPE_host_name || n == 0 || n + 5 > len ||
        n >= cap || memchr(p + 5, 0, n) != NULL)
        return 0;
    memcpy(out, p + 5, n);
    out[n] = '\0';
    return 1;
}

static int on_client_hello(SSL *ssl, int *alert, void *arg)
{
    HS_UNUSED(alert);
    HS_UNUSED(arg);
    hs_conn_t *c = SSL_get_app_data(ssl);
    char host[256];
    if (c == NULL || !offers_only_acme_alpn(ssl) || !client_hello_host(ssl, host, sizeof(host)))
        return SSL_CLIENT_HELLO_SUCCESS;
    SSL_CTX *ctx = hs__bindings_lookup_acme(&c->loop->server->bindings, host);
    if (ctx != NULL) {
        adopt_ctx(ssl, ctx);
        SSL_CTX_free(ctx);
        c->acme_challenge = 1;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* Only challenge contexts negotiate ALPN, and only acme-tls/1: the other contexts set no ALPN
 * callback, so ordinary handshakes are exactly what they were. */
static int on_alpn_acme(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                        const unsigned char *in, unsigned int inlen, void *arg)
{
    HS_UNUSED(arg);
    hs_conn_t *c = SSL_get_app_data(ssl);
    if (c == NULL || !c->acme_challenge || inlen != 11 || memcmp(in, acme_alpn, 11) != 0)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = in + 1;
    *outlen = 10;
    return SSL_TLSEXT_ERR_OK;
}

SSL_CTX *hs__tls_challenge_ctx_new(const char *cert_pem, size_t cert_len, const char *key_pem,
                                   size_t key_len, char *err, size_t errlen)
{
    hs_sslcert_options_t o;
    memset(&o, 0, sizeof(o));
    o.flags = HS_BINDING_NO_SESSION_TICKETS; /* a validation is one connection */
    o.session_tickets = 0;
    SSL_CTX *ctx = hs__tls_ctx_new(cert_pem, cert_len, key_pem, key_len, &o, err, errlen);
    if (ctx != NULL)
        SSL_CTX_set_alpn_select_cb(ctx, on_alpn_acme, NULL);
    return ctx;
}

static int configure(SSL_CTX *ctx, int flags, int session_tickets)
{
    int max = (flags & HS_BINDING_DISABLE_TLS13) ? TLS1_2_VERSION : TLS1_3_VERSION;
    int min = (flags & HS_BINDING_DISABLE_TLS12) ? TLS1_3_VERSION : TLS1_2_VERSION;
    if (min > max)
        return -1;
    if (SSL_CTX_set_min_proto_version(ctx, min) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, max) != 1 ||
        SSL_CTX_set_cipher_list(ctx, tls12_ciphers) != 1 ||
        SSL_CTX_set_ciphersuites(ctx, tls13_suites) != 1 || SSL_CTX_set1_groups_list(ctx, groups) != 1)
        return -1;
    SSL_CTX_set_dh_auto(ctx, 1);
    SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
    SSL_CTX_set_client_hello_cb(ctx, on_client_hello, NULL);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION);
    /* Client-initiated renegotiation stays refused; server-initiated renegotiation (an on-demand
     * client certificate on TLS 1.2) remains possible. */
    SSL_CTX_clear_options(ctx, SSL_OP_ALLOW_CLIENT_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_NO_AUTO_CHAIN);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"httpsys", 7);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    if (flags & HS_BINDING_NO_SESSION_TICKETS) {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(ctx, 0);
    } else {
        /* Every TLS 1.3 handshake, resumed ones included, ends with the server sealing and
         * sending this many tickets. OpenSSL's default is 2; one is enough for a client that
         * reconnects (each connection brings a fresh one) and the second cost about 30-50 us of
         * the 700-800 us of a full handshake here (bench/, OpenSSL 3.0.19). */
        SSL_CTX_set_num_tickets(ctx, session_tickets >= 0 ? (size_t)session_tickets : 1);
    }
    return 0;
}

SSL_CTX *hs__tls_ctx_new(const char *cert_pem, size_t cert_len, const char *key_pem,
                         size_t key_len, const hs_sslcert_options_t *o, char *err, size_t errlen)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        consume_errors("SSL_CTX_new failed", err, errlen);
        return NULL;
    }
    if (configure(ctx, o->flags, o->session_tickets) != 0) {
        consume_errors("flags: cannot configure TLS (both TLS 1.2 and 1.3 disabled?)", err, errlen);
        goto fail;
    }
    if (load_chain(ctx, cert_pem, cert_len, err, errlen) != 0 ||
        load_key(ctx, key_pem, key_len, err, errlen) != 0 ||
        hs__clientcert_configure(ctx, o, err, errlen) != 0)
        goto fail;
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int hs__tls_attach(hs_conn_t *c, SSL_CTX *ctx)
{
    pthread_once(&bio_once, make_bio_method);
    c->ssl = SSL_new(ctx);
    c->bio = c->ssl ? BIO_new(bio_method) : NULL;
    if (c->bio == NULL) {
        SSL_free(c->ssl);
        c->ssl = NULL;
        return -ENOMEM;
    }
    BIO_set_data(c->bio, c);
    SSL_set_app_data(c->ssl, c);
    /* With the same BIO for both directions SSL_set_bio takes exactly one reference. */
    SSL_set_bio(c->ssl, c->bio, c->bio);
    SSL_set_accept_state(c->ssl);
    return 0;
}

/* Decrypts into plain_in until OpenSSL wants more ciphertext. */
int hs__tls_read(hs_conn_t *c)
{
    for (;;) {
        if (hs__buf_reserve(&c->plain_in, 16384) != 0)
            return HS_ERROR;
        size_t room = c->plain_in.cap - c->plain_in.len;
        int n = SSL_read(c->ssl, c->plain_in.base + c->plain_in.len, room > INT32_MAX ? INT32_MAX : (int)room);
        if (n > 0) {
            c->plain_in.len += (size_t)n;
            /* Nothing buffered on either side: the next SSL_read could only say WANT_READ. */
            if (hs__buf_pending(&c->wire_in) == 0 && SSL_pending(c->ssl) == 0)
                return HS_OK;
            continue;
        }
        switch (SSL_get_error(c->ssl, n)) {
        case SSL_ERROR_WANT_READ:
        case SSL_ERROR_WANT_WRITE: /* never happens: our BIO accepts every write */
            return HS_OK;
        case SSL_ERROR_ZERO_RETURN:
            c->peer_eof = 1;
            return HS_OK;
        default:
            ERR_clear_error();
            return HS_ERROR;
        }
    }
}

int hs__tls_write(hs_conn_t *c, const char *p, size_t n)
{
    while (n > 0) {
        int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
        int w = SSL_write(c->ssl, p, chunk);
        if (w <= 0) {
            ERR_clear_error();
            return HS_ERROR;
        }
        p += w;
        n -= (size_t)w;
    }
    return HS_OK;
}

void hs__tls_shutdown(hs_conn_t *c)
{
    if (c->ssl != NULL && SSL_is_init_finished(c->ssl)) {
        ERR_clear_error();
        SSL_shutdown(c->ssl);
        ERR_clear_error();
    }
}

const char *hs__tls_version(hs_conn_t *c)
{
    return c->ssl ? SSL_get_version(c->ssl) : "";
}

const char *hs__tls_sni(hs_conn_t *c)
{
    return c->ssl ? SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name) : NULL;
}

const char *hs__tls_cipher(hs_conn_t *c)
{
    return c->ssl ? SSL_get_cipher_name(c->ssl) : "";
}

int hs__tls_cipher_id(hs_conn_t *c)
{
    const SSL_CIPHER *cipher = c->ssl ? SSL_get_current_cipher(c->ssl) : NULL;
    return cipher ? SSL_CIPHER_get_protocol_id(cipher) : -1;
}

int hs__tls_server_thumbprint(hs_conn_t *c, char out[41])
{
    /* The certificate of the binding the handshake chose (SNI included); its SHA-1 is cached
     * in the X509 by OpenSSL, so this costs no hashing. */
    X509 *x = c->ssl ? SSL_get_certificate(c->ssl) : NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (x == NULL || X509_digest(x, EVP_sha1(), md, &n) != 1 || n != 20)
        return -1;
    static const char hex[] = "0123456789ABCDEF";
    for (unsigned int i = 0; i < n; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[40] = '\0';
    return 0;
}

void hs__tls_free(hs_conn_t *c)
{
    if (c->ssl != NULL) {
        SSL_free(c->ssl); /* also drops the BIO references and the SSL_CTX reference */
        c->ssl = NULL;
        c->bio = NULL;
    }
}
