/*
 * Request queues (HTTP.sys request queues) and the requests that travel through them.
 *
 * A request is shared by its connection's I/O thread and one worker, so it is refcounted and its
 * mutable state sits under its own mutex: the I/O thread appends body bytes and takes response
 * bytes; the worker takes body bytes and appends response bytes. Whoever changes something the
 * other side waits for either signals the request's condition variable (worker waiting) or posts
 * the request to its loop (I/O thread).
 *
 * An ASGI queue (hs_queue_eventfd) has no blocked workers: one asyncio loop watches its eventfd.
 * The eventfd is written only when the queue goes from "nothing for Python" to "something": a
 * request arrived, or a request Python asked to hear about changed (body bytes, output drained
 * below HS_OUT_LOW, connection gone). Those requests wait on the queue's ready list; one
 * hs_queue_drain() takes the new requests and the ready list together, so under load the loop
 * wakes once per batch.
 */
#ifndef HS_QUEUE_H
#define HS_QUEUE_H

#include <pthread.h>
#include <stdatomic.h>

#include "buf.h"
#include "hs_internal.h"

struct hs_loop;
struct hs_conn;
struct hs_server;

typedef struct hs_queue {
    atomic_int refs;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct hs_request *head, *tail;
    uint32_t len, limit;
    int waiters;
    int signal_pending; /* a loop will wake a worker at the end of its batch */
    int shutdown;
    int ssl_flags; /* the prefix's IIS sslFlags: set before it is routable, read-only after */
    int efd;       /* ASGI: the eventfd the asyncio loop watches; -1 for a WSGI queue */
    int notified;  /* ASGI: efd was (or will be, end of batch) written; cleared by a drain */
    struct hs_request *ready_head, *ready_tail; /* ASGI: changed requests (no references: a
                                                   request leaves the list when it is freed) */
    struct hs_server *server;
    const char *name; /* HTTPERR s-queuename (NULL: '-'); set like ssl_flags, lives with server */
} hs_queue_t;

typedef struct hs_chunk {
    struct hs_chunk *next;
    size_t len;
    char data[];
} hs_chunk_t;

typedef struct hs_request {
    atomic_int refs;
    struct hs_loop *loop;
    struct hs_conn *conn;     /* I/O thread only; NULL once the connection is gone */
    struct hs_request *qnext; /* queue link (queue mutex) */
    int queued;               /* in its queue, not yet received by a worker (queue mutex) */
    struct hs_request *post_next; /* loop's posted list (loop mutex) */
    int posted;                   /* on the loop's posted list (loop mutex) */

    char *env; /* the environ block handed to the worker */
    size_t env_len;
    int64_t content_length;
    int has_body;
    int http_minor;
    int head_request;
    int want_keepalive; /* what the request asked for (worker reads it to frame the response) */
    const char *queue_name; /* its queue's name, for the HTTPERR log (lives with the server) */

    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cv;
    hs_buf_t body;      /* received, not yet read by the worker */
    int body_done;      /* the whole body has arrived */
    int body_waiting;   /* a worker waits for body bytes */
    hs_chunk_t *out_head, *out_tail; /* response bytes the worker handed over */
    size_t out_bytes;
    int out_waiting;    /* a worker waits for out_bytes to fall */
    int resp_started;   /* the head was handed over */
    int resp_final;     /* the last bytes were handed over */
    int resp_close;     /* close the connection after the response */
    int resp_chunked;   /* body framed with the chunked coding */
    int resp_abort;     /* the worker aborted: reset the connection */
    int resp_reject;    /* the worker asked the core to answer with this reject instead */
    int gone;           /* the connection closed: worker calls fail */
    int client_eof;     /* the client closed its sending side (ASGI: http.disconnect) */
    int async_waiting;  /* ASGI: what Python waits for (HS_POLL_* bits, HS_WAIT_BODY) */

    struct hs_queue *aq;           /* ASGI: the queue whose ready list it goes on (a ref) */
    struct hs_request *ready_next, *ready_prev; /* ready list links (aq->mu) */
    int on_ready;                  /* on aq's ready list (aq->mu) */
    int async_owned; /* ASGI: Python holds it (between drain and its final call); asyncio
                        thread only */
} hs_request_t;

/* async_waiting's bit for body bytes, beside HS_POLL_WRITABLE and HS_POLL_DISCONNECT. */
#define HS_WAIT_BODY 4
#define HS_WAIT_ANY 7

/* High and low watermarks (bytes) of the response data a worker may queue ahead of the socket,
 * and of the request body the I/O thread buffers ahead of the worker. */
#define HS_OUT_HIGH (1u << 20)
#define HS_OUT_LOW (256u << 10)

hs_request_t *hs__request_new(struct hs_loop *loop, struct hs_conn *conn);
void hs__request_ref(hs_request_t *r);
void hs__request_release(hs_request_t *r);

/* I/O thread: enqueue; returns HS_REJECT_NONE or the reject (QUEUE_FULL, APP_OFFLINE). When
 * *need_signal is set the caller must call hs__queue_signal() once it has finished its batch of
 * events: waking a worker per request would have the worker preempt the I/O thread for every
 * single request on a shared core. */
int hs__queue_push(hs_queue_t *q, hs_request_t *r, int *need_signal);
void hs__queue_signal(hs_queue_t *q);
/* I/O thread: takes r out of q if no worker has received it yet (requestqueuetimeout), giving
 * up the queue's reference. Returns 1 if it did, 0 if a worker has it. */
int hs__queue_remove(hs_queue_t *q, hs_request_t *r);
void hs__queue_ref(hs_queue_t *q);
/* I/O thread, r->mu held: something Python may wait for changed (events: HS_WAIT_BODY,
 * HS_POLL_WRITABLE, HS_POLL_DISCONNECT). For an ASGI request whose Python side waits for one of
 * them, puts it on the queue's ready list and wakes the loop at the end of the batch. */
void hs__request_notify(hs_request_t *r, int events);

#endif
