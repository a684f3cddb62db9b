"""URL-prefix routing (csrc/route.c) through cffi, with no sockets.

Each case registers a list of https prefixes (in order) and routes one request; the expected
result is (index of the winning prefix, length of SCRIPT_NAME) or a reject code. The comment
says which rule of reference section 2.3 the case pins down.
"""

from __future__ import annotations

import random

import pytest

from httpsys._core import ffi, lib

NOT_FOUND = lib.HS_REJECT_NOT_FOUND  # the host is accepted but no path matches: 404
BAD_HOST = lib.HS_REJECT_INVALID_HOSTNAME  # nothing accepts the host: 400 Invalid Hostname
LOCAL = "127.0.0.1"


def route(
    prefixes: list[str], host: str, path: str, port: int = 443, local_ip: str = LOCAL
) -> tuple[int, int, int]:
    """Returns (rc, index, path_len) of hs_test_route."""
    blob = b"".join(p.encode() + b"\0" for p in prefixes)
    index = ffi.new("int *")
    path_len = ffi.new("size_t *")
    rc = lib.hs_test_route(
        blob, len(blob), host.encode(), local_ip.encode(), port, path.encode(), index, path_len
    )
    return int(rc), int(index[0]), int(path_len[0])


S8 = ["https://+:80/vroot/", "https://adatum.com:80/", "https://*:80/"]
Q = ["https://www.adatum.com:80/", "https://www.adatum.com:80/dir/sna/"]
FOUR = [
    "https://*:443/",
    "https://127.0.0.1:443/a/b/c/",
    "https://example.com:443/a/b/",
    "https://+:443/a/",
]
LOWER3 = FOUR[:3]

