"""The certificate store (like certutil and New-SelfSignedCertificate), kept in the config store.

Three stores, as on Windows: ``MY`` (server certificates with their private keys and the chain
they came with), ``ROOT`` (trusted roots) and ``CA`` (intermediates). Every certificate is keyed
by its thumbprint: the SHA-1 of its DER, 40 hex digits. Thumbprints are stored lowercase (as
``netsh http show sslcert`` prints them) and accepted in either case, with the spaces and the
invisible U+200E that Windows' certificate dialog adds when one copies them.

Errors: InvalidParameterError (malformed input, wrong password), CertificateNotFoundError (a
thumbprint that is not in the store), CertificateInUseError (delete of a certificate a binding
uses or a trust list holds), StoreError from the store itself. Each carries ``.param``.
Anything else is a bug.
"""

from __future__ import annotations

import builtins
import datetime
import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import HttpsysError, InvalidParameterError, NotFoundError
from .store import CERT_STORES, Store

RSA_SIZES = (2048, 3072, 4096)

#: Where a certificate came from: ``cert import`` (and every ROOT/CA entry), ``cert new``,
#: ``cert request`` + ``cert complete``, ACME.
SOURCES = ("import", "self-signed", "request", "acme")

_PEM_KEY = re.compile(
    rb"-----BEGIN ((?:ENCRYPTED |RSA |EC )?PRIVATE KEY)-----.+?-----END \1-----", re.DOTALL
)


class CertificateNotFoundError(NotFoundError):
    """No certificate with this thumbprint in the store (ERROR_NOT_FOUND). ``param`` names the
    parameter that carried it (``thumbprint``, ``certhash``, ``signer``)."""

    exit_code = 2


class CertificateInUseError(HttpsysError):
    """The certificate is used by an sslcert binding or held by a trust list (ERROR_BUSY); the
    message names it."""

    winerror = 170
    exit_code = 1


def _invalid(param: str, reason: str) -> InvalidParameterError:
    return InvalidParameterError(f"{param}: {reason}", param=param)


def thumbprint_of(der: bytes) -> str:
    """The Windows thumbprint of a DER certificate: SHA-1, 40 lowercase hex digits."""
    h = hashes.Hash(hashes.SHA1())
    h.update(der)
    return h.finalize().hex()


def normalize_thumbprint(value: str, param: str = "thumbprint") -> str:
    """``value`` as a stored thumbprint (lowercase). Spaces, colons and U+200E are dropped.
    Raises InvalidParameterError naming ``param`` unless 40 hex digits remain."""
    cleaned = re.sub(r"[\s:\u200e]", "", value).lower()
    if not re.fullmatch(r"[0-9a-f]{40}", cleaned):
        raise _invalid(param, f"{value!r} is not a certificate thumbprint (40 hex digits)")
    return cleaned


def _utc(cert: x509.Certificate, which: str) -> datetime.datetime:
    aware = getattr(cert, f"not_valid_{which}_utc", None)
    if aware is not None:
        return aware  # type: ignore[no-any-return]
    naive: datetime.datetime = getattr(cert, f"not_valid_{which}")
    return naive.replace(tzinfo=datetime.timezone.utc)


def _iso(t: datetime.datetime) -> str:
    return t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _spki(key_or_cert: Any) -> bytes:
    public = key_or_cert.public_key()
    return bytes(public.public_bytes(serialization.Encoding.DER,
                                     serialization.PublicFormat.SubjectPublicKeyInfo))


