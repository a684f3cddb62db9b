"""Certificate requests, the IIS way (Create / Complete Certificate Request; certreq -new and
-accept): ``httpsys cert request`` and ``httpsys cert complete``.

A request makes a private key inside the store and a PKCS#10 request (CSR) for it; the key
waits in ``pending_request`` and never leaves the store. The CA's answer (a PEM chain, or
PKCS#7, PEM or DER) is matched to its pending key by public key, its chain is checked link by
link, and then, in one transaction, the certificate goes into MY with that key (source
'request') and the pending entry is deleted.

The chain check: starting at the leaf, each certificate must be signed by the next (a
certificate of the answer whose subject is its issuer, found whatever the order of the answer:
PKCS#7 has none), and each signer must be a CA. The last one must be a root (self-signed,
checked) or be signed by a ROOT or CA certificate of the store. Certificates of the answer that
are not on that path are refused too: what is stored is what the answer's chain is.

Errors: InvalidParameterError naming ``dns``, ``ip``, ``rsa_bits``, ``subject`` or ``file``
(malformed input); RequestMismatchError (no pending key for the answer) and ChainError (the
chain does not verify; the message names the failing link), both naming ``file``; StoreError.
"""

from __future__ import annotations

import builtins
import datetime
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from .certstore import RSA_SIZES, CertStore, server_names
from .errors import InvalidParameterError
from .store import Store

#: Attribute names Windows uses in subjects (certreq's INF, IIS) besides RFC 4514's.
_DN_NAMES = {"E": NameOID.EMAIL_ADDRESS, "EMAIL": NameOID.EMAIL_ADDRESS,
             "S": NameOID.STATE_OR_PROVINCE_NAME, "SERIALNUMBER": NameOID.SERIAL_NUMBER}


class RequestMismatchError(InvalidParameterError):
    """The CA's answer holds no certificate for a key of a pending request."""


class ChainError(InvalidParameterError):
    """The CA's answer holds a chain that does not verify; the message names the link."""


@dataclass(frozen=True)
class PendingRequest:
    """A certificate request waiting for the CA's answer."""

    id: int
    subject: str
    dns: tuple[str, ...]
    ip: tuple[str, ...]
    key: str  # "ECDSA P-256", "RSA 2048"
    created: str  # ISO 8601 UTC
    csr_pem: str


def _invalid(param: str, reason: str, cls: type[InvalidParameterError] = InvalidParameterError
             ) -> InvalidParameterError:
    return cls(f"{param}: {reason}", param=param)


