/*
 * One connection's life: handshake, request heads, bodies, responses, keep-alive, close.
 *
 * Everything here runs on the connection's I/O thread. The state (enum hs_conn_state) says what
 * the bytes in plain_in mean: a request head (READ_HEAD), body bytes for the app (READ_BODY) or to
 * drop (DRAIN), or a pipelined request waiting for the current response (WAIT_APP). One request is
 * in flight at a time, so responses leave in request order with no bookkeeping.
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

#include "clientcert.h"
#include "conn.h"
#include "environ.h"
#include "httperr.h"
#include "httpsys.h"
#include "loop.h"
#include "queue.h"
#include "server.h"
#include "tls.h"

/* How long a lingering close reads and drops before it gives up. */
#define LINGER_MS 2000u
/* How long a request waits for a certificate asked for after the handshake before it is
 * answered as if none came (HTTP.sys's renegotiation timer is 2 minutes; a client that can
 * answer at all answers within a round trip). */
#define CERT_WAIT_MS 10000u
/* The netsh timeouts (reference 1.5), read when each wait starts. */
static uint64_t header_wait_ms(const hs_conn_t *c)
{
    return hs__server_timeout_ms(&c->loop->server->header_wait_ms);
}

static uint64_t idle_ms(const hs_conn_t *c)
{
    return hs__server_timeout_ms(&c->loop->server->idle_ms);
}

static uint64_t entity_body_ms(const hs_conn_t *c)
{
    return hs__server_timeout_ms(&c->loop->server->entity_body_ms);
}

static uint64_t drain_body_ms(const hs_conn_t *c)
{
    return hs__server_timeout_ms(&c->loop->server->drain_body_ms);
}

/* A connection that waits for a request head gives its buffers back after this long. */
#define IDLE_RELEASE_MS 1000u
/* How often a response that waits for the client checks the client's rate (MinSendRate). */
#define SEND_CHECK_MS 1000u

/* ---- timers ------------------------------------------------------------------------------ */

/* The connection's current wait becomes kind, due in ms. */
static void set_wait(hs_conn_t *c, int kind, uint64_t ms)
{
    hs__wheel_add(&c->loop->wheel, &c->timer, c->loop->now_ms + ms, kind);
}

static void clear_wait(hs_conn_t *c)
{
    hs__wheel_cancel(&c->loop->wheel, &c->timer);
}

/* Waits for a request head (IdleConnection or HeaderWait): the timer fires once early to give
 * back idle buffers (release_idle_buffers), then at the real deadline. */
static void wait_head(hs_conn_t *c, int kind, uint64_t ms)
{
    c->wait_until = c->loop->now_ms + ms;
    hs__wheel_add(&c->loop->wheel, &c->timer,
                  c->loop->now_ms + (ms > IDLE_RELEASE_MS ? IDLE_RELEASE_MS : ms), kind);
}

/* The request is no longer in its queue, or no longer ours to answer: RequestQueue stops. */
static void unwatch_queue(hs_conn_t *c)
{
    if (c->queued_on == NULL)
        return;
    hs__wheel_cancel(&c->loop->wheel, &c->queue_timer);
    hs_queue_release(c->queued_on);
    c->queued_on = NULL;
}

/* The request was just queued on q: RequestQueue starts (with its own reference to q). */
static void watch_queue(hs_conn_t *c, hs_queue_t *q)
{
    hs__queue_ref(q);
    c->queued_on = q;
    uint64_t ms = hs__server_timeout_ms(&c->loop->server->request_queue_ms);
    hs__wheel_add(&c->loop->wheel, &c->queue_timer, c->loop->now_ms + ms, HS_TIMER_REQUEST_QUEUE);
}

static void stop_timers(hs_conn_t *c)
{
    hs__wheel_cancel(&c->loop->wheel, &c->timer);
    hs__wheel_cancel(&c->loop->wheel, &c->send_timer);
    unwatch_queue(c);
}

const char *const hs_conn_state_names[HS_CONN_STATE_COUNT] = {
    "HANDSHAKE", "READ_HEAD", "READ_BODY", "WAIT_APP", "DRAIN", "WAIT_CERT", "WAIT_CRL",
    "CLOSING",
};

static int plain_read(hs_conn_t *c)
{
    HS_UNUSED(c);
    return HS_OK;
}

static int plain_write(hs_conn_t *c, const char *p, size_t n)
{
    return hs__buf_append(&c->wire_out, p, n) == 0 ? HS_OK : HS_ERROR;
}

static const hs_conn_io_t plain_io = {plain_read, plain_write};
static const hs_conn_io_t tls_io = {hs__tls_read, hs__tls_write};

static void process(hs_conn_t *c);
static void flush(hs_conn_t *c);

/* ---- HTTPERR log ------------------------------------------------------------------------- */

/* Each function below copies one record into the log's ring (httperr.c) and returns: nothing
 * here waits for the disk, and nothing here runs for a request the app answers normally. */

static void rec_start(hs_conn_t *c, hs_httperr_rec_t *rec, int status, const char *reason,
                      const char *queue)
{
    rec->time_s = (int64_t)time(NULL);
    memcpy(rec->c_ip, c->peer_ip, sizeof(rec->c_ip));
    memcpy(rec->s_ip, c->local_ip, sizeof(rec->s_ip));
    rec->c_port = c->peer_port;
    rec->s_port = c->local_port;
    rec->status = status;
    rec->reason = reason;
    rec->queue = queue;
    rec->version[0] = '\0';
    rec->verb_len = 0;
    rec->uri_len = 0;
}

/* cs-version of a request line that failed to parse: what follows the target, if it looks like
 * HTTP/d.d ("HTTP/?.?" when a component has more than one digit, as HTTP.sys writes it), else
 * nothing ('-'). end bounds the buffer the slices point into. */
static void raw_version(hs_str_t target, const char *end, char *out, size_t cap)
{
    out[0] = '\0';
    if (target.base == NULL)
        return;
    const char *p = target.base + target.len;
    if (p >= end || *p != ' ' || end - p < 9 || memcmp(p + 1, "HTTP/", 5) != 0)
        return;
    p += 6;
    size_t major = 0, minor = 0;
    while (p < end && *p >= '0' && *p <= '9' && major < 3)
        p++, major++;
    if (major == 0 || p >= end || *p != '.')
        return;
    for (p++; p < end && *p >= '0' && *p <= '9' && minor < 3; p++)
        minor++;
    if (minor == 0)
        return;
    if (major > 1 || minor > 1)
        snprintf(out, cap, "HTTP/?.?");
    else
        snprintf(out, cap, "HTTP/%c.%c", p[-3], p[-1]);
}

