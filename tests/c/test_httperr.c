/*
 * Unit tests of csrc/httperr.c: the line format (field order, '-' for empty fields, '+' for
 * spaces and control characters, truncation), and the ring: a producer that finds it full
 * drops and counts the record instead of waiting, and the logging thread then writes exactly
 * the records that fitted, rolling over to the next file. Built with ASan and UBSan.
 */
#include "../../csrc/httperr.c"

#include <sys/stat.h>

#include "tap.h"

static hs_httperr_rec_t make_rec(const char *verb, const char *uri, int status, const char *why)
{
    hs_httperr_rec_t rec;
    memset(&rec, 0, sizeof(rec));
    rec.time_s = 1033841109; /* 2002-10-05 18:05:09 UTC */
    snprintf(rec.c_ip, sizeof(rec.c_ip), "172.31.77.6");
    snprintf(rec.s_ip, sizeof(rec.s_ip), "172.31.77.6");
    rec.c_port = 2094;
    rec.s_port = 80;
    rec.status = status;
    rec.reason = why;
    if (verb != NULL) {
        snprintf(rec.version, sizeof(rec.version), "HTTP/1.1");
        hs__httperr_set_verb(&rec, (hs_str_t){verb, strlen(verb)});
    }
    if (uri != NULL)
        hs__httperr_set_uri(&rec, (hs_str_t){uri, strlen(uri)}, (hs_str_t){NULL, 0});
    return rec;
}

static int line_is(const hs_httperr_rec_t *rec, const char *want)
{
    static char out[LINE_MAX_BYTES];
    size_t n = hs__httperr_format(rec, out, sizeof(out));
    int same = n == strlen(want) && memcmp(out, want, n) == 0;
    if (!same)
        printf("# got: %.*s", (int)n, out);
    return same;
}

static void format(void)
{
    hs_httperr_rec_t rec = make_rec("GET", "/qos/1kbfile.txt", 503, "ConnLimit");
    ok(line_is(&rec, "2002-10-05 18:05:09 172.31.77.6 2094 172.31.77.6 80 HTTP/1.1 GET "
                     "/qos/1kbfile.txt 503 - ConnLimit -\r\n"),
       "the reference's sample line, with s-queuename '-'");

    rec = make_rec(NULL, NULL, 0, "Timer_MinBytesPerSecond");
    ok(line_is(&rec, "2002-10-05 18:05:09 172.31.77.6 2094 172.31.77.6 80 - - - - - "
                     "Timer_MinBytesPerSecond -\r\n"),
       "a timer line: every request field '-'");

    rec = make_rec("G T", "/a b\tc\x01\x7f\xc3\xa9", 400, "URL");
    rec.queue = "q 1";
    ok(line_is(&rec, "2002-10-05 18:05:09 172.31.77.6 2094 172.31.77.6 80 HTTP/1.1 G+T "
                     "/a+b+c++\xc3\xa9 400 - URL q+1\r\n"),
       "spaces and control characters become '+', UTF-8 stays");

    rec = make_rec("GET", "/", 400, NULL);
    ok(line_is(&rec, "2002-10-05 18:05:09 172.31.77.6 2094 172.31.77.6 80 HTTP/1.1 GET / 400 - "
                     "N/A -\r\n"),
       "the reason is never empty");

    static char long_verb[400], long_uri[5000];
    memset(long_verb, 'V', sizeof(long_verb) - 1);
    memset(long_uri, 'u', sizeof(long_uri) - 1);
    rec = make_rec(long_verb, long_uri, 414, "URL_Length");
    ok(rec.verb_len == 255 && rec.uri_len == 4096, "verb cut at 255 bytes, cs-uri at 4096");
    hs__httperr_set_uri(&rec, (hs_str_t){"/p", 2}, (hs_str_t){"a=1", 3});
    ok(rec.uri_len == 6 && memcmp(rec.uri, "/p?a=1", 6) == 0, "cs-uri is path?query");

    char small[64];
    ok(hs__httperr_format(&rec, small, sizeof(small)) == 0, "a buffer too small writes nothing");
}

