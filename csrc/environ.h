/*
 * Lays out a request's WSGI environ in one block of NUL-terminated strings that Python splits in
 * one pass (DESIGN.md: "C lays out the environ's keys and values in one block").
 */
#ifndef HS_ENVIRON_H
#define HS_ENVIRON_H

#include "http1.h"

typedef struct hs_environ_src {
    const hs_http1_request_t *req;
    hs_str_t path;        /* canonical path */
    size_t script_len;    /* matched prefix length inside path */
    hs_str_t query;
    hs_str_t server_name; /* Host name, or the local address */
    const char *remote_ip;
    int remote_port;
    int local_port;
    int tls;
    const char *tls_version; /* NULL for plain connections */
    const char *tls_cipher;
    const char *tls_sni; /* the ClientHello's server name, NULL if none */
    const char *extra;   /* more key/value pairs laid out already (the client certificate) */
    const char *remote_user; /* the user a client-certificate mapping gave, or NULL */
    size_t extra_len;
    const char *asgi; /* pairs only ASGI queues get, laid out already, appended last */
    size_t asgi_len;
} hs_environ_src_t;

/* Returns a malloc'd block and its length in *len, or NULL when out of memory. */
char *hs__environ_build(const hs_environ_src_t *src, size_t *len);

#endif
