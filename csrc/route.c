/*
 * The URL-prefix table (reference sections 2.2 to 2.4).
 *
 * Theory of operation. Every registration is one node in a chained hash table keyed by
 * (class, scheme, host, port, lowercase path); '+' and '*' registrations have an empty host
 * because they accept any. Next to the route nodes the same table holds one "host" node per
 * (class, scheme, port, host) with the number of routes under it, which answers "does any
 * registration accept this host?" for the 404-versus-400 decision without a scan.
 *
 * A lookup walks the four classes in HTTP.sys order. For each class it checks the host node,
 * then hashes the request path once from left to right and, at every segment boundary, probes
 * the table for "path[0..i]/". The last hit is the longest whole-segment prefix. The cost is
 * one pass over the path plus one probe per segment for each of the four classes, whatever the
 * number of registrations, and the lookup allocates nothing: it lowercases while hashing and
 * compares case-insensitively against the lowercase keys.
 *
 * Keys are compared, not trusted to the hash, so collisions only cost a comparison; chain
 * lengths depend on the registered keys, which the administrator controls, not the client.
 */
#include "route.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "httpsys.h"
#include "url.h"

enum node_kind { KIND_ROUTE = 0, KIND_HOST = 1 };

/* Longest host we store: a DNS name is at most 253 characters without its trailing dot
 * (RFC 1035 section 2.3.4), and a bracketed IPv6 literal is far shorter. */
#define HOST_MAX 253
#define LABEL_MAX 63
#define INITIAL_BUCKETS 16

struct node {
    struct node *next;
    uint64_t hash;
    void *target;    /* routes: what was registered */
    size_t refs;     /* hosts: the number of routes with this (class, scheme, port, host) */
    size_t max_path; /* hosts: an upper bound of their routes' path lengths (never shrinks) */
    size_t host_len;
    size_t path_len;
    uint16_t port;
    uint8_t kind;
    uint8_t cls;
    uint8_t https;
    char key[]; /* host then path, lowercase, not NUL-terminated */
};

struct hs_route_table {
    struct node **buckets;
    size_t mask; /* number of buckets - 1; the number of buckets is a power of two */
    size_t nodes;
    size_t routes;
};

/* What identifies a node. For a lookup, path is a prefix of the request path and slash says
 * that a '/' follows it (the request "/api" probes the registration "/api/"). */
struct key {
    uint8_t kind;
    uint8_t cls;
    uint8_t https;
    uint16_t port;
    hs_str_t host;
    hs_str_t path;
    int slash;
};

/* A parsed prefix: the host points into hostbuf, which holds its lowercase (or, for IP
 * literals, its canonical inet_ntop) form. The path is malloc'ed, canonical and lowercase. */
struct prefix {
    struct key key;
    char hostbuf[HOST_MAX + 1];
    char *path;
};

/* ------------------------------------------------------------------------------------------ */
/* Hashing and comparison                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* FNV-1a, 64 bits: byte at a time, so a lookup can extend the hash of "/a/" to "/a/b/" without
 * starting over. */
#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static uint64_t mix(uint64_t h, unsigned char c)
{
    return (h ^ c) * FNV_PRIME;
}

/* FNV's low bits are weak for power-of-two tables; fold the high half in before masking. */
static uint64_t finish(uint64_t h)
{
    return h ^ (h >> 29) ^ (h >> 47);
}

/* The hash of everything but the path: kind, class, scheme, port, the lowercase host and a
 * separator that no host byte can equal. */
static uint64_t hash_head(const struct key *k)
{
    uint64_t h = FNV_OFFSET;

    h = mix(h, k->kind);
    h = mix(h, k->cls);
    h = mix(h, k->https);
    h = mix(h, (unsigned char)(k->port & 0xFF));
    h = mix(h, (unsigned char)(k->port >> 8));
    for (size_t i = 0; i < k->host.len; i++)
        h = mix(h, (unsigned char)hs__lower(k->host.base[i]));
    return mix(h, 0xFF);
}

