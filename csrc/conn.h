/*
 * One client connection, owned by exactly one I/O thread: nothing here is touched by any other
 * thread. Workers reach a connection only through its current request (queue.h), whose state is
 * under the request's own mutex.
 */
#ifndef HS_CONN_H
#define HS_CONN_H

#include <openssl/ssl.h>

#include "buf.h"
#include "chunked.h"
#include "hs_internal.h"
#include "timer.h"

struct hs_loop;
struct hs_request;
struct hs_conn;
struct hs_queue;

/* The connection lifecycle (STYLE lesson 11). */
enum hs_conn_state {
    HS_CONN_HANDSHAKE = 0, /* TLS handshake in progress */
    HS_CONN_READ_HEAD,     /* waiting for (more of) a request head */
    HS_CONN_READ_BODY,     /* a request is with the app and its body is still arriving */
    HS_CONN_WAIT_APP,      /* the whole request is read; the response is being produced */
    HS_CONN_DRAIN,         /* the response is done; the rest of the body is read and dropped */
    HS_CONN_WAIT_CERT,     /* a request head waits (unconsumed) for the client certificate we
                              asked for after the handshake */
    HS_CONN_WAIT_CRL,      /* a request head waits (unconsumed) for a CRL being fetched */
    HS_CONN_CLOSING,       /* flush what is queued, then close */
    HS_CONN_STATE_COUNT
};

extern const char *const hs_conn_state_names[HS_CONN_STATE_COUNT];

/* Plaintext vs TLS: conn.c reads and writes plaintext through this table and never asks
 * "is TLS on" (nginx's c->recv / c->send). */
typedef struct hs_conn_io {
    int (*read)(struct hs_conn *c);                            /* cipher in -> plain in */
    int (*write)(struct hs_conn *c, const char *p, size_t n); /* plain -> wire out */
} hs_conn_io_t;

typedef struct hs_conn {
    int kind; /* HS_EV_CONN: first field, epoll's data.ptr points here */
    int fd;
    struct hs_loop *loop;
    const hs_conn_io_t *io;
    SSL *ssl;
    BIO *bio;
    int state;

    hs_buf_t wire_in;  /* bytes received from the socket, not yet decrypted (TLS only) */
    hs_buf_t plain_in; /* plaintext not yet parsed */
    hs_buf_t wire_out; /* bytes to send */
    size_t last_len;   /* for the parser's re-scan shortcut */

    struct hs_request *req; /* the request in flight, if any (one at a time: responses stay in
                               order without bookkeeping; later pipelined requests wait in
                               plain_in) */
    hs_chunked_t chunked;
    int64_t body_left;      /* Content-Length bytes still to read; -1 while chunked */
    unsigned body_chunked : 1;
    unsigned keepalive : 1;   /* keep the connection after the current response */
    unsigned peer_eof : 1;    /* the client half-closed or reset */
    unsigned read_paused : 1; /* stopped reading: body buffer full or pipelined data waiting */
    unsigned write_blocked : 1;
    unsigned is_tls : 1;
    unsigned sni_required : 1; /* no ipport binding: the SNI name must match a hostnameport */
    unsigned closed : 1;     /* closed; freed at the end of the loop iteration */
    unsigned hup : 1;        /* epoll saw the peer's FIN or an error: read until recv() says so */
    unsigned must_linger : 1; /* the client may still be sending: linger before closing */
    unsigned lingering : 1;  /* write side shut; reading and dropping until EOF or deadline */
    unsigned cert_asked : 1;   /* a certificate was asked for (handshake or afterwards) */
    unsigned cert_waiting : 1; /* asked after the handshake; the answer has not arrived */
    unsigned cert_done : 1;    /* the client's Finished of that answer arrived */
    unsigned crl_pending : 1;  /* the verdict waits for a CRL fetch (crlfetch.h) */
    unsigned crl_gave_up : 1;  /* that wait ran out: a fetch still pending means unknown */
    uint8_t cert_status;       /* enum hs_cert_status */
    long cert_code;            /* X509_V_ERR_* of the first failure */
    char *cert_env;            /* the client certificate's environ pairs (clientcert.c) */
    char *mapped_user;         /* what the certificate mapping gave (NULL: none, or denied) */
    uint32_t map_gen;          /* the server's certmap_gen when mapped_user was found */
    unsigned mapped : 1;       /* mapped_user is the answer for map_gen */
    size_t cert_env_len;
    /* Timers on the loop's wheel (timer.h). timer is the connection's current wait, its kind
     * says which; a wait for a request head fires once early, after HS_IDLE_RELEASE_MS, to give
     * back idle buffers, then at wait_until. */
    hs_timer_entry_t timer;
    uint64_t wait_until;
    hs_timer_entry_t send_timer;  /* MinSendRate, while the response waits for the client */
    uint64_t bytes_sent;          /* bytes the socket took, ever */
    uint64_t send_mark;           /* bytes_sent when the current MinSendRate period began */
    uint64_t send_owed;           /* bytes queued then, which the period allows owed/rate s for */
    hs_timer_entry_t queue_timer; /* RequestQueue, while the request may still be queued */
    struct hs_queue *queued_on;   /* that queue (a reference) while queue_timer is armed */

    char local_ip[48], peer_ip[48];
    int local_port, peer_port;
    struct hs_conn *prev, *next; /* the loop's list of open connections */
} hs_conn_t;

/* Called by the loop. */
hs_conn_t *hs__conn_new(struct hs_loop *loop, int fd, int tls);
void hs__conn_on_readable(hs_conn_t *c);
void hs__conn_on_writable(hs_conn_t *c);
/* The worker changed the request (response data, body consumed, finished). */
void hs__conn_on_request_update(hs_conn_t *c);
void hs__conn_close(hs_conn_t *c);
/* A CRL fetch ended (any of them): a connection waiting for one looks again. */
void hs__conn_crl_news(hs_conn_t *c);
/* The loop's wheel fired one of a connection's timers (hs_timer_fire_fn; t->owner is the
 * connection). */
void hs__conn_on_timer(hs_timer_entry_t *t, void *arg);

#endif
