/*
 * Client certificates: the trust list and CRLs of a binding, verification that records failures
 * instead of aborting the handshake (HTTP.sys hands the chain status to the application; IIS
 * turns it into 403.x), revocation checks against CRL indexes built once per binding change, and
 * certificates requested after the handshake (TLS 1.3 post-handshake auth, TLS 1.2
 * renegotiation).
 */
#ifndef HS_CLIENTCERT_H
#define HS_CLIENTCERT_H

#include <openssl/ssl.h>

#include "httpsys.h"

struct hs_conn;

/* What is known of the connection's client certificate. Every value above HS_CERT_OK is a
 * verification failure; the first one found is kept. */
enum hs_cert_status {
    HS_CERT_NONE = 0,            /* none presented (or none asked for yet) */
    HS_CERT_OK = 1,              /* presented and verified */
    HS_CERT_UNTRUSTED = 2,       /* chain, signature or trust failure: 403.16 */
    HS_CERT_WRONG_USAGE = 3,     /* no clientAuth extended key usage: 403.16 */
    HS_CERT_EXPIRED = 4,         /* expired or not yet valid (any certificate of the chain): 403.17 */
    HS_CERT_REVOKED = 5,         /* listed in its issuer's CRL: 403.13 */
    HS_CERT_REVOCATION_UNKNOWN = 6 /* a CRL was needed and none fresh is loaded: 403.13 */
};

/* Sets the binding's client certificate policy on a new context: trust list (also sent as the
 * acceptable CA names), CRL indexes (each CRL's signature checked against its issuer in the trust
 * list), the revocation options, and a CertificateRequest in the handshake when the binding
 * negotiates. Returns 0, or -1 with a message naming the bad option in err. */
int hs__clientcert_configure(SSL_CTX *ctx, const hs_sslcert_options_t *o, char *err,
                             size_t errlen);

/* The handshake finished: settles c->cert_status. A resumed session has no verification run, so
 * its stored certificate is re-checked here (dates, and revocation against the CRLs loaded now). */
void hs__clientcert_handshake_done(struct hs_conn *c);

/* Asks an established connection for a certificate (post-handshake auth on TLS 1.3, a
 * renegotiation on TLS 1.2). Returns HS_OK when the request is on its way (c->cert_done is set
 * once the client's Finished arrives) or HS_ERROR when the client cannot be asked. */
int hs__clientcert_request(struct hs_conn *c);

/* The client-certificate part of the environ (SSL_CLIENT_VERIFY, SSL_CLIENT_CERT, ...), as
 * NUL-terminated key/value pairs. Built once per connection and certificate; owned by c. */
const char *hs__clientcert_environ(struct hs_conn *c, size_t *len);

/* A CRL fetch this connection's verdict waits for has ended (or the wait ran out, with
 * c->crl_gave_up set): checks the chain's revocation again; c->crl_pending says whether a fetch
 * is still outstanding. */
void hs__clientcert_recheck(struct hs_conn *c);

/* How long a request waits for a CRL fetch: the binding's urlretrievaltimeout and a margin. */
uint64_t hs__clientcert_fetch_wait_ms(struct hs_conn *c);

/* Key bits of the negotiated cipher (for Ssl128). */
int hs__clientcert_cipher_bits(struct hs_conn *c);

#endif
