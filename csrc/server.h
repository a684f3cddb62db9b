#ifndef HS_SERVER_H
#define HS_SERVER_H

#include <pthread.h>

#include "bindings.h"
#include "certmap.h"
#include "crlfetch.h"
#include "http1.h"
#include "httperr.h"
#include "loop.h"
#include "route.h"
#include "url.h"

typedef struct hs_listener {
    char ip[64];
    int port;
    int tls;
    int refs;
    int *fds; /* one SO_REUSEPORT socket per loop */
    struct hs_listener *next;
} hs_listener_t;

struct hs_server {
    int n_loops;
    hs_loop_t *loops;
    int started;

    hs_bindings_t bindings;
    hs_crl_cache_t crl_cache; /* CRLs fetched from distribution points */
    hs_certmap_t *certmap;    /* client-certificate mappings, under cfg_lock */
    uint32_t certmap_gen;     /* bumped on every change (atomic): connections map again */

    pthread_mutex_t cfg_lock; /* guards routes and listeners */
    hs_route_table_t *routes;
    hs_listener_t *listeners;

    hs_http1_limits_t http_limits; /* effective: max_field_length <= max_request_bytes */
    size_t max_field_length_set;   /* MaxFieldLength as set, before that adjustment */
    hs_url_limits_t url_limits;
    size_t max_body_buffer;

    /* Timeouts in ms, written by hs_server_set_timeout at any time and read by the I/O threads
     * whenever a wait starts (relaxed atomics: a wait may start with the old value). */
    uint32_t idle_ms, header_wait_ms, entity_body_ms, drain_body_ms, request_queue_ms;
    uint32_t min_send_rate; /* bytes/s; HS_MIN_SEND_RATE_OFF disables it, as MAXULONG does */

    /* The HTTPERR log (NULL: off), set before start; and the queue names it writes, kept until
     * the server is freed so that log records and requests may point at them. */
    hs_httperr_t *httperr;
    struct hs_name *names;
};

static inline uint32_t hs__server_timeout_ms(const uint32_t *field)
{
    return __atomic_load_n(field, __ATOMIC_RELAXED);
}

/* Any thread: a copy of name (at most 63 bytes) that lives as long as the server. */
const char *hs__server_intern(struct hs_server *s, const char *name);

/* Any thread: the current mappings with a reference taken (NULL when none are set). */
hs_certmap_t *hs__server_certmap(struct hs_server *s);

/* I/O thread: route a request; on HS_OK returns the queue with a reference taken. */
int hs__server_route(struct hs_server *s, int is_https, hs_str_t host, int port, hs_str_t local_ip,
                     hs_str_t path, struct hs_queue **q, size_t *script_len);

#endif
