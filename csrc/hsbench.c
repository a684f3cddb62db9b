/*
 * The handshake load generator behind `httpsys bench handshake` (issue 5).
 *
 * Theory of operation
 * -------------------
 * One thread (the caller's: cffi releases the GIL around the call) keeps cfg->connections client
 * connections in flight in one epoll set, level-triggered: non-blocking connect, SSL_connect
 * driven by WANT_READ/WANT_WRITE, one request, the response read to the server's close, then a
 * new connection in the same slot until the duration is over. Each finished connection leaves a
 * sample: TCP connect, TLS handshake and first response byte, in microseconds from the
 * connect() call. A share cfg->resume of the handshakes offers the last session the server gave
 * that slot (TLS 1.3 tickets arrive with the response, so they are taken after it). The counters are
 * 64-bit words stored before every epoll_wait (an external call), which a caller's thread may
 * read while the run goes on (a progress line); an aligned 64-bit load does not tear on the
 * 64-bit targets we build for.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "hs_internal.h"
#include "httpsys.h"

enum slot_state { SLOT_IDLE = 0, SLOT_CONNECTING, SLOT_HANDSHAKE, SLOT_WRITE, SLOT_READ };

typedef struct slot {
    int fd;
    SSL *ssl;
    int state;
    uint64_t t0, t_connect, t_handshake, t_first; /* us on the monotonic clock; 0: not yet */
    size_t sent;
    SSL_SESSION *session; /* the newest session the server gave this slot, for resumption: one
                             per slot, as a browser keeps one per origin and connection pool,
                             since TLS 1.3 tickets may be single-use (rustls's are) */
    unsigned offered_session : 1;
} slot_t;

typedef struct bench {
    const hs_hsbench_config_t *cfg;
    hs_hsbench_result_t *res;
    SSL_CTX *ctx;
    int epfd;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint64_t rng;
} bench_t;

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* xorshift64: which handshakes try to resume, reproducibly and without locks. */
static double next_random(bench_t *b)
{
    b->rng ^= b->rng << 13;
    b->rng ^= b->rng >> 7;
    b->rng ^= b->rng << 17;
    return (double)(b->rng >> 11) / (double)(1ull << 53);
}

static void note_error(bench_t *b, const char *what)
{
    if (b->res->first_error[0] == '\0') {
        unsigned long e = ERR_peek_error();
        char detail[160] = "";
        if (e != 0)
            ERR_error_string_n(e, detail, sizeof(detail));
        snprintf(b->res->first_error, sizeof(b->res->first_error), "%s%s%s", what,
                 detail[0] ? ": " : "", detail);
    }
    ERR_clear_error();
}

static int add_sample(hs_hsbench_result_t *r, const slot_t *s)
{
    if (r->n_samples == r->cap_samples) {
        size_t cap = r->cap_samples ? r->cap_samples * 2 : 4096;
        uint32_t *a = realloc(r->connect_us, cap * sizeof(uint32_t));
        if (a != NULL)
            r->connect_us = a;
        uint32_t *h = a ? realloc(r->handshake_us, cap * sizeof(uint32_t)) : NULL;
        if (h != NULL)
            r->handshake_us = h;
        uint32_t *f = h ? realloc(r->ttfb_us, cap * sizeof(uint32_t)) : NULL;
        if (f == NULL)
            return -1;
        r->ttfb_us = f;
        r->cap_samples = cap;
    }
    r->connect_us[r->n_samples] = (uint32_t)(s->t_connect - s->t0);
    r->handshake_us[r->n_samples] = (uint32_t)(s->t_handshake - s->t0);
    r->ttfb_us[r->n_samples] = s->t_first ? (uint32_t)(s->t_first - s->t0) : 0;
    r->n_samples++;
    return 0;
}

/* Ends a slot's connection. A cleanly finished one keeps its SSL object for the next
 * connection (SSL_clear instead of SSL_free + SSL_new, as wrk does: SSL_new costs as much as a
 * good part of the handshake on OpenSSL 3.0); a failed one drops it. */
static void slot_close(bench_t *b, slot_t *s, int keep_ssl)
{
    if (s->ssl != NULL && !keep_ssl) {
        SSL_free(s->ssl);
        s->ssl = NULL;
    }
    if (s->fd >= 0) {
        close(s->fd); /* also leaves the epoll set */
        s->fd = -1;
    }
    s->state = SLOT_IDLE;
    ERR_clear_error();
    HS_UNUSED(b);
}

static void slot_fail(bench_t *b, slot_t *s, uint64_t *counter, const char *what)
{
    (*counter)++;
    note_error(b, what);
    slot_close(b, s, 0);
}

static void watch(bench_t *b, slot_t *s, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = s};
    epoll_ctl(b->epfd, EPOLL_CTL_MOD, s->fd, &ev);
}

