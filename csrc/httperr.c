/*
 * The HTTPERR log: a ring of fixed-size records filled by the I/O threads and one logging thread
 * that writes them to httperr<N>.log (reference 3.4).
 *
 * The ring is multi-producer, single-consumer, under one mutex that producers hold only for the
 * copy of one record: the bytes in [tail, head) belong to the logging thread, which formats and
 * writes them without the lock and then moves tail. A record is packed as an entry: a small
 * header, the record's fixed fields, then only the verb and URL bytes it uses, rounded up to 8
 * bytes; an entry that would cross the end of the buffer is preceded by a skip entry filling the
 * rest, so the logging thread reads every entry in one piece. A producer that finds the ring full
 * counts a drop and returns; nothing on an I/O thread ever waits for the disk. The logging
 * thread sleeps on a condition variable that a producer signals only when it sleeps.
 *
 * Files: the set continues at the highest httperr<N>.log already in the directory, as HTTP.sys
 * does across restarts; every file (and every reopening) starts with the W3C header lines, and
 * a file rolls over to N+1 when the next line would take it past max_bytes. Files are 0600.
 * Several processes (serve --workers N) may share the folder: each batch is one O_APPEND write,
 * so lines never interleave, and the size is read again before each batch.
 */
#include <dirent.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "httperr.h"

#define LINE_MAX_BYTES (HS_HTTPERR_URI_MAX + HS_HTTPERR_VERB_MAX + 512)
#define BATCH_BYTES (64u << 10)

static const char header_fmt[] = "#Software: Microsoft HTTP API 2.0\r\n"
                                 "#Version: 1.0\r\n"
                                 "#Date: %s\r\n"
                                 "#Fields: date time c-ip c-port s-ip s-port cs-version cs-method "
                                 "cs-uri sc-status s-siteid s-reason s-queuename\r\n";

/* ---- formatting (pure) ------------------------------------------------------------------- */

/* Appends one field and a separator. HTTP.sys writes an empty field as '-' and replaces
 * spaces, tabs and other control characters inside a field with '+', so that a line always
 * splits into the same number of fields. */
static size_t put_field(char *out, size_t pos, const char *s, size_t n, char sep)
{
    if (n == 0)
        out[pos++] = '-';
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[pos++] = (ch <= 0x20 || ch == 0x7f) ? '+' : (char)ch;
    }
    out[pos++] = sep;
    return pos;
}

static size_t put_cstr(char *out, size_t pos, const char *s, char sep)
{
    return put_field(out, pos, s, s ? strlen(s) : 0, sep);
}

static size_t put_int(char *out, size_t pos, int v, char sep)
{
    char num[16];
    int n = v > 0 ? snprintf(num, sizeof(num), "%d", v) : 0;
    return put_field(out, pos, num, n > 0 ? (size_t)n : 0, sep);
}

size_t hs__httperr_format(const hs_httperr_rec_t *rec, char *out, size_t cap)
{
    const char *reason = rec->reason != NULL && rec->reason[0] ? rec->reason : "N/A";
    if (cap < LINE_MAX_BYTES)
        return 0;
    struct tm tm;
    time_t t = (time_t)rec->time_s;
    gmtime_r(&t, &tm);
    size_t pos = strftime(out, cap, "%Y-%m-%d %H:%M:%S ", &tm);
    pos = put_cstr(out, pos, rec->c_ip, ' ');
    pos = put_int(out, pos, rec->c_port, ' ');
    pos = put_cstr(out, pos, rec->s_ip, ' ');
    pos = put_int(out, pos, rec->s_port, ' ');
    pos = put_cstr(out, pos, rec->version, ' ');
    pos = put_field(out, pos, rec->verb, rec->verb_len, ' ');
    pos = put_field(out, pos, rec->uri, rec->uri_len, ' ');
    pos = put_int(out, pos, rec->status > 999 ? 0 : rec->status, ' ');
    pos = put_field(out, pos, "", 0, ' '); /* s-siteid: always '-' for HTTP Server API apps */
    pos = put_cstr(out, pos, reason, ' ');
    pos = put_cstr(out, pos, rec->queue, '\r');
    out[pos++] = '\n';
    return pos;
}

