/*
 * One I/O thread: an epoll set, its own SO_REUSEPORT listening sockets, its connections.
 *
 * Theory of operation
 * -------------------
 * - Connections are registered once, edge-triggered, for EPOLLIN|EPOLLOUT|EPOLLRDHUP, and never
 *   modified again: no epoll_ctl per request. A readable edge is handled by reading until the
 *   socket is drained (a short read counts) or until the connection pauses itself because its
 *   buffers are full; a paused connection is resumed explicitly by whoever frees room, not by
 *   epoll. A writable edge flushes what is queued.
 * - Listening sockets are level-triggered: each wakeup accepts until EAGAIN (bounded per turn).
 * - Workers never touch connections. They post the request they changed to the loop; the post
 *   writes the eventfd only when the loop is parked in epoll_wait, so under load many posts share
 *   one wakeup. The loop drains the posted list before each epoll_wait.
 * - The other way round, a request pushed to a queue with an idle worker does not wake it at
 *   once: the queue is noted and its workers are woken after the whole batch of events. Waking
 *   per request lets the worker preempt this thread on a shared core for every request (two
 *   context switches and a futex each, measured); waking per batch hands it many at a time.
 * - Who closes what: only this thread closes its connections' fds and its listening fds. A closed
 *   connection is unlinked at once and freed after the current batch of events, so a later event
 *   of the same batch never touches freed memory.
 * - The bindings table can be replaced at any time by another thread: a connection looks up its
 *   SSL_CTX once, at accept, and keeps it (SSL_new holds a reference) until it closes.
 * - Time: now_ms is read from CLOCK_MONOTONIC once per turn; everything else takes it from here.
 *   The connections' timers sit on this loop's wheel (timer.h): epoll_wait sleeps until the next
 *   tick that has one (at most a second), and each turn fires the ones due, in one batch, after
 *   the events. Arming and cancelling are O(1), so the request path pays a few pointer writes
 *   per wait and nothing walks the list of connections.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "httpsys.h"
#include "loop.h"
#include "queue.h"
#include "server.h"

#define MAX_EVENTS 256
#define ACCEPTS_PER_TURN 64

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int hs__loop_init(hs_loop_t *l, struct hs_server *s, int index, char *err, size_t errlen)
{
    memset(l, 0, sizeof(*l));
    l->server = s;
    l->index = index;
    l->wake_kind = HS_EV_WAKE;
    pthread_mutex_init(&l->lock, NULL);
    atomic_init(&l->parked, 0);
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->epfd < 0 || l->wakefd < 0) {
        snprintf(err, errlen, "epoll/eventfd: %s", strerror(errno));
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &l->wake_kind};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wakefd, &ev) != 0) {
        snprintf(err, errlen, "epoll_ctl: %s", strerror(errno));
        return -1;
    }
    l->now_ms = monotonic_ms();
    hs__wheel_init(&l->wheel, l->now_ms);
    return 0;
}

static void wake(hs_loop_t *l)
{
    uint64_t one = 1;
    ssize_t n = write(l->wakefd, &one, sizeof(one));
    HS_UNUSED(n); /* EAGAIN means the counter is already non-zero: the loop wakes anyway */
}

void hs__loop_post(hs_loop_t *l, hs_request_t *r)
{
    int need_wake = 0;
    pthread_mutex_lock(&l->lock);
    if (!r->posted) {
        r->posted = 1;
        hs__request_ref(r);
        r->post_next = l->posted;
        l->posted = r;
        need_wake = atomic_load_explicit(&l->parked, memory_order_relaxed);
    }
    pthread_mutex_unlock(&l->lock);
    if (need_wake)
        wake(l);
}

void hs__loop_crl_news(hs_loop_t *l)
{
    pthread_mutex_lock(&l->lock);
    l->crl_news = 1;
    int need_wake = atomic_load_explicit(&l->parked, memory_order_relaxed);
    pthread_mutex_unlock(&l->lock);
    if (need_wake)
        wake(l);
}

