"""The config store: one SQLite file holding what ``netsh http`` keeps in the registry.

It holds the certificate store (MY / ROOT / CA, keyed by SHA-1 thumbprint, private keys for MY
only), sslcert bindings (ipport and hostnameport), urlacl reservations, iplisten addresses,
timeouts, certificate revocation lists, client-certificate mappings and certificate trust
lists. Running servers watch it; the CLI changes it.

Theory of operation:

- One file, WAL journal, ``synchronous=FULL``. A writer that is killed at any point (SIGKILL
  included) leaves the last committed configuration: SQLite ignores an uncommitted WAL tail.
- Every change is one ``with store.transaction():`` block: ``BEGIN IMMEDIATE`` takes the write
  lock up front (so two CLI processes queue on the busy timeout instead of failing with
  SQLITE_BUSY half-way through), the block runs, the ``generation`` counter in ``meta`` is
  bumped, and ``COMMIT``. A block that raises is rolled back and bumps nothing. Readers see
  either the whole change or none of it, and ``generation()`` is one indexed read.
- The schema is versioned with ``PRAGMA user_version``: ``MIGRATIONS[i]`` moves version i to
  i + 1. ``Store.open`` applies the missing ones in order, each in its own immediate
  transaction that re-reads the version under the lock, so two processes opening a new store at
  once migrate it exactly once.
- The file holds private keys: it is created 0600 (``O_CREAT | O_EXCL`` plus ``fchmod``, so the
  umask cannot widen it) in a directory created 0700. SQLite gives the ``-wal`` and ``-shm``
  files the database file's mode. A store that group or others may read or write, or whose
  directory they may write, is refused with a message that says how to fix it.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .errors import HttpsysError, InvalidParameterError

if TYPE_CHECKING:
    from typing_extensions import Self

#: Seconds a writer waits for another process's write transaction before giving up.
BUSY_TIMEOUT = 30.0

#: The certificate stores, as Windows names them.
CERT_STORES = ("MY", "ROOT", "CA")

#: ``add sslcert`` parameters (HTTPSYS_REFERENCE.md 1.2) other than the key, certhash and
#: appid, with their defaults. Booleans are stored as 0/1; the classic ones show as
#: Enabled/Disabled, the newer flag ones (from ``disablehttp2`` on) as Set/Not Set.
SSLCERT_PARAMS: dict[str, Any] = {
    "certstorename": None,  # NULL means MY
    "verifyclientcertrevocation": 1,
    "verifyrevocationwithcachedclientcertonly": 0,
    "usagecheck": 1,
    "revocationfreshnesstime": 0,
    "urlretrievaltimeout": 0,
    "sslctlidentifier": None,
    "sslctlstorename": None,
    "dsmapperusage": 0,
    "clientcertnegotiation": 0,
    "reject": 0,
    "disablehttp2": 0,
    "disablequic": 0,
    "disabletls12": 0,
    "disabletls13": 0,
    "disableocspstapling": 0,
    "enabletokenbinding": 0,
    "logextendedevents": 0,
    "disablelegacytls": 0,
    "enablesessionticket": 0,
    "disablesessionid": 0,
}

_SSLCERT_COLUMNS = ",\n".join(
    f"    {name} {'TEXT' if default is None else 'INTEGER NOT NULL DEFAULT ' + str(default)}"
    for name, default in SSLCERT_PARAMS.items()
)

#: MIGRATIONS[i] takes the schema from user_version i to i + 1. Append, never edit.
MIGRATIONS: list[tuple[str, ...]] = [
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        "INSERT INTO meta (key, value) VALUES ('generation', 0)",
        # One row per certificate. A thumbprint is in one store only; a MY entry keeps the
        # chain it was imported with (DER certificates, issuer first after the leaf).
        """CREATE TABLE certificates (
    thumbprint TEXT PRIMARY KEY
        CHECK (length(thumbprint) = 40 AND thumbprint = lower(thumbprint)),
    store TEXT NOT NULL CHECK (store IN ('MY', 'ROOT', 'CA')),
    der BLOB NOT NULL,
    chain BLOB NOT NULL DEFAULT x'',
    subject TEXT NOT NULL,
    issuer TEXT NOT NULL,
    not_before TEXT NOT NULL,
    not_after TEXT NOT NULL,
    added TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
)""",
        """CREATE TABLE private_keys (
    thumbprint TEXT PRIMARY KEY REFERENCES certificates (thumbprint) ON DELETE CASCADE,
    pkcs8_der BLOB NOT NULL
)""",
        """CREATE TRIGGER private_keys_only_in_my BEFORE INSERT ON private_keys