void hs__httperr_set_verb(hs_httperr_rec_t *rec, hs_str_t verb)
{
    size_t n = verb.len < HS_HTTPERR_VERB_MAX ? verb.len : HS_HTTPERR_VERB_MAX;
    if (n > 0)
        memcpy(rec->verb, verb.base, n);
    rec->verb_len = (uint16_t)n;
}

/* cs-uri is the URL and, when there is one, '?' and the query, cut at 4096 bytes. */
void hs__httperr_set_uri(hs_httperr_rec_t *rec, hs_str_t path, hs_str_t query)
{
    size_t n = path.len < HS_HTTPERR_URI_MAX ? path.len : HS_HTTPERR_URI_MAX;
    if (n > 0)
        memcpy(rec->uri, path.base, n);
    if (query.len > 0 && n < HS_HTTPERR_URI_MAX) {
        rec->uri[n++] = '?';
        size_t q = query.len < HS_HTTPERR_URI_MAX - n ? query.len : HS_HTTPERR_URI_MAX - n;
        memcpy(rec->uri + n, query.base, q);
        n += q;
    }
    rec->uri_len = (uint16_t)n;
}

/* ---- the ring ---------------------------------------------------------------------------- */

typedef struct entry {
    uint32_t len;  /* bytes of the entry, header included, a multiple of 8 */
    uint32_t skip; /* 1: filler up to the end of the buffer */
} entry_t;

#define FIXED_BYTES offsetof(hs_httperr_rec_t, verb)

static size_t entry_len(const hs_httperr_rec_t *rec)
{
    size_t n = sizeof(entry_t) + FIXED_BYTES + rec->verb_len + rec->uri_len;
    return (n + 7) & ~(size_t)7;
}

int hs__httperr_push(hs_httperr_t *l, const hs_httperr_rec_t *rec)
{
    size_t need = entry_len(rec);
    pthread_mutex_lock(&l->mu);
    size_t pos = (size_t)(l->head % l->ring_size);
    size_t filler = pos + need > l->ring_size ? l->ring_size - pos : 0;
    if (l->head - l->tail + filler + need > l->ring_size) {
        l->dropped++;
        pthread_mutex_unlock(&l->mu);
        return HS_ERROR;
    }
    if (filler > 0) {
        *(entry_t *)(l->ring + pos) = (entry_t){(uint32_t)filler, 1};
        l->head += filler;
        pos = 0;
    }
    char *p = l->ring + pos;
    *(entry_t *)p = (entry_t){(uint32_t)need, 0};
    p += sizeof(entry_t);
    memcpy(p, rec, FIXED_BYTES);
    memcpy(p + FIXED_BYTES, rec->verb, rec->verb_len);
    memcpy(p + FIXED_BYTES + rec->verb_len, rec->uri, rec->uri_len);
    l->head += need;
    l->pushed++;
    int wake = l->sleeping;
    pthread_mutex_unlock(&l->mu);
    if (wake)
        pthread_cond_signal(&l->cv);
    return HS_OK;
}

/* The logging thread: the entry at byte offset off back into a record; returns its length. */
static size_t unpack(const hs_httperr_t *l, uint64_t off, hs_httperr_rec_t *rec, int *skip)
{
    const char *p = l->ring + off % l->ring_size;
    entry_t e;
    memcpy(&e, p, sizeof(e));
    *skip = (int)e.skip;
    if (e.skip)
        return e.len;
    p += sizeof(entry_t);
    memcpy(rec, p, FIXED_BYTES);
    memcpy(rec->verb, p + FIXED_BYTES, rec->verb_len);
    memcpy(rec->uri, p + FIXED_BYTES + rec->verb_len, rec->uri_len);
    return e.len;
}

