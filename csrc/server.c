/*
 * hs_server_*: the public entry points. A server owns its I/O threads (loops), the binding
 * table, the URL-prefix table and the listening sockets. Configuration calls come from Python
 * threads at any time; the I/O threads read the same tables under short mutex holds.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "httpsys.h"
#include "queue.h"
#include "server.h"
#include "tls.h"

#define DEFAULT_MAX_BODY_BUFFER (1u << 20)

const char *hs_version(void)
{
    return HS_VERSION;
}

hs_server_t *hs_server_new(int io_threads, char *err, size_t errlen)
{
    if (io_threads < 1 || io_threads > 256) {
        snprintf(err, errlen, "io_threads must be between 1 and 256, not %d", io_threads);
        return NULL;
    }
    hs_server_t *s = calloc(1, sizeof(*s));
    hs_loop_t *loops = calloc((size_t)io_threads, sizeof(*loops));
    if (s == NULL || loops == NULL) {
        free(s);
        free(loops);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->loops = loops;
    s->http_limits = (hs_http1_limits_t){16384, 16384};
    s->max_field_length_set = 16384;
    s->url_limits = (hs_url_limits_t){260, 255};
    s->max_body_buffer = DEFAULT_MAX_BODY_BUFFER;
    s->idle_ms = 120000;        /* HTTP.sys's defaults (reference 1.5) */
    s->header_wait_ms = 120000;
    s->entity_body_ms = 120000;
    s->drain_body_ms = 120000;
    s->request_queue_ms = 120000;
    s->min_send_rate = 150;
    hs__bindings_init(&s->bindings);
    hs__crlcache_init(&s->crl_cache);
    pthread_mutex_init(&s->cfg_lock, NULL);
    s->routes = hs__route_new();
    for (int i = 0; i < io_threads; i++) {
        if (hs__loop_init(&s->loops[i], s, i, err, errlen) != 0 || s->routes == NULL) {
            s->n_loops = i + 1;
            hs_server_free(s);
            return NULL;
        }
    }
    s->n_loops = io_threads;
    return s;
}

int hs_server_set_limit(hs_server_t *s, int limit, uint64_t value)
{
    switch (limit) {
    case HS_LIMIT_MAX_FIELD_LENGTH:
        if (value < 64 || value > 65534)
            return HS_RESULT_INVALID_PARAMETER;
        s->max_field_length_set = value;
        break;
    case HS_LIMIT_MAX_REQUEST_BYTES:
        if (value < 256 || value > 16777216)
            return HS_RESULT_INVALID_PARAMETER;
        s->http_limits.max_request_bytes = value;
        break;
    case HS_LIMIT_URL_SEGMENT_MAX_LENGTH:
        if (value > 32766)
            return HS_RESULT_INVALID_PARAMETER;
        s->url_limits.segment_max_length = value;
        break;
    case HS_LIMIT_URL_SEGMENT_MAX_COUNT:
        if (value > 16383)
            return HS_RESULT_INVALID_PARAMETER;
        s->url_limits.segment_max_count = value;
        break;
    case HS_LIMIT_MAX_BODY_BUFFER:
        if (value < 4096 || value > (1u << 30))
            return HS_RESULT_INVALID_PARAMETER;
        s->max_body_buffer = value;
        break;
    default:
        return HS_RESULT_INVALID_PARAMETER;
    }
    /* Reference 3.1: if MaxRequestBytes < MaxFieldLength, MaxFieldLength is adjusted down. The
     * value as set is kept, so the outcome does not depend on the order the two are set in. */
    s->http_limits.max_field_length = s->max_field_length_set;
    if (s->http_limits.max_request_bytes < s->http_limits.max_field_length)
        s->http_limits.max_field_length = s->http_limits.max_request_bytes;
    return HS_RESULT_OK;
}

int hs_server_crl_next_fetch(hs_server_t *s, int wait_ms, char *url, size_t cap,
                             uint32_t *timeout_ms)
{
    return hs__crlcache_next(&s->crl_cache, wait_ms < 0 ? 0 : wait_ms, url, cap, timeout_ms);
}

int hs_server_set_certmappings(hs_server_t *s, const char *spec, size_t len, char *err,
                               size_t errlen)
{
    hs_certmap_t *m = hs__certmap_new(spec, len, err, errlen);
    if (m == NULL)
        return HS_RESULT_INVALID_PARAMETER;
    pthread_mutex_lock(&s->cfg_lock);
    hs_certmap_t *old = s->certmap;
    s->certmap = m;
    __atomic_add_fetch(&s->certmap_gen, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&s->cfg_lock);
    hs__certmap_release(old); /* connections matching against it hold their own reference */
    return HS_RESULT_OK;
}

