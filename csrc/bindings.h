/*
 * The binding table: ip:port -> SSL_CTX (netsh sslcert ipport=) and hostname:port -> SSL_CTX
 * (hostnameport=, chosen by SNI). 0.0.0.0:port is the wildcard; a binding for the exact local
 * address wins.
 *
 * The table is guarded by one mutex. A lookup takes a reference on the SSL_CTX it returns, so a
 * binding can be replaced or deleted at any time: connections hold their own SSL_CTX reference
 * (through SSL_new or SSL_set_SSL_CTX) and the old context is freed after the last of them
 * closes.
 */
#ifndef HS_BINDINGS_H
#define HS_BINDINGS_H

#include <pthread.h>
#include <openssl/ssl.h>

/* HS_BIND_ACME: a TLS-ALPN-01 challenge certificate (RFC 8737) for a host name, on every port
 * (port 0); only a ClientHello offering ALPN acme-tls/1 alone for that name gets it. */
enum hs_binding_kind { HS_BIND_IP = 0, HS_BIND_HOST = 1, HS_BIND_ACME = 2 };

typedef struct hs_binding {
    int kind;       /* enum hs_binding_kind */
    char name[256]; /* the address as given ("0.0.0.0", "::1"), or the lowercase host name */
    int port;
    SSL_CTX *ctx;
    int flags;      /* enum hs_binding_flags */
} hs_binding_t;

typedef struct hs_bindings {
    pthread_mutex_t lock;
    hs_binding_t *items;
    size_t n, cap;
} hs_bindings_t;

void hs__bindings_init(hs_bindings_t *b);
void hs__bindings_destroy(hs_bindings_t *b);

/* Adds or replaces; takes ownership of ctx. Returns 0, -ENOMEM or -EINVAL (name too long). */
int hs__bindings_set(hs_bindings_t *b, int kind, const char *name, int port, SSL_CTX *ctx,
                     int flags);
/* Returns 0 or -ENOENT. */
int hs__bindings_delete(hs_bindings_t *b, int kind, const char *name, int port);

/* The context for a local address (exact ip first, then the wildcard), with a reference the
 * caller must drop with SSL_CTX_free; NULL if none or the binding rejects connections. */
SSL_CTX *hs__bindings_lookup(hs_bindings_t *b, const char *ip, int port);
/* The context bound to an SNI host name (case-insensitive) on port, referenced; or NULL. */
SSL_CTX *hs__bindings_lookup_host(hs_bindings_t *b, const char *host, int port);
/* Any host-name binding on port, referenced: the context a connection starts its handshake
 * with when only host-name bindings exist there (SNI then picks the right one). */
SSL_CTX *hs__bindings_any_host(hs_bindings_t *b, int port);
/* The TLS-ALPN-01 challenge context for host (case-insensitive), referenced; or NULL. */
SSL_CTX *hs__bindings_lookup_acme(hs_bindings_t *b, const char *host);
/* Any challenge context, referenced: what a connection starts with on a port with no binding
 * at all while a challenge is pending (the ClientHello then picks its own, or fails). */
SSL_CTX *hs__bindings_any_acme(hs_bindings_t *b);

#endif
