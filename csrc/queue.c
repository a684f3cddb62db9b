/*
 * Request queues and the worker side of a request: receive, read the body, respond.
 *
 * The I/O thread pushes routed requests; workers pull them with a blocking receive (cffi releases
 * the GIL around it). The queue's condition variable is signalled only when a worker waits, so
 * under load a push costs one uncontended lock. Workers never touch a connection: they change
 * the request under its mutex and post it to its loop, which wakes only if it is parked.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "httpsys.h"
#include "loop.h"
#include "queue.h"
#include "server.h"

/* ---- requests ---------------------------------------------------------------------------- */

hs_request_t *hs__request_new(hs_loop_t *loop, struct hs_conn *conn)
{
    hs_request_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    atomic_init(&r->refs, 1);
    r->loop = loop;
    r->conn = conn;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    return r;
}

void hs__request_ref(hs_request_t *r)
{
    atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
}

static void ready_unlink(hs_queue_t *q, hs_request_t *r)
{
    if (r->ready_prev)
        r->ready_prev->ready_next = r->ready_next;
    else
        q->ready_head = r->ready_next;
    if (r->ready_next)
        r->ready_next->ready_prev = r->ready_prev;
    else
        q->ready_tail = r->ready_prev;
    r->ready_next = r->ready_prev = NULL;
    r->on_ready = 0;
}

void hs__request_release(hs_request_t *r)
{
    if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (hs_chunk_t *k = r->out_head, *next; k != NULL; k = next) {
        next = k->next;
        free(k);
    }
    hs__buf_free(&r->body);
    free(r->env);
    if (r->aq != NULL) {
        pthread_mutex_lock(&r->aq->mu);
        if (r->on_ready)
            ready_unlink(r->aq, r);
        pthread_mutex_unlock(&r->aq->mu);
        hs_queue_release(r->aq);
    }
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

/* Waits on the request's condition variable; returns ETIMEDOUT when the deadline passed. */
static int wait_request(hs_request_t *r, int timeout_ms)
{
    if (timeout_ms < 0)
        return pthread_cond_wait(&r->cv, &r->mu);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return pthread_cond_timedwait(&r->cv, &r->mu, &ts);
}

/* Moves up to len buffered body bytes to buf (request mutex held); returns how many. */
static size_t take_body(hs_request_t *r, char *buf, size_t len)
{
    size_t avail = hs__buf_pending(&r->body);
    size_t take = avail < len ? avail : len;
    if (take > 0) {
        memcpy(buf, r->body.base + r->body.off, take);
        hs__buf_consume(&r->body, take);
    }
    return take;
}

long hs_request_read_body(hs_request_t *r, char *buf, size_t len, int timeout_ms)
{
    long n = 0;
    int post = 0;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        size_t take = take_body(r, buf, len);
        if (take > 0) {
            n = (long)take;
            /* The I/O thread stops reading when the buffer is full; tell it there is room. */
            post = !r->body_done;
            break;
        }
        if (r->body_done || len == 0)
            break;
        if (r->gone) {
            n = -HS_RESULT_CONNECTION_GONE;
            break;
        }
        r->body_waiting = 1;
        int rc = wait_request(r, timeout_ms);
        r->body_waiting = 0;
        if (rc == ETIMEDOUT && hs__buf_pending(&r->body) == 0 && !r->body_done && !r->gone) {
            n = -HS_RESULT_TIMEOUT;
            break;
        }
    }
    pthread_mutex_unlock(&r->mu);
    if (post)
        hs__loop_post(r->loop, r);
    return n;
}

long hs_request_read_body_nowait(hs_request_t *r, char *buf, size_t len)
{
    long n = 0;
    pthread_mutex_lock(&r->mu);
    size_t take = take_body(r, buf, len);
    if (take > 0) {
        n = (long)take;
    } else if (r->body_done || len == 0) {
        n = 0;
    } else if (r->gone) {
        n = -HS_RESULT_CONNECTION_GONE;
    } else {
        r->async_waiting |= HS_WAIT_BODY; /* read_body() on the I/O thread reports them */
        n = -HS_RESULT_IO_PENDING;
    }
    int post = n > 0 && !r->body_done;
    pthread_mutex_unlock(&r->mu);
    if (post)
        hs__loop_post(r->loop, r); /* the I/O thread may have paused reading: there is room */
    return n;
}