WHEN (SELECT store FROM certificates WHERE thumbprint = NEW.thumbprint) IS NOT 'MY'
BEGIN SELECT RAISE(ABORT, 'private keys are kept for MY certificates only'); END""",
        f"""CREATE TABLE sslcert (
    kind TEXT NOT NULL CHECK (kind IN ('ipport', 'hostnameport', 'ccs')),
    key TEXT NOT NULL,
    certhash TEXT REFERENCES certificates (thumbprint),
    appid TEXT NOT NULL,
{_SSLCERT_COLUMNS},
    PRIMARY KEY (kind, key)
)""",
        "CREATE INDEX sslcert_certhash ON sslcert (certhash)",
        """CREATE TABLE urlacl (
    url TEXT PRIMARY KEY,
    user TEXT,
    listen INTEGER NOT NULL DEFAULT 1,
    delegate INTEGER NOT NULL DEFAULT 0,
    sddl TEXT
)""",
        "CREATE TABLE iplisten (address TEXT PRIMARY KEY)",
        """CREATE TABLE timeouts (
    timeouttype TEXT PRIMARY KEY
        CHECK (timeouttype IN ('idleconnectiontimeout', 'headerwaittimeout')),
    value INTEGER NOT NULL CHECK (value BETWEEN 0 AND 65535)
)""",
    ),
    (
        # Certificate revocation lists (httpsys crl add|show|delete), one per issuer: keyed by
        # the SHA-1 of the DER in upper hex, the issuer as an RFC 4514 string, times in ISO
        # 8601 UTC (next_update NULL when the CRL has none), where it was imported from.
        """CREATE TABLE crls (
    thumbprint TEXT PRIMARY KEY
        CHECK (length(thumbprint) = 40 AND thumbprint = upper(thumbprint)),
    issuer TEXT NOT NULL UNIQUE,
    der BLOB NOT NULL,
    this_update TEXT NOT NULL,
    next_update TEXT,
    entries INTEGER NOT NULL CHECK (entries >= 0),
    source TEXT NOT NULL,
    added TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
)""",
    ),
    (
        # Client-certificate mappings (httpsys http add|update|delete|show certmapping), keyed
        # by name (case-insensitive) and evaluated in ``position`` order (the order added).
        # One-to-one: the certificate's DER and its SHA-1 thumbprint (lowercase, for show).
        # Many-to-one: the rules as a JSON list of [field, subfield, criteria], the permission
        # and case sensitivity; user may be NULL for a Deny mapping only.
        """CREATE TABLE certmapping (
    name TEXT NOT NULL UNIQUE COLLATE NOCASE CHECK (name <> ''),
    position INTEGER NOT NULL UNIQUE,
    type TEXT NOT NULL CHECK (type IN ('onetoone', 'manytoone')),
    certificate BLOB,
    thumbprint TEXT CHECK (thumbprint IS NULL
        OR (length(thumbprint) = 40 AND thumbprint = lower(thumbprint))),
    rules TEXT,
    user TEXT,
    permission TEXT NOT NULL DEFAULT 'Allow' CHECK (permission IN ('Allow', 'Deny')),
    casesensitive INTEGER NOT NULL DEFAULT 1 CHECK (casesensitive IN (0, 1)),
    enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    CHECK (CASE type
        WHEN 'onetoone' THEN certificate IS NOT NULL AND thumbprint IS NOT NULL
            AND rules IS NULL AND user IS NOT NULL AND permission = 'Allow'
        ELSE certificate IS NULL AND thumbprint IS NULL AND rules IS NOT NULL
            AND (user IS NOT NULL OR permission = 'Deny') END)
)""",
    ),
    (
        # Certificate trust lists (httpsys cert ctl add|show|delete), named by the sslcert
        # parameter sslctlidentifier: one row per (list, member). Members are ROOT or CA
        # certificates of the certificate store; a list exists while it has a member.
        """CREATE TABLE ctl (
    identifier TEXT NOT NULL COLLATE NOCASE CHECK (identifier <> ''),
    thumbprint TEXT NOT NULL REFERENCES certificates (thumbprint),
    PRIMARY KEY (identifier, thumbprint)
)""",
        "CREATE INDEX ctl_thumbprint ON ctl (thumbprint)",
        """CREATE TRIGGER ctl_only_root_and_ca BEFORE INSERT ON ctl