void hs__loop_add_listener(hs_loop_t *l, int fd, int tls)
{
    hs_listen_sock_t *ls = calloc(1, sizeof(*ls));
    if (ls == NULL) {
        close(fd);
        return;
    }
    ls->kind = HS_EV_LISTENER;
    ls->fd = fd;
    ls->tls = tls;
    pthread_mutex_lock(&l->lock);
    ls->next = l->add_socks;
    l->add_socks = ls;
    pthread_mutex_unlock(&l->lock);
    wake(l);
}

void hs__loop_close_listener(hs_loop_t *l, int fd)
{
    pthread_mutex_lock(&l->lock);
    if (l->n_close_fds == l->cap_close_fds) {
        size_t cap = l->cap_close_fds ? l->cap_close_fds * 2 : 8;
        int *p = realloc(l->close_fds, cap * sizeof(int));
        if (p == NULL) {
            pthread_mutex_unlock(&l->lock);
            return; /* the fd stays open until the loop stops */
        }
        l->close_fds = p;
        l->cap_close_fds = cap;
    }
    l->close_fds[l->n_close_fds++] = fd;
    pthread_mutex_unlock(&l->lock);
    wake(l);
}

const char *hs__loop_date(hs_loop_t *l)
{
    time_t now = time(NULL);
    if (now != l->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(l->date, sizeof(l->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        l->date_sec = now;
    }
    return l->date;
}

void hs__loop_unlink_conn(hs_loop_t *l, hs_conn_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    l->n_conns--;
    c->prev = NULL;
    c->next = l->dead;
    l->dead = c;
}

void hs__loop_defer_signal(hs_loop_t *l, hs_queue_t *q)
{
    if (l->n_signals == l->cap_signals) {
        size_t cap = l->cap_signals ? l->cap_signals * 2 : 16;
        hs_queue_t **p = realloc(l->signals, cap * sizeof(*p));
        if (p == NULL) {
            hs__queue_signal(q); /* cannot defer: wake now */
            hs_queue_release(q);
            return;
        }
        l->signals = p;
        l->cap_signals = cap;
    }
    l->signals[l->n_signals++] = q;
}

static void flush_signals(hs_loop_t *l)
{
    for (size_t i = 0; i < l->n_signals; i++) {
        hs__queue_signal(l->signals[i]);
        hs_queue_release(l->signals[i]);
    }
    l->n_signals = 0;
}

static void free_dead(hs_loop_t *l)
{
    while (l->dead != NULL) {
        hs_conn_t *c = l->dead;
        l->dead = c->next;
        free(c);
    }
}

static void on_accept(hs_loop_t *l, hs_listen_sock_t *ls)
{
    for (int i = 0; i < ACCEPTS_PER_TURN; i++) {
        int fd = accept4(ls->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            /* EAGAIN: drained. EMFILE and friends: the listener stays readable and is retried
             * next turn; aborted handshakes (ECONNABORTED) are simply skipped. */
            if (errno == ECONNABORTED || errno == EINTR)
                continue;
            return;
        }
        hs__conn_new(l, fd, ls->tls);
    }
}

/* Applies what other threads asked for: listeners to adopt or close, requests they changed. */
static void run_commands(hs_loop_t *l)
{
    pthread_mutex_lock(&l->lock);
    hs_request_t *posted = l->posted;
    hs_listen_sock_t *adds = l->add_socks;
    int crl_news = l->crl_news;
    l->crl_news = 0;
    l->posted = NULL;
    l->add_socks = NULL;
    for (hs_request_t *r = posted; r != NULL; r = r->post_next)
        r->posted = 0;
    size_t n_close = l->n_close_fds < 64 ? l->n_close_fds : 64;
    int closing[64];
    if (n_close > 0) {
        memcpy(closing, l->close_fds, n_close * sizeof(int));
        memmove(l->close_fds, l->close_fds + n_close, (l->n_close_fds - n_close) * sizeof(int));
        l->n_close_fds -= n_close;
    }
    pthread_mutex_unlock(&l->lock);

    while (adds != NULL) {
        hs_listen_sock_t *ls = adds;
        adds = ls->next;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = ls};
        if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, ls->fd, &ev) != 0) {
            close(ls->fd);
            free(ls);
            continue;
        }
        ls->next = l->socks;
        l->socks = ls;
    }
    for (size_t i = 0; i < n_close; i++) {
        for (hs_listen_sock_t **pp = &l->socks; *pp != NULL; pp = &(*pp)->next) {
            if ((*pp)->fd != closing[i])
                continue;
            hs_listen_sock_t *ls = *pp;
            *pp = ls->next;
            close(ls->fd);
            free(ls);
            break;
        }
    }
    for (hs_conn_t *c = crl_news ? l->conns : NULL, *next; c != NULL; c = next) {
        next = c->next;
        hs__conn_crl_news(c);
    }
    while (posted != NULL) {
        hs_request_t *r = posted;
        posted = r->post_next;
        if (r->conn != NULL)
            hs__conn_on_request_update(r->conn);
        hs__request_release(r);
    }
}