static void deadline_in(struct timespec *ts, int timeout_ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += timeout_ms / 1000;
    ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

int hs__httperr_flush(hs_httperr_t *l, int timeout_ms)
{
    struct timespec ts;
    deadline_in(&ts, timeout_ms < 0 ? 0 : timeout_ms);
    int rc = 0;
    pthread_mutex_lock(&l->mu);
    uint64_t target = l->pushed;
    while (l->done < target && l->running && rc == 0)
        rc = pthread_cond_timedwait(&l->done_cv, &l->mu, &ts);
    int ok = l->done >= target;
    pthread_mutex_unlock(&l->mu);
    return ok ? HS_OK : HS_AGAIN;
}

/* ---- files (logging thread only) --------------------------------------------------------- */

/* The highest N of the httperr<N>.log files already in dir (0 if none). */
static unsigned last_file_no(const char *dir)
{
    unsigned best = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        unsigned n;
        char tail[8];
        if (sscanf(e->d_name, "httperr%u.%7s", &n, tail) == 2 && strcmp(tail, "log") == 0 &&
            n > best)
            best = n;
    }
    closedir(d);
    return best;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return HS_ERROR;
        p += w;
        n -= (size_t)w;
    }
    return HS_OK;
}

/* Opens httperr<file_no>.log for appending (moving on while a file is already full) and writes
 * the header lines. */
static int open_file(hs_httperr_t *l)
{
    char path[4096 + 32];
    for (;;) {
        snprintf(path, sizeof(path), "%s/httperr%u.log", l->dir, l->file_no);
        l->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (l->fd < 0)
            return HS_ERROR;
        struct stat st;
        if (fstat(l->fd, &st) != 0) {
            close(l->fd);
            l->fd = -1;
            return HS_ERROR;
        }
        l->file_size = (uint64_t)st.st_size;
        if (l->file_size < l->max_bytes)
            break;
        close(l->fd);
        l->file_no++;
    }
    l->file_has_lines = 0;
    char date[32], head[512];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
    int n = snprintf(head, sizeof(head), header_fmt, date);
    if (write_all(l->fd, head, (size_t)n) != HS_OK)
        return HS_ERROR;
    l->file_size += (uint64_t)n;
    return HS_OK;
}

static void close_file(hs_httperr_t *l)
{
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
}

/* Writes one batch of formatted lines to the current file (opened if need be). */
static int write_batch(hs_httperr_t *l, const char *p, size_t n)
{
    if (n == 0)
        return HS_OK;
    if (l->fd < 0 && open_file(l) != HS_OK) {
        close_file(l);
        return HS_ERROR;
    }
    if (write_all(l->fd, p, n) != HS_OK) {
        close_file(l); /* opened again for the next batch */
        return HS_ERROR;
    }
    l->file_size += n;
    l->file_has_lines = 1;
    return HS_OK;
}

/* Formats and writes the entries in bytes [from, to); returns how many records it found, and
 * in *failed how many of them could not be written. */
static uint64_t write_records(hs_httperr_t *l, uint64_t from, uint64_t to, char *batch,
                              uint64_t *failed_out)
{
    size_t used = 0;
    uint64_t pending = 0, failed = 0, records = 0;
    char line[LINE_MAX_BYTES];
    static __thread hs_httperr_rec_t rec; /* 4.5 KB: off the logging thread's stack */
    struct stat st;
    if (l->fd >= 0 && fstat(l->fd, &st) == 0)
        l->file_size = (uint64_t)st.st_size; /* other processes (serve --workers) append too */
    if (l->fd < 0 && open_file(l) != HS_OK)
        close_file(l); /* write_batch tries again; if it fails too, the lines count as failed */
    for (uint64_t off = from; off < to;) {
        int skip;
        off += unpack(l, off, &rec, &skip);
        if (skip)
            continue;
        records++;
        size_t n = hs__httperr_format(&rec, line, sizeof(line));
        /* Roll over when this line would take the file past its size; a file always gets at
         * least one line, however small max_bytes is. */
        int roll = l->fd >= 0 && l->file_size + used + n > l->max_bytes &&
                   (l->file_has_lines || used > 0);
        if (used + n > BATCH_BYTES || roll) {
            if (write_batch(l, batch, used) != HS_OK)
                failed += pending;
            used = 0;
            pending = 0;
        }
        if (roll && l->fd >= 0) {
            close_file(l);
            l->file_no++;
            if (open_file(l) != HS_OK)
                close_file(l);
        }
        memcpy(batch + used, line, n);
        used += n;
        pending++;
    }
    if (write_batch(l, batch, used) != HS_OK)
        failed += pending;
    *failed_out = failed;
    return records;
}

