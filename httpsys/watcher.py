"""The config watcher: applies the config store's changes to a running Server, live.

``StoreWatcher(server, store_path).start()`` reads the store once, synchronously (so a server
starts with the store's bindings), then a daemon thread polls it every ``interval`` seconds.

Theory of operation:

- The poll is two cheap reads: ``PRAGMA data_version`` (changes when another connection
  commits) and, only when it moved, the store's ``generation`` counter (bumped by every change
  the CLI makes). When the generation differs from the one last applied, the watcher reads the
  whole configuration in one read transaction (a consistent snapshot) and diffs it against what
  it applied before.
- sslcert bindings: a binding whose row (certhash, certstorename and the options the core acts
  on) did not change is left alone. A new or changed one is loaded from the certificate store
  (chain + private key, PEM) and handed to ``Server.set_sslcert``, which swaps it in for new
  connections while open ones keep theirs. A binding that disappeared from the store is deleted
  from the server. ``hostnameport`` bindings go to ``Server.set_sslcert_sni`` when the server
  has it (the SNI table of the core); otherwise they are skipped with a debug log.
- An invalid change (the certificate is missing, has no private key, the core refuses the key)
  never reaches the server: the watcher logs a warning naming the binding and the reason, keeps
  the last good state of that binding and applies the others. It tries again on every later
  change of the store, so importing the missing certificate afterwards makes it live.
- A binding's options include the client-certificate ones (``binding_options``): the trust
  list and the CRLs of the store. The trust list is every ROOT and CA certificate, or, when
  the row's ``sslctlidentifier`` names a trust list of the store (``httpsys cert ctl``), that
  list's certificates only (of the ``sslctlstorename`` store only, when set); a missing or
  empty list is an invalid change like any other. A change of the ROOT/CA stores, of the
  trust lists or of the CRL table (seen as a new ``Snapshot.trust`` digest) re-applies every
  binding, so the new trust and CRLs are live for the next handshake.
- iplisten addresses go to ``Server.set_iplisten`` (an empty list: every address); a change
  the server refuses (an address it cannot listen on) keeps the old set and is logged, and is
  tried again on the next change of the store. Timeouts go to ``Server.set_timeout``; a
  timeout deleted from the store (or stored as 0) goes back to the default, 120 seconds
  (minsendrate: 150 bytes a second).
- Client-certificate mappings (the ``certmapping`` table, in evaluation order) go to
  ``Server.set_certmappings`` as one list of ``httpsys.certmapping`` objects whenever any of
  them changed. A refused list (a damaged row, or a server that cannot map certificates) is
  logged as a warning and the server keeps its previous mappings; it is tried again on the
  next change of the store.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .certmapstore import MappingRow, read_rows
from .certstore import CertStore
from .ctlstore import CtlStore, check_store_name
from .errors import HttpsysError, NotFoundError
from .server import TIMEOUT_DEFAULTS, TIMEOUTS
from .store import SSLCERT_PARAMS, Store

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger("httpsys.watcher")

#: The sslcert options the core acts on, passed to Server.set_sslcert as keyword arguments.
CORE_OPTIONS = ("reject", "disabletls12", "disabletls13", "enablesessionticket")

#: The client-certificate options of a binding (netsh names, reference 1.2 and 4.6), passed to
#: Server.set_sslcert with the trust list and CRLs when the server takes them.
CLIENT_CERT_OPTIONS = ("clientcertnegotiation", "verifyclientcertrevocation",
                       "verifyrevocationwithcachedclientcertonly", "usagecheck",
                       "revocationfreshnesstime", "urlretrievaltimeout")
#: Of those, the ones that are numbers (seconds, milliseconds); the others are flags.
INT_OPTIONS = ("revocationfreshnesstime", "urlretrievaltimeout")
#: The keyword arguments binding_options adds besides the stored options.
TRUST_KEYS = ("trusted_ca_pem", "crls")

_ROW_OPTIONS = CORE_OPTIONS + CLIENT_CERT_OPTIONS
_SSLCERT_SELECT = (
    f"SELECT kind, key, certhash, certstorename, sslctlidentifier, sslctlstorename, "
    f"{', '.join(_ROW_OPTIONS)} FROM sslcert "
    "WHERE kind IN ('ipport', 'hostnameport') ORDER BY kind, key"
)


@dataclass(frozen=True)
class BindingRow:
    """What of an sslcert row the watcher applies; two equal rows need no new set_sslcert."""

    kind: str  # ipport | hostnameport
    key: str  # 0.0.0.0:443 | www.example.com:443
    certhash: str | None
    certstorename: str | None
    options: tuple[tuple[str, bool | int], ...]  # (name, value) for _ROW_OPTIONS
    sslctlidentifier: str | None = None  # the trust list, or None for all of ROOT and CA
    sslctlstorename: str | None = None  # restricts the trust list to ROOT or CA

    @property
    def name(self) -> str:
        return f"{self.kind}={self.key}"


@dataclass(frozen=True)
class Snapshot:
    """One consistent read of the store."""

    generation: int
    bindings: dict[tuple[str, str], BindingRow]
    iplisten: tuple[str, ...]
    timeouts: dict[str, int]
    crls: tuple[bytes, ...] = ()  # DER, every CRL of the store
    trust: str = ""  # digest of the ROOT/CA thumbprints, trust lists and CRL thumbprints
    certmappings: tuple[MappingRow, ...] = ()  # in evaluation order


def read_snapshot(store: Store) -> Snapshot:
    """Reads what the watcher applies, in one read transaction."""
    store.execute("BEGIN")
    try:
        generation = store.generation()
        bindings = {}
        for kind, key, certhash, storename, ctl, ctlstore, *flags in \
                store.execute(_SSLCERT_SELECT):
            options = tuple((name, int(v) if name in INT_OPTIONS else bool(v))
                            for name, v in zip(_ROW_OPTIONS, flags))
            bindings[(kind, key)] = BindingRow(kind, key, certhash, storename, options,
                                               ctl, ctlstore)
        iplisten = tuple(r[0] for r in store.execute("SELECT address FROM iplisten ORDER BY address"))
        timeouts = {t: int(v) for t, v in store.execute("SELECT timeouttype, value FROM timeouts")}
        digest = hashlib.sha256()
        for store_name, thumb in store.execute(
                "SELECT store, thumbprint FROM certificates WHERE store IN ('ROOT', 'CA') "
                "ORDER BY store, thumbprint"):
            digest.update(f"{store_name}:{thumb};".encode())
        for identifier, thumb in store.execute(
                "SELECT identifier, thumbprint FROM ctl ORDER BY identifier, thumbprint"):
            digest.update(f"CTL:{identifier}:{thumb};".encode())
        crls = []
        for thumb, der in store.execute("SELECT thumbprint, der FROM crls ORDER BY issuer"):
            digest.update(f"CRL:{thumb};".encode())
            crls.append(bytes(der))
        certmappings = tuple(read_rows(store))
    finally:
        store.execute("COMMIT")
    return Snapshot(generation, bindings, iplisten, timeouts, tuple(crls), digest.hexdigest(),
                    certmappings)


class BindingError(Exception):
    """A binding's row cannot be applied; the message says why."""


