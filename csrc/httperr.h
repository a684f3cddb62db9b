/*
 * The HTTPERR log (reference 3.4): one line for every answer the core gives itself and every
 * connection it drops or times out, in httperr<N>.log files with W3C header lines.
 *
 * I/O threads never touch the disk: they copy one record (its used bytes) into a ring buffer
 * under a short mutex hold and go on; a full ring counts the record as dropped instead of
 * waiting. One
 * logging thread per server formats the records (escaping is its job, not the I/O thread's),
 * writes them and rolls over to the next file at a configured size.
 */
#ifndef HS_HTTPERR_H
#define HS_HTTPERR_H

#include <pthread.h>
#include <stdint.h>

#include "hs_internal.h"

/* HTTP.sys's truncation limits for cs-method and cs-uri (reference 3.4). */
#define HS_HTTPERR_VERB_MAX 255
#define HS_HTTPERR_URI_MAX 4096
/* Bytes of the ring: a typical record packs into about 200, so 1 MB absorbs a burst of some
 * 5,000 lines (2,000 header waits expiring in the same tick); beyond that, records are dropped
 * and counted. The minimum holds a few records of the largest size. */
#define HS_HTTPERR_RING_DEFAULT (1u << 20)
#define HS_HTTPERR_RING_MIN (16u << 10)
/* ErrorLogFileTruncateSize default and minimum HTTP.sys accepts is 1 MB; tests go lower. */
#define HS_HTTPERR_MAX_BYTES_DEFAULT (1u << 20)
#define HS_HTTPERR_MAX_BYTES_MIN 4096u

/* One log line before formatting. Strings are raw bytes (escaped by the logging thread). */
typedef struct hs_httperr_rec {
    int64_t time_s;      /* wall clock, seconds since the epoch */
    int c_port, s_port;
    int status;          /* sc-status; 0 for '-' */
    const char *reason;  /* s-reason: a static string (status.c or the timer names) */
    const char *queue;   /* s-queuename: lives as long as the server (hs__server_queue_name) */
    char c_ip[48], s_ip[48];
    char version[12];    /* cs-version, "" for '-' */
    uint16_t verb_len;
    uint16_t uri_len;
    char verb[HS_HTTPERR_VERB_MAX];
    char uri[HS_HTTPERR_URI_MAX];
} hs_httperr_rec_t;

typedef struct hs_httperr {
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* the logging thread waits for records here */
    pthread_cond_t done_cv; /* flushers wait for the logging thread here */
    char *ring;          /* packed entries (httperr.c), never split at the end of the buffer */
    size_t ring_size;
    uint64_t head, tail; /* byte offsets: [tail, head) belongs to the logging thread */
    uint64_t pushed;     /* records pushed */
    uint64_t done;       /* records written (or failed) */
    uint64_t dropped, written, failed;
    int sleeping, stop, running;
    pthread_t thread;

    /* The logging thread's own state. */
    char *dir;
    uint64_t max_bytes;
    int fd;
    unsigned file_no;
    uint64_t file_size;
    int file_has_lines;
} hs_httperr_t;

/* Creates the log (not started) for dir with roll-over at max_bytes and a ring of ring_bytes
 * (0: the default; at least HS_HTTPERR_RING_MIN).
 * NULL with err set when dir is not a directory or memory is short. */
hs_httperr_t *hs__httperr_new(const char *dir, uint64_t max_bytes, size_t ring_bytes, char *err,
                              size_t errlen);
int hs__httperr_start(hs_httperr_t *l);
/* Writes what is queued, stops the thread and frees everything. */
void hs__httperr_free(hs_httperr_t *l);

/* Any thread: queues a copy of rec. Returns HS_OK, or HS_ERROR when the ring is full (the
 * record is counted as dropped). Never waits for the disk. */
int hs__httperr_push(hs_httperr_t *l, const hs_httperr_rec_t *rec);
/* Waits up to timeout_ms until every record pushed before the call is written. */
int hs__httperr_flush(hs_httperr_t *l, int timeout_ms);

/* Formats rec as one log line (CRLF included) into out; returns its length (0 if cap is too
 * small). Pure: the logging thread and the tests use it. */
size_t hs__httperr_format(const hs_httperr_rec_t *rec, char *out, size_t cap);

/* Fills the string fields of a record, truncating as HTTP.sys does. */
void hs__httperr_set_verb(hs_httperr_rec_t *rec, hs_str_t verb);
void hs__httperr_set_uri(hs_httperr_rec_t *rec, hs_str_t path, hs_str_t query);

#endif
