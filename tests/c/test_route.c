/*
 * Unit tests of csrc/route.c (and the url.c it canonicalises prefix paths with). Both units are
 * included whole so that static helpers are reachable, and every prefix, host and path is
 * copied to end right before a PROT_NONE page so that an over-read crashes.
 * Build with -fsanitize=address,undefined (tests/c/Makefile does).
 */
#include "../../csrc/url.c"
#include "../../csrc/route.c"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------ */
/* A TAP-style ok() and guard-page buffers                                                    */
/* ------------------------------------------------------------------------------------------ */

#include "tap.h"

struct guarded {
    char *map;
    size_t maplen;
    hs_str_t s;
};

/* Copies s so that its last byte is followed by a PROT_NONE page. */
static hs_str_t guard_copy(struct guarded *g, const char *s)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t len = strlen(s);
    size_t data = (len + page - 1) / page * page;

    g->maplen = data + page;
    g->map = mmap(NULL, g->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g->map == MAP_FAILED || mprotect(g->map + data, page, PROT_NONE) != 0) {
        perror("guard_copy");
        exit(2);
    }
    g->s = (hs_str_t){g->map + data - len, len};
    if (len > 0)
        memcpy(g->map + data - len, s, len);
    return g->s;
}

static void guard_free(struct guarded *g)
{
    munmap(g->map, g->maplen);
}

/* ------------------------------------------------------------------------------------------ */
/* Helpers                                                                                    */
/* ------------------------------------------------------------------------------------------ */

static int add(hs_route_table_t *t, const char *prefix, intptr_t id)
{
    struct guarded g;
    int rc = hs__route_add(t, guard_copy(&g, prefix), (void *)id);

    guard_free(&g);
    return rc;
}

static int del(hs_route_table_t *t, const char *prefix, intptr_t *id)
{
    struct guarded g;
    void *target = NULL;
    int rc = hs__route_remove(t, guard_copy(&g, prefix), &target);

    guard_free(&g);
    if (id != NULL)
        *id = (intptr_t)target;
    return rc;
}

/* Routes an https request and returns the reject code, or HS_OK with *id and *path_len. */
static int route(const hs_route_table_t *t, const char *host, const char *local_ip,
                 unsigned port, const char *path, intptr_t *id, size_t *path_len)
{
    struct guarded gh, gi, gp;
    hs_route_match_t m = {NULL, 0};
    int rc = hs__route_lookup(t, 1, guard_copy(&gh, host), port, guard_copy(&gi, local_ip),
                              guard_copy(&gp, path), &m);

    guard_free(&gh);
    guard_free(&gi);
    guard_free(&gp);
    *id = (intptr_t)m.target;
    *path_len = m.path_len;
    return rc;
}

/* Expects the request to go to registration id with SCRIPT_NAME length path_len. */
static void expect(const hs_route_table_t *t, const char *host, const char *local_ip,
                   unsigned port, const char *path, intptr_t want_id, size_t want_len)
{
    intptr_t id = 0;
    size_t len = 0;
    int rc = route(t, host, local_ip, port, path, &id, &len);

    ok(rc == HS_OK && id == want_id && len == want_len,
       "%s (local %s:%u) %s -> #%ld, path_len %zu (rc %d, got #%ld, %zu)", host, local_ip, port,
       path, (long)want_id, want_len, rc, (long)id, len);
}

/* Expects the request to be refused with reject. */
static void refuse(const hs_route_table_t *t, const char *host, const char *local_ip,
                   unsigned port, const char *path, int reject)
{
    intptr_t id = 0;
    size_t len = 0;
    int rc = route(t, host, local_ip, port, path, &id, &len);

    ok(rc == reject, "%s (local %s:%u) %s -> reject %d (got %d)", host, local_ip, port, path,
       reject, rc);
}

static hs_route_table_t *table(void)
{
    hs_route_table_t *t = hs__route_new();

    if (t == NULL) {
        perror("hs__route_new");
        exit(2);
    }
    return t;
}

#define LOCAL "127.0.0.1"
#define NOT_FOUND HS_REJECT_NOT_FOUND
#define BAD_HOST HS_REJECT_INVALID_HOSTNAME

/* ------------------------------------------------------------------------------------------ */
/* The examples of reference section 2.3                                                      */
/* ------------------------------------------------------------------------------------------ */