hs_certmap_t *hs__server_certmap(hs_server_t *s)
{
    pthread_mutex_lock(&s->cfg_lock);
    hs_certmap_t *m = s->certmap;
    if (m != NULL)
        hs__certmap_ref(m);
    pthread_mutex_unlock(&s->cfg_lock);
    return m;
}

void hs_server_crl_fetch_shutdown(hs_server_t *s)
{
    hs__crlcache_shutdown(&s->crl_cache);
}

int hs_server_crl_fetched(hs_server_t *s, const char *url, const unsigned char *der, size_t len,
                          char *err, size_t errlen)
{
    struct timespec mono;
    clock_gettime(CLOCK_MONOTONIC, &mono);
    uint64_t now_ms = (uint64_t)mono.tv_sec * 1000u + (uint64_t)mono.tv_nsec / 1000000u;
    int rc = hs__crlcache_done(&s->crl_cache, url, der, len, (int64_t)time(NULL), now_ms, err,
                               errlen);
    /* Success or not, the requests waiting for this URL have their answer now. */
    for (int i = 0; i < s->n_loops; i++)
        hs__loop_crl_news(&s->loops[i]);
    return rc == 0 ? HS_RESULT_OK : HS_RESULT_INVALID_PARAMETER;
}

int hs_server_set_timeout(hs_server_t *s, int timeout, uint32_t value)
{
    if (timeout == HS_TIMEOUT_MIN_SEND_RATE) {
        /* bytes/s, a ULONG in HTTP.sys; 0 would close every response that waits at all. */
        if (value < 1)
            return HS_RESULT_INVALID_PARAMETER;
        __atomic_store_n(&s->min_send_rate, value, __ATOMIC_RELAXED);
        return HS_RESULT_OK;
    }
    /* netsh keeps these as USHORT seconds; 0 would mean "never wait", which no client survives. */
    if (value < 1 || value > 65535)
        return HS_RESULT_INVALID_PARAMETER;
    uint32_t *field = timeout == HS_TIMEOUT_IDLE_CONNECTION     ? &s->idle_ms
                      : timeout == HS_TIMEOUT_HEADER_WAIT       ? &s->header_wait_ms
                      : timeout == HS_TIMEOUT_ENTITY_BODY       ? &s->entity_body_ms
                      : timeout == HS_TIMEOUT_DRAIN_ENTITY_BODY ? &s->drain_body_ms
                      : timeout == HS_TIMEOUT_REQUEST_QUEUE     ? &s->request_queue_ms
                                                                : NULL;
    if (field == NULL)
        return HS_RESULT_INVALID_PARAMETER;
    __atomic_store_n(field, value * 1000u, __ATOMIC_RELAXED);
    return HS_RESULT_OK;
}

/* ---- HTTPERR log ------------------------------------------------------------------------- */

typedef struct hs_name {
    struct hs_name *next;
    char text[64];
} hs_name_t;

const char *hs__server_intern(hs_server_t *s, const char *name)
{
    hs_name_t *n = calloc(1, sizeof(*n));
    if (n == NULL)
        return NULL;
    snprintf(n->text, sizeof(n->text), "%s", name);
    pthread_mutex_lock(&s->cfg_lock);
    n->next = s->names;
    s->names = n;
    pthread_mutex_unlock(&s->cfg_lock);
    return n->text;
}

int hs_server_set_httperr(hs_server_t *s, const char *dir, uint64_t max_bytes,
                          uint32_t ring_bytes, char *err, size_t errlen)
{
    /* The I/O threads read s->httperr without a lock: it is fixed once they run. */
    if (s->started || s->httperr != NULL) {
        snprintf(err, errlen, "httperr_dir: the error log is set once, before start");
        return HS_RESULT_INVALID_PARAMETER;
    }
    if (dir == NULL)
        return HS_RESULT_OK;
    s->httperr = hs__httperr_new(dir, max_bytes ? max_bytes : HS_HTTPERR_MAX_BYTES_DEFAULT,
                                 ring_bytes, err, errlen);
    return s->httperr != NULL ? HS_RESULT_OK : HS_RESULT_INVALID_PARAMETER;
}