def load_material(certs: CertStore, row: BindingRow) -> tuple[bytes, bytes]:
    """The PEM chain (leaf first) and PEM private key a binding names. Raises BindingError."""
    if not row.certhash:
        raise BindingError("it has no certhash")
    try:
        entry = certs.get(row.certhash, param="certhash")
    except HttpsysError as e:
        raise BindingError(str(e)) from None
    wanted = (row.certstorename or "MY").upper()
    if entry.store != wanted:
        raise BindingError(f"certificate {entry.thumbprint} is in store {entry.store}, "
                           f"not in certstorename {wanted}")
    key_der = certs.private_key_der(entry.thumbprint)
    if key_der is None:
        raise BindingError(f"certificate {entry.thumbprint} has no private key")
    try:
        key = serialization.load_der_private_key(key_der, password=None)
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        chain = b"".join(x509.load_der_x509_certificate(d).public_bytes(serialization.Encoding.PEM)
                         for d in (entry.der, *entry.chain))
    except ValueError as e:
        raise BindingError(f"certificate {entry.thumbprint}: damaged certificate or key ({e})") \
            from None
    return chain, key_pem


def trusted_ca_pem(certs: CertStore) -> bytes | None:
    """Every certificate of the ROOT store, then of the CA store, as concatenated PEM; None when
    both are empty. The subjects are the CA names a server asks client certificates from."""
    pem = b"".join(x509.load_der_x509_certificate(e.der).public_bytes(serialization.Encoding.PEM)
                   for name in ("ROOT", "CA") for e in certs.list(name))
    return pem or None