# (prefixes, host, local_ip, port, path, expected (index, path_len) or reject code)
CASES: list[tuple[list[str], str, str, int, str, tuple[int, int] | int]] = [
    # Reference 2.3, S8 worked example.
    (S8, "adatum.com", LOCAL, 80, "/vroot/subdir/file.htm", (0, 6)),  # strong beats explicit
    (S8, "adatum.com", LOCAL, 80, "/default.htm", (1, 0)),  # explicit beats weak
    (S8, "otheradatum.com", LOCAL, 80, "/file.htm", (2, 0)),  # weak catches other hosts
    # Reference 2.3, Q1/Q2: the longest whole-segment prefix wins within a class.
    (Q, "www.adatum.com", LOCAL, 80, "/dir/sna/snadefault.htm", (1, 8)),  # longer prefix wins
    (Q, "www.adatum.com", LOCAL, 80, "/dir/app.htm", (0, 0)),  # falls back to the root
    (Q, "www.adatum.com", LOCAL, 80, "/default.htm", (0, 0)),  # root prefix
    (Q, "www.adatum.com", LOCAL, 80, "/dir/snack", (0, 0)),  # whole segments: not "/dir/sna/"
    (Q, "www.adatum.com", LOCAL, 80, "/dir/sna", (1, 8)),  # the prefix without its slash
    # Precedence across all four classes.
    (FOUR, "example.com", LOCAL, 443, "/a/b/c/d", (3, 2)),  # strong's short match beats all
    (LOWER3, "example.com", LOCAL, 443, "/a/b/c/d", (2, 4)),  # explicit beats IP-bound
    (LOWER3, "other.com", LOCAL, 443, "/a/b/c/d", (1, 6)),  # IP-bound beats weak
    (LOWER3, "other.com", "10.0.0.1", 443, "/a/b/c/d", (0, 0)),  # IP-bound needs its address
    (LOWER3, "example.com", LOCAL, 443, "/a/x", (0, 0)),  # a class without a path match is skipped
    (LOWER3, "127.0.0.1", "10.0.0.1", 443, "/a/b/c/", (0, 0)),  # IP class ignores Host
    (LOWER3, "", LOCAL, 443, "/a/b/c/x", (1, 6)),  # no Host: explicit is skipped, IP still works
    # path_len is SCRIPT_NAME's length.
    (["https://+:443/api/"], "h", LOCAL, 443, "/api", (0, 4)),  # the prefix itself, no slash
    (["https://+:443/api/"], "h", LOCAL, 443, "/api/", (0, 4)),  # the prefix with its slash
    (["https://+:443/api/"], "h", LOCAL, 443, "/api/x/y", (0, 4)),  # below the prefix
    (["https://+:443/api/"], "h", LOCAL, 443, "/apix", NOT_FOUND),  # not a whole segment
    (["https://+:443/"], "h", LOCAL, 443, "/", (0, 0)),  # root: SCRIPT_NAME is empty
    # Case-insensitivity of host and path.
    (["https://Example.COM:443/Api/"], "example.com", LOCAL, 443, "/API/x", (0, 4)),
    (["https://example.com:443/api/"], "EXAMPLE.COM", LOCAL, 443, "/aPi", (0, 4)),
    (["https://example.com:443/"], "example.com.", LOCAL, 443, "/", (0, 0)),  # trailing dot
    (["https://example.com.:443/"], "example.com", LOCAL, 443, "/", (0, 0)),  # dot in prefix
    (["https://[::1]:443/"], "h", "[::1]", 443, "/x", (0, 0)),  # IPv6 bound to its address
    (["https://[0:0::1]:443/"], "h", "[::1]", 443, "/x", (0, 0)),  # canonical IPv6 form
    (["https://[::1]:443/"], "h", "::1", 443, "/x", (0, 0)),  # a bare local address matches
    # 404 versus 400.
    (["https://example.com:443/app/"], "example.com", LOCAL, 443, "/other", NOT_FOUND),
    (["https://example.com:443/app/"], "other.com", LOCAL, 443, "/app/", BAD_HOST),
    (["https://example.com:443/app/"], "example.com", LOCAL, 8443, "/app/", BAD_HOST),  # port
    (["https://example.com:443/app/"], "", LOCAL, 443, "/app/", BAD_HOST),  # no Host header
    (["https://+:443/app/"], "", LOCAL, 443, "/x", NOT_FOUND),  # '+' accepts every host
    (["https://*:443/app/"], "any", LOCAL, 443, "/x", NOT_FOUND),  # '*' accepts every host
    (["https://10.1.2.3:443/ip/"], "any", "10.1.2.3", 443, "/x", NOT_FOUND),  # its address
    (["https://10.1.2.3:443/ip/"], "any", "10.1.2.4", 443, "/ip/", BAD_HOST),  # another address
    (["http://+:443/"], "h", LOCAL, 443, "/", BAD_HOST),  # an http prefix does not serve https
    (  # any accepting class makes a miss 404, even if another class was consulted first
        ["https://example.com:443/app/", "https://*:443/w/"],
        "example.com",
        LOCAL,
        443,
        "/x",
        NOT_FOUND,
    ),
    ([], "h", LOCAL, 443, "/", BAD_HOST),  # an empty table accepts nothing
]


@pytest.mark.parametrize(("prefixes", "host", "local_ip", "port", "path", "expected"), CASES)
def test_route(
    prefixes: list[str],
    host: str,
    local_ip: str,
    port: int,
    path: str,
    expected: tuple[int, int] | int,
) -> None:
    rc, index, path_len = route(prefixes, host, path, port, local_ip)
    if isinstance(expected, tuple):
        assert (rc, index, path_len) == (0, *expected)
    else:
        assert rc == expected


# (prefixes, index of the registration that must fail)
BAD_REGISTRATIONS: list[tuple[list[str], int]] = [
    (["https://+:443/a/", "https://+:443/a/"], 1),  # duplicate (-EEXIST)
    (["https://+:443/a/", "https://+:443/A/"], 1),  # duplicate up to path case
    (["https://h:443/", "https://H:443"], 1),  # duplicate: empty path is "/", host case folds
    (["https://[::1]:443/", "https://[0:0:0:0:0:0:0:1]:443/"], 1),  # the same IPv6 address
    (["HTTPS://+:443/"], 0),  # the scheme is lowercase only
    (["ftp://+:443/"], 0),  # only http and https
    (["https://+/"], 0),  # the port is mandatory
    (["https://+:0/"], 0),  # port 0
    (["https://+:080/"], 0),  # a leading zero in the port
    (["https://+:65536/"], 0),  # port above 65535
    (["https://+:443/a"], 0),  # the path must end with '/'
    (["https://:443/"], 0),  # an empty host
    (["https://a_b:443/"], 0),  # '_' is not allowed in a DNS name
    (["https://1.2.3.256:443/"], 0),  # digits and dots must be a valid IPv4 literal
    (["https://[::g]:443/"], 0),  # not an IPv6 address
    (["https://+:443/%00/"], 0),  # a control byte in the path
]


