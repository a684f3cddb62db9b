/* Mutual-TLS handshake load for bench/mtls.py: one full handshake per connection.
 *
 *   mtls_client HOST PORT SECONDS CONCURRENCY CERT KEY TLSVER [PATH]
 *
 * Keeps CONCURRENCY connections in flight from one thread (epoll, non-blocking sockets) for
 * SECONDS seconds. Each connection: TCP connect, TLS handshake presenting CERT/KEY (PEM) when
 * the server asks, "GET PATH HTTP/1.1" with "Connection: close", read the answer until the
 * server closes, close. No session is ever offered (a fresh SSL object per connection, the
 * client session cache off), so every handshake is a full one; TLSVER is "1.2" or "1.3"
 * (pinned min and max). The server certificate is not verified (the server's side of the
 * handshake is what is measured). After SECONDS no new connection starts; the ones in flight
 * finish (up to 10 s more), so that the server CPU read around this program covers exactly the
 * connections counted.
 *
 * Prints one JSON object on stdout: connections completed, handshakes, resumed, status counts,
 * errors by kind, elapsed seconds, and the version/cipher/group of the first handshake.
 *
 * Build: cc -O2 -Wall -o mtls_client mtls_client.c -lssl -lcrypto
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum state { IDLE, CONNECTING, HANDSHAKE, WRITING, READING };

struct conn {
    int fd;
    SSL *ssl;
    enum state st;
    size_t sent;
    size_t got;
    char head[16];   /* the first bytes of the answer: "HTTP/1.1 200 " */
};

static struct {
    long completed, handshakes, resumed, status_200, status_403, status_400, status_other;
    long err_connect, err_handshake, err_write, err_read, err_noanswer;
} st;

static char first_version[32] = "", first_cipher[64] = "", first_group[32] = "";
static char request[512];
static size_t request_len;
static struct sockaddr_in addr;
static SSL_CTX *ctx;
static int ep;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void want(struct conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void finish(struct conn *c)
{
    if (c->ssl)
        SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);   /* also removes it from the epoll set */
    c->ssl = NULL;
    c->fd = -1;
    c->st = IDLE;
}

static int start(struct conn *c)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        st.err_connect++;
        c->st = IDLE;
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->st = CONNECTING;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 && errno != EINPROGRESS) {
        st.err_connect++;
        finish(c);
        return -1;
    }
    return 0;
}

static void record_first(struct conn *c)
{
    if (first_version[0])
        return;
    snprintf(first_version, sizeof(first_version), "%s", SSL_get_version(c->ssl));
    snprintf(first_cipher, sizeof(first_cipher), "%s", SSL_get_cipher_name(c->ssl));
    int nid = SSL_get_negotiated_group(c->ssl);
    const char *name = nid > 0 ? OBJ_nid2sn(nid) : NULL;
    snprintf(first_group, sizeof(first_group), "%s", name ? name : "?");
}

static void count_status(struct conn *c)
{
    if (c->got < 12 || memcmp(c->head, "HTTP/1.", 7) != 0) {
        st.err_noanswer++;
        return;
    }
    st.completed++;
    if (memcmp(c->head + 9, "200", 3) == 0)
        st.status_200++;
    else if (memcmp(c->head + 9, "403", 3) == 0)
        st.status_403++;
    else if (memcmp(c->head + 9, "400", 3) == 0)
        st.status_400++;
    else
        st.status_other++;
}

/* Drives one connection as far as it goes without blocking. */
static void step(struct conn *c)
{
    for (;;) {
        switch (c->st) {
        case IDLE:
            return;
        case CONNECTING: {
            int err = 0;
            socklen_t len = sizeof(err);
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err != 0) {
                st.err_connect++;
                finish(c);
                return;
            }
            c->ssl = SSL_new(ctx);
            SSL_set_fd(c->ssl, c->fd);
            SSL_set_tlsext_host_name(c->ssl, "localhost");
            c->st = HANDSHAKE;
            break;
        }
        case HANDSHAKE: {
            int r = SSL_connect(c->ssl);
            if (r == 1) {
                st.handshakes++;
                if (SSL_session_reused(c->ssl))
                    st.resumed++;
                record_first(c);
                c->st = WRITING;
                break;
            }
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ) {
                want(c, EPOLLIN);
                return;
            }
            if (e == SSL_ERROR_WANT_WRITE) {
                want(c, EPOLLOUT);
                return;
            }
            st.err_handshake++;
            ERR_clear_error();
            finish(c);
            return;
        }
        case WRITING: {
            size_t n = 0;
            int r = SSL_write_ex(c->ssl, request + c->sent, request_len - c->sent, &n);
            if (r == 1) {
                c->sent += n;
                if (c->sent == request_len)
                    c->st = READING;
                break;
            }
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ) {
                want(c, EPOLLIN);
                return;
            }
            if (e == SSL_ERROR_WANT_WRITE) {
                want(c, EPOLLOUT);
                return;
            }
            st.err_write++;
            ERR_clear_error();
            finish(c);
            return;
        }
        case READING: {
            char buf[4096];
            size_t n = 0;
            int r = SSL_read_ex(c->ssl, buf, sizeof(buf), &n);
            if (r == 1) {
                if (c->got < sizeof(c->head)) {
                    size_t take = sizeof(c->head) - c->got;
                    memcpy(c->head + c->got, buf, n < take ? n : take);
                }
                c->got += n;
                break;
            }
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ) {
                want(c, EPOLLIN);
                return;
            }
            if (e == SSL_ERROR_WANT_WRITE) {
                want(c, EPOLLOUT);
                return;
            }
            /* close_notify, or the server closed without one: the answer is complete.
             * Anything else with no answer read is an error. */
            if (e == SSL_ERROR_ZERO_RETURN || c->got > 0)
                count_status(c);
            else
                st.err_read++;
            ERR_clear_error();
            finish(c);
            return;
        }
        }
    }
}

