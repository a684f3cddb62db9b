"""The config store: file modes, refusal of a store others can read, the generation counter,
migrations, concurrent writers, and crash safety under SIGKILL. Real SQLite files, real child
processes."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from httpsys import store as store_mod
from httpsys.store import MIGRATIONS, Store, StoreError, StorePermissionError

ROOT = Path(__file__).resolve().parent.parent


def child(code: str, **kwargs: object) -> subprocess.Popen[str]:
    """Starts ``python -c code`` with httpsys importable from this checkout."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kwargs)  # type: ignore[call-overload]


def kill(proc: subprocess.Popen[str]) -> None:
    """SIGKILLs a child and reaps it (closing its pipes)."""
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


# --------------------------------------------------------------------------------------------
# Paths and modes


def test_default_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HTTPSYS_STORE", str(tmp_path / "x.db"))
    assert store_mod.default_path() == tmp_path / "x.db"
    monkeypatch.delenv("HTTPSYS_STORE")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert store_mod.default_path() == Path("/var/lib/httpsys/store.db")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert store_mod.default_path() == tmp_path / ".local/share/httpsys/store.db"


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_created_0600_in_0700_directories_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "a" / "b" / "store.db"
    old = os.umask(umask)
    try:
        with Store.open(path) as st:
            with st.transaction() as c:
                c.execute("INSERT INTO iplisten VALUES ('127.0.0.1')")
            # The WAL and shared-memory files exist while the store is open: same mode.
            for extra in ("store.db-wal", "store.db-shm"):
                if (path.parent / extra).exists():
                    assert mode(path.parent / extra) == 0o600, extra
    finally:
        os.umask(old)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert mode(path.parent.parent) == 0o700


