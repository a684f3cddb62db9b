/*
 * The ip:port and hostname:port -> SSL_CTX binding table (see bindings.h for the locking and
 * lifetime rules).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "bindings.h"
#include "httpsys.h"

void hs__bindings_init(hs_bindings_t *b)
{
    memset(b, 0, sizeof(*b));
    pthread_mutex_init(&b->lock, NULL);
}

void hs__bindings_destroy(hs_bindings_t *b)
{
    for (size_t i = 0; i < b->n; i++)
        SSL_CTX_free(b->items[i].ctx);
    free(b->items);
    pthread_mutex_destroy(&b->lock);
}

static hs_binding_t *find(hs_bindings_t *b, int kind, const char *name, int port)
{
    for (size_t i = 0; i < b->n; i++) {
        hs_binding_t *e = &b->items[i];
        if (e->kind == kind && e->port == port && strcasecmp(e->name, name) == 0)
            return e;
    }
    return NULL;
}

static hs_binding_t *append(hs_bindings_t *b)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 8;
        hs_binding_t *items = realloc(b->items, cap * sizeof(*items));
        if (items == NULL)
            return NULL;
        b->items = items;
        b->cap = cap;
    }
    hs_binding_t *e = &b->items[b->n++];
    memset(e, 0, sizeof(*e));
    return e;
}

/* A binding that is replaced (new certificate, options, trust list or CRLs) keeps its session
 * ticket keys, so clients resume across the change instead of paying a full handshake; a resumed
 * session's client certificate is re-checked against the new CRLs (clientcert.c). The new
 * context is not published yet, so nothing reads its keys while they change. */
static void keep_ticket_keys(SSL_CTX *from, SSL_CTX *to)
{
    unsigned char keys[80];
    if (SSL_CTX_get_tlsext_ticket_keys(from, keys, sizeof(keys)) == 1)
        SSL_CTX_set_tlsext_ticket_keys(to, keys, sizeof(keys));
    OPENSSL_cleanse(keys, sizeof(keys));
}

int hs__bindings_set(hs_bindings_t *b, int kind, const char *name, int port, SSL_CTX *ctx,
                     int flags)
{
    SSL_CTX *old = NULL;
    int rc = 0;
    if (strlen(name) >= sizeof(b->items[0].name)) {
        SSL_CTX_free(ctx);
        return -EINVAL;
    }
    pthread_mutex_lock(&b->lock);
    hs_binding_t *e = find(b, kind, name, port);
    if (e == NULL && (e = append(b)) != NULL) {
        e->kind = kind;
        e->port = port;
        for (size_t i = 0; name[i] != '\0'; i++)
            e->name[i] = (char)(kind != HS_BIND_IP && name[i] >= 'A' && name[i] <= 'Z'
                                    ? name[i] + 32
                                    : name[i]);
    }
    if (e == NULL) {
        rc = -ENOMEM;
    } else {
        old = e->ctx;
        if (old != NULL)
            keep_ticket_keys(old, ctx);
        e->ctx = ctx;
        e->flags = flags;
    }
    pthread_mutex_unlock(&b->lock);
    /* Connections that started with the old context hold their own references to it. */
    SSL_CTX_free(old);
    if (rc != 0)
        SSL_CTX_free(ctx);
    return rc;
}

int hs__bindings_delete(hs_bindings_t *b, int kind, const char *name, int port)
{
    SSL_CTX *old = NULL;
    pthread_mutex_lock(&b->lock);
    hs_binding_t *e = find(b, kind, name, port);
    if (e != NULL) {
        old = e->ctx;
        *e = b->items[--b->n];
    }
    pthread_mutex_unlock(&b->lock);
    if (old == NULL)
        return -ENOENT;
    SSL_CTX_free(old);
    return 0;
}

/* Takes a reference on e's context unless e is missing or rejects connections. */
static SSL_CTX *ref(const hs_binding_t *e)
{
    if (e != NULL && !(e->flags & HS_BINDING_REJECT) && SSL_CTX_up_ref(e->ctx))
        return e->ctx;
    return NULL;
}

SSL_CTX *hs__bindings_lookup(hs_bindings_t *b, const char *ip, int port)
{
    pthread_mutex_lock(&b->lock);
    hs_binding_t *e = find(b, HS_BIND_IP, ip, port);
    if (e == NULL)
        e = find(b, HS_BIND_IP, strchr(ip, ':') ? "::" : "0.0.0.0", port);
    SSL_CTX *ctx = ref(e);
    pthread_mutex_unlock(&b->lock);
    return ctx;
}

SSL_CTX *hs__bindings_lookup_host(hs_bindings_t *b, const char *host, int port)
{
    pthread_mutex_lock(&b->lock);
    SSL_CTX *ctx = ref(find(b, HS_BIND_HOST, host, port));
    pthread_mutex_unlock(&b->lock);
    return ctx;
}

SSL_CTX *hs__bindings_any_host(hs_bindings_t *b, int port)
{
    SSL_CTX *ctx = NULL;
    pthread_mutex_lock(&b->lock);
    for (size_t i = 0; i < b->n && ctx == NULL; i++)
        if (b->items[i].kind == HS_BIND_HOST && b->items[i].port == port)
            ctx = ref(&b->items[i]);
    pthread_mutex_unlock(&b->lock);
    return ctx;
}

SSL_CTX *hs__bindings_any_acme(hs_bindings_t *b)
{
    SSL_CTX *ctx = NULL;
    pthread_mutex_lock(&b->lock);
    for (size_t i = 0; i < b->n && ctx == NULL; i++)
        if (b->items[i].kind == HS_BIND_ACME)
            ctx = ref(&b->items[i]);
    pthread_mutex_unlock(&b->lock);
    return ctx;
}

SSL_CTX *hs__bindings_lookup_acme(hs_bindings_t *b, const char *host)
{
    pthread_mutex_lock(&b->lock);
    SSL_CTX *ctx = ref(find(b, HS_BIND_ACME, host, 0));
    pthread_mutex_unlock(&b->lock);
    return ctx;
}
