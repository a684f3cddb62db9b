/*
 * Every reason the listener answers a request itself is a value of enum hs_reject with a fixed
 * number (llhttp's fixed-number enum, nginx's status table). status.c maps each one to its HTTP
 * status, substatus, reason phrase, HTML body text and HTTPERR reason.
 */
#ifndef HS_STATUS_H
#define HS_STATUS_H

#include <stddef.h>

enum hs_reject {
    HS_REJECT_NONE = 0,
    HS_REJECT_BAD_REQUEST = 1,      /* 400, generic parse error: BadRequest */
    HS_REJECT_INVALID_HOSTNAME = 2, /* 400 Bad Request - Invalid Hostname: Hostname */
    HS_REJECT_INVALID_URL = 3,      /* 400 Bad Request - Invalid URL: URL */
    HS_REJECT_INVALID_HEADER = 4,   /* 400 Bad Request - Invalid Header: Header */
    HS_REJECT_INVALID_VERB = 5,     /* 400 Bad Request - Invalid Verb: Verb */
    HS_REJECT_FIELD_LENGTH = 6,     /* 400 Bad Request - Request Too Long: FieldLength */
    HS_REJECT_REQUEST_LENGTH = 7,   /* 400 Bad Request - Request Too Long: RequestLength */
    HS_REJECT_NOT_FOUND = 8,        /* 404 Not Found: NotFound */
    HS_REJECT_LENGTH_REQUIRED = 9,  /* 411 Length Required: LengthRequired */
    HS_REJECT_ENTITY_TOO_LARGE = 10, /* 413: EntityTooLarge */
    HS_REJECT_URL_TOO_LONG = 11,    /* 414 Request URL Too Long: URL_Length */
    HS_REJECT_NOT_IMPLEMENTED = 12, /* 501: N/I (unknown transfer-coding) */
    HS_REJECT_QUEUE_FULL = 13,      /* 503: QueueFull */
    HS_REJECT_VERSION = 14,         /* 505: Version_N/S */
    HS_REJECT_INTERNAL = 15,        /* 500: Internal (application error before the response) */
    HS_REJECT_BAD_NUMBER = 16,      /* 400: Number (bad Content-Length or chunk size) */
    HS_REJECT_INVALID_CRLF = 17,    /* 400: Invalid_CR/LF (bare CR) */
    HS_REJECT_APP_OFFLINE = 18,     /* 503: AppOffline (queue closed with the request pending) */
    /* IIS sslFlags answers (reference 4.2): 403 with a substatus. */
    HS_REJECT_SSL_REQUIRED = 19,    /* 403.4: plain HTTP to an Ssl prefix */
    HS_REJECT_SSL128_REQUIRED = 20, /* 403.5: cipher under 128 bits with Ssl128 */
    HS_REJECT_CERT_REQUIRED = 21,   /* 403.7: SslRequireCert and no certificate */
    HS_REJECT_CERT_REVOKED = 22,    /* 403.13: revoked, or revocation unknown */
    HS_REJECT_CERT_UNTRUSTED = 23,  /* 403.16: untrusted chain or wrong usage */
    HS_REJECT_CERT_EXPIRED = 24,    /* 403.17: expired or not yet valid */
    HS_REJECT_MAPPER_DENIED = 25,   /* 403.12: SslMapCert and no mapping allows the certificate */
    HS_REJECT_QUEUE_TIMEOUT = 26,   /* 503: Timer_ReqQueue (queued past requestqueuetimeout) */
    HS_REJECT_COUNT = 27
};

typedef struct hs_status_row {
    int status;            /* HTTP status code */
    int substatus;         /* IIS substatus (0: none) */
    const char *reason;    /* reason phrase of the status line */
    const char *title;     /* <TITLE> of the HTML body */
    const char *heading;   /* <h2> of the HTML body */
    const char *text;      /* text after "HTTP Error NNN." */
    const char *httperr;   /* HTTPERR log reason */
} hs_status_row_t;

const hs_status_row_t *hs__status_row(int reject);

/* Writes the complete error response (head and body) for reject into out; returns its length,
 * or 0 if it does not fit. close says whether to announce Connection: close. */
size_t hs__status_response(int reject, int close, const char *date, char *out, size_t cap);

#endif
