"""The hello-world applications every server runs: the same 13-byte body, the same two headers.

``app`` is WSGI (httpsys, granian --interface wsgi); ``asgi_app`` is ASGI 3 (uvicorn, granian
--interface asgi). nginx answers the same response from its config (``return 200``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

BODY = b"Hello, world!"
_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]
_RAW_HEADERS = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in _HEADERS]
_START = {"type": "http.response.start", "status": 200, "headers": _RAW_HEADERS}
_BODY = {"type": "http.response.body", "body": BODY, "more_body": False}


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """WSGI: 200, text/plain, Content-Length 13, ``Hello, world!``."""
    start_response("200 OK", _HEADERS)
    return [BODY]


async def asgi_app(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                   send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    """ASGI 3: the same response as ``app``; lifespan events are acknowledged."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    await send(_START)
    await send(_BODY)
