/*
 * The one table that maps each reason the listener answers a request itself (enum hs_reject)
 * to its HTTP status, IIS substatus, reason phrase, HTML body text and HTTPERR reason, and the
 * writer of those canned responses. Texts are HTTP.sys's (reference section 3.3).
 */
#include <stdio.h>

#include "httpsys.h"
#include "status.h"

static const hs_status_row_t rows[HS_REJECT_COUNT] = {
    [HS_REJECT_NONE] = {200, 0, "OK", "OK", "OK", "OK", "-"},
    [HS_REJECT_BAD_REQUEST] = {400, 0, "Bad Request", "Bad Request", "Bad Request",
                               "The request is badly formed.", "BadRequest"},
    [HS_REJECT_INVALID_HOSTNAME] = {400, 0, "Bad Request", "Bad Request",
                                    "Bad Request - Invalid Hostname",
                                    "The request hostname is invalid.", "Hostname"},
    [HS_REJECT_INVALID_URL] = {400, 0, "Bad Request", "Bad Request", "Bad Request - Invalid URL",
                               "The request URL is invalid.", "URL"},
    [HS_REJECT_INVALID_HEADER] = {400, 0, "Bad Request", "Bad Request",
                                  "Bad Request - Invalid Header",
                                  "The request has an invalid header name.", "Header"},
    [HS_REJECT_INVALID_VERB] = {400, 0, "Bad Request", "Bad Request", "Bad Request - Invalid Verb",
                                "The request verb is invalid.", "Verb"},
    [HS_REJECT_FIELD_LENGTH] = {400, 0, "Bad Request", "Bad Request",
                                "Bad Request - Request Too Long",
                                "The size of the request headers is too long.", "FieldLength"},
    [HS_REJECT_REQUEST_LENGTH] = {400, 0, "Bad Request", "Bad Request",
                                  "Bad Request - Request Too Long",
                                  "The size of the request headers is too long.", "RequestLength"},
    [HS_REJECT_NOT_FOUND] = {404, 0, "Not Found", "Not Found", "Not Found",
                             "The requested resource is not found.", "NotFound"},
    [HS_REJECT_LENGTH_REQUIRED] = {411, 0, "Length Required", "Length Required", "Length Required",
                                   "The request must be chunked or have a content length.",
                                   "LengthRequired"},
    [HS_REJECT_ENTITY_TOO_LARGE] = {413, 0, "Request Entity Too Large", "Request Entity Too Large",
                                    "Request Entity Too Large",
                                    "The page was not displayed because the request entity is too "
                                    "large.",
                                    "EntityTooLarge"},
    [HS_REJECT_URL_TOO_LONG] = {414, 0, "Request URL Too Long", "Request URL Too Long",
                                "Request URL Too Long", "The request URL is too long.",
                                "URL_Length"},
    [HS_REJECT_NOT_IMPLEMENTED] = {501, 0, "Not Implemented", "Not Implemented", "Not Implemented",
                                   "The request could not be handled by the server.", "N/I"},
    [HS_REJECT_QUEUE_FULL] = {503, 0, "Service Unavailable", "Service Unavailable",
                              "Service Unavailable", "The service is unavailable.", "QueueFull"},
    [HS_REJECT_VERSION] = {505, 0, "HTTP Version Not Supported", "HTTP Version Not Supported",
                           "HTTP Version Not Supported",
                           "The HTTP version of the request is not supported.", "Version_N/S"},
    [HS_REJECT_INTERNAL] = {500, 0, "Internal Server Error", "Internal Server Error",
                            "Internal Server Error",
                            "The server encountered an internal error.", "Internal"},
    [HS_REJECT_BAD_NUMBER] = {400, 0, "Bad Request", "Bad Request", "Bad Request",
                              "The request has an invalid number.", "Number"},
    [HS_REJECT_INVALID_CRLF] = {400, 0, "Bad Request", "Bad Request", "Bad Request",
                                "The request has an invalid line ending.", "Invalid_CR/LF"},
    [HS_REJECT_APP_OFFLINE] = {503, 0, "Service Unavailable", "Service Unavailable",
                               "Service Unavailable", "The service is unavailable.", "AppOffline"},
    [HS_REJECT_QUEUE_TIMEOUT] = {503, 0, "Service Unavailable", "Service Unavailable",
                                 "Service Unavailable", "The service is unavailable.",
                                 "Timer_ReqQueue"},
    /* IIS's 403 substatus answers; the texts are IIS's names for them (reference 4.2). */
    [HS_REJECT_SSL_REQUIRED] = {403, 4, "Forbidden", "Forbidden", "Forbidden - SSL required",
                                "SSL is required to view this resource.", "SSL_Required"},
    [HS_REJECT_SSL128_REQUIRED] = {403, 5, "Forbidden", "Forbidden", "Forbidden - SSL 128 required",
                                   "SSL 128 is required to view this resource.", "SSL128_Required"},
    [HS_REJECT_CERT_REQUIRED] = {403, 7, "Forbidden", "Forbidden",
                                 "Forbidden - Client certificate required",
                                 "A client certificate is required to view this resource.",
                                 "ClientCert_Required"},
    [HS_REJECT_CERT_REVOKED] = {403, 13, "Forbidden", "Forbidden",
                                "Forbidden - Client certificate revoked",
                                "The client certificate has been revoked, or its revocation "
                                "status could not be determined.",
                                "ClientCert_Revoked"},
    [HS_REJECT_CERT_UNTRUSTED] = {403, 16, "Forbidden", "Forbidden",
                                  "Forbidden - Client certificate is untrusted or invalid",
                                  "The client certificate is untrusted or invalid.",
                                  "ClientCert_Untrusted"},
    [HS_REJECT_CERT_EXPIRED] = {403, 17, "Forbidden", "Forbidden",
                                "Forbidden - Client certificate has expired or is not yet valid",
                                "The client certificate has expired or is not yet valid.",
                                "ClientCert_Expired"},
    [HS_REJECT_MAPPER_DENIED] = {403, 12, "Forbidden", "Forbidden",
                                 "Forbidden - Mapper denied access",
                                 "The client certificate mapping denied access to this resource.",
                                 "Mapper_Denied"},
};