@pytest.mark.parametrize(("prefixes", "failing"), BAD_REGISTRATIONS)
def test_bad_registration(prefixes: list[str], failing: int) -> None:
    rc, index, _ = route(prefixes, "h", "/")
    assert (rc, index) == (-1, failing)


# The same path in different classes, ports or schemes is not a duplicate.
def test_same_path_in_other_buckets_is_allowed() -> None:
    prefixes = [
        "https://+:443/a/",
        "https://*:443/a/",
        "https://h:443/a/",
        "https://127.0.0.1:443/a/",
        "https://+:444/a/",
        "http://+:443/a/",
    ]
    assert route(prefixes, "h", "/a/x") == (0, 0, 2)


def test_thousand_registrations() -> None:
    # Many registrations on many hosts: every one routes to itself, misses stay 400 or 404.
    prefixes = [f"https://host{i}.example:443/app{i}/" for i in range(1000)]
    for i in (0, 1, 499, 998, 999):
        assert route(prefixes, f"HOST{i}.example", f"/app{i}/x") == (0, i, len(f"/app{i}"))
    assert route(prefixes, "host1000.example", "/app1/")[0] == BAD_HOST
    assert route(prefixes, "host5.example", "/app6/")[0] == NOT_FOUND


def model(prefixes: list[str], host: str, local_ip: str, port: int, path: str) -> tuple[int, ...]:
    """A naive reading of reference 2.3: scan every registration, class by class."""
    host = host.lower().removesuffix(".")
    accepted = False
    for cls in ("+", "explicit", "ip", "*"):
        best: tuple[int, int] | None = None
        for index, prefix in enumerate(prefixes):
            rest = prefix.removeprefix("https://")
            reg_host, _, rest = rest.rpartition(":")
            reg_port, _, reg_path = rest.partition("/")
            reg_class = (
                reg_host if reg_host in ("+", "*") else "ip" if reg_host[0] in "[1" else "explicit"
            )
            wanted = {"explicit": host, "ip": local_ip}.get(cls, reg_host)
            if reg_class != cls or int(reg_port) != port or reg_host.lower() != wanted:
                continue
            accepted = True
            reg_path = "/" + reg_path.lower()
            # Whole segments: "/api" and "/api/x" are under "/api/", "/apix" is not.
            if (path.lower() + "/").startswith(reg_path):
                if best is None or len(reg_path) - 1 > best[1]:
                    best = (index, len(reg_path) - 1)
        if best is not None:
            return (0, *best)
    return (NOT_FOUND,) if accepted else (BAD_HOST,)


def test_against_model() -> None:
    # Random tables and requests over a small alphabet, so that classes, hosts, ports and
    # segments collide often; the C table must agree with the naive scan every time.
    rng = random.Random(1)
    hosts = ["+", "*", "a.com", "B.com", "127.0.0.1", "[::1]"]
    segments = ["a", "B", "ab"]

    def random_path(trailing: bool) -> str:
        path = "/" + "/".join(rng.choice(segments) for _ in range(rng.randrange(4)))
        return path + "/" if trailing and path != "/" else path

    for _ in range(400):
        prefixes: list[str] = []
        seen: set[str] = set()
        for _ in range(rng.randrange(1, 8)):
            prefix = f"https://{rng.choice(hosts)}:{rng.choice((443, 444))}{random_path(True)}"
            if prefix.lower() not in seen:
                seen.add(prefix.lower())
                prefixes.append(prefix)
        host = rng.choice(["a.com", "A.COM.", "b.com", "c.com", ""])
        local_ip = rng.choice(["127.0.0.1", "[::1]", "10.0.0.1"])
        port = rng.choice((443, 444))
        path = random_path(rng.random() < 0.3)
        rc, index, path_len = route(prefixes, host, path, port, local_ip)
        got = (rc, index, path_len) if rc == 0 else (rc,)
        assert got == model(prefixes, host, local_ip, port, path), (prefixes, host, path)