WHEN (SELECT store FROM certificates WHERE thumbprint = NEW.thumbprint) NOT IN ('ROOT', 'CA')
BEGIN SELECT RAISE(ABORT, 'trust lists hold ROOT and CA certificates only'); END""",
    ),
    (
        # The rest of HTTP.sys's timeouts (HTTP_TIMEOUT_LIMIT_INFO): seconds are USHORT, like
        # the first two; minsendrate is bytes a second, a ULONG. SQLite cannot widen a CHECK, so
        # the table is copied into a new one.
        """CREATE TABLE timeouts_new (
    timeouttype TEXT PRIMARY KEY
        CHECK (timeouttype IN ('idleconnectiontimeout', 'headerwaittimeout', 'entitybodytimeout',
                               'drainentitybodytimeout', 'requestqueuetimeout', 'minsendrate')),
    value INTEGER NOT NULL
        CHECK (value BETWEEN 0 AND CASE timeouttype WHEN 'minsendrate' THEN 4294967295
                                                    ELSE 65535 END)
)""",
        "INSERT INTO timeouts_new (timeouttype, value) SELECT timeouttype, value FROM timeouts",
        "DROP TABLE timeouts",
        "ALTER TABLE timeouts_new RENAME TO timeouts",
    ),
]


class StoreError(HttpsysError):
    """The store cannot be opened or used (damaged file, newer schema, I/O error)."""

    exit_code = 1


class StorePermissionError(StoreError, PermissionError):
    """The store is readable or writable by others, or belongs to another user."""

    winerror = 5


def default_path() -> Path:
    """``HTTPSYS_STORE`` if set, else /var/lib/httpsys/store.db for root, else
    ~/.local/share/httpsys/store.db."""
    env = os.environ.get("HTTPSYS_STORE")
    if env:
        return Path(env).expanduser()
    if os.geteuid() == 0:
        return Path("/var/lib/httpsys/store.db")
    return Path.home() / ".local" / "share" / "httpsys" / "store.db"


def _make_dirs(folder: Path) -> None:
    """Creates the missing folders of ``folder`` 0700 whatever the umask."""
    missing = []
    p = folder
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            continue
        os.chmod(d, 0o700)


def _check_dir(folder: Path) -> None:
    st = os.stat(folder)
    if st.st_mode & 0o022:
        raise StorePermissionError(
            f"the store's directory {folder} is writable by other users "
            f"(mode {stat.S_IMODE(st.st_mode):04o}), so they could replace the store; "
            f"fix it with: chmod go-w {folder}"
        )


def _check_file(path: Path) -> None:
    # lstat and access, not open: closing a descriptor of the file would drop every POSIX lock
    # this process holds on it, those of its other SQLite connections included (an in-process
    # watcher's): another process closing the store could then checkpoint and delete the WAL
    # and -shm under them, and they would never see a change again.
    try:
        st = os.lstat(path)
    except OSError as e:
        raise StoreError(f"cannot open the store {path}: {e.strerror}") from None
    if stat.S_ISLNK(st.st_mode):  # what opening it with O_NOFOLLOW reported
        raise StoreError(f"cannot open the store {path}: {os.strerror(errno.ELOOP)}")
    if not os.access(path, os.R_OK | os.W_OK, effective_ids=os.access in os.supports_effective_ids):
        raise StorePermissionError(
            f"cannot open the store {path}: permission denied (owner uid {st.st_uid}, mode "
            f"{stat.S_IMODE(st.st_mode):04o}); it belongs to another user: choose your own "
            f"with --store PATH or HTTPSYS_STORE"
        )
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(f"the store {path} is not a regular file")
    if st.st_mode & 0o077:
        raise StorePermissionError(
            f"refusing to open the store {path}: it is readable or writable by other users "
            f"(mode {stat.S_IMODE(st.st_mode):04o}) and holds private keys; "
            f"fix it with: chmod 600 {path}"
        )
    if st.st_uid != os.geteuid() and os.geteuid() != 0:
        raise StorePermissionError(
            f"refusing to open the store {path}: it belongs to uid {st.st_uid}, not to you "
            f"(uid {os.geteuid()}); choose your own with --store PATH or HTTPSYS_STORE"
        )


def _create_file(path: Path) -> None:
    """Creates an empty store file 0600; does nothing if it exists already."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                     0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