const hs_status_row_t *hs__status_row(int reject)
{
    if (reject < 0 || reject >= HS_REJECT_COUNT || rows[reject].status == 0)
        return &rows[HS_REJECT_INTERNAL];
    return &rows[reject];
}

/* The body template is HTTP.sys's, byte for byte, including the missing space between the two
 * DOCTYPE strings. */
static const char body_fmt[] =
    "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01//EN\"\"http://www.w3.org/TR/html4/strict.dtd\">\r\n"
    "<HTML><HEAD><TITLE>%s</TITLE>\r\n"
    "<META HTTP-EQUIV=\"Content-Type\" Content=\"text/html; charset=us-ascii\"></HEAD>\r\n"
    "<BODY><h2>%s</h2>\r\n"
    "<hr><p>HTTP Error %s. %s</p>\r\n"
    "</BODY></HTML>\r\n";

size_t hs__status_response(int reject, int close, const char *date, char *out, size_t cap)
{
    const hs_status_row_t *row = hs__status_row(reject);
    char body[1024], code[16];
    /* IIS writes the substatus into the page: "HTTP Error 403.7." */
    if (row->substatus)
        snprintf(code, sizeof(code), "%d.%d", row->status, row->substatus);
    else
        snprintf(code, sizeof(code), "%d", row->status);
    int blen = snprintf(body, sizeof(body), body_fmt, row->title, row->heading, code, row->text);
    if (blen < 0 || (size_t)blen >= sizeof(body))
        return 0;
    int n = snprintf(out, cap,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: text/html; charset=us-ascii\r\n"
                     "Server: httpsys/" HS_VERSION "\r\n"
                     "Date: %s\r\n"
                     "%s"
                     "Content-Length: %d\r\n\r\n%s",
                     row->status, row->reason, date, close ? "Connection: close\r\n" : "", blen,
                     body);
    if (n < 0 || (size_t)n >= cap)
        return 0;
    return (size_t)n;
}

int hs_reject_count(void)
{
    return HS_REJECT_COUNT;
}

int hs_reject_status(int reject, int *status, int *substatus, const char **reason,
                     const char **httperr)
{
    if (reject < 0 || reject >= HS_REJECT_COUNT || rows[reject].status == 0)
        return HS_RESULT_NOT_FOUND;
    *status = rows[reject].status;
    *substatus = rows[reject].substatus;
    *reason = rows[reject].heading;
    *httperr = rows[reject].httperr;
    return HS_RESULT_OK;
}
