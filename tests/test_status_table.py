"""Every reason the core answers a request itself has a row in csrc/status.c's table."""

from __future__ import annotations

from httpsys import status
from httpsys._native import lib

# The fixed numbers of enum hs_reject and the HTTP.sys answer each must give (reference 3.3).
EXPECTED = {
    lib.HS_REJECT_BAD_REQUEST: (400, "Bad Request", "BadRequest"),
    lib.HS_REJECT_INVALID_HOSTNAME: (400, "Bad Request - Invalid Hostname", "Hostname"),
    lib.HS_REJECT_INVALID_URL: (400, "Bad Request - Invalid URL", "URL"),
    lib.HS_REJECT_INVALID_HEADER: (400, "Bad Request - Invalid Header", "Header"),
    lib.HS_REJECT_INVALID_VERB: (400, "Bad Request - Invalid Verb", "Verb"),
    lib.HS_REJECT_FIELD_LENGTH: (400, "Bad Request - Request Too Long", "FieldLength"),
    lib.HS_REJECT_REQUEST_LENGTH: (400, "Bad Request - Request Too Long", "RequestLength"),
    lib.HS_REJECT_NOT_FOUND: (404, "Not Found", "NotFound"),
    lib.HS_REJECT_LENGTH_REQUIRED: (411, "Length Required", "LengthRequired"),
    lib.HS_REJECT_ENTITY_TOO_LARGE: (413, "Request Entity Too Large", "EntityTooLarge"),
    lib.HS_REJECT_URL_TOO_LONG: (414, "Request URL Too Long", "URL_Length"),
    lib.HS_REJECT_NOT_IMPLEMENTED: (501, "Not Implemented", "N/I"),
    lib.HS_REJECT_QUEUE_FULL: (503, "Service Unavailable", "QueueFull"),
    lib.HS_REJECT_VERSION: (505, "HTTP Version Not Supported", "Version_N/S"),
    lib.HS_REJECT_INTERNAL: (500, "Internal Server Error", "Internal"),
    lib.HS_REJECT_BAD_NUMBER: (400, "Bad Request", "Number"),
    lib.HS_REJECT_INVALID_CRLF: (400, "Bad Request", "Invalid_CR/LF"),
    lib.HS_REJECT_APP_OFFLINE: (503, "Service Unavailable", "AppOffline"),
    lib.HS_REJECT_SSL_REQUIRED: (403, "Forbidden - SSL required", "SSL_Required"),
    lib.HS_REJECT_SSL128_REQUIRED: (403, "Forbidden - SSL 128 required", "SSL128_Required"),
    lib.HS_REJECT_CERT_REQUIRED: (403, "Forbidden - Client certificate required", "ClientCert_Required"),
    lib.HS_REJECT_CERT_REVOKED: (403, "Forbidden - Client certificate revoked", "ClientCert_Revoked"),
    lib.HS_REJECT_CERT_UNTRUSTED: (403, "Forbidden - Client certificate is untrusted or invalid",
                                   "ClientCert_Untrusted"),
    lib.HS_REJECT_CERT_EXPIRED: (403, "Forbidden - Client certificate has expired or is not yet valid",
                                 "ClientCert_Expired"),
    lib.HS_REJECT_MAPPER_DENIED: (403, "Forbidden - Mapper denied access", "Mapper_Denied"),
    lib.HS_REJECT_QUEUE_TIMEOUT: (503, "Service Unavailable", "Timer_ReqQueue"),
}

# IIS substatus codes of the 403 answers (reference 4.2).
SUBSTATUS = {
    lib.HS_REJECT_SSL_REQUIRED: 4, lib.HS_REJECT_SSL128_REQUIRED: 5, lib.HS_REJECT_CERT_REQUIRED: 7,
    lib.HS_REJECT_CERT_REVOKED: 13, lib.HS_REJECT_CERT_UNTRUSTED: 16, lib.HS_REJECT_CERT_EXPIRED: 17,
    lib.HS_REJECT_MAPPER_DENIED: 12,
}


def test_every_reject_has_a_row() -> None:
    rows = {row.reject: row for row in status.table()}
    # HS_REJECT_NONE (0) is not a rejection; every other value up to the count must have a row.
    assert set(rows) - {lib.HS_REJECT_NONE} == set(range(1, lib.hs_reject_count()))
    assert set(EXPECTED) == set(rows) - {lib.HS_REJECT_NONE}


def test_rows_match_httpsys_answers() -> None:
    rows = {row.reject: row for row in status.table()}
    for reject, (code, heading, httperr) in EXPECTED.items():
        row = rows[reject]
        assert (row.status, row.heading, row.httperr) == (code, heading, httperr), reject
        assert row.substatus == SUBSTATUS.get(reject, 0), reject