/* S8: +:80/vroot/ (app1), adatum.com:80/ (app2), *:80/ (app3). */
static void test_s8_example(void)
{
    hs_route_table_t *t = table();

    ok(add(t, "https://+:80/vroot/", 1) == HS_OK, "S8: add +:80/vroot/");
    ok(add(t, "https://adatum.com:80/", 2) == HS_OK, "S8: add adatum.com:80/");
    ok(add(t, "https://*:80/", 3) == HS_OK, "S8: add *:80/");
    /* The strong wildcard beats the explicit host even though both match. */
    expect(t, "adatum.com", LOCAL, 80, "/vroot/subdir/file.htm", 1, 6);
    expect(t, "adatum.com", LOCAL, 80, "/default.htm", 2, 0);
    expect(t, "otheradatum.com", LOCAL, 80, "/file.htm", 3, 0);
    hs__route_free(t);
}

/* Q1 = www.adatum.com:80/ and Q2 = www.adatum.com:80/dir/sna/: the longest whole-segment prefix
 * within the class wins. */
static void test_longest_prefix(void)
{
    hs_route_table_t *t = table();

    ok(add(t, "https://www.adatum.com:80/", 1) == HS_OK, "Q1 added");
    ok(add(t, "https://www.adatum.com:80/dir/sna/", 2) == HS_OK, "Q2 added");
    expect(t, "www.adatum.com", LOCAL, 80, "/dir/sna/snadefault.htm", 2, 8);
    expect(t, "www.adatum.com", LOCAL, 80, "/dir/app.htm", 1, 0);
    expect(t, "www.adatum.com", LOCAL, 80, "/default.htm", 1, 0);
    /* Whole segments only: "/dir/snack" is not under "/dir/sna/". */
    expect(t, "www.adatum.com", LOCAL, 80, "/dir/snack", 1, 0);
    expect(t, "www.adatum.com", LOCAL, 80, "/dir/sna", 2, 8);
    expect(t, "www.adatum.com", LOCAL, 80, "/dir/sna/", 2, 8);
    expect(t, "www.adatum.com", LOCAL, 80, "/", 1, 0);
    hs__route_free(t);
}

/* path_len is SCRIPT_NAME's length: the match without the prefix's trailing '/'. */
static void test_path_len(void)
{
    hs_route_table_t *t = table();

    ok(add(t, "https://+:443/api/", 1) == HS_OK, "add +:443/api/");
    expect(t, "h", LOCAL, 443, "/api", 1, 4);
    expect(t, "h", LOCAL, 443, "/api/", 1, 4);
    expect(t, "h", LOCAL, 443, "/api/x", 1, 4);
    expect(t, "h", LOCAL, 443, "/api/x/y/", 1, 4);
    expect(t, "h", LOCAL, 443, "/api//x", 1, 4);
    refuse(t, "h", LOCAL, 443, "/apix", NOT_FOUND);
    refuse(t, "h", LOCAL, 443, "/ap", NOT_FOUND);
    refuse(t, "h", LOCAL, 443, "/", NOT_FOUND);
    refuse(t, "h", LOCAL, 443, "", NOT_FOUND);
    refuse(t, "h", LOCAL, 443, "*", NOT_FOUND);
    hs__route_free(t);
}

/* ------------------------------------------------------------------------------------------ */
/* Precedence across the four classes                                                         */
/* ------------------------------------------------------------------------------------------ */

static void test_precedence(void)
{
    hs_route_table_t *t = table();

    ok(add(t, "https://*:443/", 4) == HS_OK, "add weak *:443/");
    ok(add(t, "https://127.0.0.1:443/a/b/c/", 3) == HS_OK, "add IP 127.0.0.1:443/a/b/c/");
    ok(add(t, "https://example.com:443/a/b/", 2) == HS_OK, "add explicit example.com:443/a/b/");
    ok(add(t, "https://+:443/a/", 1) == HS_OK, "add strong +:443/a/");

    /* A shorter match in a higher class beats a longer one in a lower class. */
    expect(t, "example.com", LOCAL, 443, "/a/b/c/d", 1, 2);
    expect(t, "example.com", LOCAL, 443, "/a", 1, 2);
    /* Without a strong match, explicit comes before IP-bound, and IP-bound before weak. */
    ok(del(t, "https://+:443/a/", NULL) == HS_OK, "remove strong +:443/a/");
    expect(t, "example.com", LOCAL, 443, "/a/b/c/d", 2, 4);
    expect(t, "other.com", LOCAL, 443, "/a/b/c/d", 3, 6);
    expect(t, "other.com", "127.0.0.2", 443, "/a/b/c/d", 4, 0);
    /* A class without a path match is passed over, not final. */
    expect(t, "example.com", LOCAL, 443, "/a/x", 4, 0);
    expect(t, "example.com", LOCAL, 443, "/z", 4, 0);
    /* The IP class matches the local address, never the Host header. */
    expect(t, "127.0.0.1", "10.0.0.1", 443, "/a/b/c/", 4, 0);
    /* A request without Host cannot match an explicit registration, but may match others. */
    expect(t, "", LOCAL, 443, "/a/b/x", 4, 0);
    expect(t, "", LOCAL, 443, "/a/b/c/x", 3, 6);
    hs__route_free(t);
}