static int has_commands(hs_loop_t *l)
{
    return l->posted != NULL || l->add_socks != NULL || l->n_close_fds > 0 || l->crl_news ||
           l->stop;
}

static void dispatch(hs_loop_t *l, struct epoll_event *ev)
{
    int kind = *(int *)ev->data.ptr;
    if (kind == HS_EV_CONN) {
        hs_conn_t *c = ev->data.ptr;
        if (ev->events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            c->hup = 1; /* read to the end: the EOF came with the data, no later edge follows */
        if (ev->events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            hs__conn_on_readable(c);
        if (ev->events & EPOLLOUT)
            hs__conn_on_writable(c);
    } else if (kind == HS_EV_LISTENER) {
        on_accept(l, ev->data.ptr);
    } else {
        uint64_t v;
        ssize_t n = read(l->wakefd, &v, sizeof(v));
        HS_UNUSED(n);
    }
}

static void *loop_main(void *arg)
{
    hs_loop_t *l = arg;
    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        run_commands(l);
        flush_signals(l);
        pthread_mutex_lock(&l->lock);
        int busy = has_commands(l);
        int stop = l->stop;
        if (!busy)
            atomic_store_explicit(&l->parked, 1, memory_order_relaxed);
        pthread_mutex_unlock(&l->lock);
        if (stop)
            break;
        int timeout = busy ? 0 : hs__wheel_wait_ms(&l->wheel, monotonic_ms(), 1000);
        int n = epoll_wait(l->epfd, evs, MAX_EVENTS, timeout);
        atomic_store_explicit(&l->parked, 0, memory_order_relaxed);
        l->now_ms = monotonic_ms();
        for (int i = 0; i < n; i++)
            dispatch(l, &evs[i]);
        hs__wheel_expire(&l->wheel, l->now_ms, hs__conn_on_timer, NULL);
        free_dead(l);
    }
    while (l->conns != NULL)
        hs__conn_close(l->conns);
    run_commands(l); /* releases requests posted after their connections closed */
    flush_signals(l);
    free_dead(l);
    free(l->signals);
    return NULL;
}

int hs__loop_start(hs_loop_t *l)
{
    if (pthread_create(&l->thread, NULL, loop_main, l) != 0)
        return -1;
    l->running = 1;
    return 0;
}

void hs__loop_stop(hs_loop_t *l)
{
    if (!l->running)
        return;
    pthread_mutex_lock(&l->lock);
    l->stop = 1;
    pthread_mutex_unlock(&l->lock);
    wake(l);
    pthread_join(l->thread, NULL);
    l->running = 0;
}

void hs__loop_destroy(hs_loop_t *l)
{
    while (l->socks != NULL) {
        hs_listen_sock_t *ls = l->socks;
        l->socks = ls->next;
        close(ls->fd);
        free(ls);
    }
    while (l->add_socks != NULL) {
        hs_listen_sock_t *ls = l->add_socks;
        l->add_socks = ls->next;
        close(ls->fd);
        free(ls);
    }
    while (l->posted != NULL) {
        hs_request_t *r = l->posted;
        l->posted = r->post_next;
        hs__request_release(r);
    }
    free(l->close_fds);
    if (l->epfd >= 0)
        close(l->epfd);
    if (l->wakefd >= 0)
        close(l->wakefd);
    pthread_mutex_destroy(&l->lock);
}
