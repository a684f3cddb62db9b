/*
 * wrk_tls.c: an LD_PRELOAD shim for wrk that controls and counts TLS session resumption.
 *
 * Why: wrk (4.1, and master as of this writing) has no option about sessions. It keeps one
 * SSL object per connection slot and, on reconnect, calls SSL_shutdown() then SSL_clear(),
 * which keeps the last session on the SSL object (the shutdown was clean). The next
 * SSL_connect() offers it, so with `Connection: close` every handshake after the first on a
 * slot is a resumption (TLS 1.3 PSK from the server's ticket, or a TLS 1.2 session id/ticket).
 *
 * What it does, chosen by environment variables read once:
 *   WRK_TLS_RESUME=0   drop the session in SSL_clear(): every handshake is a full one.
 *   WRK_TLS_RESUME=1   (or unset) leave wrk's behaviour alone.
 *   WRK_TLS_STATS=FILE at exit, write one line of key=value counters to FILE: handshakes
 *                      completed, how many were resumed, and the version, cipher and group of
 *                      the first one.
 *
 * Nothing here links against libssl at build time: the real functions are looked up with
 * dlsym(RTLD_NEXT) in the wrk process, so it builds without libssl-dev headers.
 *
 *   cc -O2 -shared -fPIC -o wrk_tls.so wrk_tls.c -ldl
 *   WRK_TLS_RESUME=0 WRK_TLS_STATS=/tmp/s LD_PRELOAD=./wrk_tls.so wrk ...
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;
typedef struct ssl_cipher_st SSL_CIPHER;

static int (*real_clear)(SSL *);
static int (*real_connect)(SSL *);
static int (*set_session)(SSL *, SSL_SESSION *);
static int (*session_reused)(const SSL *);
static const char *(*get_version)(const SSL *);
static const SSL_CIPHER *(*current_cipher)(const SSL *);
static const char *(*cipher_name)(const SSL_CIPHER *);
static int (*negotiated_group)(SSL *);
static long (*ssl_ctrl)(SSL *, int, long, void *);
static const char *(*group_to_name)(SSL *, int);

static int resume = 1;
static const char *stats_path;
static unsigned long handshakes, resumed;
static int first_seen;
static char first_version[32], first_cipher[64], first_group[32];

static void copy(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src != NULL ? src : "?");
}

#define CTRL_GET_NEGOTIATED_GROUP 134 /* SSL_CTRL_GET_NEGOTIATED_GROUP in openssl/ssl.h */

static const char *group_name(SSL *s)
{
    int nid;
    if (negotiated_group != NULL)
        nid = negotiated_group(s);
    else if (ssl_ctrl != NULL)
        nid = (int)ssl_ctrl(s, CTRL_GET_NEGOTIATED_GROUP, 0, NULL);
    else
        return NULL;
    return group_to_name != NULL && nid > 0 ? group_to_name(s, nid) : NULL;
}

__attribute__((constructor)) static void init(void)
{
    real_clear = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_clear");
    real_connect = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_connect");
    set_session = (int (*)(SSL *, SSL_SESSION *))dlsym(RTLD_NEXT, "SSL_set_session");
    session_reused = (int (*)(const SSL *))dlsym(RTLD_NEXT, "SSL_session_reused");
    get_version = (const char *(*)(const SSL *))dlsym(RTLD_NEXT, "SSL_get_version");
    current_cipher = (const SSL_CIPHER *(*)(const SSL *))dlsym(RTLD_NEXT, "SSL_get_current_cipher");
    cipher_name = (const char *(*)(const SSL_CIPHER *))dlsym(RTLD_NEXT, "SSL_CIPHER_get_name");
    /* A function from OpenSSL 3.2 on; a macro over SSL_ctrl() before. */
    negotiated_group = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_get_negotiated_group");
    ssl_ctrl = (long (*)(SSL *, int, long, void *))dlsym(RTLD_NEXT, "SSL_ctrl");
    group_to_name = (const char *(*)(SSL *, int))dlsym(RTLD_NEXT, "SSL_group_to_name");
    const char *r = getenv("WRK_TLS_RESUME");
    resume = !(r != NULL && strcmp(r, "0") == 0);
    stats_path = getenv("WRK_TLS_STATS");
}

int SSL_clear(SSL *s)
{
    int rc = real_clear(s);
    if (!resume && set_session != NULL)
        set_session(s, NULL);
    return rc;
}

int SSL_connect(SSL *s)
{
    int rc = real_connect(s);
    if (rc != 1)
        return rc;
    __atomic_fetch_add(&handshakes, 1, __ATOMIC_RELAXED);
    if (session_reused != NULL && session_reused(s))
        __atomic_fetch_add(&resumed, 1, __ATOMIC_RELAXED);
    int expected = 0;
    if (__atomic_compare_exchange_n(&first_seen, &expected, 1, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_RELAXED)) {
        copy(first_version, sizeof first_version, get_version ? get_version(s) : NULL);
        copy(first_cipher, sizeof first_cipher,
             current_cipher && cipher_name ? cipher_name(current_cipher(s)) : NULL);
        copy(first_group, sizeof first_group, group_name(s));
        __atomic_store_n(&first_seen, 2, __ATOMIC_RELEASE);
    }
    return rc;
}

__attribute__((destructor)) static void report(void)
{
    if (stats_path == NULL)
        return;
    FILE *f = fopen(stats_path, "w");
    if (f == NULL)
        return;
    int seen = __atomic_load_n(&first_seen, __ATOMIC_ACQUIRE) == 2;
    fprintf(f, "resume_allowed=%d handshakes=%lu resumed=%lu version=%s cipher=%s group=%s\n",
            resume, __atomic_load_n(&handshakes, __ATOMIC_RELAXED),
            __atomic_load_n(&resumed, __ATOMIC_RELAXED), seen ? first_version : "-",
            seen ? first_cipher : "-", seen ? first_group : "-");
    fclose(f);
}