int hs_server_httperr_flush(hs_server_t *s, int timeout_ms)
{
    if (s->httperr == NULL)
        return HS_RESULT_NOT_FOUND;
    return hs__httperr_flush(s->httperr, timeout_ms) == HS_OK ? HS_RESULT_OK : HS_RESULT_TIMEOUT;
}

int hs_server_httperr_stats(hs_server_t *s, uint64_t *written, uint64_t *dropped,
                            uint64_t *failed)
{
    hs_httperr_t *l = s->httperr;
    if (l == NULL)
        return HS_RESULT_NOT_FOUND;
    pthread_mutex_lock(&l->mu);
    *written = l->written;
    *dropped = l->dropped;
    *failed = l->failed;
    pthread_mutex_unlock(&l->mu);
    return HS_RESULT_OK;
}

/* ---- lifecycle --------------------------------------------------------------------------- */

int hs_server_start(hs_server_t *s, char *err, size_t errlen)
{
    if (s->started)
        return HS_RESULT_OK;
    if (s->httperr != NULL && hs__httperr_start(s->httperr) != HS_OK) {
        snprintf(err, errlen, "cannot start the HTTPERR logging thread: %s", strerror(errno));
        return HS_RESULT_SYSTEM;
    }
    for (int i = 0; i < s->n_loops; i++) {
        if (hs__loop_start(&s->loops[i]) != 0) {
            snprintf(err, errlen, "cannot start I/O thread: %s", strerror(errno));
            hs_server_stop(s);
            return HS_RESULT_SYSTEM;
        }
    }
    s->started = 1;
    return HS_RESULT_OK;
}

void hs_server_stop(hs_server_t *s)
{
    for (int i = 0; i < s->n_loops; i++)
        hs__loop_stop(&s->loops[i]);
    s->started = 0;
}

void hs_server_free(hs_server_t *s)
{
    if (s == NULL)
        return;
    hs_server_stop(s);
    for (int i = 0; i < s->n_loops; i++)
        hs__loop_destroy(&s->loops[i]);
    while (s->listeners != NULL) {
        hs_listener_t *li = s->listeners;
        s->listeners = li->next;
        free(li->fds);
        free(li);
    }
    hs__route_free(s->routes);
    hs__bindings_destroy(&s->bindings);
    hs__crlcache_destroy(&s->crl_cache);
    hs__certmap_release(s->certmap);
    hs__httperr_free(s->httperr); /* after the I/O threads: it writes what they queued */
    while (s->names != NULL) {
        hs_name_t *n = s->names;
        s->names = n->next;
        free(n);
    }
    pthread_mutex_destroy(&s->cfg_lock);
    free(s->loops);
    free(s);
}

/* ---- bindings ---------------------------------------------------------------------------- */

static int valid_ip(const char *ip)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, ip, buf) == 1 || inet_pton(AF_INET6, ip, buf) == 1;
}

/* Builds the context (on the caller's thread, once per binding change, never per connection)
 * and installs it under kind/name:port. */
static int set_binding(hs_server_t *s, int kind, const char *name, int port, const char *cert_pem,
                       size_t cert_len, const char *key_pem, size_t key_len,
                       const hs_sslcert_options_t *o, char *err, size_t errlen)
{
    if (o->session_tickets > 16) {
        snprintf(err, errlen, "session tickets: %d is more than 16", o->session_tickets);
        return HS_RESULT_INVALID_PARAMETER;
    }
    SSL_CTX *ctx = hs__tls_ctx_new(cert_pem, cert_len, key_pem, key_len, o, err, errlen);
    if (ctx == NULL)
        return HS_RESULT_INVALID_PARAMETER;
    int rc = hs__bindings_set(&s->bindings, kind, name, port, ctx, o->flags);
    if (rc != 0) {
        snprintf(err, errlen, rc == -EINVAL ? "the name is too long" : "out of memory");
        return rc == -EINVAL ? HS_RESULT_INVALID_PARAMETER : HS_RESULT_SYSTEM;
    }
    return HS_RESULT_OK;
}

int hs_server_set_sslcert(hs_server_t *s, const char *ip, int port, const char *cert_pem,
                          size_t cert_len, const char *key_pem, size_t key_len,
                          const hs_sslcert_options_t *opts, char *err, size_t errlen)
{
    if (!valid_ip(ip) || port < 1 || port > 65535) {
        snprintf(err, errlen, "ipport: %s:%d is not a valid IP address and port", ip, port);
        return HS_RESULT_INVALID_PARAMETER;
    }
    return set_binding(s, HS_BIND_IP, ip, port, cert_pem, cert_len, key_pem, key_len, opts, err,
                       errlen);
}