class Store:
    """An open config store. Use ``Store.open()``; close it (or use ``with``) when done.

    Raises StoreError (StorePermissionError for modes and owners) and nothing else on open.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self._in_transaction = False

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None) -> Store:
        """Opens the store at ``path`` (default: ``default_path()``), creating it 0600 in a
        0700 directory if it does not exist, and migrates it to the current schema."""
        p = Path(path).expanduser() if path is not None else default_path()
        p = p.absolute()
        try:
            _make_dirs(p.parent)
            _check_dir(p.parent)
            _create_file(p)
        except StoreError:
            raise
        except PermissionError as e:
            raise StorePermissionError(f"cannot create the store {p}: {e.strerror}") from None
        except OSError as e:
            raise StoreError(f"cannot create the store {p}: {e.strerror}") from None
        _check_file(p)
        try:
            conn = sqlite3.connect(p, timeout=BUSY_TIMEOUT, isolation_level=None)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the store {p}: {e}") from None
        store = cls(p, conn)
        try:
            store._setup()
        except sqlite3.DatabaseError as e:
            conn.close()
            raise StoreError(f"cannot use the store {p}: {e}") from None
        except BaseException:
            conn.close()
            raise
        return store

    def _setup(self) -> None:
        c = self._conn
        c.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        mode = c.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"the store {self.path} cannot use WAL journaling (got {mode})")
        c.execute("PRAGMA synchronous = FULL")
        c.execute("PRAGMA foreign_keys = ON")
        self.migrate()

    def migrate(self) -> int:
        """Applies the migrations this store lacks, in order; returns the schema version.
        Running it again is a no-op."""
        c = self._conn
        while True:
            version = self.schema_version()
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"the store {self.path} has schema version {version}, newer than this "
                    f"httpsys understands ({len(MIGRATIONS)}): upgrade httpsys"
                )
            if version == len(MIGRATIONS):
                return version
            c.execute("BEGIN IMMEDIATE")
            try:
                # Re-read under the write lock: another process may have migrated meanwhile.
                version = self.schema_version()
                if version < len(MIGRATIONS):
                    for statement in MIGRATIONS[version]:
                        c.execute(statement)
                    c.execute(f"PRAGMA user_version = {version + 1}")
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    # ----------------------------------------------------------------------------------------
    # Transactions and the generation counter

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One change: ``BEGIN IMMEDIATE`` ... bump the generation ... ``COMMIT``.

        Yields the connection for the block's statements. If the block raises, everything is
        rolled back, the generation stays, and the exception propagates. Not reentrant.
        """
        if self._in_transaction:
            raise StoreError("store transactions do not nest")
        c = self._conn
        try:
            c.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise StoreError(f"the store {self.path} is busy: {e}") from None
        self._in_transaction = True
        try:
            yield c
            c.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        finally:
            self._in_transaction = False

    def generation(self) -> int:
        """The number of changes committed to this store so far."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0])

    def data_version(self) -> int:
        """SQLite's ``data_version``: changes when another connection commits (cheap poll)."""
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        """A read (or, inside ``transaction()``, a write) on the store's connection."""
        return self._conn.execute(sql, params)

    # ----------------------------------------------------------------------------------------
    # sslcert bindings (the rows the certificate store needs to know about)

    def add_sslcert(self, kind: str, key: str, certhash: str | None, appid: str,
                    **params: Any) -> None:
        """Adds a binding in its own transaction. Validation of the values is the caller's
        (the ``httpsys http`` CLI); this checks only the names. Raises InvalidParameterError
        for an unknown parameter and sqlite3.IntegrityError for an existing key."""
        unknown = set(params) - set(SSLCERT_PARAMS)
        if unknown:
            name = min(unknown)
            raise InvalidParameterError(f"{name}: not an sslcert parameter", param=name)
        columns = ["kind", "key", "certhash", "appid", *params]
        values = [kind, key, certhash, appid, *params.values()]
        with self.transaction() as c:
            c.execute(f"INSERT INTO sslcert ({', '.join(columns)}) "
                      f"VALUES ({', '.join('?' * len(values))})", values)

    def bindings_using(self, thumbprint: str) -> list[str]:
        """The sslcert bindings that use a certificate, as ``ipport=0.0.0.0:443``."""
        rows = self._conn.execute(
            "SELECT kind, key FROM sslcert WHERE certhash = ? ORDER BY kind, key",
            (thumbprint.lower(),),
        )
        return [f"{kind}={key}" for kind, key in rows]

    # ----------------------------------------------------------------------------------------

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