static void test_ipv6(void)
{
    hs_route_table_t *t = table();

    ok(add(t, "https://[::1]:443/v6/", 1) == HS_OK, "add [::1]:443/v6/");
    ok(add(t, "https://[0:0:0:0:0:0:0:1]:443/v6/", 2) == -EEXIST,
       "[0:0:0:0:0:0:0:1] is the same address as [::1]");
    ok(add(t, "https://[2001:DB8::A]:443/", 3) == HS_OK, "add [2001:DB8::A]:443/");
    expect(t, "localhost", "[::1]", 443, "/v6/x", 1, 3);
    /* The local address may come bare, as inet_ntop writes it. */
    expect(t, "localhost", "::1", 443, "/v6/x", 1, 3);
    expect(t, "h", "2001:db8::a", 443, "/x", 3, 0);
    refuse(t, "localhost", "::2", 443, "/x", BAD_HOST);
    refuse(t, "localhost", "[::1]", 443, "/x", NOT_FOUND);
    expect(t, "h", "[2001:db8::a]", 443, "/x", 3, 0);
    expect(t, "h", "[2001:DB8::A]", 443, "/x", 3, 0);
    refuse(t, "[::1]", "127.0.0.1", 443, "/v6/", BAD_HOST);
    hs__route_free(t);
}

/* ------------------------------------------------------------------------------------------ */
/* Case, 404 versus 400, schemes and ports                                                    */
/* ------------------------------------------------------------------------------------------ */

static void test_case_insensitive(void)
{
    hs_route_table_t *t = table();

    ok(add(t, "https://Example.COM:443/Api/V1/", 1) == HS_OK, "add mixed-case prefix");
    expect(t, "example.com", LOCAL, 443, "/api/v1/x", 1, 7);
    expect(t, "EXAMPLE.com", LOCAL, 443, "/API/V1", 1, 7);
    expect(t, "eXaMpLe.CoM", LOCAL, 443, "/aPi/v1/", 1, 7);
    /* A trailing dot names the same host, in the request and in the prefix. */
    expect(t, "example.com.", LOCAL, 443, "/api/v1/", 1, 7);
    ok(add(t, "https://example.com.:443/api/v1/", 2) == -EEXIST,
       "example.com. and example.com are one registration");
    refuse(t, "example.co", LOCAL, 443, "/api/v1/", BAD_HOST);
    refuse(t, "example.comm", LOCAL, 443, "/api/v1/", BAD_HOST);
    hs__route_free(t);
}

static void test_not_found_vs_bad_host(void)
{
    hs_route_table_t *t = table();

    ok(add(t, "https://example.com:443/app/", 1) == HS_OK, "add example.com:443/app/");
    /* The host is accepted on this scheme and port, the path is not: 404. */
    refuse(t, "example.com", LOCAL, 443, "/other", NOT_FOUND);
    refuse(t, "example.com", LOCAL, 443, "/", NOT_FOUND);
    /* Nothing accepts this host on this port: 400 Invalid Hostname. */
    refuse(t, "other.com", LOCAL, 443, "/app/", BAD_HOST);
    refuse(t, "", LOCAL, 443, "/app/", BAD_HOST);
    refuse(t, "example.com", LOCAL, 8443, "/app/", BAD_HOST);
    refuse(t, "example.com", LOCAL, 0, "/app/", BAD_HOST);
    refuse(t, "example.com", LOCAL, 65536 + 443, "/app/", BAD_HOST);

    /* A wildcard accepts every host, so every miss under it is a 404. */
    ok(add(t, "https://*:443/w/", 2) == HS_OK, "add *:443/w/");
    refuse(t, "other.com", LOCAL, 443, "/app/", NOT_FOUND);
    refuse(t, "", LOCAL, 443, "/x", NOT_FOUND);
    /* Any class that accepts the host counts, even when a different class matched nothing. */
    refuse(t, "example.com", LOCAL, 443, "/x", NOT_FOUND);
    /* An IP-bound registration accepts requests that arrive on its address. */
    ok(add(t, "https://10.1.2.3:8443/ip/", 3) == HS_OK, "add 10.1.2.3:8443/ip/");
    refuse(t, "anything", "10.1.2.3", 8443, "/x", NOT_FOUND);
    refuse(t, "anything", "10.1.2.4", 8443, "/ip/", BAD_HOST);
    hs__route_free(t);
}