def _split_der_chain(blob: bytes) -> list[bytes]:
    """Splits concatenated DER certificates (each a SEQUENCE with a definite length)."""
    out, i = [], 0
    while i < len(blob):
        if blob[i] != 0x30:
            raise ValueError("damaged chain")
        first = blob[i + 1]
        if first < 0x80:
            length, head = first, 2
        else:
            n = first & 0x7F
            length, head = int.from_bytes(blob[i + 2:i + 2 + n], "big"), 2 + n
        out.append(blob[i:i + head + length])
        i += head + length
    return out


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def server_names(dns: str | Sequence[str], ip: str | Sequence[str] | None = None,
                 ) -> tuple[list[str], list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    """The DNS names (at least one) and IP addresses of a server certificate, checked.
    Raises InvalidParameterError naming ``dns`` or ``ip``."""
    names = [dns] if isinstance(dns, str) else list(dns)
    if not names:
        raise _invalid("dns", "give at least one DNS name")
    for name in names:
        if not re.fullmatch(r"(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?", name):
            raise _invalid("dns", f"{name!r} is not a DNS name")
    ips = [] if ip is None else [ip] if isinstance(ip, str) else list(ip)
    addresses = []
    for value in ips:
        try:
            addresses.append(ipaddress.ip_address(value))
        except ValueError:
            raise _invalid("ip", f"{value!r} is not an IP address") from None
    return names, addresses


def _load_chain(chain: str | bytes | Sequence[x509.Certificate]) -> list[x509.Certificate]:
    if isinstance(chain, str):
        chain = chain.encode()
    if isinstance(chain, bytes):
        try:
            certs = x509.load_pem_x509_certificates(chain)
        except ValueError as e:
            raise _invalid("chain", f"not a PEM certificate chain: {e}") from None
    else:
        certs = list(chain)
    if not certs:
        raise _invalid("chain", "holds no certificate")
    return certs


def _load_key(key: Any) -> Any:
    if isinstance(key, str):
        key = key.encode()
    if isinstance(key, bytes):
        try:
            key = (serialization.load_pem_private_key(key, None) if key.startswith(b"-----")
                   else serialization.load_der_private_key(key, None))
        except (ValueError, TypeError) as e:
            raise _invalid("key", f"not an unencrypted PEM or DER private key: {e}") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise _invalid("key", f"{type(key).__name__} is not an EC or RSA private key")
    return key


def _renew_iso(when: datetime.datetime | None) -> str | None:
    if when is None:
        return None
    if not isinstance(when, datetime.datetime) or when.tzinfo is None:
        raise _invalid("renew_at", f"{when!r} is not a timezone-aware datetime")
    return _iso(when)


@dataclass(frozen=True)
class CertEntry:
    """One certificate of the store."""

    thumbprint: str
    store: str
    der: bytes
    chain: tuple[bytes, ...]  # DER, the issuers that follow the leaf (MY entries)
    has_key: bool
    subject: str
    issuer: str
    not_before: str  # ISO 8601 UTC
    not_after: str
    source: str = "import"  # one of SOURCES
    renew_at: str | None = None  # ISO 8601 UTC; None: httpsys does not renew it

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.der)

    def key_description(self) -> str:
        key = self.certificate.public_key()
        if isinstance(key, ec.EllipticCurvePublicKey):
            curve = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
            return f"ECDSA {curve.get(key.curve.name, key.curve.name)}"
        if isinstance(key, rsa.RSAPublicKey):
            return f"RSA {key.key_size}"
        return type(key).__name__


