/*
 * Client-certificate mapping (IIS one-to-one and many-to-one, reference 4.4): an immutable,
 * refcounted set built from the text httpsys/certmapping.py lays out, matched against a
 * connection's certificate once per connection and mapping set.
 */
#ifndef HS_CERTMAP_H
#define HS_CERTMAP_H

#include <stddef.h>

#include <openssl/x509.h>

typedef struct hs_certmap hs_certmap_t;

/* Parses the lines of httpsys.certmapping.encode(). Returns NULL with a message in err for a
 * malformed spec (an empty spec is a valid, empty set). */
hs_certmap_t *hs__certmap_new(const char *spec, size_t len, char *err, size_t errlen);
void hs__certmap_ref(hs_certmap_t *m);
void hs__certmap_release(hs_certmap_t *m);

/* One-to-one mappings first (exact DER), then many-to-one in order: the first whose rules all
 * match decides. Returns 1 with *user (owned by m) for an Allow, 0 for a Deny or no match. */
int hs__certmap_match(const hs_certmap_t *m, X509 *cert, const char **user);

/* Whether text matches pattern, where '*' matches any run of characters (IIS matchCriteria). */
int hs__certmap_glob(const char *pattern, const char *text, int case_sensitive);

#endif