/* The scheme is part of the key: an http registration does not serve https requests. */
static void test_scheme(void)
{
    hs_route_table_t *t = table();

    ok(add(t, "http://+:8080/", 1) == HS_OK, "add http://+:8080/");
    refuse(t, "h", LOCAL, 8080, "/", BAD_HOST);
    ok(add(t, "https://+:8080/", 2) == HS_OK, "https://+:8080/ is not a duplicate of http");
    expect(t, "h", LOCAL, 8080, "/", 2, 0);
    hs_route_match_t m;
    int rc = hs__route_lookup(t, 0, HS_STR_LIT("h"), 8080, HS_STR_LIT(LOCAL), HS_STR_LIT("/x"), &m);
    ok(rc == HS_OK && (intptr_t)m.target == 1, "an http request finds the http registration");
    hs__route_free(t);
}

/* ------------------------------------------------------------------------------------------ */
/* Registration errors                                                                        */
/* ------------------------------------------------------------------------------------------ */

static void test_duplicates(void)
{
    hs_route_table_t *t = table();

    ok(add(t, "https://+:443/a/", 1) == HS_OK, "add +:443/a/");
    ok(add(t, "https://+:443/a/", 2) == -EEXIST, "the same prefix twice is -EEXIST");
    ok(add(t, "https://+:443/A/", 2) == -EEXIST, "paths compare case-insensitively");
    ok(add(t, "https://+:443/%61/", 2) == -EEXIST, "paths compare canonically");
    ok(add(t, "https://*:443/a/", 3) == HS_OK, "the same path in another class is allowed");
    ok(add(t, "https://+:444/a/", 4) == HS_OK, "the same path on another port is allowed");
    ok(add(t, "https://h:443/", 5) == HS_OK, "add h:443/");
    ok(add(t, "https://H:443", 6) == -EEXIST, "an empty path is \"/\" and hosts fold case");
    ok(add(t, "https://1.2.3.4:443/", 7) == HS_OK, "add 1.2.3.4:443/");
    ok(add(t, "https://1.2.3.4:443/", 7) == -EEXIST, "IP literals are duplicates too");
    ok(hs__route_count(t) == 5, "failed adds are not counted (count %zu)", hs__route_count(t));
    expect(t, "x", LOCAL, 443, "/a/", 1, 2);
    hs__route_free(t);
}

/* Prefixes that hs__route_add must refuse with -EINVAL, and why. */
static const char *const malformed[] = {
    "",                         /* nothing at all */
    "https",                    /* no "://" */
    "https://",                 /* no host */
    "HTTPS://+:443/",           /* the scheme is lowercase only */
    "Https://+:443/",           /* the scheme is lowercase only */
    "ftp://+:443/",             /* only http and https */
    "https:/+:443/",            /* not "://" */
    "https://+/",               /* the port is mandatory */
    "https://+",                /* the port is mandatory */
    "https://+:/",              /* an empty port */
    "https://+:0/",             /* port 0 */
    "https://+:080/",           /* a leading zero */
    "https://+:00443/",         /* leading zeros */
    "https://+:65536/",         /* above 65535 */
    "https://+:123456/",        /* too many digits */
    "https://+:44a/",           /* not decimal */
    "https://+:-1/",            /* not decimal */
    "https://+:*/",             /* no port wildcard */
    "https://+:443/a",          /* the path must end with '/' */
    "https://+:443/a/b",        /* the path must end with '/' */
    "https://+:443a/",          /* garbage after the port */
    "https://:443/",            /* an empty host */
    "https://++:443/",          /* not a wildcard, not a name */
    "https://a_b:443/",         /* '_' is not in a DNS name */
    "https://a..b:443/",        /* an empty label */
    "https://.a:443/",          /* an empty label */
    "https://a b:443/",         /* a space */
    "https://1.2.3.256:443/",   /* digits and dots must be an IPv4 literal */
    "https://1.2.3:443/",       /* digits and dots must be an IPv4 literal */
    "https://01.2.3.4:443/",    /* inet_pton refuses leading zeros */
    "https://[::1:443/",        /* an unclosed bracket */
    "https://[::g]:443/",       /* not an IPv6 address */
    "https://[]:443/",          /* an empty IPv6 literal */
    "https://[1.2.3.4]:443/",   /* brackets hold IPv6 only */
    "https://[::1]443/",        /* no ':' after the bracket */
    "https://::1:443/",         /* IPv6 without brackets */
    "https://+:443/%/",         /* a broken escape */
    "https://+:443/%00/",       /* a control byte */
    "https://+:443/../",        /* above the root */
    "https://+:443/%C0%AF/",    /* not UTF-8 */
    "https://user@h:443/",      /* no userinfo */
};

