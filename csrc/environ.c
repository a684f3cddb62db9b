/*
 * The environ block: key/value pairs, the HS_ENV_FIXED fixed ones first in the order httpsys.h
 * lists them, then CONTENT_TYPE, CONTENT_LENGTH, HTTP_*, HTTPS, SSL_*. Header names become HTTP_ names here, in
 * C, and repeated headers are joined with ", " (RFC 9110 5.3), so Python does no per-header work.
 */
#include <stdio.h>
#include <stdlib.h>

#include "environ.h"
#include "httpsys.h"

typedef struct out {
    char *p;
    size_t len;
} out_t;

static void put(out_t *o, const char *s, size_t n)
{
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void put_z(out_t *o, const char *s, size_t n)
{
    put(o, s, n);
    o->p[o->len++] = '\0';
}

static void put_cstr(out_t *o, const char *s)
{
    put_z(o, s, strlen(s));
}

#define put_key(o, k) put_z((o), (k), sizeof(k) - 1)

static void put_int(out_t *o, int v)
{
    char b[16];
    int n = snprintf(b, sizeof(b), "%d", v);
    put_z(o, b, (size_t)n);
}

/* "User-Agent" -> "HTTP_USER_AGENT". */
static void put_cgi_name(out_t *o, hs_str_t name)
{
    put(o, "HTTP_", 5);
    for (size_t i = 0; i < name.len; i++) {
        char ch = name.base[i];
        o->p[o->len++] = ch == '-' ? '_' : (ch >= 'a' && ch <= 'z') ? (char)(ch - 32) : ch;
    }
    o->p[o->len++] = '\0';
}

/* Headers with '_' in their name are dropped: after the '-' to '_' mapping they could pose as
 * another header (nginx and gunicorn drop them too). "Proxy" is dropped against httpoxy. */
static int skip_header(hs_str_t name)
{
    return memchr(name.base, '_', name.len) != NULL || hs__str_ieq(name, "proxy", 5);
}

static void put_headers(out_t *o, const hs_http1_request_t *h)
{
    for (size_t i = 0; i < h->num_headers; i++) {
        hs_str_t name = h->headers[i].name;
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            seen = hs__str_ieq(h->headers[j].name, name.base, name.len);
        if (seen || skip_header(name))
            continue;
        if (hs__str_ieq(name, "content-length", 14))
            put_z(o, "CONTENT_LENGTH", 14);
        else if (hs__str_ieq(name, "content-type", 12))
            put_z(o, "CONTENT_TYPE", 12);
        else
            put_cgi_name(o, name);
        put(o, h->headers[i].value.base, h->headers[i].value.len);
        for (size_t j = i + 1; j < h->num_headers; j++) {
            if (!hs__str_ieq(h->headers[j].name, name.base, name.len))
                continue;
            put(o, ", ", 2);
            put(o, h->headers[j].value.base, h->headers[j].value.len);
        }
        o->p[o->len++] = '\0';
    }
}

static size_t upper_bound(const hs_environ_src_t *src)
{
    const hs_http1_request_t *h = src->req;
    size_t n = 1600 + src->extra_len + src->asgi_len + (src->remote_user ? strlen(src->remote_user) : 0) + h->method.len + 2 * h->target.len + 2 * src->path.len + src->query.len +
               src->server_name.len;
    for (size_t i = 0; i < h->num_headers; i++)
        n += h->headers[i].name.len + h->headers[i].value.len + 8;
    return n;
}

char *hs__environ_build(const hs_environ_src_t *src, size_t *len)
{
    const hs_http1_request_t *h = src->req;
    out_t o = {malloc(upper_bound(src)), 0};
    if (o.p == NULL)
        return NULL;
    put_key(&o, "REQUEST_METHOD");
    put_z(&o, h->method.base, h->method.len);
    put_key(&o, "SCRIPT_NAME");
    put_z(&o, src->path.base, src->script_len);
    put_key(&o, "PATH_INFO");
    put_z(&o, src->path.base + src->script_len, src->path.len - src->script_len);
    put_key(&o, "QUERY_STRING");
    put_z(&o, src->query.base, src->query.len);
    put_key(&o, "SERVER_PROTOCOL");
    put_cstr(&o, h->minor_version == 0 ? "HTTP/1.0" : "HTTP/1.1");
    put_key(&o, "REMOTE_ADDR");
    put_cstr(&o, src->remote_ip);
    put_key(&o, "REMOTE_PORT");
    put_int(&o, src->remote_port);
    put_key(&o, "SERVER_NAME");
    put_z(&o, src->server_name.base, src->server_name.len);
    put_key(&o, "SERVER_PORT");
    put_int(&o, src->local_port);
    put_key(&o, "RAW_URI");
    put_z(&o, h->target.base, h->target.len);
    put_key(&o, "wsgi.url_scheme");
    put_cstr(&o, src->tls ? "https" : "http");
    put_headers(&o, h);
    if (src->tls) {
        put_cstr(&o, "HTTPS");
        put_cstr(&o, "on");
        put_cstr(&o, "SSL_PROTOCOL");
        put_cstr(&o, src->tls_version);
        put_cstr(&o, "SSL_CIPHER");
        put_cstr(&o, src->tls_cipher);
        if (src->tls_sni != NULL) {
            put_cstr(&o, "SSL_TLS_SNI"); /* mod_ssl's name for it */
            put_cstr(&o, src->tls_sni);
        }
        put(&o, src->extra, src->extra_len);
        if (src->remote_user != NULL) {
            put_cstr(&o, "REMOTE_USER");
            put_cstr(&o, src->remote_user);
            put_cstr(&o, "AUTH_TYPE");
            put_cstr(&o, "SSL/PCT"); /* what IIS reports for certificate mapping */
        }
    }
    if (src->asgi_len > 0)
        put(&o, src->asgi, src->asgi_len);
    *len = o.len;
    return o.p;
}

/*
 * Test entry point (bench/test_micro.py, tests/test_environ_block.py): parses head as the
 * server does, then lays the environ out `iterations` times (build and free, as every request
 * pays), so the C half can be timed without the cffi call on every build; the last block is
 * copied into out. The path is the target up to '?', not canonicalised (the test heads need
 * none); TLS connections report TLSv1.3 and TLS_AES_256_GCM_SHA384, no SNI and no client
 * certificate.
 */
int hs_test_environ_build(const char *head, size_t len, size_t script_len, int tls,
                          size_t iterations, char *out, size_t outcap, size_t *outlen)
{
    hs_http1_limits_t lim = {.max_field_length = 16384, .max_request_bytes = 16384};
    hs_http1_request_t req;
    *outlen = 0;
    int rc = hs__http1_parse_request(head, len, 0, &lim, &req);
    if (rc == HS_AGAIN)
        return HS_AGAIN;
    if (rc < 0)
        return req.reject;
    const char *q = memchr(req.target.base, '?', req.target.len);
    hs_str_t path = {req.target.base, q ? (size_t)(q - req.target.base) : req.target.len};
    hs_str_t query = q ? (hs_str_t){q + 1, req.target.len - path.len - 1} : (hs_str_t){"", 0};
    hs_environ_src_t src = {
        .req = &req, .path = path, .script_len = script_len < path.len ? script_len : path.len,
        .query = query, .server_name = req.host.len ? req.host : (hs_str_t){"127.0.0.1", 9},
        .remote_ip = "127.0.0.1", .remote_port = 50000, .local_port = 8443, .tls = tls,
        .tls_version = "TLSv1.3", .tls_cipher = "TLS_AES_256_GCM_SHA384", .tls_sni = NULL,
        .extra = "", .extra_len = 0,
    };
    char *env = NULL;
    size_t env_len = 0;
    for (size_t i = 0; i < iterations; i++) {
        free(env);
        env = hs__environ_build(&src, &env_len);
        if (env == NULL)
            return HS_REJECT_INTERNAL;
    }
    if (env == NULL || env_len > outcap) {
        free(env);
        return HS_REJECT_INTERNAL;
    }
    memcpy(out, env, env_len);
    *outlen = env_len;
    free(env);
    return HS_OK;
}
