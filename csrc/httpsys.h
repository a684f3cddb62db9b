/*
 * The only header Python sees (through csrc/httpsys.cdef, kept in the same order).
 * Opaque handles, fixed-number enums and functions that take plain bytes. OpenSSL types, epoll
 * fds and internal structs stay inside the core.
 */
#ifndef HTTPSYS_H
#define HTTPSYS_H

#include <stddef.h>
#include <stdint.h>

#define HS_VERSION "0.1.0"

typedef struct hs_server hs_server_t;
typedef struct hs_queue hs_queue_t;
typedef struct hs_request hs_request_t;

/* Result codes of the public API (Win32 error numbers where HTTP.sys has one). */
enum hs_result {
    HS_RESULT_OK = 0,
    HS_RESULT_ACCESS_DENIED = 5,
    HS_RESULT_INVALID_PARAMETER = 87,
    HS_RESULT_ALREADY_EXISTS = 183,
    HS_RESULT_NOT_FOUND = 1168,
    HS_RESULT_TIMEOUT = 1460,
    HS_RESULT_IO_PENDING = 997,      /* ERROR_IO_PENDING: ASGI calls that would wait */
    HS_RESULT_SHUTDOWN = 1236,       /* ERROR_CONNECTION_ABORTED: queue or server closed */
    HS_RESULT_CONNECTION_GONE = 1229, /* ERROR_CONNECTION_INVALID: the client went away */
    HS_RESULT_SYSTEM = 1359          /* ERROR_INTERNAL_ERROR: see the error text */
};

/* Server-wide limits (reference section 3.1), settable before start(). */
enum hs_limit {
    HS_LIMIT_MAX_FIELD_LENGTH = 1,
    HS_LIMIT_MAX_REQUEST_BYTES = 2,
    HS_LIMIT_URL_SEGMENT_MAX_LENGTH = 3,
    HS_LIMIT_URL_SEGMENT_MAX_COUNT = 4,
    HS_LIMIT_MAX_BODY_BUFFER = 5
};

/* Connection timeouts (netsh http add timeout), in seconds (minsendrate: bytes/s); live: every
 * wait that starts after the change uses the new value. */
enum hs_timeout {
    HS_TIMEOUT_IDLE_CONNECTION = 1, /* idleconnectiontimeout: keep-alive wait for the next request */
    HS_TIMEOUT_HEADER_WAIT = 2,     /* headerwaittimeout: wait for a whole request head */
    HS_TIMEOUT_ENTITY_BODY = 3,     /* entitybodytimeout: gap between body bytes */
    HS_TIMEOUT_DRAIN_ENTITY_BODY = 4, /* drainentitybodytimeout: gap while a body is dropped */
    HS_TIMEOUT_REQUEST_QUEUE = 5,   /* requestqueuetimeout: wait in a queue for a worker */
    HS_TIMEOUT_MIN_SEND_RATE = 6    /* minsendrate, in bytes/s (not seconds): slowest reader */
};
/* minsendrate's value that turns it off (HTTP.sys's MAXULONG). */
#define HS_MIN_SEND_RATE_OFF 4294967295u

/* Flags of a binding (sslcert options the core acts on). */
enum hs_binding_flags {
    HS_BINDING_DISABLE_TLS12 = 1,
    HS_BINDING_DISABLE_TLS13 = 2,
    HS_BINDING_NO_SESSION_TICKETS = 4,
    HS_BINDING_REJECT = 8,
    HS_BINDING_NEGOTIATE_CLIENT_CERT = 16, /* clientcertnegotiation=enable */
    HS_BINDING_NO_REVOCATION_CHECK = 32,   /* verifyclientcertrevocation=disable */
    HS_BINDING_REVOCATION_CACHED_ONLY = 64, /* verifyrevocationwithcachedclientcertonly=enable */
    HS_BINDING_NO_USAGE_CHECK = 128        /* usagecheck=disable */
};

/* IIS sslFlags of a URL prefix (system.webServer/security/access@sslFlags, same numbers). */
enum hs_ssl_flags {
    HS_SSL_FLAG_SSL = 8,                /* Ssl: plain HTTP gets 403.4 */
    HS_SSL_FLAG_NEGOTIATE_CERT = 32,    /* SslNegotiateCert: ask for a certificate */
    HS_SSL_FLAG_REQUIRE_CERT = 64,      /* SslRequireCert: none 403.7, invalid 403.13/16/17 */
    HS_SSL_FLAG_MAP_CERT = 128,         /* SslMapCert */
    HS_SSL_FLAG_SSL128 = 256            /* Ssl128: a cipher under 128 bits gets 403.5 */
};

