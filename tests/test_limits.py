"""Limits the C core enforces itself (reference 3.1, 3.3), the request queue limit, and the proof
that answering a request the core can answer alone never needs the GIL."""

from __future__ import annotations

import ctypes
import os
import queue
import subprocess
import threading
from typing import Any

import pytest
from clients import (
    BODY_INVALID_HOSTNAME,
    BODY_INVALID_URL,
    BODY_NOT_FOUND,
    BODY_SERVICE_UNAVAILABLE,
    BODY_TOO_LONG,
    BODY_URL_TOO_LONG,
    ERROR_CONTENT_TYPE,
    curl_path,
    https_get,
    parse_responses,
    raw_tls,
    tool_env,
)

TLS_VERSIONS = ["TLSv1.2", "TLSv1.3"]


def hello_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


def request(
    port: int, target: str = "/api/", headers: list[tuple[str, str]] | None = None
) -> bytes:
    lines = [f"GET {target} HTTP/1.1", f"Host: localhost:{port}"]
    lines += [f"{k}: {v}" for k, v in headers or []]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def follow_up(port: int) -> bytes:
    """A valid request pipelined after a bad one: it must never be answered, because the
    listener closes the connection after a parse error."""
    return request(port, "/api/after", [("Connection", "close")])


def assert_error_response(raw: bytes, status: int, body: bytes) -> None:
    responses = parse_responses(raw)
    assert len(responses) == 1, f"expected one response then the close, got {len(responses)}"
    (resp,) = responses
    assert resp.status == status, (resp.status, resp.body[:300])
    assert resp.body == body
    assert resp.header("Content-Type") == ERROR_CONTENT_TYPE
    assert resp.header("Content-Length") == str(len(body))
    assert "close" in (resp.header("Connection") or "").lower()


# ----------------------------------------------------------------------------------------------
# Header and URL limits


@pytest.mark.parametrize("tls_version", TLS_VERSIONS)
def test_oversized_header_gives_400_request_too_long(server, ca_file, tls_version):
    run = server({"/api/": hello_app})
    data = request(run.port, headers=[("X-Big", "a" * 20000)]) + follow_up(run.port)
    # raw_tls reads until the server closes (and fails if it does not).
    raw = raw_tls(run.port, data, ca_file, tls_version=tls_version, timeout=10)
    assert_error_response(raw, 400, BODY_TOO_LONG)


def test_many_headers_over_max_request_bytes(server, ca_file):
    run = server({"/api/": hello_app})
    # Each header is under MaxFieldLength (16384); together they exceed MaxRequestBytes (16384).
    headers = [(f"X-Part-{i}", "b" * 6000) for i in range(3)]
    raw = raw_tls(run.port, request(run.port, headers=headers) + follow_up(run.port), ca_file)
    assert_error_response(raw, 400, BODY_TOO_LONG)


def test_header_just_under_the_limit_is_served(server, ca_file):
    run = server({"/api/": hello_app})
    status, _, body = https_get(run.port, "/api/", ca=ca_file, headers={"X-Big": "c" * 15000})
    assert (status, body) == (200, b"hello")


def test_configured_limits(server, ca_file):
    run = server({"/api/": hello_app}, limits={"max_field_length": 1024, "max_request_bytes": 4096})
    status, _, body = https_get(run.port, "/api/", ca=ca_file, headers={"X-Small": "d" * 900})
    assert (status, body) == (200, b"hello")
    raw = raw_tls(run.port, request(run.port, headers=[("X-Big", "d" * 2000)]), ca_file)
    assert_error_response(raw, 400, BODY_TOO_LONG)


def test_limits_take_httpsys_registry_names(server, ca_file):
    """The registry value names of reference 3.1, in any case; the last spelling given wins. A
    MaxRequestBytes below MaxFieldLength lowers MaxFieldLength only while it is lower: raising it
    again restores the MaxFieldLength that was set, whatever the order."""
    limits = {"MaxFieldLength": 1024, "maxrequestbytes": 512, "MaxRequestBytes": 4096,
              "UrlSegmentMaxLength": 8, "urlsegmentmaxcount": 3}
    run = server({"/api/": hello_app}, limits=limits)
    status, _, body = https_get(run.port, "/api/", ca=ca_file, headers={"X-Small": "d" * 900})
    assert (status, body) == (200, b"hello")
    raw = raw_tls(run.port, request(run.port, headers=[("X-Big", "d" * 1100)]), ca_file)
    assert_error_response(raw, 400, BODY_TOO_LONG)
    assert https_get(run.port, "/api/12345678/b", ca=ca_file)[0] == 200
    for target in ("/api/123456789", "/api/a/b/c"):
        raw = raw_tls(run.port, request(run.port, target), ca_file)
        assert_error_response(raw, 400, BODY_INVALID_URL)


@pytest.mark.parametrize(
    "limits, param",
    [({"MaxFieldLenght": 1024}, "MaxFieldLenght"), ({"MaxFieldLength": 63}, "MaxFieldLength"),
     ({"MaxRequestBytes": 16777217}, "MaxRequestBytes"), ({"UrlSegmentMaxCount": -1}, "UrlSegmentMaxCount"),
     ({"MaxFieldLength": True}, "MaxFieldLength")],
)
def test_bad_limit_is_refused_naming_it(limits, param):
    import httpsys

    with pytest.raises(httpsys.InvalidParameterError) as info:
        httpsys.Server(limits=limits)
    assert info.value.param == param
    assert param in str(info.value)


