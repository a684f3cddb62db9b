"""The demo application: a page that shows what the connection negotiated."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from typing import Any

_KEYS = ("SERVER_PROTOCOL", "SSL_PROTOCOL", "SSL_CIPHER", "SSL_TLS_SNI", "SERVER_NAME", "SERVER_PORT",
         "REMOTE_ADDR", "REMOTE_PORT", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "HTTP_USER_AGENT")
# Shown when the client presented a certificate (a binding with clientcertnegotiation=enable).
_CLIENT_KEYS = ("SSL_CLIENT_VERIFY", "SSL_CLIENT_S_DN", "SSL_CLIENT_I_DN", "SSL_CLIENT_M_SERIAL",
                "SSL_CLIENT_V_START", "SSL_CLIENT_V_END")


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    rows = "".join(f"<tr><th>{k}</th><td>{html.escape(str(environ.get(k, '')))}</td></tr>" for k in _KEYS)
    if "SSL_CLIENT_CERT" in environ:
        rows += "".join(f"<tr><th>{k}</th><td>{html.escape(str(environ.get(k, '')))}</td></tr>"
                        for k in _CLIENT_KEYS)
        client = "presented (above)"
    else:
        client = "none presented"
    body = (
        "<!DOCTYPE html><html><head><title>httpsys demo</title></head><body>"
        "<h1>httpsys is serving this page</h1>"
        "<p>TLS, HTTP parsing and routing ran in the C core; this page came from a WSGI app.</p>"
        f"<table>{rows}<tr><th>client certificate</th><td>{html.escape(client)}</td></tr></table>"
        "</body></html>"
    ).encode()
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]
