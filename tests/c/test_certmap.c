/*
 * Unit tests of csrc/certmap.c: the matchCriteria glob, parsing of the spec that
 * httpsys/certmapping.py lays out (malformed lines refused, nothing leaked), and matching against
 * certificates built here with OpenSSL. Built with ASan and UBSan by the Makefile.
 */
#include "../../csrc/certmap.c"

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "tap.h"

static void globs(void)
{
    static const struct {
        const char *pattern, *text;
        int case_sensitive, want;
    } cases[] = {
        {"Contoso", "Contoso", 1, 1},     {"Contoso", "contoso", 1, 0},
        {"Contoso", "contoso", 0, 1},     {"Con*", "Contoso", 1, 1},
        {"*oso", "Contoso", 1, 1},        {"C*t*o", "Contoso", 1, 1},
        {"C*x*o", "Contoso", 1, 0},       {"*", "", 1, 1},
        {"", "", 1, 1},                   {"", "a", 1, 0},
        {"a", "", 1, 0},                  {"**a**", "a", 1, 1},
        {"a*b*c", "aXbYbZc", 1, 1},       {"a*b*c", "aXbYbZ", 1, 0},
        {"*ab", "aab", 1, 1},             {"*aab", "aaab", 1, 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ok(hs__certmap_glob(cases[i].pattern, cases[i].text, cases[i].case_sensitive) ==
               cases[i].want,
           "glob %s ~ %s (case %d) is %d", cases[i].pattern, cases[i].text,
           cases[i].case_sensitive, cases[i].want);
}

static void parsing(void)
{
    static const char *bad[] = {
        "X\tfoo\n",
        "1\tabc\tuser\n",                                                /* short digest */
        "1\t" "zz00000000000000000000000000000000000000000000000000000000000000\tu\n",
        "1\t" "0000000000000000000000000000000000000000000000000000000000000000\t\n",
        "M\tA\t1\tuser\t1\tSCN\n",                                       /* criteria missing */
        "M\tA\t1\tuser\t0\n",                                            /* no rules */
        "M\tQ\t1\tuser\t1\tSCN\tx\n",                                    /* permission */
        "M\tA\t1\tuser\t1\tSXX\tx\n",                                    /* subfield */
        "M\tA\t1\tuser\t1\tZCN\tx\n",                                    /* field */
        "M\tA\t1\tuser\t2\tSCN\tx\n",                                    /* rule count */
        "M\tA\t1\tuser\t1\tSCN\t\n",                                     /* empty criteria */
    };
    char err[128];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        hs_certmap_t *m = hs__certmap_new(bad[i], strlen(bad[i]), err, sizeof(err));
        ok(m == NULL && strstr(err, "line 1") != NULL, "refused: %.30s... (%s)", bad[i], err);
        hs__certmap_release(m);
    }
    hs_certmap_t *m = hs__certmap_new("", 0, err, sizeof(err));
    ok(m != NULL && m->n_one == 0 && m->n_many == 0, "an empty spec is an empty set");
    hs__certmap_release(m);
}

static X509 *make_cert(const char *cn, const char *o, const char *issuer_cn)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME *s = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(s, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
    X509_NAME_add_entry_by_txt(s, "O", MBSTRING_UTF8, (const unsigned char *)o, -1, -1, 0);
    X509_NAME *is = X509_get_issuer_name(x);
    X509_NAME_add_entry_by_txt(is, "CN", MBSTRING_UTF8, (const unsigned char *)issuer_cn, -1, -1,
                               0);
    X509_set_pubkey(x, key);
    X509_sign(x, key, EVP_sha256());
    EVP_PKEY_free(key);
    return x;
}

static void matching(void)
{
    X509 *alice = make_cert("alice", "Contoso", "Contoso CA");
    X509 *bob = make_cert("bob", "Fabrikam", "Fabrikam CA");
    unsigned char md[32];
    unsigned int mdlen = 0;
    X509_digest(alice, EVP_sha256(), md, &mdlen);
    char spec[512] = "1\t";
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(spec + strlen(spec), 3, "%02x", md[i]);
    strcat(spec, "\talice-1to1\n"
                 "M\tD\t1\t-\t1\tSCN\tbob\n"
                 "M\tA\t0\tcontoso-users\t2\tSO\tcontoso\tICN\t*CA\n"
                 "M\tA\t1\tguests\t1\tSCN\t*\n");
    char err[128];
    hs_certmap_t *m = hs__certmap_new(spec, strlen(spec), err, sizeof(err));
    ok(m != NULL, "the spec parses (%s)", m ? "" : err);
    const char *user = NULL;
    ok(hs__certmap_match(m, alice, &user) == 1 && strcmp(user, "alice-1to1") == 0,
       "one-to-one first: %s", user ? user : "(none)");
    ok(hs__certmap_match(m, bob, &user) == 0, "a Deny mapping that matches refuses bob");
    X509 *carol = make_cert("carol", "CONTOSO", "Contoso CA");
    ok(hs__certmap_match(m, carol, &user) == 1 && strcmp(user, "contoso-users") == 0,
       "many-to-one, case-insensitive, all rules: %s", user);
    X509 *dave = make_cert("dave", "Other", "Other Root");
    ok(hs__certmap_match(m, dave, &user) == 1 && strcmp(user, "guests") == 0,
       "falls through to the catch-all: %s", user);
    hs__certmap_release(m);
    static const char sensitive[] = "M\tA\t1\tx\t1\tSO\tContoso\n";
    hs_certmap_t *none = hs__certmap_new(sensitive, strlen(sensitive), err, sizeof(err));
    ok(none != NULL && hs__certmap_match(none, carol, &user) == 0,
       "case-sensitive by default: CONTOSO is not Contoso");
    hs__certmap_release(none);
    X509_free(alice);
    X509_free(bob);
    X509_free(carol);
    X509_free(dave);
}

int main(void)
{
    globs();
    parsing();
    matching();
    printf("# test_certmap: %d checks, %d failed\n", tally.run, tally.failed);
    return tally.failed ? 1 : 0;
}