int hs_request_poll(hs_request_t *r, int events)
{
    pthread_mutex_lock(&r->mu);
    int ready = 0;
    if ((events & HS_POLL_WRITABLE) && (r->out_bytes <= HS_OUT_LOW || r->gone))
        ready |= HS_POLL_WRITABLE;
    if ((events & HS_POLL_DISCONNECT) && (r->gone || r->client_eof))
        ready |= HS_POLL_DISCONNECT;
    if (ready == 0)
        r->async_waiting |= events & (HS_POLL_WRITABLE | HS_POLL_DISCONNECT);
    pthread_mutex_unlock(&r->mu);
    return ready;
}

/* The Date header of worker responses, formatted once a second per thread. */
static const char *http_date(void)
{
    static __thread time_t cached;
    static __thread char buf[40];
    time_t now = time(NULL);
    if (now != cached) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        cached = now;
    }
    return buf;
}

static hs_chunk_t *chunk_new(size_t cap)
{
    hs_chunk_t *k = malloc(sizeof(*k) + cap);
    if (k != NULL) {
        k->next = NULL;
        k->len = 0;
    }
    return k;
}

static void chunk_put(hs_chunk_t *k, const void *p, size_t n)
{
    memcpy(k->data + k->len, p, n);
    k->len += n;
}

/* Appends body bytes to k, framed as one chunk when the response is chunked. */
static void chunk_put_body(hs_request_t *r, hs_chunk_t *k, const char *body, size_t len, int final)
{
    if (r->head_request)
        return;
    if (r->resp_chunked && len > 0) {
        char size[24];
        int n = snprintf(size, sizeof(size), "%zx\r\n", len);
        chunk_put(k, size, (size_t)n);
        chunk_put(k, body, len);
        chunk_put(k, "\r\n", 2);
    } else {
        chunk_put(k, body, len);
    }
    if (final && r->resp_chunked)
        chunk_put(k, "0\r\n\r\n", 5);
}

static int status_has_body(const char *head, size_t len)
{
    int code = 0;
    for (size_t i = 0; i < len && i < 3 && head[i] >= '0' && head[i] <= '9'; i++)
        code = code * 10 + (head[i] - '0');
    return !(code < 200 || code == 204 || code == 304);
}

/* Frames the response (reference 2.5: Content-Length, chunked, or close-delimited for HTTP/1.0
 * clients) and writes the head into k. Called with r->mu held. */