static void slot_start(bench_t *b, slot_t *s)
{
    s->t0 = now_us();
    s->t_connect = s->t_handshake = s->t_first = 0;
    s->sent = 0;
    s->offered_session = 0;
    s->fd = socket(b->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        slot_fail(b, s, &b->res->err_connect, "socket");
        return;
    }
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = s};
    if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, s->fd, &ev) != 0 ||
        (connect(s->fd, (struct sockaddr *)&b->addr, b->addrlen) != 0 && errno != EINPROGRESS)) {
        slot_fail(b, s, &b->res->err_connect, "connect");
        return;
    }
    s->state = SLOT_CONNECTING;
}

static void drive(bench_t *b, slot_t *s);

static void on_connected(bench_t *b, slot_t *s)
{
    int soerr = 0;
    socklen_t len = sizeof(soerr);
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0) {
        slot_fail(b, s, &b->res->err_connect, "connect refused or failed");
        return;
    }
    s->t_connect = now_us();
    if (s->ssl == NULL)
        s->ssl = SSL_new(b->ctx);
    else if (SSL_clear(s->ssl) != 1) {
        SSL_free(s->ssl);
        s->ssl = SSL_new(b->ctx);
    }
    if (s->ssl == NULL || SSL_set_fd(s->ssl, s->fd) != 1) {
        slot_fail(b, s, &b->res->err_tls, "SSL_new");
        return;
    }
    if (b->cfg->sni != NULL)
        SSL_set_tlsext_host_name(s->ssl, b->cfg->sni);
    /* SSL_clear keeps the last session: offer exactly the one chosen here, or none. */
    if (s->session != NULL && b->cfg->resume > 0 && next_random(b) < b->cfg->resume) {
        SSL_set_session(s->ssl, s->session);
        s->offered_session = 1;
    } else {
        SSL_set_session(s->ssl, NULL);
    }
    SSL_set_connect_state(s->ssl);
    s->state = SLOT_HANDSHAKE;
    drive(b, s);
}