int hs_server_delete_sslcert(hs_server_t *s, const char *ip, int port)
{
    return hs__bindings_delete(&s->bindings, HS_BIND_IP, ip, port) == 0 ? HS_RESULT_OK
                                                                         : HS_RESULT_NOT_FOUND;
}

/* RFC 1123 host names: letters, digits, '-' and '.', at most 253 characters. */
static int valid_host(const char *host)
{
    size_t n = strlen(host);
    if (n == 0 || n > 253)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = host[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '.'))
            return 0;
    }
    return 1;
}

int hs_server_set_sslcert_sni(hs_server_t *s, const char *host, int port, const char *cert_pem,
                              size_t cert_len, const char *key_pem, size_t key_len,
                              const hs_sslcert_options_t *opts, char *err, size_t errlen)
{
    if (!valid_host(host) || port < 1 || port > 65535) {
        snprintf(err, errlen, "hostnameport: %s:%d is not a valid host name and port", host, port);
        return HS_RESULT_INVALID_PARAMETER;
    }
    return set_binding(s, HS_BIND_HOST, host, port, cert_pem, cert_len, key_pem, key_len, opts, err,
                       errlen);
}

int hs_server_delete_sslcert_sni(hs_server_t *s, const char *host, int port)
{
    return hs__bindings_delete(&s->bindings, HS_BIND_HOST, host, port) == 0 ? HS_RESULT_OK
                                                                             : HS_RESULT_NOT_FOUND;
}

int hs_server_set_acme_challenge(hs_server_t *s, const char *host, const char *cert_pem,
                                 size_t cert_len, const char *key_pem, size_t key_len, char *err,
                                 size_t errlen)
{
    if (!valid_host(host)) {
        snprintf(err, errlen, "host: %s is not a valid host name", host);
        return HS_RESULT_INVALID_PARAMETER;
    }
    SSL_CTX *ctx = hs__tls_challenge_ctx_new(cert_pem, cert_len, key_pem, key_len, err, errlen);
    if (ctx == NULL)
        return HS_RESULT_INVALID_PARAMETER;
    if (hs__bindings_set(&s->bindings, HS_BIND_ACME, host, 0, ctx, 0) != 0) {
        snprintf(err, errlen, "out of memory");
        return HS_RESULT_SYSTEM;
    }
    return HS_RESULT_OK;
}

int hs_server_delete_acme_challenge(hs_server_t *s, const char *host)
{
    return hs__bindings_delete(&s->bindings, HS_BIND_ACME, host, 0) == 0 ? HS_RESULT_OK
                                                                          : HS_RESULT_NOT_FOUND;
}

uint32_t hs_server_connections(hs_server_t *s)
{
    size_t n = 0;
    for (int i = 0; i < s->n_loops; i++)
        n += atomic_load_explicit(&s->loops[i].n_conns, memory_order_relaxed);
    return (uint32_t)n;
}

/* ---- listening sockets ------------------------------------------------------------------- */

static int open_listen_socket(const char *ip, int port, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, ip, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        sl = sizeof(*a4);
    } else if (inet_pton(AF_INET6, ip, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        sl = sizeof(*a6);
    } else {
        snprintf(err, errlen, "%s is not an IP address", ip);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1, defer = 1;
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    /* Wake us only when the first bytes (the ClientHello) arrive, saving a turn of the loop. */
    setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof(defer));
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 4096) != 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", ip, port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static hs_listener_t *find_listener(hs_server_t *s, const char *ip, int port)
{
    for (hs_listener_t *li = s->listeners; li != NULL; li = li->next)
        if (li->port == port && strcmp(li->ip, ip) == 0)
            return li;
    return NULL;
}

