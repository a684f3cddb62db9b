/*
 * Client-certificate mapping (certmap.h). The set is parsed once per change on the caller's
 * thread and only read afterwards, so any number of I/O threads match against it without a lock;
 * the server swaps the pointer under its config lock and the last reference frees the old set.
 */
#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "certmap.h"
#include "hs_internal.h"

typedef struct map_one {
    unsigned char sha256[32];
    char *user;
} map_one_t;

typedef struct map_rule {
    int issuer; /* 0: Subject, 1: Issuer */
    int nid;
    char *criteria;
} map_rule_t;

typedef struct map_many {
    int deny;
    int case_sensitive;
    char *user;
    size_t n_rules;
    map_rule_t *rules;
} map_many_t;

struct hs_certmap {
    atomic_int refs;
    size_t n_one, n_many;
    map_one_t *one;
    map_many_t *many;
};

void hs__certmap_ref(hs_certmap_t *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
}

void hs__certmap_release(hs_certmap_t *m)
{
    if (m == NULL || atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < m->n_one; i++)
        free(m->one[i].user);
    for (size_t i = 0; i < m->n_many; i++) {
        for (size_t j = 0; j < m->many[i].n_rules; j++)
            free(m->many[i].rules[j].criteria);
        free(m->many[i].rules);
        free(m->many[i].user);
    }
    free(m->one);
    free(m->many);
    free(m);
}

/* ---- parsing ------------------------------------------------------------------------------ */

/* The tab-separated fields of one line, NUL-terminated in place. */
#define MAX_FIELDS 256