/* Everything about a binding beyond its certificate and key. */
typedef struct hs_sslcert_options {
    int flags;                          /* enum hs_binding_flags */
    int session_tickets;                /* TLS 1.3 tickets per handshake; -1: the default (1) */
    const char *trusted_ca_pem;         /* client-certificate trust list (PEM), NULL for none */
    size_t trusted_ca_len;
    const unsigned char *crls_der;      /* DER CRLs laid end to end, NULL for none */
    size_t crls_len;
    uint32_t revocation_freshness_s;    /* revocationfreshnesstime */
    uint32_t url_retrieval_timeout_ms;  /* urlretrievaltimeout */
} hs_sslcert_options_t;

/* Flags of hs_request_respond / hs_request_write. */
enum hs_send_flags {
    HS_SEND_FINAL = 1,      /* this is the end of the response; the request handle is released */
    HS_SEND_DISCONNECT = 2, /* close the connection after the response */
    HS_SEND_NOWAIT = 4      /* ASGI: never block; HS_RESULT_IO_PENDING above the high watermark */
};

/* What hs_request_poll asks about. */
enum hs_poll_events {
    HS_POLL_WRITABLE = 1,  /* the queued response data fell to the low watermark (or gone) */
    HS_POLL_DISCONNECT = 2 /* the connection is gone, or the client closed its sending side */
};

/* What a worker receives with a request. environ is one block of NUL-terminated strings,
 * key/value pairs ready for a WSGI environ: first HS_ENV_FIXED pairs in a fixed order, then the
 * headers (as HTTP_*, CONTENT_TYPE, CONTENT_LENGTH) and the TLS facts. */
typedef struct hs_request_info {
    hs_request_t *req;
    const char *environ;
    size_t environ_len;
    int64_t content_length; /* -1: no Content-Length (chunked, or no body) */
    int has_body;           /* a body follows (Content-Length > 0 or chunked) */
    int http_minor;         /* 0 for HTTP/1.0, 1 for HTTP/1.1 */
    int head_request;       /* the method is HEAD: a body must not be sent */
} hs_request_info_t;

/* Number of fixed pairs at the start of the environ block: REQUEST_METHOD, SCRIPT_NAME,
 * PATH_INFO, QUERY_STRING, SERVER_PROTOCOL, REMOTE_ADDR, REMOTE_PORT, SERVER_NAME,
 * SERVER_PORT, RAW_URI, wsgi.url_scheme. */
#define HS_ENV_FIXED 11

/* Server lifecycle. err receives a message on failure. */
const char *hs_version(void);
hs_server_t *hs_server_new(int io_threads, char *err, size_t errlen);
int hs_server_set_limit(hs_server_t *s, int limit, uint64_t value);
int hs_server_set_timeout(hs_server_t *s, int timeout, uint32_t seconds);
int hs_server_start(hs_server_t *s, char *err, size_t errlen);
void hs_server_stop(hs_server_t *s);
void hs_server_free(hs_server_t *s);

/* Bindings: ip is "0.0.0.0" for the wildcard. cert_pem is the chain, leaf first. */
int hs_server_set_sslcert(hs_server_t *s, const char *ip, int port, const char *cert_pem,
                          size_t cert_len, const char *key_pem, size_t key_len,
                          const hs_sslcert_options_t *opts, char *err, size_t errlen);
int hs_server_delete_sslcert(hs_server_t *s, const char *ip, int port);

/* SNI bindings (netsh hostnameport=): chosen by the ClientHello's server name on that port; a
 * hello without a matching name falls back to the ipport binding, or fails without one. */
int hs_server_set_sslcert_sni(hs_server_t *s, const char *host, int port, const char *cert_pem,
                              size_t cert_len, const char *key_pem, size_t key_len,
                              const hs_sslcert_options_t *opts, char *err, size_t errlen);
int hs_server_delete_sslcert_sni(hs_server_t *s, const char *host, int port);

/* TLS-ALPN-01 challenges (RFC 8737): a ClientHello for host offering ALPN acme-tls/1 alone gets
 * this certificate (the one with the acmeIdentifier extension) on any TLS port, whether host has
 * a binding or not; other clients are unaffected. Set replaces, delete removes (NOT_FOUND). */
int hs_server_set_acme_challenge(hs_server_t *s, const char *host, const char *cert_pem,
                                 size_t cert_len, const char *key_pem, size_t key_len, char *err,
                                 size_t errlen);
int hs_server_delete_acme_challenge(hs_server_t *s, const char *host);