def _spki(key_or_cert: Any) -> bytes:
    return bytes(key_or_cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def _key_description(public: Any) -> str:
    if isinstance(public, ec.EllipticCurvePublicKey):
        return "ECDSA P-256" if public.curve.name == "secp256r1" else f"ECDSA {public.curve.name}"
    if isinstance(public, rsa.RSAPublicKey):
        return f"RSA {public.key_size}"
    return type(public).__name__


def parse_subject(dn: str) -> x509.Name:
    """An RFC 4514 distinguished name (``CN=www.example.com,O=Example,C=US``), also with
    spaces after the commas and Windows' E= and S=. Raises InvalidParameterError (subject)."""
    tidy = re.sub(r"(?<!\\)([,+])\s+", r"\1", dn.strip())
    try:
        name = x509.Name.from_rfc4514_string(tidy, _DN_NAMES)
    except ValueError:
        raise _invalid("subject", f"{dn!r} is not a distinguished name "
                                  "(like CN=www.example.com,O=Example,C=US)") from None
    if not list(name):
        raise _invalid("subject", "the distinguished name is empty")
    return name


def _label(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


class CertRequests:
    """Certificate requests on an open ``Store``. Every change is one store transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # ----------------------------------------------------------------------------------------
    # Requesting

    def create(self, dns: str | Sequence[str], ip: str | Sequence[str] | None = None,
               rsa_bits: int | None = None, subject: str | None = None) -> PendingRequest:
        """Makes a key (ECDSA P-256, or RSA of ``rsa_bits``) into the store and returns the
        pending request with its CSR (PEM): subject ``subject`` (default CN=the first DNS
        name), subjectAltName the DNS names and IP addresses."""
        names, addresses = server_names(dns, ip)
        if rsa_bits is not None and rsa_bits not in RSA_SIZES:
            raise _invalid("rsa_bits", f"{rsa_bits!r} is not an RSA key size (2048, 3072, 4096)")
        name = (parse_subject(subject) if subject is not None
                else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        key: Any = (rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
                    if rsa_bits else ec.generate_private_key(ec.SECP256R1()))
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(name)
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(n) for n in names] + [x509.IPAddress(a) for a in addresses]),
                critical=False)
            .sign(key, hashes.SHA256())
        )
        pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
        csr_pem = csr.public_bytes(serialization.Encoding.PEM).decode()
        with self.store.transaction() as c:
            cur = c.execute(
                "INSERT INTO pending_request (pkcs8_der, spki_der, subject, dns, ip, csr_pem) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (pkcs8, _spki(key), name.rfc4514_string(), ",".join(names),
                 ",".join(str(a) for a in addresses), csr_pem))
            request_id = int(cur.lastrowid or 0)
        return self.get(request_id)

    _SELECT = "SELECT id, spki_der, subject, dns, ip, created, csr_pem FROM pending_request"

    @staticmethod
    def _request(row: tuple[Any, ...]) -> PendingRequest:
        rid, spki, subject, dns, ip, created, csr_pem = row
        public = serialization.load_der_public_key(bytes(spki))
        return PendingRequest(int(rid), subject, tuple(filter(None, dns.split(","))),
                              tuple(filter(None, ip.split(","))), _key_description(public),
                              created, csr_pem)

    def get(self, request_id: int) -> PendingRequest:
        row = self.store.execute(f"{self._SELECT} WHERE id = ?", (request_id,)).fetchone()
        if row is None:
            raise _invalid("id", f"no pending certificate request {request_id}")
        return self._request(row)

    def pending(self) -> builtins.list[PendingRequest]:
        """The requests waiting for an answer, oldest first."""
        return [self._request(r) for r in self.store.execute(f"{self._SELECT} ORDER BY id")]

    # ----------------------------------------------------------------------------------------
    # Completing

    def complete(self, data: bytes, *, name: str = "the response") -> str:
        """Stores the CA's answer (PEM certificates or PKCS#7, PEM or DER) into MY with its
        pending key, deletes the pending request and returns the thumbprint. ``name`` is how
        messages call the answer (its file name). Nothing is stored unless all of it checks."""
        certs = _read_response(data, name)
        wanted = {bytes(r[1]): int(r[0]) for r in
                  self.store.execute("SELECT id, spki_der FROM pending_request")}
        leaves = [cert for cert in certs if _spki(cert) in wanted]
        if not leaves:
            raise _invalid("file", f"{name} matches no pending certificate request: none of "
                                   f"its {len(certs)} certificate(s) is for a key made by "
                                   "httpsys cert request (httpsys cert list --pending)",
                           RequestMismatchError)
        if len(leaves) > 1:
            raise _invalid("file", f"{name} holds certificates for {len(leaves)} pending "
                                   "requests; give the CA's answers one at a time",
                           RequestMismatchError)
        leaf = leaves[0]
        chain = _build_chain(leaf, certs, self._anchors(), name)
        spki = _spki(leaf)
        certstore = CertStore(self.store)
        with self.store.transaction() as c:
            row = c.execute("SELECT id, pkcs8_der FROM pending_request WHERE spki_der = ?",
                            (spki,)).fetchone()
            if row is None:  # another process completed it meanwhile
                raise _invalid("file", f"the certificate request of {name} was completed or "
                                       "removed meanwhile", RequestMismatchError)
            thumb = certstore.put_chain(c, chain, bytes(row[1]), source="request")
            c.execute("DELETE FROM pending_request WHERE id = ?", (row[0],))
        return thumb

    def _anchors(self) -> builtins.list[tuple[str, x509.Certificate]]:
        """The ROOT and CA certificates of the store, with their store's name."""
        rows = self.store.execute("SELECT store, der FROM certificates "
                                  "WHERE store IN ('ROOT', 'CA') ORDER BY store, thumbprint")
        return [(store, x509.load_der_x509_certificate(bytes(der))) for store, der in rows]


def _read_response(data: bytes, name: str) -> builtins.list[x509.Certificate]:
    """The certificates of a CA's answer: PEM certificates, PKCS#7 (PEM or DER), or one DER
    certificate."""
    try:
        if b"-----BEGIN PKCS7-----" in data or b"-----BEGIN CERTIFICATE-----" not in data \
                and b"-----BEGIN" in data:
            certs = pkcs7.load_pem_pkcs7_certificates(data)
        elif b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            try:
                certs = [x509.load_der_x509_certificate(data)]
            except ValueError:
                certs = pkcs7.load_der_pkcs7_certificates(data)
    except ValueError as e:
        raise _invalid("file", f"{name} is not a certificate chain (PEM) or PKCS#7 file "
                               f"(PEM or DER): {e}") from None
    if not certs:
        raise _invalid("file", f"{name} holds no certificate")
    unique: dict[bytes, x509.Certificate] = {}
    for cert in certs:  # a certificate given twice is one
        unique.setdefault(cert.public_bytes(serialization.Encoding.DER), cert)
    return list(unique.values())


def _signs(issuer: x509.Certificate, cert: x509.Certificate) -> str | None:
    """Why ``issuer`` did not sign ``cert``, or None if it did."""
    try:
        cert.verify_directly_issued_by(issuer)
    except InvalidSignature:
        return "the signature does not verify with the issuer's key"
    except (ValueError, TypeError) as e:
        return str(e) or type(e).__name__
    return None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _check_dates(cert: x509.Certificate, position: int, name: str) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    after, before = cert.not_valid_after_utc, cert.not_valid_before_utc
    if after < now:
        raise _invalid("file", f"certificate {position} of {name} ({_label(cert)}) expired on "
                               f"{after:%Y-%m-%d %H:%M:%S} UTC", ChainError)
    if before > now:
        raise _invalid("file", f"certificate {position} of {name} ({_label(cert)}) is not "
                               f"valid before {before:%Y-%m-%d %H:%M:%S} UTC", ChainError)


def _build_chain(leaf: x509.Certificate, certs: builtins.list[x509.Certificate],
                 anchors: builtins.list[tuple[str, x509.Certificate]],
                 name: str) -> builtins.list[x509.Certificate]:
    """The leaf and its issuers from the answer, each checked to be signed by the next; the
    last one a root or signed by a ROOT/CA certificate of the store. Raises ChainError."""
    chain = [leaf]
    rest = [c for c in certs if c is not leaf]
    while True:
        cert = chain[-1]
        where = f"certificate {len(chain)} of the chain ({_label(cert)})"
        _check_dates(cert, len(chain), name)
        candidates = [c for c in rest if c.subject == cert.issuer and c != cert]
        if candidates:
            issuer, why = _first_signer(cert, candidates)
            if issuer is None:
                raise _invalid("file", f"{name}: {where} is not signed by its issuer "
                                       f"{cert.issuer.rfc4514_string()} in the response: "
                                       f"{why}", ChainError)
            if not _is_ca(issuer):
                raise _invalid("file", f"{name}: {where} is signed by "
                                       f"{_label(issuer)}, which is not a CA (no "
                                       "BasicConstraints CA:TRUE)", ChainError)
            chain.append(issuer)
            rest.remove(issuer)
            continue
        if cert.subject == cert.issuer and len(chain) > 1:
            broken = _signs(cert, cert)
            if broken is not None:
                raise _invalid("file", f"{name}: {where} is a root whose self-signature does "
                                       f"not verify: {broken}", ChainError)
        else:
            store_signers = [a for _, a in anchors if a.subject == cert.issuer]
            issuer, why = _first_signer(cert, store_signers)
            if issuer is None:
                detail = (f"the ROOT/CA certificate with that subject did not sign it: {why}"
                          if store_signers else "it is neither in the response nor in the "
                          "ROOT or CA store (import it with httpsys cert import FILE --store "
                          "ROOT)")
                raise _invalid("file", f"{name}: the issuer of {where}, "
                                       f"{cert.issuer.rfc4514_string()}, cannot be checked: "
                                       f"{detail}", ChainError)
            chain += _intermediates_above(issuer, anchors)
        break
    if rest:
        raise _invalid("file", f"{name}: {_label(rest[0])} is not on the chain of the "
                               f"certificate for the pending request ({_label(leaf)})",
                       ChainError)
    return chain


def _first_signer(cert: x509.Certificate, candidates: Sequence[x509.Certificate]
                  ) -> tuple[x509.Certificate | None, str]:
    why = "no candidate"
    for candidate in candidates:
        reason = _signs(candidate, cert)
        if reason is None:
            return candidate, ""
        why = reason
    return None, why


def _intermediates_above(signer: x509.Certificate,
                         anchors: builtins.list[tuple[str, x509.Certificate]]
                         ) -> builtins.list[x509.Certificate]:
    """The CA-store intermediates from ``signer`` up (the answer ended below them), which
    clients need to be sent; none when ``signer`` is a ROOT certificate."""
    out: builtins.list[x509.Certificate] = []
    cert: x509.Certificate | None = signer
    while cert is not None and len(out) < 8:
        if not any(store == "CA" and a == cert for store, a in anchors) \
                or cert.subject == cert.issuer:
            break
        out.append(cert)
        cert, _ = _first_signer(cert, [a for _, a in anchors if a.subject == cert.issuer])
    return out
