"""Which urlacl reservation covers a registration, and which one decides (issue 3).

HTTP.sys semantics: a reservation covers a registration when scheme and port are equal, its path
is a whole-segment prefix of the registration's path, and its host matches: ``+`` and ``*`` any
host, an explicit name or IP only itself. The most specific covering reservation decides
(explicit host over ``+`` over ``*``, then the longer path). First as a pure function, then once
through a real ``httpsys serve`` run as uid 65534 against a reservation made for root.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clients import https_get
from conftest import PKI, free_port

from httpsys import AccessDeniedError
from httpsys.__main__ import check_reservations, reservation_specificity
from httpsys.certstore import CertStore
from httpsys.store import Store
from httpsys.urlprefix import parse

ROOT = Path(__file__).resolve().parent.parent


# ---- covering --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("acl", "registration"),
    [
        ("https://+:8443/", "https://localhost:8443/api/"),  # the case of issue 3
        ("https://+:8443/", "https://127.0.0.1:8443/"),
        ("https://+:8443/", "https://[::1]:8443/x/"),
        ("https://+:8443/", "https://+:8443/"),
        ("https://+:8443/", "https://*:8443/a/"),
        ("https://*:8443/", "https://localhost:8443/api/"),
        ("https://*:8443/", "https://+:8443/api/"),
        ("https://*:8443/api/", "https://www.example.com:8443/api/v1/"),
        ("https://localhost:8443/", "https://localhost:8443/api/"),
        ("https://LocalHost:8443/", "https://localhost:8443/api/"),
        ("https://localhost:8443/", "https://LOCALHOST:8443/api/"),
        ("https://127.0.0.1:8443/", "https://127.0.0.1:8443/a/b/"),
        ("https://[::1]:8443/", "https://[0:0::1]:8443/"),
        ("https://+:8443/api/", "https://+:8443/api/"),
        ("https://+:8443/api/", "https://+:8443/API/V1/"),
        ("https://+:8443/Api/", "https://+:8443/aPI/"),
        ("http://+:80/", "http://localhost:80/"),
    ],
)
def test_covers(acl: str, registration: str) -> None:
    assert reservation_specificity(parse(acl), parse(registration)) is not None


@pytest.mark.parametrize(
    ("acl", "registration"),
    [
        ("https://+:8443/", "http://localhost:8443/"),  # scheme
        ("http://+:8443/", "https://localhost:8443/"),
        ("https://+:8443/", "https://localhost:8444/"),  # port
        ("https://localhost:8443/", "https://example.com:8443/"),  # another explicit host
        ("https://localhost:8443/", "https://127.0.0.1:8443/"),  # a name is not its address
        ("https://127.0.0.1:8443/", "https://127.0.0.2:8443/"),
        ("https://localhost:8443/", "https://+:8443/"),  # explicit does not cover wildcards
        ("https://localhost:8443/", "https://*:8443/"),
        ("https://+:8443/api/", "https://+:8443/"),  # path: the reservation is deeper
        ("https://+:8443/api/", "https://+:8443/apix/"),  # whole segments only
        ("https://+:8443/api/v1/", "https://+:8443/api/v2/"),
        ("https://local:8443/", "https://localhost:8443/"),
    ],
)
def test_does_not_cover(acl: str, registration: str) -> None:
    assert reservation_specificity(parse(acl), parse(registration)) is None


def test_specificity_order() -> None:
    reg = parse("https://localhost:8443/api/v1/")
    ranks = [reservation_specificity(parse(u), reg) for u in (
        "https://*:8443/", "https://*:8443/api/", "https://+:8443/", "https://+:8443/api/v1/",
        "https://localhost:8443/", "https://localhost:8443/api/")]
    assert ranks == sorted(ranks)  # type: ignore[type-var]
    assert len(set(ranks)) == len(ranks)


# ---- deciding --------------------------------------------------------------------------------


Row = tuple[str, str | None, int]


def allowed(rows: list[Row], registration: str, user: str) -> bool:
    try:
        check_reservations(rows, parse(registration), {user})
    except AccessDeniedError as e:
        assert e.winerror == 5
        return False
    return True


@pytest.mark.parametrize(
    ("rows", "registration", "user", "expected"),
    [
        # Nothing covers it: anyone.
        ([], "https://localhost:8443/api/", "bob", True),
        ([("https://other.example:8443/", "alice", 1)], "https://localhost:8443/", "bob", True),
        ([("https://+:9443/", "alice", 1)], "https://localhost:8443/", "bob", True),
        # Issue 3: a strong-wildcard reservation covers an explicit-host registration.
        ([("https://+:8443/", "alice", 1)], "https://localhost:8443/api/", "alice", True),
        ([("https://+:8443/", "alice", 1)], "https://localhost:8443/api/", "bob", False),
        ([("https://+:8443/", "alice", 1)], "https://127.0.0.1:8443/api/", "bob", False),
        ([("https://*:8443/", "alice", 1)], "https://localhost:8443/", "bob", False),
        ([("https://*:8443/", "alice", 1)], "https://+:8443/", "bob", False),
        ([("https://LOCALHOST:8443/", "alice", 1)], "https://localhost:8443/x/", "bob", False),
        # The explicit host decides over a wildcard, even with a shorter path.
        ([("https://+:8443/", "alice", 1), ("https://localhost:8443/", "bob", 1)],
         "https://localhost:8443/api/", "alice", False),
        ([("https://+:8443/", "alice", 1), ("https://localhost:8443/", "bob", 1)],
         "https://localhost:8443/api/", "bob", True),
        ([("https://+:8443/api/", "alice", 1), ("https://localhost:8443/", "bob", 1)],
         "https://localhost:8443/api/", "alice", False),
        # ... but only for its own host.
        ([("https://+:8443/", "alice", 1), ("https://localhost:8443/", "bob", 1)],
         "https://example.com:8443/api/", "alice", True),
        ([("https://+:8443/", "alice", 1), ("https://localhost:8443/", "bob", 1)],
         "https://+:8443/api/", "bob", False),
        # Strong over weak wildcard.
        ([("https://*:8443/api/", "bob", 1), ("https://+:8443/api/", "alice", 1)],
         "https://localhost:8443/api/", "alice", True),
        ([("https://*:8443/api/", "bob", 1), ("https://+:8443/api/", "alice", 1)],
         "https://localhost:8443/api/", "bob", False),
        # Then the longest path; the shorter reservation for the user does not help.
        ([("https://+:8443/", "alice", 1), ("https://+:8443/api/", "bob", 1)],
         "https://localhost:8443/api/v1/", "alice", False),
        ([("https://+:8443/", "alice", 1), ("https://+:8443/api/", "bob", 1)],
         "https://localhost:8443/other/", "alice", True),
        ([("https://+:8443/", "alice", 1), ("https://+:8443/API/", "bob", 1)],
         "https://localhost:8443/api/v1/", "bob", True),
        # listen=no, DOMAIN\user, Everyone, an sddl-only row.
        ([("https://+:8443/", "alice", 0)], "https://localhost:8443/", "alice", False),
        ([("https://+:8443/", "HOST\\Alice", 1)], "https://localhost:8443/", "alice", True),
        ([("https://+:8443/", "Everyone", 1)], "https://localhost:8443/", "bob", True),
        ([("https://+:8443/", None, 1)], "https://localhost:8443/", "bob", False),
        # Unparseable rows are ignored.
        ([("not a url", "alice", 1)], "https://localhost:8443/", "bob", True),
    ],
)
def test_decides(rows: list[Row], registration: str, user: str, expected: bool) -> None:
    assert allowed(rows, registration, user) is expected


def test_reference_example() -> None:
    """Reference 2.4 (S9): Res1 +:80/vroot/subdir/ for A and C, Res2 adatum.com:80/vroot/ for B
    (one row per user here: the store keeps one user per URL)."""
    res1 = "http://+:80/vroot/subdir/"
    for user in ("a", "c"):
        rows: list[Row] = [(res1, user, 1), ("http://adatum.com:80/vroot/", "B", 1)]
        assert not allowed(rows, "http://+:80/vroot/subdir/", "b")
        assert allowed(rows, "http://adatum.com:80/vroot/subdir/", "b")
        assert not allowed(rows, "http://adatum.com:80/vroot/subdir/", user)
        assert allowed(rows, "http://+:80/vroot/subdir/", user)


def test_message_names_the_deciding_reservation() -> None:
    rows: list[Row] = [("https://+:8443/", "alice", 1), ("https://localhost:8443/", "bob", 1)]
    with pytest.raises(AccessDeniedError) as e:
        check_reservations(rows, parse("https://localhost:8443/api/"), {"alice"})
    msg = str(e.value)
    assert "ERROR_ACCESS_DENIED, 5" in msg and "https://localhost:8443/api/" in msg
    assert "urlacl https://localhost:8443/ for user bob, not for alice" in msg
    with pytest.raises(AccessDeniedError) as e:
        check_reservations([("https://+:8443/", "alice", 0)], parse("https://+:8443/"), {"alice"})
    assert "for user alice with listen=no" in str(e.value)


# ---- through the real command, the refused side as uid 65534 ---------------------------------

NOBODY = 65534

# Everything serve needs is imported as root (the interpreter lives under /root, 0700), then the
# process becomes uid 65534 and runs the command.
_AS_NOBODY = r"""
import os, sys
import httpsys.__main__, httpsys.store, httpsys.watcher, httpsys.demo, httpsys.control
import httpsys.certstore, httpsys.server, httpsys.renewal  # modules serve imports when it starts
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
assert os.getuid() == 65534 and os.geteuid() == 65534
sys.exit(httpsys.__main__.main(sys.argv[1:]))
"""


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    """A folder owned by uid 65534 that it can reach (pytest's tmp_path is in a 0700 one)."""
    d = Path(tempfile.mkdtemp(prefix="httpsys-urlacl-"))
    os.chmod(d, 0o755)
    os.chown(d, NOBODY, NOBODY)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _serve_as_nobody(store: Path, rundir: Path, prefix: str) -> subprocess.Popen[str]:
    # $USER / $LOGNAME say root: the account of the uid, not the environment, is who asks.
    env = dict(os.environ, PYTHONPATH=str(ROOT), HTTPSYS_RUNTIME_DIR=str(rundir), USER="root",
               LOGNAME="root")
    return subprocess.Popen(
        [sys.executable, "-c", _AS_NOBODY, "--store", str(store), "serve", "--app",
         f"{prefix}=httpsys.demo:app"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the refused side as uid 65534")
def test_serve_refuses_host_under_a_wildcard_reservation(nobody_dir: Path, pki: PKI,
                                                         ca_file: str) -> None:
    port = free_port()
    path = nobody_dir / "store.db"
    with Store.open(path) as store:
        key_file = nobody_dir / "leaf.pem"
        key_file.write_bytes(pki.leaf.chain_pem + pki.leaf.key_pem)
        (thumb,) = CertStore(store).import_file(key_file)
        store.add_sslcert("ipport", f"0.0.0.0:{port}", thumb,
                          "{00112233-4455-6677-8899-aabbccddeeff}")
        with store.transaction() as c:
            c.execute("INSERT INTO urlacl (url, user) VALUES (?, ?)", (f"https://+:{port}/", "root"))
    for f in nobody_dir.iterdir():
        os.chown(f, NOBODY, NOBODY)

    # uid 65534 registers an explicit host under root's strong-wildcard reservation: refused.
    p = _serve_as_nobody(path, nobody_dir / "run", f"https://localhost:{port}/api/")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1, (out, err)
    assert "ERROR_ACCESS_DENIED, 5" in err, err
    assert f"cannot register https://localhost:{port}/api/" in err
    assert f"urlacl https://+:{port}/ for user root, not for nobody" in err
    assert "serving" not in out

    # A reservation of that host for nobody is more specific than root's "+": now it serves.
    with Store.open(path) as store, store.transaction() as c:
        c.execute("INSERT INTO urlacl (url, user) VALUES (?, ?)",
                  (f"https://localhost:{port}/", "nobody"))
    p = _serve_as_nobody(path, nobody_dir / "run", f"https://localhost:{port}/api/")
    try:
        assert p.stdout is not None
        line = p.stdout.readline()
        assert f"serving https://localhost:{port}/api/" in line, (line, p.poll())
        deadline = time.monotonic() + 30
        while True:
            try:
                status, _, body = https_get(port, "/api/", ca=ca_file)
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert status == 200 and b"httpsys is serving this page" in body
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