def trust_list_pem(certs: CertStore, identifier: str, store_name: str | None) -> bytes:
    """The certificates of the trust list ``identifier`` (ROOT first, then CA; of
    ``store_name`` only when given) as concatenated PEM. Raises BindingError naming
    ``sslctlidentifier`` when the list does not exist or has no such certificate, and naming
    ``sslctlstorename`` when that is neither ROOT nor CA."""
    try:
        wanted = check_store_name(store_name)
        members = CtlStore(certs.store).members(identifier, wanted, param="sslctlidentifier")
    except HttpsysError as e:
        raise BindingError(str(e)) from None
    if not members:
        raise BindingError(f"sslctlidentifier: the trust list {identifier!r} has no "
                           f"certificate in store {wanted}")
    return b"".join(x509.load_der_x509_certificate(m.der).public_bytes(serialization.Encoding.PEM)
                    for m in members)


def _crls_issued_by(crl_ders: Sequence[bytes], trusted_pem: bytes) -> tuple[bytes, ...]:
    """The CRLs whose issuer is one of the trusted certificates' subjects (the core refuses a
    CRL whose issuer it does not trust). So the CRL of an intermediate that is not in the list
    itself (a client sends it in its chain) is not used: list the intermediate too."""
    subjects = {c.subject for c in x509.load_pem_x509_certificates(trusted_pem)}
    return tuple(bytes(d) for d in crl_ders if x509.load_der_x509_crl(bytes(d)).issuer in subjects)


def binding_options(row: BindingRow, certs: CertStore,
                    crl_ders: Sequence[bytes]) -> dict[str, Any]:
    """The keyword arguments of Server.set_sslcert for a stored binding: its flags (reject,
    disabletls12/13, enablesessionticket), its client-certificate options (netsh defaults for
    the ones the row lacks), the trust list (``trusted_ca_pem``: every ROOT and CA certificate,
    or the certificates of the trust list the row's ``sslctlidentifier`` names) and the CRLs
    (``crls``, DER; with a trust list, only those its certificates issued). Raises
    BindingError for a trust list that is missing or empty."""
    stored = dict(row.options)
    options: dict[str, Any] = {}
    for name in _ROW_OPTIONS:
        value = stored.get(name, SSLCERT_PARAMS[name])
        options[name] = int(value) if name in INT_OPTIONS else bool(value)
    if row.sslctlidentifier:
        pem = trust_list_pem(certs, row.sslctlidentifier, row.sslctlstorename)
        options["trusted_ca_pem"] = pem
        options["crls"] = _crls_issued_by(crl_ders, pem)
        if len(options["crls"]) < len(crl_ders):
            # Their issuers are not in the list: certificates they cover go unchecked unless they
            # name a distribution point. Say so rather than drop them silently.
            log.warning("sslcert %s: trust list %r leaves out the issuers of %d CRL(s) in the store; "
                        "add those CAs to the list (httpsys cert ctl add) to check revocation under "
                        "them", row.name, row.sslctlidentifier, len(crl_ders) - len(options["crls"]))
    else:
        options["trusted_ca_pem"] = trusted_ca_pem(certs)
        options["crls"] = tuple(bytes(d) for d in crl_ders)
    return options


