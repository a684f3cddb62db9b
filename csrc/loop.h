#ifndef HS_LOOP_H
#define HS_LOOP_H

#include <pthread.h>
#include <stdatomic.h>

#include "hs_internal.h"
#include "timer.h"

struct hs_server;
struct hs_conn;
struct hs_request;

/* The first int of every object whose address sits in an epoll event's data.ptr. */
enum hs_ev_kind { HS_EV_LISTENER = 1, HS_EV_CONN = 2, HS_EV_WAKE = 3 };

typedef struct hs_listen_sock {
    int kind; /* HS_EV_LISTENER */
    int fd;
    int tls;
    struct hs_listen_sock *next;
} hs_listen_sock_t;

typedef struct hs_loop {
    struct hs_server *server;
    int index;
    int epfd;
    int wakefd;
    int wake_kind; /* HS_EV_WAKE: epoll's data.ptr for the eventfd points here */
    pthread_t thread;
    int running;

    pthread_mutex_t lock;          /* guards the fields below */
    struct hs_request *posted;     /* requests workers changed (singly linked via post_next) */
    hs_listen_sock_t *add_socks;   /* listening sockets to adopt */
    int *close_fds;                /* listening fds to drop */
    size_t n_close_fds, cap_close_fds;
    atomic_int parked;             /* in epoll_wait: a poster must write wakefd */
    int crl_news;                  /* a CRL fetch ended: waiting connections look again */
    int stop;

    hs_listen_sock_t *socks;       /* owned listening sockets (loop thread only) */
    struct hs_conn *conns;         /* open connections (loop thread only) */
    atomic_size_t n_conns;         /* written by this thread, read by servicestate */
    struct hs_queue **signals;     /* queues to wake a worker on after this batch */
    size_t n_signals, cap_signals;
    struct hs_conn *dead;          /* closed connections, freed after the current batch */
    uint64_t now_ms;               /* CLOCK_MONOTONIC in ms, read once per iteration */
    hs_wheel_t wheel;              /* the connections' timers (loop thread only) */
    char date[64];                 /* cached IMF-fixdate for the current second */
    time_t date_sec;
} hs_loop_t;

int hs__loop_init(hs_loop_t *l, struct hs_server *s, int index, char *err, size_t errlen);
int hs__loop_start(hs_loop_t *l);
void hs__loop_stop(hs_loop_t *l); /* asks the thread to stop and joins it */
void hs__loop_destroy(hs_loop_t *l);

/* From any thread: queue a request for the loop to look at (takes a reference). */
void hs__loop_post(hs_loop_t *l, struct hs_request *r);
/* From any thread: hand a listening socket to the loop, or ask it to close one. */
void hs__loop_add_listener(hs_loop_t *l, int fd, int tls);
void hs__loop_close_listener(hs_loop_t *l, int fd);
/* From any thread: a CRL fetch ended. */
void hs__loop_crl_news(hs_loop_t *l);

/* Loop thread: wake a worker of q once the current batch of events is done; takes over a
 * reference to q. */
void hs__loop_defer_signal(hs_loop_t *l, struct hs_queue *q);

/* The Date header value for now (loop thread only). */
const char *hs__loop_date(hs_loop_t *l);

void hs__loop_unlink_conn(hs_loop_t *l, struct hs_conn *c);

#endif