static int make_listener(hs_server_t *s, const char *ip, int port, int tls, char *err,
                         size_t errlen)
{
    hs_listener_t *li = calloc(1, sizeof(*li));
    int *fds = calloc((size_t)s->n_loops, sizeof(int));
    if (li == NULL || fds == NULL) {
        free(li);
        free(fds);
        snprintf(err, errlen, "out of memory");
        return HS_RESULT_SYSTEM;
    }
    /* One SO_REUSEPORT socket per I/O thread: the kernel spreads connections among them. */
    for (int i = 0; i < s->n_loops; i++) {
        fds[i] = open_listen_socket(ip, port, err, errlen);
        if (fds[i] < 0) {
            while (i-- > 0)
                close(fds[i]);
            free(fds);
            free(li);
            return HS_RESULT_SYSTEM;
        }
    }
    for (int i = 0; i < s->n_loops; i++)
        hs__loop_add_listener(&s->loops[i], fds[i], tls);
    snprintf(li->ip, sizeof(li->ip), "%s", ip);
    li->port = port;
    li->tls = tls;
    li->refs = 1;
    li->fds = fds;
    li->next = s->listeners;
    s->listeners = li;
    return HS_RESULT_OK;
}

int hs_server_listen(hs_server_t *s, const char *ip, int port, int tls, char *err, size_t errlen)
{
    if (port < 1 || port > 65535) {
        snprintf(err, errlen, "port %d is out of range", port);
        return HS_RESULT_INVALID_PARAMETER;
    }
    pthread_mutex_lock(&s->cfg_lock);
    int rc = HS_RESULT_OK;
    hs_listener_t *li = find_listener(s, ip, port);
    if (li != NULL && li->tls != (tls != 0)) {
        snprintf(err, errlen, "HTTP and HTTPS cannot be supported on the same port (%d)", port);
        rc = HS_RESULT_INVALID_PARAMETER;
    } else if (li != NULL) {
        li->refs++;
    } else {
        rc = make_listener(s, ip, port, tls != 0, err, errlen);
    }
    pthread_mutex_unlock(&s->cfg_lock);
    return rc;
}

int hs_server_unlisten(hs_server_t *s, const char *ip, int port)
{
    pthread_mutex_lock(&s->cfg_lock);
    hs_listener_t **pp = &s->listeners;
    while (*pp != NULL && ((*pp)->port != port || strcmp((*pp)->ip, ip) != 0))
        pp = &(*pp)->next;
    hs_listener_t *li = *pp;
    if (li == NULL) {
        pthread_mutex_unlock(&s->cfg_lock);
        return HS_RESULT_NOT_FOUND;
    }
    if (--li->refs == 0) {
        *pp = li->next;
        for (int i = 0; i < s->n_loops; i++)
            hs__loop_close_listener(&s->loops[i], li->fds[i]);
        free(li->fds);
        free(li);
    }
    pthread_mutex_unlock(&s->cfg_lock);
    return HS_RESULT_OK;
}

/* ---- URL registrations ------------------------------------------------------------------- */

int hs_server_add_url(hs_server_t *s, const char *prefix, size_t len, hs_queue_t *q)
{
    pthread_mutex_lock(&s->cfg_lock);
    int rc = hs__route_add(s->routes, (hs_str_t){prefix, len}, q);
    if (rc == HS_OK)
        hs__queue_ref(q);
    pthread_mutex_unlock(&s->cfg_lock);
    if (rc == -EEXIST)
        return HS_RESULT_ALREADY_EXISTS;
    if (rc == -EINVAL)
        return HS_RESULT_INVALID_PARAMETER;
    return rc == HS_OK ? HS_RESULT_OK : HS_RESULT_SYSTEM;
}

int hs_server_remove_url(hs_server_t *s, const char *prefix, size_t len)
{
    void *target = NULL;
    pthread_mutex_lock(&s->cfg_lock);
    int rc = hs__route_remove(s->routes, (hs_str_t){prefix, len}, &target);
    pthread_mutex_unlock(&s->cfg_lock);
    if (rc != HS_OK)
        return rc == -EINVAL ? HS_RESULT_INVALID_PARAMETER : HS_RESULT_NOT_FOUND;
    hs_queue_release(target);
    return HS_RESULT_OK;
}

int hs__server_route(hs_server_t *s, int is_https, hs_str_t host, int port, hs_str_t local_ip,
                     hs_str_t path, hs_queue_t **q, size_t *script_len)
{
    hs_route_match_t m;
    pthread_mutex_lock(&s->cfg_lock);
    int rc = hs__route_lookup(s->routes, is_https, host, (unsigned)port, local_ip, path, &m);
    if (rc == HS_OK) {
        *q = m.target;
        hs__queue_ref(*q);
        *script_len = m.path_len;
    }
    pthread_mutex_unlock(&s->cfg_lock);
    return rc == HS_OK ? HS_REJECT_NONE : rc;
}