static void test_malformed(void)
{
    hs_route_table_t *t = table();

    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++)
        ok(add(t, malformed[i], 1) == -EINVAL, "\"%s\" is -EINVAL", malformed[i]);
    ok(hs__route_count(t) == 0, "malformed prefixes add nothing");
    refuse(t, "h", LOCAL, 443, "/", BAD_HOST);
    ok(del(t, "HTTPS://+:443/", NULL) == -EINVAL, "remove of a malformed prefix is -EINVAL");

    /* Long names: 63-character labels and 253-character names are the maximum. */
    char name[300];
    memset(name, 'a', 64);
    snprintf(name + 64, sizeof(name) - 64, ".com:443/");
    char prefix[400];
    snprintf(prefix, sizeof(prefix), "https://%s", name + 1);
    ok(add(t, prefix, 1) == HS_OK, "a 63-character label is accepted");
    snprintf(prefix, sizeof(prefix), "https://%s", name);
    ok(add(t, prefix, 1) == -EINVAL, "a 64-character label is -EINVAL");
    hs__route_free(t);
}

/* 253 characters is the longest DNS name; the trailing dot does not count. */
static void test_name_length(void)
{
    hs_route_table_t *t = table();
    char host[300];
    char prefix[400];

    /* Four labels of 63, 63, 63 and 61 characters with three dots: 253 characters. */
    memset(host, 'a', sizeof(host));
    host[63] = host[127] = host[191] = '.';
    host[253] = '\0';
    snprintf(prefix, sizeof(prefix), "https://%s:443/", host);
    ok(add(t, prefix, 1) == HS_OK, "a 253-character name is accepted");
    expect(t, host, LOCAL, 443, "/", 1, 0);
    snprintf(prefix, sizeof(prefix), "https://%s.:443/", host);
    ok(add(t, prefix, 2) == -EEXIST, "its trailing-dot form is the same name");
    host[253] = 'a';
    host[254] = '\0';
    snprintf(prefix, sizeof(prefix), "https://%s:443/", host);
    ok(add(t, prefix, 3) == -EINVAL, "a 254-character name is -EINVAL");
    refuse(t, host, LOCAL, 443, "/", BAD_HOST);
    hs__route_free(t);
}

/* ------------------------------------------------------------------------------------------ */
/* Removal                                                                                    */
/* ------------------------------------------------------------------------------------------ */

static void test_remove(void)
{
    hs_route_table_t *t = table();
    intptr_t id = 0;

    ok(add(t, "https://example.com:443/a/", 1) == HS_OK, "add example.com:443/a/");
    ok(add(t, "https://example.com:443/b/", 2) == HS_OK, "add example.com:443/b/");
    ok(del(t, "https://EXAMPLE.com:443/A/", &id) == HS_OK && id == 1,
       "remove folds case and returns the target");
    ok(hs__route_count(t) == 1, "one registration left");
    /* The host still has /b/, so a miss is still a 404. */
    refuse(t, "example.com", LOCAL, 443, "/a/", NOT_FOUND);
    expect(t, "example.com", LOCAL, 443, "/b/", 2, 2);
    ok(del(t, "https://example.com:443/a/", NULL) == -ENOENT, "a second remove is -ENOENT");
    ok(del(t, "https://example.com:443/b/", &id) == HS_OK && id == 2, "remove the last one");
    /* With no registration left the host is unknown again. */
    refuse(t, "example.com", LOCAL, 443, "/b/", BAD_HOST);
    ok(hs__route_count(t) == 0, "the table is empty");
    ok(add(t, "https://example.com:443/a/", 3) == HS_OK, "a removed prefix can be added again");
    expect(t, "example.com", LOCAL, 443, "/a/", 3, 2);
    ok(del(t, "https://other.com:443/a/", NULL) == -ENOENT, "removing an unknown host is -ENOENT");
    hs__route_free(t);
}