static void put_head(hs_request_t *r, hs_chunk_t *k, const char *head, size_t head_len,
                     int64_t content_length, size_t body_len, int flags)
{
    char extra[160];
    size_t n = 0;
    int close = (flags & HS_SEND_DISCONNECT) || !r->want_keepalive;
    if (!status_has_body(head, head_len)) {
        /* 1xx, 204 and 304 carry no body and no framing. */
    } else if (content_length >= 0) {
        /* The application's Content-Length header is in head already. */
    } else if (flags & HS_SEND_FINAL) {
        n += (size_t)snprintf(extra + n, sizeof(extra) - n, "Content-Length: %zu\r\n", body_len);
    } else if (r->http_minor >= 1) {
        n += (size_t)snprintf(extra + n, sizeof(extra) - n, "Transfer-Encoding: chunked\r\n");
        r->resp_chunked = 1;
    } else {
        close = 1; /* an HTTP/1.0 client reads to the end of the connection */
    }
    if (close)
        n += (size_t)snprintf(extra + n, sizeof(extra) - n, "Connection: close\r\n");
    else if (r->http_minor == 0)
        n += (size_t)snprintf(extra + n, sizeof(extra) - n, "Connection: keep-alive\r\n");
    r->resp_close = close;
    chunk_put(k, r->http_minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ", 9);
    chunk_put(k, head, head_len);
    chunk_put(k, extra, n);
    chunk_put(k, "Date: ", 6);
    const char *date = http_date();
    chunk_put(k, date, strlen(date));
    chunk_put(k, "\r\n\r\n", 4);
}

/* Hands k to the I/O thread and, for a final send, gives up the worker's reference. Blocks
 * while more than HS_OUT_HIGH bytes wait for a slow client; with HS_SEND_NOWAIT it returns
 * HS_RESULT_IO_PENDING instead (k is taken all the same) and the queue's eventfd reports the
 * request once the output fell to HS_OUT_LOW. */
static int hand_over(hs_request_t *r, hs_chunk_t *k, int flags)
{
    int rc = HS_RESULT_OK, final = flags & HS_SEND_FINAL;
    if (r->out_tail)
        r->out_tail->next = k;
    else
        r->out_head = k;
    r->out_tail = k;
    r->out_bytes += k->len;
    if (final) {
        r->resp_final = 1;
        r->async_owned = 0;
    }
    pthread_mutex_unlock(&r->mu);
    hs__loop_post(r->loop, r);
    if (final) {
        hs__request_release(r);
        return rc;
    }
    pthread_mutex_lock(&r->mu);
    if (flags & HS_SEND_NOWAIT) {
        if (r->gone) {
            rc = HS_RESULT_CONNECTION_GONE;
        } else if (r->out_bytes > HS_OUT_HIGH) {
            r->async_waiting |= HS_POLL_WRITABLE;
            rc = HS_RESULT_IO_PENDING;
        }
        pthread_mutex_unlock(&r->mu);
        return rc;
    }
    while (r->out_bytes > HS_OUT_HIGH && !r->gone) {
        r->out_waiting = 1;
        pthread_cond_wait(&r->cv, &r->mu);
        r->out_waiting = 0;
    }
    if (r->gone)
        rc = HS_RESULT_CONNECTION_GONE;
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int hs_request_respond(hs_request_t *r, const char *head, size_t head_len, int64_t content_length,
                       const char *body, size_t body_len, int flags)
{
    hs_chunk_t *k = chunk_new(head_len + 256 + body_len + 32);
    if (k == NULL)
        return HS_RESULT_SYSTEM;
    pthread_mutex_lock(&r->mu);
    if (r->resp_started || r->resp_final) {
        pthread_mutex_unlock(&r->mu);
        free(k);
        return HS_RESULT_INVALID_PARAMETER;
    }
    if (r->gone && !(flags & HS_SEND_FINAL)) {
        pthread_mutex_unlock(&r->mu);
        free(k);
        return HS_RESULT_CONNECTION_GONE;
    }
    r->resp_started = 1;
    put_head(r, k, head, head_len, content_length, body_len, flags);
    chunk_put_body(r, k, body, body_len, flags & HS_SEND_FINAL);
    return hand_over(r, k, flags);
}

int hs_request_write(hs_request_t *r, const char *body, size_t body_len, int flags)
{
    hs_chunk_t *k = chunk_new(body_len + 32);
    if (k == NULL)
        return HS_RESULT_SYSTEM;
    pthread_mutex_lock(&r->mu);
    if (!r->resp_started || r->resp_final) {
        pthread_mutex_unlock(&r->mu);
        free(k);
        return HS_RESULT_INVALID_PARAMETER;
    }
    if (r->gone && !(flags & HS_SEND_FINAL)) {
        pthread_mutex_unlock(&r->mu);
        free(k);
        return HS_RESULT_CONNECTION_GONE;
    }
    if (flags & HS_SEND_DISCONNECT)
        r->resp_close = 1;
    chunk_put_body(r, k, body, body_len, flags & HS_SEND_FINAL);
    return hand_over(r, k, flags);
}

/* Ends the worker's part without a normal response: reject > 0 asks the core for that canned
 * answer (only before the head went out), otherwise the connection is reset. */
static void finish_abnormally(hs_request_t *r, int reject)
{
    pthread_mutex_lock(&r->mu);
    if (!r->resp_final) {
        if (reject > 0 && !r->resp_started)
            r->resp_reject = reject;
        else
            r->resp_abort = 1;
        r->resp_final = 1;
        r->async_owned = 0;
    }
    pthread_mutex_unlock(&r->mu);
    hs__loop_post(r->loop, r);
    hs__request_release(r);
}

void hs_request_abort(hs_request_t *r)
{
    finish_abnormally(r, 0);
}

void hs_request_fail(hs_request_t *r, int reject)
{
    finish_abnormally(r, reject > 0 && reject < HS_REJECT_COUNT ? reject : HS_REJECT_INTERNAL);
}

/* ---- queues ------------------------------------------------------------------------------ */

hs_queue_t *hs_queue_new(hs_server_t *s, uint32_t limit)
{
    hs_queue_t *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return NULL;
    atomic_init(&q->refs, 1);
    q->server = s;
    q->limit = limit ? limit : 1000;
    q->efd = -1;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    return q;
}

void hs_queue_set_ssl_flags(hs_queue_t *q, int ssl_flags)
{
    q->ssl_flags = ssl_flags;
}

void hs_queue_set_name(hs_queue_t *q, const char *name)
{
    if (q->server != NULL && name != NULL)
        q->name = hs__server_intern(q->server, name);
}

void hs__queue_ref(hs_queue_t *q)
{
    atomic_fetch_add_explicit(&q->refs, 1, memory_order_relaxed);
}

void hs_queue_release(hs_queue_t *q)
{
    if (q == NULL || atomic_fetch_sub_explicit(&q->refs, 1, memory_order_acq_rel) != 1)
        return;
    hs_queue_shutdown(q);
    if (q->efd >= 0)
        close(q->efd);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q);
}

uint32_t hs_queue_length(hs_queue_t *q)
{
    pthread_mutex_lock(&q->mu);
    uint32_t n = q->len;
    pthread_mutex_unlock(&q->mu);
    return n;
}

int hs__queue_push(hs_queue_t *q, hs_request_t *r, int *need_signal)
{
    int reject = HS_REJECT_NONE;
    *need_signal = 0;
    pthread_mutex_lock(&q->mu);
    if (q->shutdown) {
        reject = HS_REJECT_APP_OFFLINE;
    } else if (q->len >= q->limit) {
        reject = HS_REJECT_QUEUE_FULL;
    } else {
        hs__request_ref(r); /* the worker's reference, given up by its final send */
        r->qnext = NULL;
        r->queued = 1;
        if (q->efd >= 0 && r->aq == NULL) {
            hs__queue_ref(q);
            r->aq = q;
        }
        if (q->tail)
            q->tail->qnext = r;
        else
            q->head = r;
        q->tail = r;
        q->len++;
        if (q->efd >= 0) {
            *need_signal = !q->notified; /* the loop is told once per drain */
            q->notified = 1;
        } else if (q->waiters > 0 && !q->signal_pending) {
            q->signal_pending = 1;
            *need_signal = 1;
        }
    }
    pthread_mutex_unlock(&q->mu);
    return reject;
}

static void write_eventfd(int fd)
{
    uint64_t one = 1;
    ssize_t n = write(fd, &one, sizeof(one));
    HS_UNUSED(n); /* EAGAIN: the counter is not zero, the loop wakes anyway */
}

void hs__queue_signal(hs_queue_t *q)
{
    if (q->efd >= 0) {
        write_eventfd(q->efd);
        return;
    }
    pthread_mutex_lock(&q->mu);
    q->signal_pending = 0;
    /* One waiting worker per queued request, so several workers can share a batch. */
    uint32_t n = q->len < (uint32_t)q->waiters ? q->len : (uint32_t)q->waiters;
    for (uint32_t i = 0; i < n; i++)
        pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

int hs__queue_remove(hs_queue_t *q, hs_request_t *r)
{
    /* The queue is in arrival order and the oldest request times out first: the walk is short. */
    pthread_mutex_lock(&q->mu);
    hs_request_t *prev = NULL, *p = r->queued ? q->head : NULL;
    while (p != NULL && p != r) {
        prev = p;
        p = p->qnext;
    }
    if (p != NULL) {
        if (prev != NULL)
            prev->qnext = r->qnext;
        else
            q->head = r->qnext;
        if (q->tail == r)
            q->tail = prev;
        q->len--;
        r->qnext = NULL;
        r->queued = 0;
    }
    pthread_mutex_unlock(&q->mu);
    if (p == NULL)
        return 0;
    hs__request_release(r); /* the reference the worker would have had */
    return 1;
}

/* Stops the queue: waiting workers return HS_RESULT_SHUTDOWN and requests still queued are
 * answered 503 by the core (HTTPERR AppOffline). */
void hs_queue_shutdown(hs_queue_t *q)
{
    pthread_mutex_lock(&q->mu);
    q->shutdown = 1;
    hs_request_t *pending = q->head;
    q->head = q->tail = NULL;
    q->len = 0;
    for (hs_request_t *p = pending; p != NULL; p = p->qnext)
        p->queued = 0;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    while (pending != NULL) {
        hs_request_t *next = pending->qnext;
        hs_request_fail(pending, HS_REJECT_APP_OFFLINE);
        pending = next;
    }
    /* Requests the asyncio side has still go on: their changes are reported while it finishes
     * them (the ready list works on). */
}

static void fill_info(hs_request_t *r, hs_request_info_t *info)
{
    info->req = r;
    info->environ = r->env;
    info->environ_len = r->env_len;
    info->content_length = r->content_length;
    info->has_body = r->has_body;
    info->http_minor = r->http_minor;
    info->head_request = r->head_request;
}

static int wait_queue(hs_queue_t *q, const struct timespec *deadline)
{
    if (deadline == NULL)
        return pthread_cond_wait(&q->cv, &q->mu);
    return pthread_cond_timedwait(&q->cv, &q->mu, deadline);
}

int hs_queue_receive(hs_queue_t *q, int timeout_ms, hs_request_info_t *info)
{
    struct timespec ts, *deadline = NULL;
    if (timeout_ms >= 0) {
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        deadline = &ts;
    }
    pthread_mutex_lock(&q->mu);
    while (q->head == NULL && !q->shutdown) {
        q->waiters++;
        int rc = wait_queue(q, deadline);
        q->waiters--;
        if (rc == ETIMEDOUT && q->head == NULL) {
            pthread_mutex_unlock(&q->mu);
            return HS_RESULT_TIMEOUT;
        }
    }
    hs_request_t *r = q->head;
    if (r == NULL) {
        pthread_mutex_unlock(&q->mu);
        return HS_RESULT_SHUTDOWN;
    }
    q->head = r->qnext;
    if (q->head == NULL)
        q->tail = NULL;
    q->len--;
    r->queued = 0;
    pthread_mutex_unlock(&q->mu);
    fill_info(r, info);
    return HS_RESULT_OK;
}

/* ---- ASGI queues ------------------------------------------------------------------------- */

int hs_queue_eventfd(hs_queue_t *q)
{
    if (q->efd < 0)
        q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return q->efd;
}

void hs__request_notify(hs_request_t *r, int events)
{
    hs_queue_t *q = r->aq;
    if (q == NULL || !(r->async_waiting & events))
        return;
    r->async_waiting = 0; /* Python wakes every waiter of r; each asks again what it needs */
    int signal = 0;
    pthread_mutex_lock(&q->mu);
    if (!r->on_ready) {
        r->on_ready = 1;
        r->ready_next = NULL;
        r->ready_prev = q->ready_tail;
        if (q->ready_tail)
            q->ready_tail->ready_next = r;
        else
            q->ready_head = r;
        q->ready_tail = r;
        signal = !q->notified;
        q->notified = 1;
    }
    pthread_mutex_unlock(&q->mu);
    if (signal) {
        hs__queue_ref(q); /* hs__loop_defer_signal takes it over */
        hs__loop_defer_signal(r->loop, q);
    }
}

int hs_queue_drain(hs_queue_t *q, hs_request_info_t *infos, int max_new, hs_request_t **ready,
                   int max_ready, int *n_ready)
{
    enum { BATCH = 64 };
    uint64_t v;
    ssize_t rd = read(q->efd, &v, sizeof(v)); /* before taking: a later write wakes us again */
    HS_UNUSED(rd);
    hs_request_t *taken[BATCH];
    int n = 0, m = 0, popped = 0, more;
    pthread_mutex_lock(&q->mu);
    while (n < max_new && n < BATCH && q->head != NULL) {
        hs_request_t *r = q->head;
        q->head = r->qnext;
        q->len--;
        r->queued = 0; /* received: RequestQueue no longer applies */
        taken[n++] = r;
    }
    if (q->head == NULL)
        q->tail = NULL;
    /* Python holds a reference to each request it owns, so those stay valid after the unlock;
     * one it has given up already may be freed by the I/O thread at any time: dropped here. */
    while (m < max_ready && popped++ < BATCH && q->ready_head != NULL) {
        hs_request_t *r = q->ready_head;
        ready_unlink(q, r);
        if (r->async_owned)
            ready[m++] = r;
    }
    more = q->head != NULL || q->ready_head != NULL;
    q->notified = more;
    pthread_mutex_unlock(&q->mu);
    if (more)
        write_eventfd(q->efd); /* the rest in the next batch */
    for (int i = 0; i < n; i++) {
        taken[i]->async_owned = 1;
        fill_info(taken[i], &infos[i]);
    }
    *n_ready = m;
    return n;
}