/* A connection is done: count it, keep the server's newest session, start the next one. */
static void slot_done(bench_t *b, slot_t *s)
{
    if (b->cfg->resume > 0) {
        SSL_SESSION *sess = SSL_get1_session(s->ssl);
        if (sess != NULL && SSL_SESSION_is_resumable(sess)) {
            SSL_SESSION_free(s->session);
            s->session = sess;
        } else {
            SSL_SESSION_free(sess);
        }
    }
    if (add_sample(b->res, s) != 0)
        note_error(b, "out of memory for samples");
    /* The server closed cleanly: say both sides are shut, or SSL_free would mark the session
     * (which s->session shares) not resumable. */
    SSL_set_shutdown(s->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    slot_close(b, s, 1);
}

/* Runs the state machine as far as the socket allows. */
static void drive(bench_t *b, slot_t *s)
{
    hs_hsbench_result_t *r = b->res;
    for (;;) {
        int rc;
        if (s->state == SLOT_HANDSHAKE) {
            rc = SSL_do_handshake(s->ssl);
            if (rc == 1) {
                s->t_handshake = now_us();
                r->handshakes++;
                if (SSL_session_reused(s->ssl))
                    r->resumed++;
                else
                    r->full++;
                s->state = SLOT_WRITE;
                continue;
            }
        } else if (s->state == SLOT_WRITE) {
            const hs_hsbench_config_t *cfg = b->cfg;
            if (cfg->request_len == 0) {
                slot_done(b, s);
                return;
            }
            rc = SSL_write(s->ssl, cfg->request + s->sent, (int)(cfg->request_len - s->sent));
            if (rc > 0) {
                s->sent += (size_t)rc;
                if (s->sent == cfg->request_len)
                    s->state = SLOT_READ;
                continue;
            }
        } else if (s->state == SLOT_READ) {
            char buf[16384];
            rc = SSL_read(s->ssl, buf, sizeof(buf));
            if (rc > 0) {
                if (s->t_first == 0) {
                    s->t_first = now_us();
                    r->responses++;
                }
                continue;
            }
        } else {
            return;
        }
        int e = SSL_get_error(s->ssl, rc);
        if (e == SSL_ERROR_WANT_READ) {
            watch(b, s, EPOLLIN);
            return;
        }
        if (e == SSL_ERROR_WANT_WRITE) {
            watch(b, s, EPOLLOUT);
            return;
        }
        if (s->state == SLOT_READ && s->t_first != 0 &&
            (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL)) {
            slot_done(b, s); /* the server closed after its response (Connection: close) */
            return;
        }
        slot_fail(b, s, s->state == SLOT_HANDSHAKE ? &r->err_tls : &r->err_io,
                  s->state == SLOT_HANDSHAKE ? "TLS handshake" : "reading the response");
        return;
    }
}

static SSL_CTX *make_ctx(const hs_hsbench_config_t *cfg, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    int v = cfg->tls_version == 12 ? TLS1_2_VERSION : cfg->tls_version == 13 ? TLS1_3_VERSION : 0;
    const char *what = NULL;
    if (ctx == NULL)
        what = "SSL_CTX_new";
    else if (SSL_CTX_set_min_proto_version(ctx, v ? v : TLS1_2_VERSION) != 1 ||
             SSL_CTX_set_max_proto_version(ctx, v) != 1)
        what = "tls";
    else if (cfg->cert_file && SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_file) != 1)
        what = "cert";
    else if (cfg->key_file && SSL_CTX_use_PrivateKey_file(ctx, cfg->key_file, SSL_FILETYPE_PEM) != 1)
        what = "key";
    else if (cfg->ca_file && SSL_CTX_load_verify_locations(ctx, cfg->ca_file, NULL) != 1)
        what = "cafile";
    if (what != NULL) {
        unsigned long e = ERR_get_error();
        char detail[200] = "";
        if (e != 0)
            ERR_error_string_n(e, detail, sizeof(detail));
        snprintf(err, errlen, "%s: %s", what, detail[0] ? detail : "cannot be used");
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, cfg->ca_file ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    /* A server that closes after its response without close_notify is done, not broken. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Sessions are kept by hand (per slot), so resumption is exactly what cfg->resume says. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    return ctx;
}

static int resolve(bench_t *b, const hs_hsbench_config_t *cfg, char *err, size_t errlen)
{
    memset(&b->addr, 0, sizeof(b->addr));
    struct sockaddr_in *a4 = (struct sockaddr_in *)&b->addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&b->addr;
    if (inet_pton(AF_INET, cfg->ip, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)cfg->port);
        b->addrlen = sizeof(*a4);
    } else if (inet_pton(AF_INET6, cfg->ip, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)cfg->port);
        b->addrlen = sizeof(*a6);
    } else {
        snprintf(err, errlen, "ip: %s is not a numeric IPv4 or IPv6 address", cfg->ip);
        return -1;
    }
    if (cfg->port < 1 || cfg->port > 65535) {
        snprintf(err, errlen, "port: %d is not 1-65535", cfg->port);
        return -1;
    }
    return 0;
}

/* Fails connections that have taken longer than the timeout. */
static void expire(bench_t *b, slot_t *slots, int n, uint64_t now)
{
    uint64_t limit = (uint64_t)(b->cfg->timeout_ms > 0 ? b->cfg->timeout_ms : 10000) * 1000u;
    for (int i = 0; i < n; i++)
        if (slots[i].state != SLOT_IDLE && now > slots[i].t0 + limit)
            slot_fail(b, &slots[i], &b->res->err_timeout, "timeout");
}

int hs_hsbench_run(const hs_hsbench_config_t *cfg, hs_hsbench_result_t *res, char *err,
                   size_t errlen)
{
    bench_t b = {.cfg = cfg, .res = res, .rng = 0x9E3779B97F4A7C15ull, .epfd = -1};
    if (cfg->connections < 1 || cfg->connections > 100000 || !(cfg->duration_s > 0) ||
        cfg->resume < 0 || cfg->resume > 1) {
        snprintf(err, errlen, "connections (1-100000), duration (> 0) or resume (0-1) out of range");
        return HS_RESULT_INVALID_PARAMETER;
    }
    if (resolve(&b, cfg, err, errlen) != 0 || (b.ctx = make_ctx(cfg, err, errlen)) == NULL)
        return HS_RESULT_INVALID_PARAMETER;
    slot_t *slots = calloc((size_t)cfg->connections, sizeof(*slots));
    b.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (slots == NULL || b.epfd < 0) {
        free(slots);
        SSL_CTX_free(b.ctx);
        snprintf(err, errlen, "out of memory or file descriptors");
        return HS_RESULT_SYSTEM;
    }
    for (int i = 0; i < cfg->connections; i++)
        slots[i].fd = -1;
    uint64_t start = now_us(), end = start + (uint64_t)(cfg->duration_s * 1e6), next_expire = start;
    struct epoll_event evs[256];
    for (uint64_t now = start; now < end; now = now_us()) {
        for (int i = 0; i < cfg->connections; i++)
            if (slots[i].state == SLOT_IDLE)
                slot_start(&b, &slots[i]);
        int n = epoll_wait(b.epfd, evs, 256, 10);
        for (int i = 0; i < n; i++) {
            slot_t *s = evs[i].data.ptr;
            if (s->state == SLOT_CONNECTING)
                on_connected(&b, s);
            else
                drive(&b, s);
        }
        if (now >= next_expire) {
            expire(&b, slots, cfg->connections, now);
            next_expire = now + 100000;
        }
    }
    res->elapsed_s = (double)(now_us() - start) / 1e6;
    for (int i = 0; i < cfg->connections; i++)
        slot_close(&b, &slots[i], 0); /* unfinished at the end: not counted */
    for (int i = 0; i < cfg->connections; i++)
        SSL_SESSION_free(slots[i].session);
    free(slots);
    close(b.epfd);
    SSL_CTX_free(b.ctx);
    return HS_RESULT_OK;
}

void hs_hsbench_free(hs_hsbench_result_t *res)
{
    free(res->connect_us);
    free(res->handshake_us);
    free(res->ttfb_us);
    res->connect_us = res->handshake_us = res->ttfb_us = NULL;
    res->n_samples = res->cap_samples = 0;
}