static void *log_main(void *arg)
{
    hs_httperr_t *l = arg;
    char *batch = malloc(BATCH_BYTES + LINE_MAX_BYTES);
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (l->head == l->tail && !l->stop) {
            l->sleeping = 1;
            pthread_cond_wait(&l->cv, &l->mu);
            l->sleeping = 0;
        }
        if (l->head == l->tail)
            break; /* stopping, and everything is written */
        uint64_t from = l->tail, to = l->head, failed = 0, n = l->pushed - l->done;
        pthread_mutex_unlock(&l->mu);
        if (batch != NULL)
            n = write_records(l, from, to, batch, &failed);
        else
            failed = n; /* no memory for the batch: these lines are lost, and counted */
        pthread_mutex_lock(&l->mu);
        l->tail = to;
        l->done += n;
        l->failed += failed;
        l->written += n - failed;
        pthread_cond_broadcast(&l->done_cv);
    }
    pthread_mutex_unlock(&l->mu);
    close_file(l);
    free(batch);
    return NULL;
}

/* ---- lifecycle --------------------------------------------------------------------------- */

hs_httperr_t *hs__httperr_new(const char *dir, uint64_t max_bytes, size_t ring_bytes, char *err,
                              size_t errlen)
{
    struct stat st;
    if (dir == NULL || dir[0] == '\0' || strlen(dir) > 4000) {
        snprintf(err, errlen, "httperr_dir: a directory path is required");
        return NULL;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "httperr_dir: %s is not a directory", dir);
        return NULL;
    }
    if (max_bytes < HS_HTTPERR_MAX_BYTES_MIN) {
        snprintf(err, errlen, "httperr_max_bytes: %llu is less than %u",
                 (unsigned long long)max_bytes, HS_HTTPERR_MAX_BYTES_MIN);
        return NULL;
    }
    size_t size = ring_bytes ? (ring_bytes + 7) & ~(size_t)7 : HS_HTTPERR_RING_DEFAULT;
    if (size < HS_HTTPERR_RING_MIN) {
        snprintf(err, errlen, "httperr ring: %zu bytes is less than %u", size, HS_HTTPERR_RING_MIN);
        return NULL;
    }
    hs_httperr_t *l = calloc(1, sizeof(*l));
    if (l != NULL) {
        l->ring = malloc(size);
        l->dir = strdup(dir);
    }
    if (l == NULL || l->ring == NULL || l->dir == NULL) {
        if (l != NULL) {
            free(l->ring);
            free(l->dir);
        }
        free(l);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->ring_size = size;
    l->max_bytes = max_bytes;
    l->fd = -1;
    l->file_no = last_file_no(dir);
    if (l->file_no == 0)
        l->file_no = 1;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    pthread_cond_init(&l->done_cv, NULL);
    return l;
}

int hs__httperr_start(hs_httperr_t *l)
{
    pthread_mutex_lock(&l->mu);
    int running = l->running;
    pthread_mutex_unlock(&l->mu);
    if (running)
        return HS_OK;
    if (pthread_create(&l->thread, NULL, log_main, l) != 0)
        return HS_ERROR;
    pthread_mutex_lock(&l->mu);
    l->running = 1;
    pthread_mutex_unlock(&l->mu);
    return HS_OK;
}

void hs__httperr_free(hs_httperr_t *l)
{
    if (l == NULL)
        return;
    pthread_mutex_lock(&l->mu);
    int running = l->running;
    l->stop = 1;
    pthread_mutex_unlock(&l->mu);
    pthread_cond_signal(&l->cv);
    if (running)
        pthread_join(l->thread, NULL);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    pthread_cond_destroy(&l->done_cv);
    free(l->ring);
    free(l->dir);
    free(l);
}