/* A target may be NULL; remove still reports it. */
static void test_null_target(void)
{
    hs_route_table_t *t = table();
    intptr_t id = 5;

    ok(add(t, "https://+:443/", 0) == HS_OK, "a NULL target can be registered");
    ok(del(t, "https://+:443/", &id) == HS_OK && id == 0, "and removed");
    hs__route_free(t);
}

/* ------------------------------------------------------------------------------------------ */
/* Scale                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/* 1,000 registrations in every class, several per host, with deep paths; every one must still
 * route to itself, and removing them all leaves an empty table. */
static void test_thousand(void)
{
    hs_route_table_t *t = table();
    char prefix[128], host[64], path[64];
    int bad = 0;

    for (int i = 0; i < 1000; i++) {
        snprintf(prefix, sizeof(prefix), "https://host%d.example:443/app%d/v%d/", i / 4, i % 4,
                 i);
        bad |= add(t, prefix, i + 1) != HS_OK;
        snprintf(prefix, sizeof(prefix), "https://+:443/strong%d/", i);
        bad |= add(t, prefix, 10000 + i) != HS_OK;
        snprintf(prefix, sizeof(prefix), "https://10.0.%d.%d:443/ip/", i / 256, i % 256);
        bad |= add(t, prefix, 20000 + i) != HS_OK;
        snprintf(prefix, sizeof(prefix), "https://*:%d/", 1000 + i);
        bad |= add(t, prefix, 30000 + i) != HS_OK;
    }
    ok(!bad, "4,000 registrations added");
    ok(hs__route_count(t) == 4000, "count is 4,000 (%zu)", hs__route_count(t));
    ok(t->mask + 1 >= t->nodes, "the table grew with its nodes (%zu buckets, %zu nodes)",
       t->mask + 1, t->nodes);

    for (int i = 0; i < 1000 && !bad; i++) {
        intptr_t id;
        size_t len;
        char ip[32];
        snprintf(host, sizeof(host), "HOST%d.example", i / 4);
        snprintf(path, sizeof(path), "/app%d/v%d/file", i % 4, i);
        snprintf(ip, sizeof(ip), "10.0.%d.%d", i / 256, i % 256);
        bad |= route(t, host, "1.1.1.1", 443, path, &id, &len) != HS_OK || id != i + 1;
        snprintf(path, sizeof(path), "/strong%d/x", i);
        bad |= route(t, host, "1.1.1.1", 443, path, &id, &len) != HS_OK || id != 10000 + i;
        bad |= route(t, "nohost", ip, 443, "/ip/x", &id, &len) != HS_OK || id != 20000 + i;
        bad |= route(t, "nohost", ip, 443, "/x", &id, &len) != NOT_FOUND;
        bad |= route(t, "any", LOCAL, 1000 + (unsigned)i, "/x", &id, &len) != HS_OK ||
               id != 30000 + i;
        if (bad)
            printf("# registration %d does not route to itself\n", i);
    }
    ok(!bad, "every registration routes to itself");
    /* The strong wildcards on port 443 accept every host, so misses there are 404s. */
    refuse(t, "host1000.example", "1.1.1.1", 443, "/app0/", NOT_FOUND);
    refuse(t, "host1.example", "1.1.1.1", 443, "/app1/v4/", NOT_FOUND);
    refuse(t, "host1.example", "1.1.1.1", 999, "/app0/v4/", BAD_HOST);

    for (int i = 0; i < 1000; i++) {
        snprintf(prefix, sizeof(prefix), "https://host%d.example:443/app%d/v%d/", i / 4, i % 4,
                 i);
        bad |= del(t, prefix, NULL) != HS_OK;
        snprintf(prefix, sizeof(prefix), "https://+:443/strong%d/", i);
        bad |= del(t, prefix, NULL) != HS_OK;
        snprintf(prefix, sizeof(prefix), "https://10.0.%d.%d:443/ip/", i / 256, i % 256);
        bad |= del(t, prefix, NULL) != HS_OK;
        snprintf(prefix, sizeof(prefix), "https://*:%d/", 1000 + i);
        bad |= del(t, prefix, NULL) != HS_OK;
    }
    ok(!bad && hs__route_count(t) == 0 && t->nodes == 0, "all removed, no host nodes left");
    hs__route_free(t);
}