/* cs-uri of a request head: the cooked path (and ?query) when the target canonicalises, the raw
 * target when it does not (HTTP.sys: "raw if not yet cooked"). */
static void head_uri(hs_conn_t *c, hs_str_t target, hs_httperr_rec_t *rec)
{
    hs_str_t authority, path, query, none = {NULL, 0};
    if (target.len == 0)
        return;
    if (hs__url_split(target, &authority, &path, &query) == HS_OK && path.len > 0 &&
        path.base[0] == '/') {
        char *cooked = malloc(path.len + 1);
        size_t len;
        int reject;
        if (cooked != NULL && hs__url_canonicalize(path, &c->loop->server->url_limits, cooked,
                                                   &len, &reject) == HS_OK) {
            hs__httperr_set_uri(rec, (hs_str_t){cooked, len}, query);
            free(cooked);
            return;
        }
        free(cooked);
    }
    hs__httperr_set_uri(rec, target, none);
}

/* The verb and target of a request line the parser refused before it sliced it (a line over
 * the limits): the bytes up to the first and second space, within buf[0..end). */
static void raw_request_line(const char *p, const char *end, hs_str_t *verb, hs_str_t *target)
{
    while (p < end && (*p == '\r' || *p == '\n'))
        p++;
    const char *sp = p;
    while (sp < end && sp - p <= HS_HTTPERR_VERB_MAX && *sp != ' ' && *sp != '\r' && *sp != '\n')
        sp++;
    if (sp >= end || *sp != ' ' || sp == p)
        return;
    *verb = (hs_str_t){p, (size_t)(sp - p)};
    const char *t = sp + 1, *te = t;
    while (te < end && *te != ' ' && *te != '\r' && *te != '\n')
        te++;
    *target = (hs_str_t){t, (size_t)(te - t)};
}

/* An answer to a request head: parsed whole (ok) or refused by the parser. */
static void log_head(hs_conn_t *c, const hs_http1_request_t *h, int ok, int reject,
                     const char *queue)
{
    hs_httperr_t *log = c->loop->server->httperr;
    if (log == NULL)
        return;
    const hs_status_row_t *row = hs__status_row(reject);
    const char *buf = c->plain_in.base + c->plain_in.off;
    const char *end = buf + hs__buf_pending(&c->plain_in);
    hs_str_t verb = h->method, target = h->target;
    if (verb.base == NULL)
        raw_request_line(buf, end, &verb, &target);
    hs_httperr_rec_t rec;
    rec_start(c, &rec, row->status, row->httperr, queue);
    if (ok)
        snprintf(rec.version, sizeof(rec.version), "HTTP/1.%d", h->minor_version);
    else
        raw_version(target, end, rec.version, sizeof(rec.version));
    if (verb.base != NULL)
        hs__httperr_set_verb(&rec, verb);
    if (ok)
        head_uri(c, target, &rec);
    else /* never cooked: as sent */
        hs__httperr_set_uri(&rec, target, (hs_str_t){NULL, 0});
    hs__httperr_push(log, &rec);
}

/* The next value of an environ block (key\0value\0...) after *p, or an empty slice. */
static hs_str_t env_value(const char **p, const char *end)
{
    const char *k = *p;
    const char *kz = k < end ? memchr(k, '\0', (size_t)(end - k)) : NULL;
    if (kz == NULL)
        return (hs_str_t){NULL, 0};
    const char *v = kz + 1;
    const char *vz = v < end ? memchr(v, '\0', (size_t)(end - v)) : NULL;
    if (vz == NULL)
        return (hs_str_t){NULL, 0};
    *p = vz + 1;
    return (hs_str_t){v, (size_t)(vz - v)};
}

/* An answer to (or the loss of) a request in flight: its fields come from its environ block,
 * whose first pairs are REQUEST_METHOD, SCRIPT_NAME, PATH_INFO, QUERY_STRING, SERVER_PROTOCOL
 * (environ.c). status 0 writes '-'. */
static void log_request(hs_conn_t *c, const hs_request_t *r, int status, const char *reason)
{
    hs_httperr_t *log = c->loop->server->httperr;
    if (log == NULL)
        return;
    hs_httperr_rec_t rec;
    rec_start(c, &rec, status, reason, r != NULL ? r->queue_name : NULL);
    if (r != NULL && r->env != NULL) {
        const char *p = r->env, *end = r->env + r->env_len;
        hs_str_t verb = env_value(&p, end), script = env_value(&p, end);
        hs_str_t info = env_value(&p, end), query = env_value(&p, end);
        hs_str_t proto = env_value(&p, end);
        hs__httperr_set_verb(&rec, verb);
        char path[HS_HTTPERR_URI_MAX];
        size_t n = script.len < sizeof(path) ? script.len : sizeof(path);
        size_t m = info.len < sizeof(path) - n ? info.len : sizeof(path) - n;
        if (n > 0)
            memcpy(path, script.base, n);
        if (m > 0)
            memcpy(path + n, info.base, m);
        hs__httperr_set_uri(&rec, (hs_str_t){path, n + m}, query);
        snprintf(rec.version, sizeof(rec.version), "%.*s",
                 (int)(proto.len < sizeof(rec.version) ? proto.len : 0), proto.base);
    }
    hs__httperr_push(log, &rec);
}

/* The client closed (or reset) the connection: HTTP.sys logs Client_Reset when it had sent
 * part of a request that never reached a queue. A request in flight is logged by
 * hs__conn_close as Connection_Dropped. */
static void log_peer_gone(hs_conn_t *c)
{
    if (c->req == NULL && c->state == HS_CONN_READ_HEAD && hs__buf_pending(&c->plain_in) > 0)
        log_request(c, NULL, 0, "Client_Reset");
}

/* ---- setup and teardown ------------------------------------------------------------------ */

static void addr_text(const struct sockaddr_storage *ss, char *ip, size_t iplen, int *port)
{
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr))
            inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], ip, (socklen_t)iplen);
        else
            inet_ntop(AF_INET6, &a->sin6_addr, ip, (socklen_t)iplen);
        *port = ntohs(a->sin6_port);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, (socklen_t)iplen);
        *port = ntohs(a->sin_port);
    }
}

