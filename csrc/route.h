/*
 * The URL-prefix table with HTTP.sys semantics (reference section 2.3): strong wildcard '+',
 * then explicit host (matched against Host), then IP-bound (matched against the local address),
 * then weak wildcard '*'. The first class with a match wins; within it the longest whole-segment
 * path prefix wins. Host and path compare case-insensitively.
 *
 * The table is not thread-safe by itself: server.c serialises writers and readers.
 */
#ifndef HS_ROUTE_H
#define HS_ROUTE_H

#include "hs_internal.h"

typedef struct hs_route_table hs_route_table_t;

enum hs_route_class { HS_ROUTE_STRONG = 0, HS_ROUTE_EXPLICIT = 1, HS_ROUTE_IP = 2, HS_ROUTE_WEAK = 3 };

typedef struct hs_route_match {
    void *target;        /* what was registered */
    size_t path_len;     /* length of the matched prefix in the request path, without the
                            prefix's trailing '/' (so path[0..path_len) is SCRIPT_NAME) */
} hs_route_match_t;

hs_route_table_t *hs__route_new(void);
void hs__route_free(hs_route_table_t *t);

/*
 * Registers prefix "scheme://host:port/path/" (validated per reference section 2.2: scheme http
 * or https lowercase, host '+', '*', an IPv4 literal, "[IPv6]" or a name; port 1-65535 without
 * leading zeros; path empty or ending in '/'). Returns HS_OK, -EEXIST when the same prefix (same
 * class, host, port, case-insensitive path) is already registered, -EINVAL when malformed.
 */
int hs__route_add(hs_route_table_t *t, hs_str_t prefix, void *target);

/* Removes a registration; HS_OK, -ENOENT if absent, -EINVAL if malformed. *target gets what it
 * held (may be NULL). */
int hs__route_remove(hs_route_table_t *t, hs_str_t prefix, void **target);

/*
 * Finds the registration for a request. is_https: the connection's scheme; host: the Host name
 * without port (may be empty); port: the local port; local_ip: the local address as text
 * ("127.0.0.1" or "[::1]"); path: the canonical path.
 * Returns HS_OK with *m filled, HS_REJECT_NOT_FOUND when some registration on this
 * scheme/port accepts the host but no path matches, HS_REJECT_INVALID_HOSTNAME otherwise.
 */
int hs__route_lookup(const hs_route_table_t *t, int is_https, hs_str_t host, unsigned port,
                     hs_str_t local_ip, hs_str_t path, hs_route_match_t *m);

/* Number of registrations (for servicestate and tests). */
size_t hs__route_count(const hs_route_table_t *t);

#endif