class CertStore:
    """Certificate operations on an open ``Store``. Every change is one store transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # ----------------------------------------------------------------------------------------
    # Reading

    def _entry(self, row: tuple[Any, ...]) -> CertEntry:
        thumb, store, der, chain, has_key, subject, issuer, nb, na, source, renew_at = row
        return CertEntry(thumb, store, bytes(der), tuple(_split_der_chain(bytes(chain))),
                         bool(has_key), subject, issuer, nb, na, source, renew_at)

    _SELECT = (
        "SELECT c.thumbprint, c.store, c.der, c.chain, k.thumbprint IS NOT NULL, c.subject, "
        "c.issuer, c.not_before, c.not_after, c.source, c.renew_at FROM certificates c "
        "LEFT JOIN private_keys k ON k.thumbprint = c.thumbprint"
    )

    def list(self, store: str | None = None) -> builtins.list[CertEntry]:
        """The certificates of one store (MY, ROOT, CA), or of all stores."""
        if store is None:
            rows = self.store.execute(f"{self._SELECT} ORDER BY c.store, c.subject, c.thumbprint")
        else:
            rows = self.store.execute(
                f"{self._SELECT} WHERE c.store = ? ORDER BY c.subject, c.thumbprint",
                (self._store_name(store),),
            )
        return [self._entry(r) for r in rows]

    def get(self, thumbprint: str, *, param: str = "thumbprint") -> CertEntry:
        """The certificate with this thumbprint. Raises InvalidParameterError for a malformed
        thumbprint and CertificateNotFoundError for one not in the store (both name ``param``)."""
        thumb = normalize_thumbprint(thumbprint, param)
        row = self.store.execute(f"{self._SELECT} WHERE c.thumbprint = ?", (thumb,)).fetchone()
        if row is None:
            raise CertificateNotFoundError(
                f"{param}: no certificate with thumbprint {thumb} in the certificate store",
                param=param,
            )
        return self._entry(row)

    def private_key_der(self, thumbprint: str, *, param: str = "thumbprint") -> bytes | None:
        """The PKCS#8 DER private key of a MY certificate, or None if it has none."""
        thumb = self.get(thumbprint, param=param).thumbprint
        row = self.store.execute("SELECT pkcs8_der FROM private_keys WHERE thumbprint = ?",
                                 (thumb,)).fetchone()
        return bytes(row[0]) if row else None

    def export(self, thumbprint: str, with_key: bool = False, *,
               param: str = "thumbprint") -> bytes:
        """The certificate and its chain as PEM (leaf first); the private key (PKCS#8 PEM)
        follows only if ``with_key``. Raises InvalidParameterError if ``with_key`` and the
        certificate has no key."""
        entry = self.get(thumbprint, param=param)
        out = b"".join(
            x509.load_der_x509_certificate(d).public_bytes(serialization.Encoding.PEM)
            for d in (entry.der, *entry.chain)
        )
        if with_key:
            key_der = self.private_key_der(entry.thumbprint)
            if key_der is None:
                raise _invalid("with_key", f"certificate {entry.thumbprint} ({entry.store}) "
                                           "has no private key")
            key = serialization.load_der_private_key(key_der, password=None)
            out += key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        return out

    # ----------------------------------------------------------------------------------------
    # Changing

    def delete(self, thumbprint: str, *, param: str = "thumbprint") -> CertEntry:
        """Removes a certificate (and its key). Refused with CertificateInUseError while an
        sslcert binding uses it or a trust list holds it; the message names them."""
        entry = self.get(thumbprint, param=param)
        with self.store.transaction() as c:
            users = self.store.bindings_using(entry.thumbprint)
            if users:
                raise CertificateInUseError(
                    f"{param}: certificate {entry.thumbprint} is used by the sslcert binding "
                    f"{', '.join(users)}; delete the binding first",
                    param=param,
                )
            lists = [r[0] for r in c.execute(
                "SELECT identifier FROM ctl WHERE thumbprint = ? ORDER BY identifier",
                (entry.thumbprint,))]
            if lists:
                raise CertificateInUseError(
                    f"{param}: certificate {entry.thumbprint} is in the trust list "
                    f"{', '.join(lists)}; remove it from the list first "
                    f"(httpsys cert ctl delete {lists[0]} {entry.thumbprint})",
                    param=param,
                )
            c.execute("DELETE FROM certificates WHERE thumbprint = ?", (entry.thumbprint,))
        return entry

    def _put(self, c: Any, store: str, cert: x509.Certificate, chain: builtins.list[bytes],
             key: Any | None, param: str, source: str = "import",
             renew_at: str | None = None) -> str:
        """Inserts or updates one certificate. Adding one again replaces its chain (and key);
        an import keeps the source and renewal time it had, any other source sets both."""
        der = _der(cert)
        thumb = thumbprint_of(der)
        row = c.execute("SELECT store FROM certificates WHERE thumbprint = ?", (thumb,)).fetchone()
        if row is not None and row[0] != store:
            raise InvalidParameterError(
                f"{param}: certificate {thumb} is already in store {row[0]}; delete it there "
                f"first to move it to {store}",
                param=param,
            )
        c.execute(
            "INSERT INTO certificates (thumbprint, store, der, chain, subject, issuer, "
            "not_before, not_after, source, renew_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (thumbprint) DO UPDATE SET chain = excluded.chain, "
            "source = iif(excluded.source = 'import', source, excluded.source), "
            "renew_at = iif(excluded.source = 'import', renew_at, excluded.renew_at)",
            (thumb, store, der, b"".join(chain), cert.subject.rfc4514_string(),
             cert.issuer.rfc4514_string(), _iso(_utc(cert, "before")), _iso(_utc(cert, "after")),
             source, renew_at),
        )
        if key is not None:
            pkcs8 = key.private_bytes(serialization.Encoding.DER,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
            c.execute("INSERT OR REPLACE INTO private_keys (thumbprint, pkcs8_der) VALUES (?, ?)",
                      (thumb, pkcs8))
        return thumb

    def add_chain(self, chain: str | bytes | Sequence[x509.Certificate], key: Any, *,
                  source: str, renew_at: datetime.datetime | None = None) -> str:
        """Stores a server certificate and its private key into MY in one transaction and
        returns its thumbprint.

        ``chain``: the leaf first, then its issuers, as PEM (text or bytes) or certificates.
        ``key``: the leaf's private key (EC or RSA), as a ``cryptography`` key or PEM / DER
        PKCS#8 bytes. ``source``: one of SOURCES. ``renew_at``: when httpsys should renew it
        (timezone-aware), or None. Adding a certificate that is there already replaces its
        chain, key, source and renew_at. Raises InvalidParameterError naming ``chain``,
        ``key``, ``source`` or ``renew_at``; nothing is stored then."""
        with self.store.transaction() as c:
            return self.put_chain(c, chain, key, source=source, renew_at=renew_at)

    def put_chain(self, c: Any, chain: str | bytes | Sequence[x509.Certificate], key: Any, *,
                  source: str, renew_at: datetime.datetime | None = None) -> str:
        """``add_chain`` inside the caller's ``with store.transaction() as c:`` block, so that
        storing a certificate and pointing a binding at it are one change."""
        certs = _load_chain(chain)
        private = _load_key(key)
        if source not in SOURCES:
            raise _invalid("source", f"{source!r} is not a certificate source "
                                     f"({', '.join(SOURCES)})")
        if _spki(private) != _spki(certs[0]):
            raise _invalid("key", "the private key does not belong to the chain's first "
                                  "certificate (the leaf)")
        return self._put(c, "MY", certs[0], [_der(x) for x in certs[1:]], private, "chain",
                         source=source, renew_at=_renew_iso(renew_at))

    def set_renew_at(self, thumbprint: str, renew_at: datetime.datetime | None) -> None:
        """Sets (or, with None, clears) when a certificate is next renewed. Raises
        CertificateNotFoundError or InvalidParameterError naming ``thumbprint`` or
        ``renew_at``."""
        when = _renew_iso(renew_at)
        entry = self.get(thumbprint)
        with self.store.transaction() as c:
            c.execute("UPDATE certificates SET renew_at = ? WHERE thumbprint = ?",
                      (when, entry.thumbprint))

    def renewals(self) -> builtins.list[CertEntry]:
        """The certificates that have a renewal time, the soonest first."""
        rows = self.store.execute(f"{self._SELECT} WHERE c.renew_at IS NOT NULL "
                                  "ORDER BY c.renew_at, c.thumbprint")
        return [self._entry(r) for r in rows]

    @staticmethod
    def _store_name(store: str) -> str:
        name = store.upper()
        if name not in CERT_STORES:
            raise _invalid("store", f"{store!r} is not a certificate store (MY, ROOT or CA)")
        return name

    def new_self_signed(self, dns: str | builtins.list[str],
                        ip: str | builtins.list[str] | None = None, days: int = 365,
                        signer: str | None = None, rsa_bits: int | None = None) -> str:
        """Makes a server certificate for ``dns`` (and ``ip``) into MY and returns its
        thumbprint. ECDSA P-256 unless ``rsa_bits`` (2048, 3072 or 4096). Self-signed, or
        issued by ``signer``: the thumbprint of a MY certificate that is a CA and has a key."""
        names, addresses = server_names(dns, ip)
        if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 36500:
            raise _invalid("days", f"{days!r} is not a number of days (1-36500)")
        if rsa_bits is not None and rsa_bits not in RSA_SIZES:
            raise _invalid("rsa_bits", f"{rsa_bits!r} is not an RSA key size (2048, 3072, 4096)")

        issuer_cert: x509.Certificate | None = None
        issuer_key: Any = None  # a signing key; the store only holds EC and RSA ones
        chain: builtins.list[bytes] = []
        if signer is not None:
            entry = self.get(signer, param="signer")
            issuer_cert = entry.certificate
            key_der = self.private_key_der(entry.thumbprint)
            if entry.store != "MY" or key_der is None:
                raise _invalid("signer", f"certificate {entry.thumbprint} has no private key "
                                         "in MY: it cannot sign")
            if not _is_ca(issuer_cert):
                raise _invalid("signer", f"certificate {entry.thumbprint} is not a CA "
                                         "(no BasicConstraints CA:TRUE)")
            issuer_key = serialization.load_der_private_key(key_der, password=None)
            chain = [entry.der, *entry.chain]

        key: Any = (rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
                    if rsa_bits else ec.generate_private_key(ec.SECP256R1()))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_cert.subject if issuer_cert else subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(n) for n in names] + [x509.IPAddress(a) for a in addresses]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False,
                key_encipherment=rsa_bits is not None, data_encipherment=False,
                key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
        )
        if issuer_key is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                critical=False)
        cert = builder.sign(issuer_key or key, hashes.SHA256())
        with self.store.transaction() as c:
            return self._put(c, "MY", cert, chain, key, "dns", source="self-signed")

    def import_file(self, path: str | os.PathLike[str], password: str | bytes | None = None,
                    store: str = "MY") -> builtins.list[str]:
        """Imports a PEM file (certificates, leaf first, and a private key) or a PKCS#12 file
        and returns the thumbprints added.

        Into MY: the file must hold one private key; the certificate it belongs to becomes the
        entry and the other certificates its chain. Into ROOT or CA: every certificate becomes
        an entry; a private key in the file is not kept. Importing a certificate again
        replaces its chain and key. Raises InvalidParameterError naming ``file``, ``password``
        or ``store``; nothing is stored unless the whole file imports."""
        name = self._store_name(store)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise _invalid("file", f"cannot read {os.fspath(path)!r}: {e.strerror}") from None
        pw = password.encode() if isinstance(password, str) else password
        if b"-----BEGIN" in data:
            certs, keys = self._read_pem(data, pw, path)
        else:
            certs, keys = self._read_der(data, pw, path)
        if not certs:
            raise _invalid("file", f"{os.fspath(path)!r} holds no certificate")
        with self.store.transaction() as c:
            if name != "MY":
                return [self._put(c, name, cert, [], None, "file") for cert in certs]
            if len(keys) != 1:
                raise _invalid("file", f"{os.fspath(path)!r} holds {len(keys)} private keys; "
                                       "a MY import needs exactly one (the certificate's)")
            key = keys[0]
            leaf = next((cert for cert in certs if _spki(cert) == _spki(key)), None)
            if leaf is None:
                raise _invalid("file", f"the private key in {os.fspath(path)!r} belongs to "
                                       "none of its certificates")
            chain = [_der(cert) for cert in certs if cert is not leaf]
            return [self._put(c, name, leaf, chain, key, "file")]

    @staticmethod
    def _read_pem(data: bytes, pw: bytes | None,
                  path: Any) -> tuple[builtins.list[x509.Certificate], builtins.list[Any]]:
        try:
            certs = x509.load_pem_x509_certificates(data) if b"CERTIFICATE-----" in data else []
        except ValueError as e:
            raise _invalid("file", f"{os.fspath(path)!r} has a damaged certificate: {e}") from None
        keys = []
        for m in _PEM_KEY.finditer(data):
            encrypted = m.group(1).startswith(b"ENCRYPTED") or b"Proc-Type: 4,ENCRYPTED" in m[0]
            if encrypted and pw is None:
                raise _invalid("password", f"the private key in {os.fspath(path)!r} is "
                                           "encrypted: give its password")
            try:
                keys.append(serialization.load_pem_private_key(m[0], pw if encrypted else None))
            except (ValueError, TypeError):
                if encrypted:
                    raise _invalid("password", "wrong password for the private key in "
                                               f"{os.fspath(path)!r}") from None
                raise _invalid("file", f"{os.fspath(path)!r} has a damaged private key") from None
        return certs, keys

    @staticmethod
    def _read_der(data: bytes, pw: bytes | None,
                  path: Any) -> tuple[builtins.list[x509.Certificate], builtins.list[Any]]:
        try:
            return [x509.load_der_x509_certificate(data)], []
        except ValueError:
            pass
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(data, pw)
        except ValueError:
            if pw is None:
                raise _invalid("password", f"{os.fspath(path)!r} is not a PEM file, or it is a "
                                           "PKCS#12 file that needs a password") from None
            raise _invalid("password", f"wrong password for the PKCS#12 file "
                                       f"{os.fspath(path)!r} (or the file is damaged)") from None
        certs = ([cert] if cert is not None else []) + builtins.list(extra)
        return certs, [key] if key is not None else []