def test_environment_variable_chooses_the_store(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPSYS_STORE", str(tmp_path / "env" / "s.db"))
    with Store.open() as st:
        assert st.path == tmp_path / "env" / "s.db"
    assert mode(tmp_path / "env" / "s.db") == 0o600


@pytest.mark.parametrize("bad", [0o644, 0o640, 0o604, 0o660])
def test_refuses_a_store_others_can_read(tmp_path: Path, bad: int) -> None:
    path = tmp_path / "store.db"
    Store.open(path).close()
    os.chmod(path, bad)
    with pytest.raises(StorePermissionError) as info:
        Store.open(path)
    message = str(info.value)
    assert "readable or writable by other users" in message
    assert f"chmod 600 {path}" in message
    assert f"{bad:04o}" in message
    os.chmod(path, 0o600)
    Store.open(path).close()  # fixed as the message says: opens again


def test_refuses_a_directory_others_can_write(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    os.chmod(folder, 0o777)
    with pytest.raises(StorePermissionError, match=f"chmod go-w {folder}"):
        Store.open(folder / "store.db")
    assert not (folder / "store.db").exists()


def test_refuses_a_file_that_is_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"this is not an SQLite database, not even close" * 100)
    os.close(fd)
    with pytest.raises(StoreError, match="cannot use the store"):
        Store.open(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the refused side as uid 65534")
def test_another_user_cannot_open_the_store() -> None:
    # Root ignores file modes, so the refused side must really be another uid. The folder is
    # traversable (0711) so that only the store file's own mode protects it.
    folder = Path(tempfile.mkdtemp(prefix="httpsys-store-"))
    try:
        os.chmod(folder, 0o711)
        path = folder / "store.db"
        with Store.open(path) as st, st.transaction() as c:
            c.execute("INSERT INTO iplisten VALUES ('10.0.0.1')")
        assert mode(path) == 0o600
        proc = child(f"""
            import os, sys
            from httpsys.store import Store, StorePermissionError
            os.setgid(65534)
            os.setuid(65534)
            assert os.getuid() == 65534 and os.geteuid() == 65534
            try:
                open({str(path)!r}, "rb")
            except PermissionError:
                print("plain open: refused")
            try:
                Store.open({str(path)!r})
            except StorePermissionError as e:
                print("Store.open: refused:", e)
                sys.exit(0)
            sys.exit("Store.open succeeded as uid 65534")
        """)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "plain open: refused" in out
        assert "Store.open: refused:" in out and "permission denied" in out
        assert "belongs to another user" in out
        with Store.open(path) as st:  # and the owner's data is untouched
            assert st.execute("SELECT address FROM iplisten").fetchall() == [("10.0.0.1",)]
    finally:
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()


# --------------------------------------------------------------------------------------------
# Generation, transactions, migrations


def test_generation_bumps_once_per_change(tmp_path: Path) -> None:
    with Store.open(tmp_path / "store.db") as st:
        g0 = st.generation()
        with st.transaction() as c:
            c.execute("INSERT INTO iplisten VALUES ('127.0.0.1')")
            c.execute("INSERT INTO iplisten VALUES ('127.0.0.2')")
        assert st.generation() == g0 + 1
        with st.transaction() as c:
            c.execute("INSERT INTO timeouts VALUES ('headerwaittimeout', 30)")
        assert st.generation() == g0 + 2

        # A change that fails is rolled back whole and bumps nothing.
        with pytest.raises(sqlite3.IntegrityError), st.transaction() as c:
            c.execute("INSERT INTO iplisten VALUES ('10.9.9.9')")
            c.execute("INSERT INTO timeouts VALUES ('headerwaittimeout', 99999)")
        with pytest.raises(RuntimeError), st.transaction() as c:
            c.execute("DELETE FROM iplisten")
            raise RuntimeError("changed my mind")
        assert st.generation() == g0 + 2
        assert sorted(st.execute("SELECT address FROM iplisten")) == [("127.0.0.1",),
                                                                      ("127.0.0.2",)]

    # Another connection sees the same counter.
    with Store.open(tmp_path / "store.db") as st:
        assert st.generation() == g0 + 2


def test_transactions_do_not_nest(tmp_path: Path) -> None:
    with Store.open(tmp_path / "store.db") as st:
        outer = st.transaction()
        with pytest.raises(StoreError, match="do not nest"), outer, st.transaction():
            pass
        assert st.generation() == 0


def test_data_version_sees_other_connections(tmp_path: Path) -> None:
    with Store.open(tmp_path / "store.db") as a, Store.open(tmp_path / "store.db") as b:
        before = a.data_version()
        with b.transaction() as c:
            c.execute("INSERT INTO iplisten VALUES ('::1')")
        assert a.data_version() != before
        assert a.generation() == b.generation() == 1


def test_migrations_are_idempotent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "store.db"
    with Store.open(path) as st:
        assert st.schema_version() == len(MIGRATIONS)
        with st.transaction() as c:
            c.execute("INSERT INTO iplisten VALUES ('192.0.2.1')")
        assert st.migrate() == len(MIGRATIONS)
        assert st.migrate() == len(MIGRATIONS)
    with Store.open(path) as st:  # reopening migrates nothing and keeps the data
        assert st.schema_version() == len(MIGRATIONS)
        assert st.generation() == 1
        assert st.execute("SELECT address FROM iplisten").fetchall() == [("192.0.2.1",)]

    # A new migration is applied exactly once, in order, to an existing store.
    extended = [*MIGRATIONS, ("ALTER TABLE iplisten ADD COLUMN note TEXT",)]
    monkeypatch.setattr(store_mod, "MIGRATIONS", extended)
    with Store.open(path) as st:
        assert st.schema_version() == len(extended)
        assert st.execute("SELECT address, note FROM iplisten").fetchall() == [("192.0.2.1", None)]
    with Store.open(path) as st:
        assert st.schema_version() == len(extended)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with Store.open(path) as st:
        st.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    with pytest.raises(StoreError, match="newer than this httpsys understands"):
        Store.open(path)


def test_private_keys_only_for_my(tmp_path: Path) -> None:
    with Store.open(tmp_path / "store.db") as st:
        with pytest.raises(sqlite3.IntegrityError, match="MY certificates only"), \
                st.transaction() as c:
            c.execute("INSERT INTO certificates (thumbprint, store, der, subject, issuer, "
                      "not_before, not_after) VALUES (?, 'ROOT', x'30', 's', 'i', 'a', 'b')",
                      ("ab" * 20,))
            c.execute("INSERT INTO private_keys VALUES (?, x'30')", ("ab" * 20,))
        assert st.execute("SELECT count(*) FROM certificates").fetchone() == (0,)


def test_two_processes_writing_at_once_both_succeed(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    Store.open(path).close()
    code = f"""
        import sys
        from httpsys.store import Store
        tag = sys.argv[1]
        with Store.open({str(path)!r}) as st:
            for i in range(40):
                with st.transaction() as c:
                    c.execute("INSERT INTO urlacl (url, user) VALUES (?, 'u')",
                              (f"https://+:443/{{tag}}/{{i}}/",))
    """
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), tag], env=env,
                              stderr=subprocess.PIPE, text=True) for tag in ("a", "b", "c")]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with Store.open(path) as st:
        assert st.generation() == 120
        assert st.execute("SELECT count(*) FROM urlacl").fetchone() == (120,)