/* Refuses a connection with a reset: no binding, or out of memory. */
static void reset_fd(int fd)
{
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

static int setup_tls(hs_conn_t *c)
{
    hs_bindings_t *b = &c->loop->server->bindings;
    SSL_CTX *ctx = hs__bindings_lookup(b, c->local_ip, c->local_port);
    if (ctx == NULL) {
        /* Only host-name bindings here: start with one of them; the ClientHello's server name
         * must then pick one, or the handshake fails (tls.c, on_servername). */
        ctx = hs__bindings_any_host(b, c->local_port);
        c->sni_required = 1;
    }
    if (ctx == NULL) /* no binding yet, only a pending TLS-ALPN-01 challenge (tls.c) */
        ctx = hs__bindings_any_acme(b);
    if (ctx == NULL)
        return -1;
    int rc = hs__tls_attach(c, ctx);
    SSL_CTX_free(ctx); /* the SSL object holds its own reference */
    return rc;
}

hs_conn_t *hs__conn_new(hs_loop_t *l, int fd, int tls)
{
    hs_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        reset_fd(fd);
        return NULL;
    }
    c->kind = HS_EV_CONN;
    c->fd = fd;
    c->loop = l;
    c->is_tls = tls ? 1 : 0;
    c->io = tls ? &tls_io : &plain_io;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    addr_text(&ss, c->local_ip, sizeof(c->local_ip), &c->local_port);
    sl = sizeof(ss);
    getpeername(fd, (struct sockaddr *)&ss, &sl);
    addr_text(&ss, c->peer_ip, sizeof(c->peer_ip), &c->peer_port);
    if (tls && setup_tls(c) != 0) {
        /* No binding for this local address: the handshake is refused (reference 1.3). */
        reset_fd(fd);
        free(c);
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        hs__tls_free(c);
        reset_fd(fd);
        free(c);
        return NULL;
    }
    c->state = tls ? HS_CONN_HANDSHAKE : HS_CONN_READ_HEAD;
    c->keepalive = 1;
    c->timer.owner = c->send_timer.owner = c->queue_timer.owner = c;
    wait_head(c, HS_TIMER_HEADER_WAIT, header_wait_ms(c));
    c->next = l->conns;
    if (l->conns)
        l->conns->prev = c;
    l->conns = c;
    l->n_conns++;
    /* The listener uses TCP_DEFER_ACCEPT, so the ClientHello is usually here already. */
    hs__conn_on_readable(c);
    return c;
}

/* The connection is gone for its request's worker: wake it so its calls fail. */
static void drop_request(hs_conn_t *c)
{
    hs_request_t *r = c->req;
    unwatch_queue(c);
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->mu);
    r->gone = 1;
    pthread_cond_broadcast(&r->cv);
    hs__request_notify(r, HS_WAIT_ANY);
    pthread_mutex_unlock(&r->mu);
    r->conn = NULL;
    c->req = NULL;
    hs__request_release(r);
}

void hs__conn_close(hs_conn_t *c)
{
    if (c->closed)
        return;
    if (c->req != NULL) /* the response was not sent whole */
        log_request(c, c->req, 0, "Connection_Dropped");
    c->closed = 1;
    drop_request(c);
    stop_timers(c);
    hs__tls_free(c);
    close(c->fd); /* also removes it from the epoll set */
    hs__loop_unlink_conn(c->loop, c);
    hs__buf_free(&c->wire_in);
    hs__buf_free(&c->plain_in);
    hs__buf_free(&c->wire_out);
    free(c->cert_env);
    c->cert_env = NULL;
    free(c->mapped_user);
    c->mapped_user = NULL;
}