/* One host with a path of 200 segments registered at every depth: each depth wins its own
 * requests, which exercises the forward probe and max_path. */
static void test_deep_paths(void)
{
    hs_route_table_t *t = table();
    char prefix[1024] = "https://deep:443/";
    char path[1024] = "";
    size_t plen = strlen(prefix);
    int bad = 0;

    for (int d = 0; d < 200; d++) {
        plen += (size_t)snprintf(prefix + plen, sizeof(prefix) - plen, "%c/", 'a' + d % 26);
        bad |= add(t, prefix, d + 1) != HS_OK;
    }
    ok(!bad, "200 nested prefixes added");
    for (int d = 0; d < 200 && !bad; d++) {
        intptr_t id;
        size_t len;
        /* "/a/b/.../x" with d + 1 segments before "x": the prefix of depth d wins. */
        memcpy(path, prefix + strlen("https://deep:443"), 2 * (size_t)(d + 1) + 1);
        path[2 * (d + 1) + 1] = '\0';
        strcat(path, "zz");
        bad |= route(t, "deep", LOCAL, 443, path, &id, &len) != HS_OK || id != d + 1 ||
               len != 2 * (size_t)(d + 1);
        if (bad)
            printf("# depth %d routed to #%ld, path_len %zu\n", d, (long)id, len);
    }
    ok(!bad, "each depth routes to its own prefix");
    hs__route_free(t);
}

/* ------------------------------------------------------------------------------------------ */
/* hs_test_route                                                                              */
/* ------------------------------------------------------------------------------------------ */

static void test_entry_point(void)
{
    static const char list[] = "https://+:80/vroot/\0https://adatum.com:80/\0https://*:80/";
    int index = 99;
    size_t len = 99;
    int rc;

    rc = hs_test_route(list, sizeof(list), "adatum.com", LOCAL, 80, "/vroot/x", &index, &len);
    ok(rc == 0 && index == 0 && len == 6, "hs_test_route: strong wins (%d, %d, %zu)", rc, index,
       len);
    rc = hs_test_route(list, sizeof(list), "adatum.com", LOCAL, 80, "/x", &index, &len);
    ok(rc == 0 && index == 1 && len == 0, "hs_test_route: explicit (%d, %d)", rc, index);
    rc = hs_test_route(list, sizeof(list) - 1, "other", LOCAL, 80, "/x", &index, &len);
    ok(rc == 0 && index == 2, "hs_test_route: an unterminated last prefix still counts");
    rc = hs_test_route(list, sizeof(list), "adatum.com", LOCAL, 81, "/x", &index, &len);
    ok(rc == HS_REJECT_INVALID_HOSTNAME, "hs_test_route: unknown port is 400");

    static const char dup[] = "https://+:80/\0https://+:80/a/\0https://+:80/A/\0";
    rc = hs_test_route(dup, sizeof(dup) - 1, "h", LOCAL, 80, "/", &index, &len);
    ok(rc == -1 && index == 2, "hs_test_route: a failed registration gives its index");
    rc = hs_test_route("", 0, "h", LOCAL, 80, "/", &index, &len);
    ok(rc == HS_REJECT_INVALID_HOSTNAME, "hs_test_route: an empty table is 400");
    rc = hs_test_route("https://+:80/a/", 16, "", "", 80, "/b", &index, &len);
    ok(rc == HS_REJECT_NOT_FOUND, "hs_test_route: a strong wildcard makes a miss 404");
}

int main(void)
{
    test_s8_example();
    test_longest_prefix();
    test_path_len();
    test_precedence();
    test_ipv6();
    test_case_insensitive();
    test_not_found_vs_bad_host();
    test_scheme();
    test_duplicates();
    test_malformed();
    test_name_length();
    test_remove();
    test_null_target();
    test_thousand();
    test_deep_paths();
    test_entry_point();
    printf("1..%d\n", tally.run);
    if (tally.failed > 0)
        printf("# %d of %d tests failed\n", tally.failed, tally.run);
    return tally.failed > 0 ? 1 : 0;
}