static size_t split(char *line, char **fields)
{
    size_t n = 0;
    for (char *p = line; n < MAX_FIELDS;) {
        fields[n++] = p;
        char *tab = strchr(p, '\t');
        if (tab == NULL)
            break;
        *tab = '\0';
        p = tab + 1;
    }
    return n;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static int subfield_nid(const char *s)
{
    static const struct {
        const char *name;
        int nid;
    } names[] = {{"CN", NID_commonName},          {"OU", NID_organizationalUnitName},
                 {"O", NID_organizationName},      {"L", NID_localityName},
                 {"S", NID_stateOrProvinceName}, {"C", NID_countryName}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(s, names[i].name) == 0)
            return names[i].nid;
    return NID_undef;
}

static int parse_one(hs_certmap_t *m, char **f, size_t n)
{
    if (n != 3 || strlen(f[1]) != 64 || f[2][0] == '\0')
        return -1;
    map_one_t *grown = realloc(m->one, (m->n_one + 1) * sizeof(*grown));
    if (grown == NULL)
        return -1;
    m->one = grown;
    map_one_t *o = &m->one[m->n_one];
    for (size_t i = 0; i < 32; i++) {
        int hi = hexval(f[1][2 * i]), lo = hexval(f[1][2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        o->sha256[i] = (unsigned char)(hi << 4 | lo);
    }
    if ((o->user = strdup(f[2])) == NULL)
        return -1;
    m->n_one++;
    return 0;
}

static int parse_many(hs_certmap_t *m, char **f, size_t n)
{
    char *end;
    if (n < 5 || (f[1][0] != 'A' && f[1][0] != 'D') || (f[2][0] != '0' && f[2][0] != '1'))
        return -1;
    unsigned long rules = strtoul(f[4], &end, 10);
    if (*end != '\0' || rules == 0 || n != 5 + 2 * rules)
        return -1;
    map_many_t *grown = realloc(m->many, (m->n_many + 1) * sizeof(*grown));
    if (grown == NULL)
        return -1;
    m->many = grown;
    map_many_t *g = &m->many[m->n_many];
    memset(g, 0, sizeof(*g));
    g->deny = f[1][0] == 'D';
    g->case_sensitive = f[2][0] == '1';
    g->user = strdup(f[3]);
    g->rules = calloc(rules, sizeof(*g->rules));
    m->n_many++; /* counted now so that a failure below frees what is there */
    if (g->user == NULL || g->rules == NULL)
        return -1;
    for (size_t i = 0; i < rules; i++) {
        const char *what = f[5 + 2 * i];
        map_rule_t *r = &g->rules[i];
        if (what[0] != 'S' && what[0] != 'I')
            return -1;
        r->issuer = what[0] == 'I';
        r->nid = subfield_nid(what + 1);
        r->criteria = strdup(f[6 + 2 * i]);
        g->n_rules++;
        if (r->nid == NID_undef || r->criteria == NULL || r->criteria[0] == '\0')
            return -1;
    }
    return 0;
}

hs_certmap_t *hs__certmap_new(const char *spec, size_t len, char *err, size_t errlen)
{
    hs_certmap_t *m = calloc(1, sizeof(*m));
    char *text = malloc(len + 1);
    if (m == NULL || text == NULL) {
        free(m);
        free(text);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    atomic_init(&m->refs, 1);
    memcpy(text, spec, len);
    text[len] = '\0';
    char *fields[MAX_FIELDS];
    size_t line_no = 0;
    for (char *line = text, *next; line != NULL && *line != '\0'; line = next) {
        line_no++;
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        size_t n = split(line, fields);
        int rc = fields[0][0] == '1' && fields[0][1] == '\0'   ? parse_one(m, fields, n)
                 : fields[0][0] == 'M' && fields[0][1] == '\0' ? parse_many(m, fields, n)
                                                               : -1;
        if (rc != 0) {
            snprintf(err, errlen, "mappings: line %zu is malformed", line_no);
            free(text);
            hs__certmap_release(m);
            return NULL;
        }
    }
    free(text);
    return m;
}

/* ---- matching ----------------------------------------------------------------------------- */

static int same_char(char a, char b, int case_sensitive)
{
    return case_sensitive ? a == b : tolower((unsigned char)a) == tolower((unsigned char)b);
}

int hs__certmap_glob(const char *pattern, const char *text, int case_sensitive)
{
    const char *star = NULL, *resume = NULL;
    while (*text != '\0') {
        if (*pattern == '*') {
            star = pattern++;
            resume = text;
        } else if (*pattern != '\0' && same_char(*pattern, *text, case_sensitive)) {
            pattern++;
            text++;
        } else if (star != NULL) {
            pattern = star + 1; /* let the last '*' swallow one more character */
            text = ++resume;
        } else {
            return 0;
        }
    }
    while (*pattern == '*')
        pattern++;
    return *pattern == '\0';
}

/* Whether some entry of the name with the rule's attribute matches its criteria. */
static int rule_matches(const map_rule_t *r, X509 *cert, int case_sensitive)
{
    const X509_NAME *name = r->issuer ? X509_get_issuer_name(cert) : X509_get_subject_name(cert);
    for (int i = -1; (i = X509_NAME_get_index_by_NID(name, r->nid, i)) >= 0;) {
        unsigned char *utf8 = NULL;
        const ASN1_STRING *v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
        int n = ASN1_STRING_to_UTF8(&utf8, v);
        int hit = n >= 0 && memchr(utf8, '\0', (size_t)n) == NULL &&
                  hs__certmap_glob(r->criteria, (const char *)utf8, case_sensitive);
        OPENSSL_free(utf8);
        if (hit)
            return 1;
    }
    return 0;
}

int hs__certmap_match(const hs_certmap_t *m, X509 *cert, const char **user)
{
    if (m->n_one > 0) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        if (X509_digest(cert, EVP_sha256(), md, &mdlen) == 1 && mdlen == 32) {
            for (size_t i = 0; i < m->n_one; i++) {
                if (memcmp(md, m->one[i].sha256, 32) == 0) {
                    *user = m->one[i].user;
                    return 1;
                }
            }
        }
    }
    for (size_t i = 0; i < m->n_many; i++) {
        const map_many_t *g = &m->many[i];
        size_t j = 0;
        while (j < g->n_rules && rule_matches(&g->rules[j], cert, g->case_sensitive))
            j++;
        if (j < g->n_rules)
            continue;
        if (g->deny)
            return 0;
        *user = g->user;
        return 1;
    }
    return 0;
}