/* CRLs fetched from certificates' distribution points: a fetcher thread (Python, which owns the
 * network client) waits up to wait_ms for a URL; 1 with url (NUL-terminated) and the binding's
 * urlretrievaltimeout in ms, 0 when there is nothing to fetch. It answers with the DER it got,
 * or der == NULL when the fetch failed; a CRL whose signature does not verify against the
 * certificate's issuer is refused (HS_RESULT_INVALID_PARAMETER, err says why). */
int hs_server_crl_next_fetch(hs_server_t *s, int wait_ms, char *url, size_t cap,
                             uint32_t *timeout_ms);
int hs_server_crl_fetched(hs_server_t *s, const char *url, const unsigned char *der, size_t len,
                          char *err, size_t errlen);
/* Makes hs_server_crl_next_fetch return 0 at once from now on (before the server is freed). */
void hs_server_crl_fetch_shutdown(hs_server_t *s);

/* Client-certificate mappings (httpsys.certmapping.encode()), replacing the current ones; used by
 * prefixes with HS_SSL_FLAG_MAP_CERT. HS_RESULT_INVALID_PARAMETER with err for a bad spec. */
int hs_server_set_certmappings(hs_server_t *s, const char *spec, size_t len, char *err,
                               size_t errlen);

/* Open client connections over all I/O threads (servicestate). */
uint32_t hs_server_connections(hs_server_t *s);

/* The HTTPERR log (reference 3.4): httperr<N>.log files in dir (which must exist), rolled over at
 * max_bytes (0: 1 MB; at least 4096), written by a logging thread from a ring of ring_bytes
 * (0: 1 MB; at least 16 KB) that the I/O threads never wait on. Set once, before start; dir NULL: off.
 * flush waits until what was logged before the call is written (HS_RESULT_TIMEOUT if not in
 * time); stats counts lines written, records dropped (ring full) and lines the disk refused. */
int hs_server_set_httperr(hs_server_t *s, const char *dir, uint64_t max_bytes,
                          uint32_t ring_bytes, char *err, size_t errlen);
int hs_server_httperr_flush(hs_server_t *s, int timeout_ms);
int hs_server_httperr_stats(hs_server_t *s, uint64_t *written, uint64_t *dropped,
                            uint64_t *failed);

/* Listening sockets, refcounted per ip:port: each listen needs one unlisten. */
int hs_server_listen(hs_server_t *s, const char *ip, int port, int tls, char *err, size_t errlen);
int hs_server_unlisten(hs_server_t *s, const char *ip, int port);

/* Request queues and URL registrations. */
hs_queue_t *hs_queue_new(hs_server_t *s, uint32_t limit);
void hs_queue_shutdown(hs_queue_t *q);
void hs_queue_release(hs_queue_t *q);
uint32_t hs_queue_length(hs_queue_t *q);
/* The IIS sslFlags (enum hs_ssl_flags) of the prefix this queue serves: set before add_url. */
void hs_queue_set_ssl_flags(hs_queue_t *q, int ssl_flags);
/* The queue name the HTTPERR log writes (s-queuename): set before add_url. */
void hs_queue_set_name(hs_queue_t *q, const char *name);
int hs_server_add_url(hs_server_t *s, const char *prefix, size_t len, hs_queue_t *q);
int hs_server_remove_url(hs_server_t *s, const char *prefix, size_t len);

/* Workers. receive blocks (the GIL is released around it) until a request, the timeout, or
 * shutdown. */
int hs_queue_receive(hs_queue_t *q, int timeout_ms, hs_request_info_t *info);
long hs_request_read_body(hs_request_t *r, char *buf, size_t len, int timeout_ms);
int hs_request_respond(hs_request_t *r, const char *head, size_t head_len, int64_t content_length,
                       const char *body, size_t body_len, int flags);
int hs_request_write(hs_request_t *r, const char *body, size_t body_len, int flags);
void hs_request_abort(hs_request_t *r);
void hs_request_fail(hs_request_t *r, int reject);

/* ASGI: one asyncio thread serves the queue without blocking. hs_queue_eventfd makes q an ASGI
 * queue (before hs_server_add_url) and returns the eventfd to watch (-1 on failure); it becomes
 * readable when drain has something. hs_queue_drain takes up to max_new new requests (as
 * hs_queue_receive would) and up to max_ready requests that changed since a call below returned
 * HS_RESULT_IO_PENDING or 0 (they are Python's already); what does not fit is reported again.
 * read_body_nowait: bytes, 0 at the end, -HS_RESULT_IO_PENDING or -HS_RESULT_CONNECTION_GONE.
 * poll returns the events of the mask that hold now, or 0 and reports the request's next change.
 * respond/write with HS_SEND_NOWAIT return HS_RESULT_IO_PENDING above the high watermark. */