class StoreWatcher:
    """Keeps a running Server's bindings in step with a config store.

    >>> w = StoreWatcher(server, "/path/store.db"); w.start()   # initial state applied
    >>> ...; w.stop()

    Attributes (read them from any thread): ``generation`` (the store generation last applied),
    ``bindings`` (``{"ipport=0.0.0.0:443": thumbprint}`` live in the server), ``errors``
    (``{binding: reason}`` for rows that could not be applied), ``iplisten`` (live in the
    server), ``iplisten_error`` (why the store's list is not, or None), ``timeouts`` (as
    stored), ``trust`` (the ROOT/CA/CRL digest the bindings were last set with),
    ``certmappings`` (the stored mappings live in the server, in order) and
    ``certmappings_error`` (why the store's mappings are not, or None).
    ``on_apply(watcher)`` is called after every applied change (tests and benches use it).
    """

    def __init__(self, server: Any, store_path: str | os.PathLike[str] | None = None,
                 interval: float = 0.02,
                 on_apply: Callable[[StoreWatcher], None] | None = None) -> None:
        self.server = server
        self.store_path = store_path
        self.interval = interval
        self.on_apply = on_apply
        self.generation = -1
        self.bindings: dict[str, str] = {}
        self.errors: dict[str, str] = {}
        self.iplisten: tuple[str, ...] = ()
        self.iplisten_error: str | None = None
        self.timeouts: dict[str, int] = {}
        self.trust = ""
        self.certmappings: tuple[MappingRow, ...] = ()
        self.certmappings_error: str | None = None
        self._certmappings_refused: tuple[tuple[MappingRow, ...], str] | None = None
        self._applied: dict[tuple[str, str], BindingRow] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Applies the store's current state now, then watches it in a daemon thread."""
        if self._thread is not None:
            return
        with Store.open(self.store_path) as store:
            self.apply(read_snapshot(store), CertStore(store))
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="httpsys-store-watcher",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops watching (the server keeps what was applied). Idempotent."""
        self._stop.set()
        t, self._thread = self._thread, None
        if t is not None and t is not threading.current_thread():
            t.join()

    close = stop

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        store: Store | None = None
        data_version: int | None = None
        while not self._stop.is_set():
            try:
                if store is None:
                    store = Store.open(self.store_path)
                    data_version = None
                dv = store.data_version()
                if dv != data_version:
                    data_version = dv
                    if store.generation() != self.generation:
                        self.apply(read_snapshot(store), CertStore(store))
            except (sqlite3.Error, HttpsysError, OSError) as e:
                log.warning("store watcher: cannot read the store %s: %s (retrying)",
                            self.store_path, e)
                if store is not None:
                    store.close()
                    store = None
                self._stop.wait(1.0)
            except Exception:  # a bug: keep the server serving, say so loudly
                log.exception("store watcher: unexpected error (retrying)")
                self._stop.wait(1.0)
            self._stop.wait(self.interval)
        if store is not None:
            store.close()

    # ---- applying --------------------------------------------------------------------------

    def apply(self, snap: Snapshot, certs: CertStore) -> None:
        """Brings the server to ``snap``: sets new and changed bindings, deletes removed ones,
        keeps the last good state of bindings that fail. Never raises for a bad binding."""
        with self._lock:
            # New trust (ROOT/CA certificates) or CRLs: every binding is set again.
            force = snap.trust != self.trust
            for ident, row in snap.bindings.items():
                self._apply_binding(row, certs, snap.crls, force)
            for ident in list(self._applied):
                if ident not in snap.bindings:
                    self._delete_binding(self._applied.pop(ident))
            for name in [n for n in self.errors
                         if tuple(n.split("=", 1)) not in snap.bindings]:
                del self.errors[name]
            self.trust = snap.trust
            if snap.iplisten != self.iplisten:
                self._apply_iplisten(snap.iplisten)
            if snap.timeouts != self.timeouts:
                self._apply_timeouts(snap.timeouts)
            if snap.certmappings != self.certmappings:
                self._apply_certmappings(snap.certmappings)
            elif self.certmappings_error is not None:  # back to what is live: nothing refused
                self.certmappings_error = None
                self._certmappings_refused = None
            self.generation = snap.generation
        if self.on_apply is not None:
            self.on_apply(self)

    def _apply_iplisten(self, addresses: tuple[str, ...]) -> None:
        shown = ", ".join(addresses) or "(all addresses)"
        setter = getattr(self.server, "set_iplisten", None)
        if setter is None:
            log.info("iplisten is now %s (this server cannot change it live)", shown)
            self.iplisten = addresses
            return
        try:
            setter(addresses)
        except Exception as e:  # noqa: BLE001 - any refusal: the server keeps its addresses
            reason = str(e) if isinstance(e, HttpsysError) else repr(e)
            log.warning("iplisten %s not applied: %s; still listening on %s", shown, reason,
                        ", ".join(self.iplisten) or "(all addresses)")
            self.iplisten_error = reason
            return
        self.iplisten_error = None
        if self.generation >= 0 or addresses:
            log.info("iplisten is now %s", shown)
        self.iplisten = addresses

    def _apply_timeouts(self, timeouts: dict[str, int]) -> None:
        setter = getattr(self.server, "set_timeout", None)
        for name in TIMEOUTS:
            old = self.timeouts.get(name) or TIMEOUT_DEFAULTS[name]
            new = timeouts.get(name) or TIMEOUT_DEFAULTS[name]  # absent or 0: the default
            if setter is None or new == old:
                continue
            try:
                setter(name, new)
            except Exception as e:  # noqa: BLE001 - keep serving with the old value
                log.warning("timeout %s=%d not applied: %s", name, new, e)
                continue
            log.info("timeout %s is now %d %s", name, new,
                     "bytes a second" if name == "minsendrate" else "seconds")
        self.timeouts = dict(timeouts)

    def _apply_certmappings(self, rows: tuple[MappingRow, ...]) -> None:
        shown = ", ".join(r.name + ("" if r.enabled else " (disabled)") for r in rows) or "none"
        try:
            self.server.set_certmappings([r.to_mapping() for r in rows])
        except Exception as e:  # noqa: BLE001 - any refusal: the server keeps its mappings
            reason = str(e) if isinstance(e, HttpsysError) else repr(e)
            if self._certmappings_refused != (rows, reason):
                kept = ", ".join(r.name for r in self.certmappings) or "none"
                log.warning("certmapping %s not applied: %s; the server keeps its previous "
                            "mappings (%s)", shown, reason, kept)
            self._certmappings_refused = (rows, reason)
            self.certmappings_error = reason
            return
        self._certmappings_refused = None
        self.certmappings_error = None
        self.certmappings = rows
        log.info("certmapping: %d mapping(s) live: %s", len(rows), shown)

    def _apply_binding(self, row: BindingRow, certs: CertStore, crl_ders: Sequence[bytes] = (),
                       force: bool = False) -> None:
        ident = (row.kind, row.key)
        if not force and self._applied.get(ident) == row and row.name not in self.errors:
            return
        if row.kind == "hostnameport":
            setter = getattr(self.server, "set_sslcert_sni", None)
            if setter is None:
                log.debug("%s: this server has no SNI bindings (set_sslcert_sni); skipped",
                          row.name)
                return
        else:
            setter = self.server.set_sslcert
        try:
            chain, key = load_material(certs, row)
            options = binding_options(row, certs, crl_ders)
            setter(row.key, chain, key, **options)
        except Exception as e:  # noqa: BLE001 - any refusal: the binding keeps its last good state
            reason = str(e) if isinstance(e, (BindingError, HttpsysError)) else repr(e)
            if self.errors.get(row.name) != reason:
                kept = self.bindings.get(row.name)
                log.warning("sslcert %s not applied: %s; %s", row.name, reason,
                            f"keeping certificate {kept}" if kept else "the binding stays absent")
            self.errors[row.name] = reason
            return
        self._applied[ident] = row
        self.bindings[row.name] = row.certhash or ""
        self.errors.pop(row.name, None)
        log.info("sslcert %s: certificate %s is live", row.name, row.certhash)

    def _delete_binding(self, row: BindingRow) -> None:
        if row.kind == "hostnameport":
            deleter = getattr(self.server, "delete_sslcert_sni", None)
            if deleter is None:
                return
        else:
            deleter = self.server.delete_sslcert
        try:
            deleter(row.key)
        except NotFoundError:
            pass
        except HttpsysError as e:
            log.warning("sslcert %s: cannot delete it from the server: %s", row.name, e)
            return
        self.bindings.pop(row.name, None)
        log.info("sslcert %s deleted", row.name)

    def wait_generation(self, generation: int, timeout: float = 5.0) -> bool:
        """Waits until the watcher applied ``generation`` (or a later one); True if it did."""
        deadline = time.monotonic() + timeout
        while self.generation < generation:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True