# --------------------------------------------------------------------------------------------
# Crash safety


def _baseline(path: Path) -> tuple[int, list[tuple[str, ...]]]:
    with Store.open(path) as st:
        with st.transaction() as c:
            for i in range(3):
                c.execute("INSERT INTO urlacl (url, user) VALUES (?, 'alice')",
                          (f"https://+:443/keep{i}/",))
            c.execute("INSERT INTO timeouts VALUES ('idleconnectiontimeout', 60)")
        return st.generation(), _snapshot(st)


def _snapshot(st: Store) -> list[tuple[str, ...]]:
    rows = list(st.execute("SELECT 'urlacl', url, user FROM urlacl ORDER BY url"))
    rows += list(st.execute("SELECT 'timeout', timeouttype, value FROM timeouts"))
    return rows


def test_sigkill_mid_transaction_keeps_the_previous_configuration(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    generation, before = _baseline(path)
    proc = child(f"""
        import sys, time
        from httpsys.store import Store
        st = Store.open({str(path)!r})
        with st.transaction() as c:
            c.execute("DELETE FROM urlacl")
            c.execute("UPDATE timeouts SET value = 5")
            for i in range(1000):
                c.execute("INSERT INTO urlacl (url, user) VALUES (?, 'mallory')",
                          (f"https://+:443/new{{i}}/",))
                if i == 500:
                    print("midway", flush=True)
                    time.sleep(60)
    """)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "midway"
    kill(proc)
    with Store.open(path) as st:
        assert st.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert st.generation() == generation
        assert _snapshot(st) == before


def test_sigkill_at_random_points_never_leaves_half_a_change(tmp_path: Path) -> None:
    # A child commits changes of 200 rows each, as fast as it can; it is killed at a random
    # moment (mid-statement, mid-commit, mid-checkpoint). Whatever the moment, the store holds
    # a whole number of changes, and exactly as many as the generation says.
    path = tmp_path / "store.db"
    generation, before = _baseline(path)
    rng = random.Random(1234)
    for round_ in range(6):
        proc = child(f"""
            from httpsys.store import Store
            st = Store.open({str(path)!r})
            print("ready", flush=True)
            n = 0
            while True:
                with st.transaction() as c:
                    for i in range(200):
                        c.execute("INSERT INTO iplisten VALUES (?)",
                                  (f"r{round_}-{{n}}-{{i}}",))
                n += 1
        """)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.01, 0.3))
        kill(proc)
        with Store.open(path) as st:
            assert st.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            count = st.execute("SELECT count(*) FROM iplisten").fetchone()[0]
            assert count % 200 == 0
            assert st.generation() - generation == count // 200
            assert _snapshot(st) == before


def test_opening_the_store_again_keeps_a_long_lived_connection_current(tmp_path: Path) -> None:
    # A watcher's connection stays open; the same process opens and closes the store again
    # (Store.open checks the file's mode and owner), then other processes change it and close.
    # The long-lived connection must see every change: had the mode checks closed a descriptor
    # of the file, they would have dropped this process's SQLite locks, and the last other
    # process to close would have deleted the WAL and -shm under it.
    path = tmp_path / "store.db"
    with Store.open(path) as reader:
        for n in range(1, 4):
            Store.open(path).close()
            proc = child(f"""
                from httpsys.store import Store
                with Store.open({str(path)!r}) as st, st.transaction() as c:
                    c.execute("INSERT INTO iplisten VALUES ('10.0.0.{n}')")
            """)
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            assert reader.generation() == n
            assert os.path.exists(f"{path}-shm")