static uint64_t hash_key(const struct key *k)
{
    uint64_t h = hash_head(k);

    for (size_t i = 0; i < k->path.len; i++)
        h = mix(h, (unsigned char)hs__lower(k->path.base[i]));
    if (k->slash)
        h = mix(h, '/');
    return finish(h);
}

/* Node keys are stored lowercase, so only the key side is folded. */
static int lower_equal(const char *stored, hs_str_t s)
{
    for (size_t i = 0; i < s.len; i++)
        if (stored[i] != hs__lower(s.base[i]))
            return 0;
    return 1;
}

static int node_matches(const struct node *n, uint64_t hash, const struct key *k)
{
    if (n->hash != hash || n->kind != k->kind || n->cls != k->cls || n->https != k->https ||
        n->port != k->port || n->host_len != k->host.len ||
        n->path_len != k->path.len + (k->slash ? 1 : 0))
        return 0;
    if (!lower_equal(n->key, k->host) || !lower_equal(n->key + n->host_len, k->path))
        return 0;
    return !k->slash || n->key[n->host_len + k->path.len] == '/';
}

static struct node *find(const hs_route_table_t *t, uint64_t hash, const struct key *k)
{
    for (struct node *n = t->buckets[hash & t->mask]; n != NULL; n = n->next)
        if (node_matches(n, hash, k))
            return n;
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* The table                                                                                  */
/* ------------------------------------------------------------------------------------------ */

hs_route_table_t *hs__route_new(void)
{
    hs_route_table_t *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    t->buckets = calloc(INITIAL_BUCKETS, sizeof(*t->buckets));
    if (t->buckets == NULL) {
        free(t);
        return NULL;
    }
    t->mask = INITIAL_BUCKETS - 1;
    return t;
}

void hs__route_free(hs_route_table_t *t)
{
    if (t == NULL)
        return;
    for (size_t b = 0; b <= t->mask; b++) {
        struct node *n = t->buckets[b];
        while (n != NULL) {
            struct node *next = n->next;
            free(n);
            n = next;
        }
    }
    free(t->buckets);
    free(t);
}

size_t hs__route_count(const hs_route_table_t *t)
{
    return t->routes;
}

/* Doubles the bucket array once there is more than one node per bucket. Nodes keep their full
 * hash, so rehashing never looks at keys. If the allocation fails the table simply stays more
 * loaded: it is still correct, only slower. */
static void maybe_grow(hs_route_table_t *t)
{
    size_t old = t->mask + 1;

    if (t->nodes < old || old > SIZE_MAX / 2 / sizeof(struct node *))
        return;
    struct node **b = calloc(old * 2, sizeof(*b));
    if (b == NULL)
        return;
    for (size_t i = 0; i < old; i++) {
        struct node *n = t->buckets[i];
        while (n != NULL) {
            struct node *next = n->next;
            n->next = b[n->hash & (old * 2 - 1)];
            b[n->hash & (old * 2 - 1)] = n;
            n = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->mask = old * 2 - 1;
}

static struct node *node_new(const struct key *k, uint64_t hash)
{
    struct node *n = calloc(1, sizeof(*n) + k->host.len + k->path.len);

    if (n == NULL)
        return NULL;
    n->hash = hash;
    n->kind = k->kind;
    n->cls = k->cls;
    n->https = k->https;
    n->port = k->port;
    n->host_len = k->host.len;
    n->path_len = k->path.len;
    /* memcpy from a NULL slice is undefined even for 0 bytes, and wildcard hosts are empty. */
    if (k->host.len > 0)
        memcpy(n->key, k->host.base, k->host.len);
    if (k->path.len > 0)
        memcpy(n->key + k->host.len, k->path.base, k->path.len);
    return n;
}

static void link_node(hs_route_table_t *t, struct node *n)
{
    n->next = t->buckets[n->hash & t->mask];
    t->buckets[n->hash & t->mask] = n;
    t->nodes++;
}

static void unlink_node(hs_route_table_t *t, struct node *n)
{
    struct node **p = &t->buckets[n->hash & t->mask];

    while (*p != n)
        p = &(*p)->next;
    *p = n->next;
    t->nodes--;
}

/* The host key of a route key: same class, scheme, port and host, no path. */
static struct key host_key_of(const struct key *route)
{
    struct key k = *route;

    k.kind = KIND_HOST;
    k.path = (hs_str_t){NULL, 0};
    k.slash = 0;
    return k;
}

/* ------------------------------------------------------------------------------------------ */
/* Prefix syntax (reference section 2.2)                                                      */
/* ------------------------------------------------------------------------------------------ */

/* port: decimal, no leading zero, 1-65535, and present: HTTP.sys has no default port and no
 * port wildcard, and "080" would be a second spelling of the same registration. */
static int parse_prefix_port(hs_str_t s, uint16_t *port)
{
    unsigned v = 0;

    if (s.len == 0 || s.len > 5 || s.base[0] == '0')
        return -EINVAL;
    for (size_t i = 0; i < s.len; i++) {
        if (s.base[i] < '0' || s.base[i] > '9')
            return -EINVAL;
        v = v * 10 + (unsigned)(s.base[i] - '0');
    }
    if (v > 65535)
        return -EINVAL;
    *port = (uint16_t)v;
    return HS_OK;
}

/* An IP literal is stored in its canonical inet_ntop text (lowercase, RFC 5952 compressed for
 * IPv6) so that "[0:0::1]" and "[::1]" are one registration and match the local address the
 * server formats the same way. inet_pton also refuses leading zeros in IPv4 octets. */
static int parse_ip(hs_str_t h, int v6, struct prefix *p)
{
    char text[INET6_ADDRSTRLEN];
    unsigned char addr[sizeof(struct in6_addr)];
    int af = v6 ? AF_INET6 : AF_INET;

    if (h.len == 0 || h.len >= sizeof(text))
        return -EINVAL;
    memcpy(text, h.base, h.len);
    text[h.len] = '\0';
    if (inet_pton(af, text, addr) != 1 || inet_ntop(af, addr, text, sizeof(text)) == NULL)
        return -EINVAL;
    size_t n = strlen(text);
    if (v6) {
        p->hostbuf[0] = '[';
        memcpy(p->hostbuf + 1, text, n);
        p->hostbuf[n + 1] = ']';
        n += 2;
    } else {
        memcpy(p->hostbuf, text, n);
    }
    p->key.host = (hs_str_t){p->hostbuf, n};
    p->key.cls = HS_ROUTE_IP;
    return HS_OK;
}

/* A DNS name: labels of letters, digits and '-', 1-63 characters each, separated by single
 * dots, with one trailing dot allowed and dropped ("example.com." is the same name). */
static int parse_name(hs_str_t h, struct prefix *p)
{
    size_t label = 0;

    if (h.len > 0 && h.base[h.len - 1] == '.')
        h.len--;
    if (h.len == 0 || h.len > HOST_MAX)
        return -EINVAL;
    for (size_t i = 0; i < h.len; i++) {
        char c = hs__lower(h.base[i]);
        if (c == '.') {
            if (label == 0)
                return -EINVAL;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') {
            if (++label > LABEL_MAX)
                return -EINVAL;
        } else {
            return -EINVAL;
        }
        p->hostbuf[i] = c;
    }
    p->key.host = (hs_str_t){p->hostbuf, h.len};
    p->key.cls = HS_ROUTE_EXPLICIT;
    return HS_OK;
}

/* Whether h looks like an IPv4 literal rather than a name. */
static int is_digits_and_dots(hs_str_t h)
{
    for (size_t i = 0; i < h.len; i++)
        if ((h.base[i] < '0' || h.base[i] > '9') && h.base[i] != '.')
            return 0;
    return h.len > 0;
}

/* host = "+" / "*" / IPv4 / "[" IPv6 "]" / name. A host of digits and dots alone is read as an
 * IPv4 literal and must be a valid one: "1.2.3.256" is a mistake, not a DNS name. */
static int parse_host(hs_str_t h, struct prefix *p)
{
    p->key.host = (hs_str_t){p->hostbuf, 0};
    if (h.len == 1 && h.base[0] == '+') {
        p->key.cls = HS_ROUTE_STRONG;
        return HS_OK;
    }
    if (h.len == 1 && h.base[0] == '*') {
        p->key.cls = HS_ROUTE_WEAK;
        return HS_OK;
    }
    if (h.len >= 2 && h.base[0] == '[' && h.base[h.len - 1] == ']')
        return parse_ip((hs_str_t){h.base + 1, h.len - 2}, 1, p);
    if (is_digits_and_dots(h))
        return parse_ip(h, 0, p);
    return parse_name(h, p);
}

/* relativeURI: optional, "/" when absent, and it must end with '/' so that prefixes match
 * whole segments. It is canonicalised like a request path (percent-decoded, dot segments
 * removed), because requests are matched by their canonical path: "/caf%C3%A9/" has to match a
 * request for "/caf%c3%a9/x". Paths compare case-insensitively, so it is stored lowercase. */
static int parse_path(hs_str_t s, struct prefix *p)
{
    static const hs_url_limits_t unlimited = {0, 0};
    size_t len = 0;
    int reject = 0;

    if (s.len == 0)
        s = HS_STR_LIT("/");
    if (s.base[0] != '/' || s.base[s.len - 1] != '/')
        return -EINVAL;
    p->path = malloc(s.len + 1);
    if (p->path == NULL)
        return -ENOMEM;
    if (hs__url_canonicalize(s, &unlimited, p->path, &len, &reject) != HS_OK ||
        p->path[len - 1] != '/') {
        free(p->path);
        p->path = NULL;
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++)
        p->path[i] = hs__lower(p->path[i]);
    p->key.path = (hs_str_t){p->path, len};
    return HS_OK;
}

/* Parses "scheme://host:port[/path/]" into p. On success the caller frees p->path. */
static int parse_prefix(hs_str_t s, struct prefix *p)
{
    static const char http[] = "http://";
    static const char https[] = "https://";
    size_t i;

    memset(&p->key, 0, sizeof(p->key));
    p->path = NULL;
    p->key.kind = KIND_ROUTE;
    /* The scheme is lowercase only: HTTP.sys rejects "HTTP://" in a UrlPrefix. */
    if (s.len >= sizeof(https) - 1 && memcmp(s.base, https, sizeof(https) - 1) == 0) {
        p->key.https = 1;
        i = sizeof(https) - 1;
    } else if (s.len >= sizeof(http) - 1 && memcmp(s.base, http, sizeof(http) - 1) == 0) {
        i = sizeof(http) - 1;
    } else {
        return -EINVAL;
    }

    /* The host ends at the ']' of an IPv6 literal or else at the first ':'; a '/' first means
     * the mandatory port is missing. */
    size_t host_start = i;
    if (i < s.len && s.base[i] == '[') {
        const char *close = memchr(s.base + i, ']', s.len - i);
        i = close != NULL ? (size_t)(close - s.base) + 1 : s.len;
    } else {
        while (i < s.len && s.base[i] != ':' && s.base[i] != '/')
            i++;
    }
    if (i >= s.len || s.base[i] != ':')
        return -EINVAL;
    int rc = parse_host((hs_str_t){s.base + host_start, i - host_start}, p);
    if (rc != HS_OK)
        return rc;

    size_t port_start = ++i;
    while (i < s.len && s.base[i] != '/')
        i++;
    rc = parse_prefix_port((hs_str_t){s.base + port_start, i - port_start}, &p->key.port);
    if (rc != HS_OK)
        return rc;
    return parse_path((hs_str_t){s.base + i, s.len - i}, p);
}

/* ------------------------------------------------------------------------------------------ */
/* Registration                                                                               */
/* ------------------------------------------------------------------------------------------ */

/* Inserts a route and, if it is the first for its host, the host node. Both nodes are
 * allocated before either is linked, so a failure leaves the table as it was. */
static int insert(hs_route_table_t *t, const struct key *k, void *target)
{
    uint64_t hash = hash_key(k);
    struct key hk = host_key_of(k);
    uint64_t hhash = hash_key(&hk);

    if (find(t, hash, k) != NULL)
        return -EEXIST;
    struct node *host = find(t, hhash, &hk);
    struct node *fresh = NULL;
    struct node *route = node_new(k, hash);
    if (route == NULL)
        return -ENOMEM;
    if (host == NULL) {
        fresh = host = node_new(&hk, hhash);
        if (host == NULL) {
            free(route);
            return -ENOMEM;
        }
        link_node(t, fresh);
    }
    route->target = target;
    host->refs++;
    if (k->path.len > host->max_path)
        host->max_path = k->path.len;
    link_node(t, route);
    t->routes++;
    maybe_grow(t);
    return HS_OK;
}

int hs__route_add(hs_route_table_t *t, hs_str_t prefix, void *target)
{
    struct prefix p;
    int rc = parse_prefix(prefix, &p);

    if (rc != HS_OK)
        return rc;
    rc = insert(t, &p.key, target);
    free(p.path);
    return rc;
}

int hs__route_remove(hs_route_table_t *t, hs_str_t prefix, void **target)
{
    struct prefix p;
    int rc = parse_prefix(prefix, &p);

    if (rc != HS_OK)
        return rc;
    struct key hk = host_key_of(&p.key);
    struct node *route = find(t, hash_key(&p.key), &p.key);
    struct node *host = find(t, hash_key(&hk), &hk);
    free(p.path);
    if (route == NULL || host == NULL)
        return -ENOENT;

    if (target != NULL)
        *target = route->target;
    unlink_node(t, route);
    free(route);
    t->routes--;
    if (--host->refs == 0) {
        unlink_node(t, host);
        free(host);
    }
    return HS_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Lookup                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* Finds the longest registered whole-segment prefix of path under one (class, scheme, port,
 * host). Candidates are path[0..i] + "/" for each '/' at i and for the end of the path, so
 * "/api" and "/api/x" both match the registration "/api/" with path_len 4. The hash is extended
 * byte by byte and probed at each boundary, and probing stops past the longest path ever
 * registered under this host. */
static int probe_paths(const hs_route_table_t *t, const struct key *host, size_t max_path,
                       hs_str_t path, hs_route_match_t *m)
{
    struct key k = *host;
    const struct node *best = NULL;
    const struct node *n;
    size_t best_len = 0;
    size_t i;

    k.kind = KIND_ROUTE;
    uint64_t h = hash_head(&k);
    for (i = 0; i < path.len && i < max_path; i++) {
        h = mix(h, (unsigned char)hs__lower(path.base[i]));
        if (path.base[i] != '/')
            continue;
        k.path = (hs_str_t){path.base, i + 1};
        if ((n = find(t, finish(h), &k)) != NULL) {
            best = n;
            best_len = i;
        }
    }
    if (i == path.len && i > 0 && path.base[i - 1] != '/' && i < max_path) {
        k.path = path;
        k.slash = 1;
        if ((n = find(t, finish(mix(h, '/')), &k)) != NULL) {
            best = n;
            best_len = i;
        }
    }
    if (best == NULL)
        return 0;
    m->target = best->target;
    m->path_len = best_len;
    return 1;
}

/* What a class matches its host against: nothing for the wildcards, the Host name for explicit
 * registrations and the local address for IP-bound ones (reference section 2.3). */
static hs_str_t class_host(int cls, hs_str_t host, hs_str_t local_ip)
{
    if (cls == HS_ROUTE_EXPLICIT)
        return host;
    if (cls == HS_ROUTE_IP)
        return local_ip;
    return (hs_str_t){NULL, 0};
}

/* IP-bound registrations store IPv6 literals bracketed. A local address given bare ("::1", as
 * inet_ntop writes it) is bracketed into buf so that both spellings match. */
static hs_str_t bracket_ipv6(hs_str_t ip, char *buf, size_t cap)
{
    if (ip.len == 0 || ip.base[0] == '[' || memchr(ip.base, ':', ip.len) == NULL ||
        ip.len + 2 > cap)
        return ip;
    buf[0] = '[';
    memcpy(buf + 1, ip.base, ip.len);
    buf[ip.len + 1] = ']';
    return (hs_str_t){buf, ip.len + 2};
}

int hs__route_lookup(const hs_route_table_t *t, int is_https, hs_str_t host, unsigned port,
                     hs_str_t local_ip, hs_str_t path, hs_route_match_t *m)
{
    char ipbuf[INET6_ADDRSTRLEN + 2];
    int accepted = 0;

    local_ip = bracket_ipv6(local_ip, ipbuf, sizeof(ipbuf));
    m->target = NULL;
    m->path_len = 0;
    if (port == 0 || port > 65535)
        return HS_REJECT_INVALID_HOSTNAME;
    /* "example.com." names the same host as "example.com" (the absolute DNS form). */
    if (host.len > 0 && host.base[host.len - 1] == '.')
        host.len--;

    /* HTTP.sys order: strong '+', explicit host, IP-bound, weak '*'. The first class with a path
     * match wins; a class that accepts the host without a path match turns the final answer
     * from 400 Invalid Hostname into 404. */
    for (int cls = HS_ROUTE_STRONG; cls <= HS_ROUTE_WEAK; cls++) {
        struct key k = {.kind = KIND_HOST, .cls = (uint8_t)cls, .https = is_https ? 1 : 0,
                        .port = (uint16_t)port, .host = class_host(cls, host, local_ip)};
        if (cls != HS_ROUTE_STRONG && cls != HS_ROUTE_WEAK && k.host.len == 0)
            continue;
        const struct node *h = find(t, hash_key(&k), &k);
        if (h == NULL)
            continue;
        accepted = 1;
        if (probe_paths(t, &k, h->max_path, path, m))
            return HS_OK;
    }
    return accepted ? HS_REJECT_NOT_FOUND : HS_REJECT_INVALID_HOSTNAME;
}

/* ------------------------------------------------------------------------------------------ */
/* Test entry point                                                                           */
/* ------------------------------------------------------------------------------------------ */

/* Registers each prefix of the NUL-separated list, then routes one https request. */
int hs_test_route(const char *prefixes, size_t prefixes_len, const char *host, const char *local_ip,
                  int port, const char *path, int *index, size_t *path_len)
{
    hs_route_table_t *t = hs__route_new();
    hs_route_match_t m;
    int i = 0;

    *index = -1;
    *path_len = 0;
    if (t == NULL)
        return HS_REJECT_INTERNAL;
    for (size_t off = 0; off < prefixes_len; i++) {
        size_t len = strnlen(prefixes + off, prefixes_len - off);
        void *target = (void *)(intptr_t)(i + 1);
        if (hs__route_add(t, (hs_str_t){prefixes + off, len}, target) != HS_OK) {
            hs__route_free(t);
            *index = i;
            return -1;
        }
        off += len + 1;
    }

    hs_str_t h = {host, host != NULL ? strlen(host) : 0};
    hs_str_t ip = {local_ip, local_ip != NULL ? strlen(local_ip) : 0};
    hs_str_t p = {path, path != NULL ? strlen(path) : 0};
    int rc = hs__route_lookup(t, 1, h, port < 0 ? 0u : (unsigned)port, ip, p, &m);
    if (rc == HS_OK) {
        *index = (int)((intptr_t)m.target - 1);
        *path_len = m.path_len;
    }
    hs__route_free(t);
    return rc;
}