@pytest.mark.parametrize("tls_version", TLS_VERSIONS)
def test_url_over_limit_gives_414(server, ca_file, tls_version):
    run = server({"/api/": hello_app})
    data = request(run.port, "/api/" + "u" * 17000) + follow_up(run.port)
    raw = raw_tls(run.port, data, ca_file, tls_version=tls_version, timeout=10)
    assert_error_response(raw, 414, BODY_URL_TOO_LONG)


# ----------------------------------------------------------------------------------------------
# Request queue limit


def test_queue_full_gives_503(server, ca_file):
    entered = threading.Event()
    release = threading.Event()

    def blocking_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        entered.set()
        release.wait(60)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "7")])
        return [b"done ok"]

    run = server({"/api/": blocking_app}, queue_limit=1, workers=1)
    results: queue.Queue[tuple[str, Any]] = queue.Queue()

    def client(name: str) -> None:
        try:
            status, headers, body = https_get(run.port, f"/api/{name}", ca=ca_file, timeout=60)
            results.put((name, (status, headers.get("Content-Type"), body)))
        except Exception as exc:  # reported by the assertions below
            results.put((name, exc))

    threads = [threading.Thread(target=client, args=("first",))]
    threads[0].start()
    try:
        # The only worker now holds the first request, so the queue is empty.
        assert entered.wait(30), "the first request never reached the app"
        # One of the next two waits in the queue (limit 1); the other finds it full.
        for name in ("second", "third"):
            t = threading.Thread(target=client, args=(name,))
            threads.append(t)
            t.start()
        try:
            name, got = results.get(timeout=30)
        except queue.Empty:
            pytest.fail("no 503: both requests were accepted although the queue limit is 1")
        assert name in ("second", "third")
        assert got == (503, ERROR_CONTENT_TYPE, BODY_SERVICE_UNAVAILABLE)
    finally:
        release.set()
        for t in threads:
            t.join(90)
    rest = sorted(results.get_nowait() for _ in range(results.qsize()))
    assert [n for n, _ in rest if n == "first"] == ["first"]
    assert len(rest) == 2, rest
    served = [got for _, got in rest if isinstance(got, tuple) and got[0] == 200]
    assert [got[2] for got in served] == [b"done ok", b"done ok"], rest


# ----------------------------------------------------------------------------------------------
# The hot path is GIL-free


def _gil_holding_libc() -> tuple[Any, Any]:
    """libc's read and write called through ``ctypes.PyDLL``, which keeps the GIL held for the
    whole call (unlike ``CDLL``): a thread blocked in this read holds the GIL until it returns."""
    libc = ctypes.PyDLL(None)
    read = libc.read
    read.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
    read.restype = ctypes.c_ssize_t
    write = libc.write
    write.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
    write.restype = ctypes.c_ssize_t
    return read, write


@pytest.mark.parametrize(
    "host, path, status, body",
    [
        ("localhost", "/not/registered", 404, BODY_NOT_FOUND),
        ("unknown.example", "/api/", 400, BODY_INVALID_HOSTNAME),
    ],
    ids=["404", "400-invalid-hostname"],
)
def test_core_answers_while_another_thread_holds_the_gil(
    server, ca_file, tmp_path, host, path, status, body
):
    """A Python thread takes the GIL and keeps it until the client has its answer.

    The hog thread signals a subprocess (sh + curl) to start, then blocks in read() on the
    subprocess's stdout while holding the GIL. curl writes its status there only when it has
    its response, so the request was served entirely while the GIL was held: if the server
    needed the GIL for it, curl would hit --max-time and print 000. No timing is measured."""
    run = server({"https://localhost:{port}/api/": hello_app})
    read, write = _gil_holding_libc()
    go_r, go_w = os.pipe()
    out_file = tmp_path / "body"
    err_file = tmp_path / "stderr"
    script = (
        "read go && "
        '"$CURL" -sS --http1.1 --max-time 20 --cacert "$CA" '
        f'--resolve localhost:{run.port}:127.0.0.1 -H "Host: {host}:{run.port}" '
        f'-o "$OUT" -w "%{{http_code}}" https://localhost:{run.port}{path}; '
        'echo " curl-exit=$?"'
    )
    env = tool_env(CURL=curl_path(), CA=ca_file, OUT=str(out_file))
    with open(err_file, "wb") as err:
        try:
            proc = subprocess.Popen(
                ["sh", "-c", script], stdin=go_r, stdout=subprocess.PIPE, stderr=err, env=env
            )
        finally:
            os.close(go_r)
    assert proc.stdout is not None
    out_fd = proc.stdout.fileno()

    hog: dict[str, Any] = {}

    def hold_the_gil() -> None:
        buf = ctypes.create_string_buffer(4096)
        # From here until read() returns, this thread does not release the GIL.
        write(go_w, b"go\n", 3)
        n = read(out_fd, buf, 4096)
        # Only now, with curl's result in hand, can the GIL be released.
        hog["first_read"] = buf.raw[: max(n, 0)]

    t = threading.Thread(target=hold_the_gil)
    try:
        t.start()
        t.join(120)
        rest = b""
        while chunk := os.read(out_fd, 4096):
            rest += chunk
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        os.close(go_w)
    stderr = err_file.read_bytes().decode(errors="replace")
    assert not t.is_alive()
    assert hog["first_read"], f"curl printed nothing; stderr: {stderr}"
    assert (hog["first_read"] + rest).decode() == f"{status} curl-exit=0\n", stderr
    assert out_file.read_bytes() == body
    # And the server still serves Python apps afterwards.
    assert https_get(run.port, "/api/", ca=ca_file)[0] == 200