int main(int argc, char **argv)
{
    if (argc < 8) {
        fprintf(stderr, "usage: %s HOST PORT SECONDS CONCURRENCY CERT KEY 1.2|1.3 [PATH]\n", argv[0]);
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]);
    double seconds = atof(argv[3]);
    int concurrency = atoi(argv[4]);
    const char *cert = argv[5], *key = argv[6], *ver = argv[7];
    const char *path = argc > 8 ? argv[8] : "/";
    if (concurrency < 1 || concurrency > 4096 || port < 1 || seconds <= 0) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "HOST must be an IPv4 address\n");
        return 2;
    }
    request_len = (size_t)snprintf(request, sizeof(request),
                                   "GET %s HTTP/1.1\r\nHost: localhost:%d\r\nConnection: close\r\n\r\n",
                                   path, port);

    ctx = SSL_CTX_new(TLS_client_method());
    int v = strcmp(ver, "1.2") == 0 ? TLS1_2_VERSION : TLS1_3_VERSION;
    SSL_CTX_set_min_proto_version(ctx, v);
    SSL_CTX_set_max_proto_version(ctx, v);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    if (strcmp(cert, "-") != 0) {
        if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
            fprintf(stderr, "cannot load %s / %s\n", cert, key);
            ERR_print_errors_fp(stderr);
            return 2;
        }
    }

    ep = epoll_create1(EPOLL_CLOEXEC);
    struct conn *conns = calloc((size_t)concurrency, sizeof(*conns));
    struct epoll_event events[256];
    double t0 = now(), stop_at = t0 + seconds, hard_stop = stop_at + 10.0;
    int active = 0;
    for (int i = 0; i < concurrency; i++) {
        conns[i].fd = -1;
        if (start(&conns[i]) == 0)
            active++;
    }
    while (active > 0) {
        double t = now();
        if (t > hard_stop)
            break;
        int n = epoll_wait(ep, events, 256, 100);
        for (int i = 0; i < n; i++)
            step(events[i].data.ptr);
        int running = t < stop_at;
        active = 0;
        for (int i = 0; i < concurrency; i++) {
            if (conns[i].st == IDLE && running)
                start(&conns[i]);
            if (conns[i].st != IDLE)
                active++;
        }
    }
    double elapsed = now() - t0;
    long unfinished = 0;
    for (int i = 0; i < concurrency; i++)
        if (conns[i].st != IDLE) {
            unfinished++;
            finish(&conns[i]);
        }
    printf("{\"completed\": %ld, \"handshakes\": %ld, \"resumed\": %ld, \"elapsed_s\": %.6f, "
           "\"status\": {\"200\": %ld, \"400\": %ld, \"403\": %ld, \"other\": %ld}, "
           "\"errors\": {\"connect\": %ld, \"handshake\": %ld, \"write\": %ld, \"read\": %ld, "
           "\"no_answer\": %ld, \"unfinished\": %ld}, "
           "\"version\": \"%s\", \"cipher\": \"%s\", \"group\": \"%s\", \"openssl\": \"%s\"}\n",
           st.completed, st.handshakes, st.resumed, elapsed, st.status_200, st.status_400,
           st.status_403, st.status_other, st.err_connect, st.err_handshake, st.err_write,
           st.err_read, st.err_noanswer, unfinished, first_version, first_cipher, first_group,
           OpenSSL_version(OPENSSL_VERSION));
    free(conns);
    SSL_CTX_free(ctx);
    return 0;
}