static size_t count_lines(const char *path, size_t *headers)
{
    FILE *f = fopen(path, "r");
    size_t n = 0;
    char line[LINE_MAX_BYTES];
    *headers = 0;
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (line[0] == '#')
            (*headers)++;
        else
            n++;
    }
    fclose(f);
    return n;
}

static void ring(void)
{
    char dir[] = "/tmp/httperr-test-XXXXXX", err[256], path[128];
    hs_httperr_rec_t rec;
    ok(mkdtemp(dir) != NULL, "temporary directory");
    ok(hs__httperr_new(dir, 100, 4, err, sizeof(err)) == NULL && strstr(err, "max_bytes"),
       "a roll-over size under 4096 is refused: %s", err);
    ok(hs__httperr_new("/nonexistent/dir", 1 << 20, 4, err, sizeof(err)) == NULL,
       "a missing directory is refused: %s", err);

    ok(hs__httperr_new(dir, 4096, 1000, err, sizeof(err)) == NULL && strstr(err, "ring"),
       "a ring under 16 KB is refused: %s", err);
    hs_httperr_t *l = hs__httperr_new(dir, 4096, HS_HTTPERR_RING_MIN, err, sizeof(err));
    ok(l != NULL, "log created");
    rec = make_rec("GET", "/x", 404, "NotFound");
    size_t each = entry_len(&rec), fit = HS_HTTPERR_RING_MIN / each;
    int accepted = 0;
    /* Nobody drains the ring yet: once it is full every push returns at once, dropped. */
    for (size_t i = 0; i < fit + 10; i++)
        accepted += hs__httperr_push(l, &rec) == HS_OK;
    ok((size_t)accepted == fit && l->dropped == 10,
       "a full ring drops (%d of %zu-byte entries taken, %llu dropped)", accepted, each,
       (unsigned long long)l->dropped);
    ok(hs__httperr_flush(l, 10) == HS_AGAIN, "flush before start reports the lines unwritten");

    ok(hs__httperr_start(l) == HS_OK, "logging thread started");
    ok(hs__httperr_flush(l, 5000) == HS_OK, "flushed");
    ok(l->written == (uint64_t)accepted, "the %d records were written", accepted);
    snprintf(path, sizeof(path), "%s/httperr1.log", dir);
    FILE *f = fopen(path, "r");
    char line[256] = "";
    for (int i = 0; f != NULL && i < 5 && fgets(line, sizeof(line), f) != NULL; i++)
        ;
    if (f != NULL)
        fclose(f);
    ok(strcmp(line, "2002-10-05 18:05:09 172.31.77.6 2094 172.31.77.6 80 HTTP/1.1 GET /x 404 - "
                    "NotFound -\r\n") == 0,
       "the ring carries the record whole (only its used bytes are copied)");

    /* Long lines: 4096 bytes hold the header and few of them, so the set rolls over; 300 of
     * them go round the ring several times, through the filler at its end. */
    static char uri[1500];
    memset(uri, 'r', sizeof(uri) - 1);
    uri[0] = '/';
    rec = make_rec("GET", uri, 404, "NotFound");
    for (int i = 0; i < 300; i++) {
        while (hs__httperr_push(l, &rec) != HS_OK)
            hs__httperr_flush(l, 1000);
    }
    uint64_t want = (uint64_t)accepted + 300;
    ok(hs__httperr_flush(l, 5000) == HS_OK && l->written == want, "all %llu lines written",
       (unsigned long long)want);
    size_t total = 0, files = 0, headers;
    for (unsigned n = 1; n < 1000; n++) {
        struct stat st;
        snprintf(path, sizeof(path), "%s/httperr%u.log", dir, n);
        if (stat(path, &st) != 0)
            break;
        files++;
        total += count_lines(path, &headers);
        ok(headers == 4 && st.st_size <= 4096 && (st.st_mode & 0777) == 0600,
           "%s: header lines, %lld bytes, mode 0600", path, (long long)st.st_size);
        unlink(path);
    }
    ok(files >= 100 && total == want, "rolled over into %zu files holding all %zu lines", files,
       total);
    hs__httperr_free(l);
    rmdir(dir);
}

int main(void)
{
    format();
    ring();
    printf("# test_httperr: %d checks, %d failed\n", tally.run, tally.failed);
    return tally.failed ? 1 : 0;
}
