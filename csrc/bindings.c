/*
 * The ip:port -> SSL_CTX binding table (see bindings.h for the locking and lifetime rules).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static hs_binding_t *find(hs_bindings_t *b, const char *ip, int port)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->items[i].port == port && strcmp(b->items[i].ip, ip) == 0)
            return &b->items[i];
    return NULL;
}

int hs__bindings_set(hs_bindings_t *b, const char *ip, int port, SSL_CTX *ctx, int flags)
{
    SSL_CTX *old = NULL;
    int rc = 0;
    pthread_mutex_lock(&b->lock);
    hs_binding_t *e = find(b, ip, port);
    if (e == NULL) {
        if (b->n == b->cap) {
            size_t cap = b->cap ? b->cap * 2 : 8;
            hs_binding_t *items = realloc(b->items, cap * sizeof(*items));
            if (items == NULL) {
                rc = -ENOMEM;
                goto out;
            }
            b->items = items;
            b->cap = cap;
        }
        e = &b->items[b->n++];
        memset(e, 0, sizeof(*e));
        snprintf(e->ip, sizeof(e->ip), "%s", ip);
        e->port = port;
    }
    old = e->ctx;
    e->ctx = ctx;
    e->flags = flags;
out:
    pthread_mutex_unlock(&b->lock);
    /* Connections that started with the old context hold their own references to it. */
    SSL_CTX_free(old);
    if (rc != 0)
        SSL_CTX_free(ctx);
    return rc;
}

int hs__bindings_delete(hs_bindings_t *b, const char *ip, int port)
{
    SSL_CTX *old = NULL;
    pthread_mutex_lock(&b->lock);
    hs_binding_t *e = find(b, ip, port);
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

SSL_CTX *hs__bindings_lookup(hs_bindings_t *b, const char *ip, int port)
{
    SSL_CTX *ctx = NULL;
    pthread_mutex_lock(&b->lock);
    hs_binding_t *e = find(b, ip, port);
    if (e == NULL)
        e = find(b, strchr(ip, ':') ? "::" : "0.0.0.0", port);
    if (e != NULL && !(e->flags & HS_BINDING_REJECT) && SSL_CTX_up_ref(e->ctx))
        ctx = e->ctx;
    pthread_mutex_unlock(&b->lock);
    return ctx;
}