int hs_queue_eventfd(hs_queue_t *q);
int hs_queue_drain(hs_queue_t *q, hs_request_info_t *infos, int max_new, hs_request_t **ready,
                   int max_ready, int *n_ready);
long hs_request_read_body_nowait(hs_request_t *r, char *buf, size_t len);
int hs_request_poll(hs_request_t *r, int events);

/* The handshake load generator (`httpsys bench handshake`): cfg->connections client connections
 * at once for cfg->duration_s seconds, each a full TCP connect + TLS handshake (resuming the
 * slot's last session for a share cfg->resume of them) + one request read to the server's
 * close. Runs on the calling thread; the counters of res may be read from another thread while
 * it runs. Samples (us from connect()) are malloc'd: free them with hs_hsbench_free. */
typedef struct hs_hsbench_config {
    const char *ip;        /* numeric IPv4 or IPv6 address */
    int port;
    const char *sni;       /* server name to send, NULL for none */
    int connections;
    double duration_s;
    int tls_version;       /* 12, 13, or 0 for either */
    double resume;         /* 0.0-1.0 */
    const char *cert_file; /* client certificate chain (PEM), NULL for none */
    const char *key_file;
    const char *ca_file;   /* verify the server against it; NULL: no verification */
    const char *request;   /* sent after the handshake; request_len 0: close after the handshake */
    size_t request_len;
    int timeout_ms;        /* per connection (0: 10 s) */
} hs_hsbench_config_t;

typedef struct hs_hsbench_result {
    uint64_t handshakes, full, resumed, responses;
    uint64_t err_connect, err_tls, err_io, err_timeout;
    uint32_t *connect_us, *handshake_us, *ttfb_us; /* one per finished connection */
    size_t n_samples, cap_samples;
    double elapsed_s;
    char first_error[256];
} hs_hsbench_result_t;

int hs_hsbench_run(const hs_hsbench_config_t *cfg, hs_hsbench_result_t *res, char *err,
                   size_t errlen);
void hs_hsbench_free(hs_hsbench_result_t *res);

/* The status table, for Python's enum views and the test that every reject has a row. */
int hs_reject_count(void);
int hs_reject_status(int reject, int *status, int *substatus, const char **reason,
                     const char **httperr);

/* Test entry points for the pure units (no sockets). Each writes its result into out as
 * NUL-terminated fields and returns HS_OK (0), HS_AGAIN (-2) or the reject code (> 0). */
int hs_test_parse_request(const char *buf, size_t len, size_t max_field, size_t max_request,
                          char *out, size_t outcap, size_t *outlen, size_t *consumed);
int hs_test_chunked_decode(const char *buf, size_t len, size_t step, char *out, size_t outcap,
                           size_t *outlen, size_t *consumed);
int hs_test_url_canonicalize(const char *path, size_t len, size_t seg_max_len,
                             size_t seg_max_count, char *out, size_t outcap, size_t *outlen);
int hs_test_route(const char *prefixes, size_t prefixes_len, const char *host, const char *local_ip,
                  int port, const char *path, int *index, size_t *path_len);
/* Parses head, lays its WSGI environ out iterations times (>= 1) and copies the last block. */
int hs_test_environ_build(const char *head, size_t len, size_t script_len, int tls,
                          size_t iterations, char *out, size_t outcap, size_t *outlen);

/* CRL revocation index (crl.c): ix is an opaque index handle; build returns HS_OK (0) or -1 with
 * a message in err; lookup and fresh return 1 or 0 (now is seconds since the epoch); lookup_many
 * looks up n serials of each_len bytes laid end to end and returns how many are listed;
 * check_cert returns HS_CRL_GOOD 0, HS_CRL_REVOKED 1, HS_CRL_OTHER_ISSUER 2 or -1 for bad DER. */
int hs_test_crl_build(const unsigned char *der, size_t len, void **out, char *err, size_t errlen);
int hs_test_crl_lookup(void *ix, const unsigned char *serial, size_t len);
size_t hs_test_crl_lookup_many(void *ix, const unsigned char *serials, size_t each_len, size_t n);
int hs_test_crl_fresh(void *ix, int64_t now);
size_t hs_test_crl_count(void *ix);
int hs_test_crl_check_cert(void *ix, const unsigned char *cert_der, size_t len);
void hs_test_crl_free(void *ix);

#endif