static void close_reset(hs_conn_t *c)
{
    struct linger lg = {1, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    hs__conn_close(c);
}

/* After the last response of a connection: send close_notify and everything queued, then close.
 * When the client may still be sending (an error answered mid-request, a body not read to its
 * end, bytes already buffered), shut only the write side and read until the client closes, so
 * that its unread bytes do not make the kernel reset the connection before the client has read
 * our answer. Otherwise close at once, as nginx does, which saves a wakeup per connection. */
static void start_closing(hs_conn_t *c, int linger)
{
    drop_request(c);
    if (c->state != HS_CONN_CLOSING) {
        c->state = HS_CONN_CLOSING;
        hs__tls_shutdown(c);
    }
    c->must_linger |= linger ? 1 : 0;
    set_wait(c, HS_TIMER_CLOSING, idle_ms(c));
    flush(c);
}

static void cert_answered(hs_conn_t *c);
static void resume_head(hs_conn_t *c);

/* An idle keep-alive connection gives its buffers back (about 65 KiB: 16 KiB each for wire_in
 * and plain_in, OpenSSL's two record buffers, wire_out), as nginx does: the next request
 * allocates them again. Done when a wait for a head has lasted IDLE_RELEASE_MS (wait_head), so
 * a busy connection never pays it and the request path pays nothing. */
static void release_idle_buffers(hs_conn_t *c)
{
    if (c->state != HS_CONN_READ_HEAD || c->req != NULL || c->closed ||
        hs__buf_pending(&c->plain_in) || hs__buf_pending(&c->wire_in) ||
        hs__buf_pending(&c->wire_out))
        return;
    hs__buf_free(&c->plain_in);
    hs__buf_free(&c->wire_in);
    hs__buf_free(&c->wire_out);
    if (c->ssl != NULL)
        SSL_free_buffers(c->ssl); /* 0 (nothing freed) when OpenSSL still holds data */
}

/* ---- output ------------------------------------------------------------------------------ */

/* MinSendRate, as HTTP.sys applies it to each send: the bytes queued when the socket filled
 * must be taken by the client within their length / minsendrate seconds (at least
 * SEND_CHECK_MS), then the next period starts with what is queued then. Bytes already in the
 * kernel's buffers are not counted, so a big socket buffer gives no extra time. */
static void send_period(hs_conn_t *c, uint64_t rate)
{
    c->send_mark = c->bytes_sent;
    c->send_owed = hs__buf_pending(&c->wire_out);
    uint64_t ms = c->send_owed * 1000u / rate;
    hs__wheel_add(&c->loop->wheel, &c->send_timer,
                  c->loop->now_ms + (ms > SEND_CHECK_MS ? ms : SEND_CHECK_MS),
                  HS_TIMER_MIN_SEND_RATE);
}

/* The socket is full: the response now waits for the client (flush cancels it once the socket
 * takes everything). */
static void watch_send_rate(hs_conn_t *c)
{
    uint32_t rate = hs__server_timeout_ms(&c->loop->server->min_send_rate);
    if (!hs__timer_armed(&c->send_timer) && rate != HS_MIN_SEND_RATE_OFF)
        send_period(c, rate);
}

static void flush(hs_conn_t *c)
{
    while (!c->closed && hs__buf_pending(&c->wire_out) > 0) {
        ssize_t n = send(c->fd, c->wire_out.base + c->wire_out.off, hs__buf_pending(&c->wire_out),
                         MSG_NOSIGNAL);
        if (n > 0) {
            hs__buf_consume(&c->wire_out, (size_t)n);
            c->bytes_sent += (uint64_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->write_blocked = 1;
            watch_send_rate(c);
            return;
        } else {
            hs__conn_close(c);
            return;
        }
    }
    c->write_blocked = 0;
    if (hs__timer_armed(&c->send_timer))
        hs__wheel_cancel(&c->loop->wheel, &c->send_timer);
    if (!c->closed && c->state == HS_CONN_CLOSING && !c->lingering) {
        if (!c->must_linger && hs__buf_pending(&c->plain_in) == 0 &&
            hs__buf_pending(&c->wire_in) == 0) {
            hs__conn_close(c);
            return;
        }
        c->lingering = 1;
        set_wait(c, HS_TIMER_LINGER, LINGER_MS);
        shutdown(c->fd, SHUT_WR);
        if (c->peer_eof)
            hs__conn_close(c);
    }
}

/* Answers with a canned response from the status table. */
static void send_reject(hs_conn_t *c, int reject, int close)
{
    char buf[2048];
    size_t n = hs__status_response(reject, close, hs__loop_date(c->loop), buf, sizeof(buf));
    if (n == 0 || c->io->write(c, buf, n) != HS_OK) {
        hs__conn_close(c);
        return;
    }
    if (close)
        start_closing(c, 1);
}

/* ---- requests ---------------------------------------------------------------------------- */

/* RFC 9110 9.3.3/9.3.4: POST and PUT carry content, so one without framing is refused with 411
 * as HTTP.sys does. */
static int needs_length(hs_str_t method)
{
    return hs__str_eq(method, "POST", 4) || hs__str_eq(method, "PUT", 3);
}

typedef struct routed {
    hs_queue_t *queue;
    hs_str_t host, query;
    char *path;
    size_t path_len, script_len;
} routed_t;

/* Splits, canonicalises and routes the request target. Returns HS_REJECT_NONE with rt filled
 * (rt->path malloc'd, a queue reference taken) or a reject. */
static int route(hs_conn_t *c, const hs_http1_request_t *h, routed_t *rt)
{
    hs_server_t *s = c->loop->server;
    hs_str_t authority = {NULL, 0}, path;
    unsigned port;
    int reject = HS_REJECT_INVALID_URL;
    if (hs__url_split(h->target, &authority, &path, &rt->query) != HS_OK || path.len == 0 ||
        path.base[0] != '/')
        return HS_REJECT_INVALID_URL;
    if (authority.len == 0)
        authority = h->host;
    rt->host = (hs_str_t){"", 0};
    if (authority.len > 0 && hs__url_split_host(authority, &rt->host, &port) != HS_OK)
        return HS_REJECT_INVALID_HOSTNAME;
    rt->path = malloc(path.len + 1);
    if (rt->path == NULL)
        return HS_REJECT_INTERNAL;
    if (hs__url_canonicalize(path, &s->url_limits, rt->path, &rt->path_len, &reject) != HS_OK)
        goto fail;
    hs_str_t local = {c->local_ip, strlen(c->local_ip)};
    reject = hs__server_route(s, c->is_tls, rt->host, c->local_port, local,
                              (hs_str_t){rt->path, rt->path_len}, &rt->queue, &rt->script_len);
    if (reject == HS_REJECT_NONE)
        return HS_REJECT_NONE;
fail:
    free(rt->path);
    return reject;
}

/* What an ASGI scope needs beyond the WSGI environ: the local address (scope["server"]) and,
 * for TLS, the cipher's number and the server certificate's thumbprint (the TLS extension). */
static size_t asgi_pairs(hs_conn_t *c, char *out, size_t cap)
{
    char thumb[41];
    int n = snprintf(out, cap, "SERVER_ADDR%c%s%c", 0, c->local_ip, 0);
    if (c->is_tls && n > 0 && (size_t)n < cap)
        n += snprintf(out + n, cap - (size_t)n, "httpsys.cipher_suite%c%d%c", 0,
                      hs__tls_cipher_id(c), 0);
    if (c->is_tls && n > 0 && (size_t)n < cap && hs__tls_server_thumbprint(c, thumb) == 0)
        n += snprintf(out + n, cap - (size_t)n, "httpsys.server_cert%c%s%c", 0, thumb, 0);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static hs_request_t *make_request(hs_conn_t *c, const hs_http1_request_t *h, routed_t *rt)
{
    hs_request_t *r = hs__request_new(c->loop, c);
    if (r == NULL)
        return NULL;
    hs_environ_src_t src = {
        .req = h,
        .path = {rt->path, rt->path_len},
        .script_len = rt->script_len,
        .query = rt->query,
        .server_name = rt->host.len ? rt->host : (hs_str_t){c->local_ip, strlen(c->local_ip)},
        .remote_ip = c->peer_ip,
        .remote_port = c->peer_port,
        .local_port = c->local_port,
        .tls = c->is_tls,
        .tls_version = hs__tls_version(c),
        .tls_cipher = hs__tls_cipher(c),
        .tls_sni = hs__tls_sni(c),
    };
    if (c->is_tls) {
        src.extra = hs__clientcert_environ(c, &src.extra_len);
        if (rt->queue->ssl_flags & HS_SSL_FLAG_MAP_CERT)
            src.remote_user = c->mapped_user;
    }
    char asgi[160];
    if (rt->queue->efd >= 0) {
        src.asgi = asgi;
        src.asgi_len = asgi_pairs(c, asgi, sizeof(asgi));
    }
    r->env = hs__environ_build(&src, &r->env_len);
    if (r->env == NULL) {
        hs__request_release(r);
        return NULL;
    }
    r->content_length = h->chunked ? -1 : h->content_length;
    r->has_body = h->chunked || h->content_length > 0;
    r->body_done = !r->has_body;
    r->http_minor = h->minor_version;
    r->head_request = hs__str_eq(h->method, "HEAD", 4);
    r->want_keepalive = h->minor_version >= 1 ? !h->conn_close : h->conn_keepalive;
    return r;
}

/* What start_request() returns while the head waits for a client certificate, or for a CRL. */
#define WAIT_FOR_CERT (-1)
#define WAIT_FOR_CRL (-2)

/* Whether a TLS 1.2 renegotiation may run now: the client would interleave body bytes with the
 * new handshake, so the whole body must already be here (reference 4.7). */
static int can_renegotiate(hs_conn_t *c, const hs_http1_request_t *h, size_t head_len)
{
    if (SSL_version(c->ssl) == TLS1_3_VERSION || (!h->chunked && h->content_length <= 0))
        return 1;
    return !h->chunked && hs__buf_pending(&c->plain_in) - head_len >= (uint64_t)h->content_length;
}

/* The 403 for the connection's certificate status, or HS_REJECT_NONE for a valid one. */
static int cert_verdict(hs_conn_t *c, int flags)
{
    switch (c->cert_status) {
    case HS_CERT_NONE:
        return (flags & HS_SSL_FLAG_REQUIRE_CERT) ? HS_REJECT_CERT_REQUIRED : HS_REJECT_MAPPER_DENIED;
    case HS_CERT_OK:
        return HS_REJECT_NONE;
    case HS_CERT_REVOKED:
    case HS_CERT_REVOCATION_UNKNOWN:
        return HS_REJECT_CERT_REVOKED;
    case HS_CERT_EXPIRED:
        return HS_REJECT_CERT_EXPIRED;
    default:
        return HS_REJECT_CERT_UNTRUSTED;
    }
}

/* SslMapCert: the user the mappings give this certificate, found once per connection and
 * mapping set (reference 4.4). No match, or a Deny mapping, is 403.12. */
static int map_cert(hs_conn_t *c)
{
    hs_server_t *s = c->loop->server;
    uint32_t gen = __atomic_load_n(&s->certmap_gen, __ATOMIC_ACQUIRE);
    if (!c->mapped || c->map_gen != gen) {
        free(c->mapped_user);
        c->mapped_user = NULL;
        hs_certmap_t *m = hs__server_certmap(s);
        X509 *peer = SSL_get0_peer_certificate(c->ssl);
        const char *user;
        if (m != NULL && peer != NULL && hs__certmap_match(m, peer, &user))
            c->mapped_user = strdup(user);
        hs__certmap_release(m);
        c->mapped = 1;
        c->map_gen = gen;
    }
    return c->mapped_user != NULL ? HS_REJECT_NONE : HS_REJECT_MAPPER_DENIED;
}

/* The prefix's IIS sslFlags against what the connection has (reference 4.3). Returns a 403
 * reject, HS_REJECT_NONE, or WAIT_FOR_CERT after asking the client for a certificate. */
static int check_ssl_flags(hs_conn_t *c, int flags, const hs_http1_request_t *h, size_t head_len)
{
    if ((flags & HS_SSL_FLAG_SSL) && !c->is_tls)
        return HS_REJECT_SSL_REQUIRED;
    if (!c->is_tls)
        return HS_REJECT_NONE;
    if ((flags & HS_SSL_FLAG_SSL128) && hs__clientcert_cipher_bits(c) < 128)
        return HS_REJECT_SSL128_REQUIRED;
    if (!(flags & (HS_SSL_FLAG_NEGOTIATE_CERT | HS_SSL_FLAG_REQUIRE_CERT | HS_SSL_FLAG_MAP_CERT)))
        return HS_REJECT_NONE;
    if (c->cert_status == HS_CERT_NONE && !c->cert_asked) {
        c->cert_asked = 1; /* once per connection, whatever the client makes of it */
        if (can_renegotiate(c, h, head_len) && hs__clientcert_request(c) == HS_OK)
            return WAIT_FOR_CERT;
    }
    if (c->crl_pending) {
        hs__clientcert_recheck(c); /* the fetch may have ended since the handshake */
        if (c->crl_pending)
            return WAIT_FOR_CRL;
    }
    /* SslNegotiateCert alone passes whatever was presented; SslRequireCert wants a valid one,
     * and SslMapCert never maps an invalid one. */
    int reject = HS_REJECT_NONE;
    if (flags & (HS_SSL_FLAG_REQUIRE_CERT | HS_SSL_FLAG_MAP_CERT))
        reject = cert_verdict(c, flags);
    if (reject == HS_REJECT_NONE && (flags & HS_SSL_FLAG_MAP_CERT))
        reject = map_cert(c);
    return reject;
}

/* A complete head was parsed: route it, hand it to its queue, set up the body. Returns the
 * reject to answer with (and in *queue the name of the queue it was routed to, if any),
 * HS_REJECT_NONE, or WAIT_FOR_CERT (the head stays unconsumed). */
static int start_request(hs_conn_t *c, const hs_http1_request_t *h, size_t head_len,
                         const char **queue)
{
    routed_t rt = {0};
    if (!h->chunked && h->content_length < 0 && needs_length(h->method))
        return HS_REJECT_LENGTH_REQUIRED;
    int reject = route(c, h, &rt);
    if (reject != HS_REJECT_NONE)
        return reject;
    *queue = rt.queue->name;
    reject = check_ssl_flags(c, rt.queue->ssl_flags, h, head_len);
    if (reject != HS_REJECT_NONE) {
        free(rt.path);
        hs_queue_release(rt.queue);
        if (reject == WAIT_FOR_CERT) {
            c->state = HS_CONN_WAIT_CERT;
            /* Part of waiting for a whole request: headerwaittimeout bounds it too. */
            uint64_t wait = header_wait_ms(c) < CERT_WAIT_MS ? header_wait_ms(c) : CERT_WAIT_MS;
            set_wait(c, HS_TIMER_CERT_WAIT, wait);
        } else if (reject == WAIT_FOR_CRL) {
            c->state = HS_CONN_WAIT_CRL;
            set_wait(c, HS_TIMER_CRL_WAIT, hs__clientcert_fetch_wait_ms(c));
        }
        return reject;
    }
    hs_request_t *r = make_request(c, h, &rt);
    free(rt.path);
    if (r == NULL) {
        hs_queue_release(rt.queue);
        return HS_REJECT_INTERNAL;
    }
    c->keepalive = r->want_keepalive;
    c->body_chunked = h->chunked;
    c->body_left = h->chunked ? -1 : (h->content_length > 0 ? h->content_length : 0);
    memset(&c->chunked, 0, sizeof(c->chunked));
    c->req = r;
    r->queue_name = rt.queue->name;
    int need_signal;
    reject = hs__queue_push(rt.queue, r, &need_signal);
    if (reject == HS_REJECT_NONE)
        watch_queue(c, rt.queue);
    if (need_signal)
        hs__loop_defer_signal(c->loop, rt.queue); /* takes over our queue reference */
    else
        hs_queue_release(rt.queue);
    if (reject != HS_REJECT_NONE) {
        c->req = NULL;
        r->conn = NULL;
        hs__request_release(r);
        return reject;
    }
    if (h->expect_continue && r->has_body && h->minor_version >= 1)
        c->io->write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    c->state = r->has_body ? HS_CONN_READ_BODY : HS_CONN_WAIT_APP;
    if (r->has_body)
        set_wait(c, HS_TIMER_ENTITY_BODY, entity_body_ms(c));
    else
        clear_wait(c);
    return HS_REJECT_NONE;
}

static void read_head(hs_conn_t *c)
{
    hs_http1_request_t h;
    hs_server_t *s = c->loop->server;
    size_t avail = hs__buf_pending(&c->plain_in);
    int n = hs__http1_parse_request(c->plain_in.base + c->plain_in.off, avail, c->last_len,
                                    &s->http_limits, &h);
    if (n == HS_AGAIN) {
        c->last_len = avail;
        /* The first bytes of a request end the idle wait; the head must now be whole within
         * headerwaittimeout, however slowly it trickles in. */
        if (hs__timer_armed(&c->timer) && c->timer.kind == HS_TIMER_CONNECTION_IDLE)
            wait_head(c, HS_TIMER_HEADER_WAIT, header_wait_ms(c));
        return;
    }
    c->last_len = 0;
    if (n < 0) {
        /* A head we cannot parse leaves us unable to find the next one: close. */
        log_head(c, &h, 0, h.reject, NULL);
        send_reject(c, h.reject, 1);
        return;
    }
    const char *queue = NULL;
    int reject = start_request(c, &h, (size_t)n, &queue);
    if (reject == WAIT_FOR_CERT || reject == WAIT_FOR_CRL)
        return; /* parsed again once the certificate or CRL (or the deadline) comes */
    if (reject != HS_REJECT_NONE)
        log_head(c, &h, 1, reject, queue);
    hs__buf_consume(&c->plain_in, (size_t)n);
    if (reject != HS_REJECT_NONE) {
        /* The body of a refused request would be read as the next head: keep the connection
         * only when there is none, and only for answers about the resource (404, 403.x). */
        int has_body = h.chunked || h.content_length > 0;
        int resource = reject == HS_REJECT_NOT_FOUND || hs__status_row(reject)->status == 403;
        int keep = resource && !has_body && (h.minor_version >= 1 ? !h.conn_close : h.conn_keepalive);
        send_reject(c, reject, !keep);
        if (keep && !c->closed)
            wait_head(c, HS_TIMER_CONNECTION_IDLE, idle_ms(c));
    }
}

/* ---- bodies ------------------------------------------------------------------------------ */

/* Moves body bytes from plain_in to the request (or drops them in DRAIN). Returns 1 when the
 * body is complete, 0 when more is needed or the request's buffer is full, -1 on a framing error
 * (the connection is closed). Called with r->mu held when r != NULL. */
static int move_body(hs_conn_t *c, hs_request_t *r, size_t cap)
{
    while (r == NULL || hs__buf_pending(&r->body) < cap) {
        size_t avail = hs__buf_pending(&c->plain_in);
        const char *p = c->plain_in.base + c->plain_in.off;
        hs_str_t data = {p, 0};
        size_t used;
        int rc;
        if (c->body_chunked) {
            rc = hs__chunked_decode(&c->chunked, p, avail, &used, &data);
            if (rc == HS_ERROR)
                return -1;
        } else {
            used = avail < (uint64_t)c->body_left ? avail : (size_t)c->body_left;
            data.len = used;
            c->body_left -= (int64_t)used;
            rc = c->body_left == 0 ? HS_DONE : (used == avail ? HS_AGAIN : HS_OK);
        }
        if (r != NULL && data.len > 0 && hs__buf_append(&r->body, data.base, data.len) != 0)
            return -1;
        hs__buf_consume(&c->plain_in, used);
        if (rc == HS_DONE)
            return 1;
        if (rc == HS_AGAIN)
            return 0;
    }
    return 0;
}

/* EntityBody / DrainEntityBody after read_body: it runs while we wait for the client's bytes and
 * restarts whenever some arrived; while the bytes wait for the app instead (its buffer is full)
 * the client is not late and the timer stops. */
static void body_timer(hs_conn_t *c, int progress)
{
    if (hs__buf_pending(&c->plain_in) > 0) {
        clear_wait(c);
        return;
    }
    int kind = c->state == HS_CONN_DRAIN ? HS_TIMER_DRAIN_BODY : HS_TIMER_ENTITY_BODY;
    if (progress || !hs__timer_armed(&c->timer) || c->timer.kind != kind)
        set_wait(c, kind, kind == HS_TIMER_DRAIN_BODY ? drain_body_ms(c) : entity_body_ms(c));
}

static void read_body(hs_conn_t *c)
{
    hs_request_t *r = c->state == HS_CONN_READ_BODY ? c->req : NULL;
    size_t before_in = hs__buf_pending(&c->plain_in);
    int done, started = 1;
    if (r != NULL) {
        pthread_mutex_lock(&r->mu);
        size_t before = hs__buf_pending(&r->body);
        done = move_body(c, r, c->loop->server->max_body_buffer);
        if (done == 1)
            r->body_done = 1;
        if (done != 0 || hs__buf_pending(&r->body) != before) {
            if (r->body_waiting)
                pthread_cond_signal(&r->cv);
            hs__request_notify(r, HS_WAIT_BODY);
        }
        started = r->resp_started;
        pthread_mutex_unlock(&r->mu);
    } else {
        done = move_body(c, NULL, 0);
    }
    if (done < 0) {
        /* Bad chunk framing: answer 400 if the app has not started its response (its calls
         * fail from now on), otherwise the only honest signal left is a reset. */
        int reject = c->chunked.reject ? c->chunked.reject : HS_REJECT_BAD_REQUEST;
        if (started) {
            close_reset(c); /* logged as Connection_Dropped */
        } else {
            log_request(c, c->req, hs__status_row(reject)->status, hs__status_row(reject)->httperr);
            send_reject(c, reject, 1);
        }
    } else if (done == 1) {
        c->state = c->state == HS_CONN_READ_BODY ? HS_CONN_WAIT_APP : HS_CONN_READ_HEAD;
        if (c->state == HS_CONN_READ_HEAD)
            wait_head(c, HS_TIMER_CONNECTION_IDLE, idle_ms(c));
        else
            clear_wait(c);
    } else if (!c->closed) {
        body_timer(c, hs__buf_pending(&c->plain_in) != before_in);
    }
}

/* Runs the state machine over whatever plaintext is buffered. */
static void process(hs_conn_t *c)
{
    for (;;) {
        if (c->closed)
            return;
        int before = c->state;
        size_t avail = hs__buf_pending(&c->plain_in);
        switch (c->state) {
        case HS_CONN_READ_HEAD:
            if (avail == 0)
                return;
            read_head(c);
            if (!c->closed && c->state == HS_CONN_READ_HEAD &&
                avail == hs__buf_pending(&c->plain_in))
                return; /* incomplete head, or a 404 answered with nothing left */
            break;
        case HS_CONN_READ_BODY:
        case HS_CONN_DRAIN:
            read_body(c);
            if (!c->closed && c->state == before)
                return;
            break;
        default: /* HANDSHAKE, WAIT_APP, WAIT_CERT, WAIT_CRL, CLOSING: nothing to parse now */
            return;
        }
    }
}

/* The client answered our certificate request (or the wait ran out): settle the status; the
 * waiting head is then parsed again, now with what the connection has. */
static void cert_settle(hs_conn_t *c)
{
    c->cert_waiting = 0;
    c->cert_done = 0;
    SSL_set_msg_callback(c->ssl, NULL);
    if (SSL_get0_peer_certificate(c->ssl) != NULL && c->cert_status == HS_CERT_NONE)
        c->cert_status = HS_CERT_OK;
    c->state = HS_CONN_READ_HEAD;
    wait_head(c, HS_TIMER_HEADER_WAIT, header_wait_ms(c));
    c->last_len = 0;
}

/* Parses the head that waited for a certificate or a CRL again. */
static void resume_head(hs_conn_t *c)
{
    c->state = HS_CONN_READ_HEAD;
    wait_head(c, HS_TIMER_HEADER_WAIT, header_wait_ms(c));
    c->last_len = 0;
    process(c);
    if (!c->closed)
        flush(c);
}

static void cert_answered(hs_conn_t *c)
{
    cert_settle(c);
    resume_head(c);
}

void hs__conn_crl_news(hs_conn_t *c)
{
    if (c->closed || c->state != HS_CONN_WAIT_CRL)
        return;
    hs__clientcert_recheck(c);
    if (!c->crl_pending)
        resume_head(c);
}

/* ---- events ------------------------------------------------------------------------------ */

/* How much unparsed plaintext we buffer before we stop reading from the socket. */
static size_t read_limit(hs_conn_t *c)
{
    hs_server_t *s = c->loop->server;
    return s->http_limits.max_request_bytes + s->max_body_buffer;
}

/* Reads what the socket has. A short read means the socket is drained (edge-triggered epoll
 * reports the next arrival), which saves the recv() that would return EAGAIN; except when epoll
 * already reported the peer's FIN: it may sit right behind the data, and no new edge would
 * announce it. */
static int fill(hs_conn_t *c)
{
    hs_buf_t *b = c->is_tls ? &c->wire_in : &c->plain_in;
    for (;;) {
        if (hs__buf_pending(&c->plain_in) >= read_limit(c)) {
            c->read_paused = 1;
            return HS_OK;
        }
        if (hs__buf_reserve(b, 16384) != 0)
            return HS_ERROR;
        size_t room = b->cap - b->len;
        ssize_t n = recv(c->fd, b->base + b->len, room, 0);
        if (n > 0) {
            b->len += (size_t)n;
            if ((size_t)n < room && !c->hup)
                return HS_OK;
        } else if (n == 0) {
            c->peer_eof = 1;
            return HS_OK;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return HS_OK;
        } else {
            return HS_ERROR;
        }
    }
}

/* The client closed its sending side while its request is with the app: it may still read the
 * response (a half-close), so the connection stays; an ASGI app hears http.disconnect. */
static void client_eof(hs_conn_t *c)
{
    hs_request_t *r = c->req;
    pthread_mutex_lock(&r->mu);
    if (!r->client_eof) {
        r->client_eof = 1;
        hs__request_notify(r, HS_POLL_DISCONNECT | HS_WAIT_BODY);
    }
    pthread_mutex_unlock(&r->mu);
}

void hs__conn_on_readable(hs_conn_t *c)
{
    if (c->closed)
        return;
    c->read_paused = 0;
    if (fill(c) != HS_OK) {
        log_peer_gone(c);
        hs__conn_close(c);
        return;
    }
    if (c->lingering) {
        /* Closing: whatever still arrives is dropped. */
        hs__buf_consume(&c->wire_in, hs__buf_pending(&c->wire_in));
        hs__buf_consume(&c->plain_in, hs__buf_pending(&c->plain_in));
        if (c->peer_eof)
            hs__conn_close(c);
        return;
    }
    if (c->io->read(c) != HS_OK) {
        /* A failed handshake: send OpenSSL's alert, then close. */
        c->keepalive = 0;
        c->state = HS_CONN_CLOSING;
        flush(c);
        if (!c->closed)
            hs__conn_close(c);
        return;
    }
    if (c->state == HS_CONN_HANDSHAKE && SSL_is_init_finished(c->ssl)) {
        c->state = HS_CONN_READ_HEAD;
        wait_head(c, HS_TIMER_HEADER_WAIT, header_wait_ms(c));
        hs__clientcert_handshake_done(c);
    } else if (c->state == HS_CONN_WAIT_CERT && c->cert_done) {
        cert_settle(c); /* process() below parses the waiting head again */
    }
    process(c);
    if (c->closed)
        return;
    flush(c);
    /* A client that closed before sending its whole body can never complete it. */
    if (!c->closed && c->peer_eof && (c->req == NULL || c->state == HS_CONN_READ_BODY)) {
        log_peer_gone(c);
        hs__conn_close(c);
    } else if (!c->closed && c->peer_eof && c->req != NULL) {
        client_eof(c);
    }
}

void hs__conn_on_writable(hs_conn_t *c)
{
    if (c->closed)
        return;
    if (c->write_blocked)
        flush(c);
    if (!c->closed && !c->write_blocked && c->req != NULL)
        hs__conn_on_request_update(c);
}

/* The response is complete: keep the connection for the next request, or close it. */
static void finish_request(hs_conn_t *c, int close)
{
    hs_request_t *r = c->req;
    unwatch_queue(c);
    c->req = NULL;
    r->conn = NULL;
    int body_done = c->state != HS_CONN_READ_BODY;
    hs__request_release(r);
    if (close || !c->keepalive || c->peer_eof) {
        start_closing(c, !body_done);
        return;
    }
    c->state = body_done ? HS_CONN_READ_HEAD : HS_CONN_DRAIN;
    if (body_done)
        wait_head(c, HS_TIMER_CONNECTION_IDLE, idle_ms(c));
    else
        set_wait(c, HS_TIMER_DRAIN_BODY, drain_body_ms(c));
    process(c);
    if (!c->closed && c->read_paused)
        hs__conn_on_readable(c);
}

/* Takes the response bytes the worker handed over, as many as the socket is ready for. */
static hs_chunk_t *take_output(hs_conn_t *c, hs_request_t *r)
{
    hs_chunk_t *head = NULL, **tail = &head;
    size_t budget = HS_OUT_LOW > hs__buf_pending(&c->wire_out)
                        ? HS_OUT_LOW - hs__buf_pending(&c->wire_out)
                        : 0;
    while (r->out_head != NULL && (head == NULL || budget > 0)) {
        hs_chunk_t *k = r->out_head;
        r->out_head = k->next;
        if (r->out_head == NULL)
            r->out_tail = NULL;
        r->out_bytes -= k->len;
        budget = budget > k->len ? budget - k->len : 0;
        k->next = NULL;
        *tail = k;
        tail = &k->next;
    }
    if (r->out_bytes <= HS_OUT_LOW) {
        if (r->out_waiting)
            pthread_cond_signal(&r->cv);
        hs__request_notify(r, HS_POLL_WRITABLE);
    }
    return head;
}

/* What send_output() found. */
enum { OUT_MORE = 0, OUT_DONE = 1, OUT_FAILED = -1, OUT_ABORT = -2, OUT_REJECT = -3 };

/* Sends what the worker handed over, as long as the socket takes it. The worker's abort or
 * reject is read under the same lock as the data, so a late one is never mistaken for the end of
 * a normal response. */
static int send_output(hs_conn_t *c, hs_request_t *r, int *close, int *reject)
{
    for (;;) {
        pthread_mutex_lock(&r->mu);
        if (r->resp_abort || r->resp_reject) {
            *reject = r->resp_reject;
            pthread_mutex_unlock(&r->mu);
            return r->resp_abort ? OUT_ABORT : OUT_REJECT;
        }
        hs_chunk_t *out = take_output(c, r);
        int final = r->resp_final && r->out_head == NULL, more = r->out_head != NULL;
        *close = r->resp_close;
        pthread_mutex_unlock(&r->mu);
        int failed = 0;
        for (hs_chunk_t *k = out, *next; k != NULL; k = next) {
            next = k->next;
            if (!failed && c->io->write(c, k->data, k->len) != HS_OK)
                failed = 1;
            free(k);
        }
        if (failed)
            return OUT_FAILED;
        if (final)
            return OUT_DONE;
        flush(c);
        /* Once the socket is full, on_writable calls back; until then keep taking. */
        if (c->closed)
            return OUT_FAILED;
        if (c->write_blocked || !more)
            return OUT_MORE;
    }
}

/* The worker gave up on the request before its response started: answer from the table. */
static void answer_reject(hs_conn_t *c, int reject)
{
    int body_pending = c->state == HS_CONN_READ_BODY;
    log_request(c, c->req, hs__status_row(reject)->status, hs__status_row(reject)->httperr);
    drop_request(c);
    send_reject(c, reject, body_pending || !c->keepalive || reject != HS_REJECT_INTERNAL);
    if (!c->closed && c->state != HS_CONN_CLOSING) {
        c->state = HS_CONN_READ_HEAD;
        wait_head(c, HS_TIMER_CONNECTION_IDLE, idle_ms(c));
        flush(c);
        process(c);
    }
}

void hs__conn_on_request_update(hs_conn_t *c)
{
    hs_request_t *r = c->req;
    if (c->closed || r == NULL)
        return;
    if (c->state == HS_CONN_READ_BODY) {
        read_body(c); /* the worker may have made room */
        if (c->closed)
            return;
        if (c->read_paused)
            hs__conn_on_readable(c);
        if (c->closed || c->req != r)
            return;
    }
    if (c->write_blocked)
        return; /* on_writable calls again once the socket drains */
    int close = 0, reject = 0;
    switch (send_output(c, r, &close, &reject)) {
    case OUT_FAILED:
        hs__conn_close(c);
        return;
    case OUT_ABORT:
        close_reset(c);
        return;
    case OUT_REJECT:
        answer_reject(c, reject);
        return;
    case OUT_DONE:
        finish_request(c, close);
        break;
    default:
        break;
    }
    if (!c->closed)
        flush(c);
}

/* ---- timers that fire -------------------------------------------------------------------- */

/* Every timer expiry that closes the connection or settles its request goes through here, once,
 * with the timer's kind. Waits for a request head, a body or a slow reader end the connection
 * without an answer, as in HTTP.sys; a request left in its queue gets 503. */
static void on_timer(hs_conn_t *c, int kind)
{
    switch (kind) {
    case HS_TIMER_REQUEST_QUEUE:
        answer_reject(c, HS_REJECT_QUEUE_TIMEOUT);
        break;
    case HS_TIMER_CERT_WAIT:
        cert_answered(c); /* no certificate in time: the request goes on without one */
        break;
    case HS_TIMER_CRL_WAIT:
        c->crl_gave_up = 1; /* no CRL in time: revocation unknown (403.13) */
        resume_head(c);
        break;
    default: {
        /* HTTPERR: one line per expiry that ends the connection, with the request's fields when
         * one is in flight (and then not a second Connection_Dropped line). The 503 of
         * RequestQueue is logged by answer_reject. */
        const char *reason = hs__timer_reason(kind);
        if (reason != NULL) {
            log_request(c, c->req, 0, reason);
            drop_request(c);
        }
        hs__conn_close(c);
        break;
    }
    }
}

/* MinSendRate: the period ran out; the client must have taken what was queued at its start. */
static void check_send_rate(hs_conn_t *c)
{
    uint32_t rate = hs__server_timeout_ms(&c->loop->server->min_send_rate);
    if (!c->write_blocked || rate == HS_MIN_SEND_RATE_OFF)
        return;
    if (c->bytes_sent - c->send_mark < c->send_owed) {
        on_timer(c, HS_TIMER_MIN_SEND_RATE);
        return;
    }
    send_period(c, rate);
}

/* RequestQueue: the request is answered only if no worker has received it yet. */
static void check_queue(hs_conn_t *c)
{
    hs_queue_t *q = c->queued_on;
    if (q != NULL && c->req != NULL && hs__queue_remove(q, c->req))
        on_timer(c, HS_TIMER_REQUEST_QUEUE);
    else
        unwatch_queue(c);
}

void hs__conn_on_timer(hs_timer_entry_t *t, void *arg)
{
    hs_conn_t *c = t->owner;
    HS_UNUSED(arg);
    if (c->closed)
        return;
    if (t == &c->send_timer) {
        check_send_rate(c);
    } else if (t == &c->queue_timer) {
        check_queue(c);
    } else if ((t->kind == HS_TIMER_CONNECTION_IDLE || t->kind == HS_TIMER_HEADER_WAIT) &&
               c->loop->now_ms < c->wait_until) {
        release_idle_buffers(c); /* the early firing of wait_head() */
        hs__wheel_add(&c->loop->wheel, t, c->wait_until, t->kind);
    } else {
        on_timer(c, t->kind);
    }
}
