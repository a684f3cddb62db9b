/*
 * TLS for one connection on the core's own socket I/O: OpenSSL reads ciphertext from, and writes
 * ciphertext to, the connection's buffers through a BIO of our own, so the loop does exactly one
 * recv() per readable event and one send() per flush, and no SSL call ever touches the fd.
 */
#ifndef HS_TLS_H
#define HS_TLS_H

#include <openssl/ssl.h>

#include "hs_internal.h"

struct hs_conn;

#include "httpsys.h"

/* Builds the server context for a binding: TLS 1.2+ only, Mozilla "intermediate" ciphers and
 * groups, no client-initiated renegotiation, session tickets, the client certificate policy.
 * Returns NULL with err filled. */
SSL_CTX *hs__tls_ctx_new(const char *cert_pem, size_t cert_len, const char *key_pem,
                         size_t key_len, const hs_sslcert_options_t *o, char *err, size_t errlen);

/* Builds a TLS-ALPN-01 challenge context (RFC 8737): the challenge certificate and key,
 * negotiating ALPN acme-tls/1 only. Returns NULL with err filled. */
SSL_CTX *hs__tls_challenge_ctx_new(const char *cert_pem, size_t cert_len, const char *key_pem,
                                   size_t key_len, char *err, size_t errlen);

/* Attaches a new SSL object for ctx to the connection. Returns 0 or -ENOMEM. */
int hs__tls_attach(struct hs_conn *c, SSL_CTX *ctx);

/* Runs the handshake and decrypts whatever ciphertext is buffered into the plaintext buffer.
 * Returns HS_OK (progress made, or nothing to do), HS_AGAIN (the plaintext buffer is full) or
 * HS_ERROR (fatal: close the connection). */
int hs__tls_read(struct hs_conn *c);

/* Encrypts plaintext into the connection's outgoing buffer. Returns HS_OK or HS_ERROR. */
int hs__tls_write(struct hs_conn *c, const char *p, size_t n);

/* Queues a close_notify alert. */
void hs__tls_shutdown(struct hs_conn *c);

/* Version and cipher names of an established connection (static strings). */
const char *hs__tls_version(struct hs_conn *c);
const char *hs__tls_cipher(struct hs_conn *c);
/* The cipher's IANA number (0x1301 ...), or -1; the SHA-1 thumbprint of the server certificate
 * the connection presented, 40 upper-case hex digits (the store's certhash): 0, or -1. */
int hs__tls_cipher_id(struct hs_conn *c);
int hs__tls_server_thumbprint(struct hs_conn *c, char out[41]);
/* The SNI server name the client sent, or NULL. */
const char *hs__tls_sni(struct hs_conn *c);

void hs__tls_free(struct hs_conn *c);

#endif
