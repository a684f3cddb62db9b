"""A test PKI for client certificates (mutual TLS), made with ``cryptography`` only.

::

    root (self-signed CA)                      foreign_root (self-signed CA, trusted by nobody)
      └── intermediate (CA)                      └── foreign (clientAuth)
            ├── server         serverAuth, DNS localhost + IP 127.0.0.1
            ├── client         clientAuth, valid
            ├── expired        clientAuth, notAfter in the past
            ├── not_yet_valid  clientAuth, notBefore in the future
            ├── revoked        clientAuth, listed in crl_intermediate, crl_expired, crl_100k
            └── wrong_eku      serverAuth only

CRLs: ``crl_intermediate`` (by the intermediate, lists ``revoked``, nextUpdate in a week),
``crl_root`` (by the root, empty), ``crl_expired`` (by the intermediate, lists ``revoked``,
nextUpdate yesterday) and ``crl_100k`` (by the intermediate, 100,000 serials including
``revoked``'s; built on first use, ~1.5 s, and written to disk once).

Every certificate is an :class:`Issued` with its PEM, key, chain (the certificate and the CAs
between it and its root, never the root itself) and the same three as files, for
``curl --cert/--key`` and ``ssl.SSLContext.load_cert_chain``. All keys are ECDSA P-256.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

UTC = datetime.timezone.utc
CRL_100K_SIZE = 100_000

CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH
SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH


@dataclass(frozen=True)
class Issued:
    """A certificate, its private key and its chain, in memory and as files."""

    name: str
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey = field(repr=False)
    cert_pem: bytes = field(repr=False)
    key_pem: bytes = field(repr=False)  # PKCS#8, unencrypted
    chain_pem: bytes = field(repr=False)  # the certificate first, then its CAs up to (not incl.) the root
    cert_file: Path
    key_file: Path
    chain_file: Path

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def serial(self) -> int:
        return self.cert.serial_number


@dataclass(frozen=True)
class CRL:
    name: str
    crl: x509.CertificateRevocationList
    der: bytes = field(repr=False)
    pem: bytes = field(repr=False)
    der_file: Path
    pem_file: Path

    @property
    def serials(self) -> set[int]:
        return {r.serial_number for r in self.crl}


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "httpsys mtls tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class MtlsPKI:
    """The PKI above; ``directory`` holds the files. Build it once per session: it makes ten keys."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._cas: list[Issued] = []
        directory.mkdir(parents=True, exist_ok=True)
        self.now = datetime.datetime.now(UTC).replace(microsecond=0)
        day = datetime.timedelta(days=1)

        self.root = self._issue("root", None, ca=True, not_before=self.now - 60 * day,
                                not_after=self.now + 365 * day)
        self.intermediate = self._issue("intermediate", self.root, ca=True,
                                        not_before=self.now - 60 * day,
                                        not_after=self.now + 300 * day)
        self.foreign_root = self._issue("foreign_root", None, ca=True,
                                        not_before=self.now - 60 * day,
                                        not_after=self.now + 365 * day)
        self.server = self._issue(
            "server", self.intermediate, eku=[SERVER_AUTH],
            san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))],
        )
        self.client = self.make_client("client")
        self.expired = self.make_client("expired", not_before=self.now - 30 * day,
                                        not_after=self.now - day)
        self.not_yet_valid = self.make_client("not_yet_valid", not_before=self.now + day,
                                              not_after=self.now + 30 * day)
        self.revoked = self.make_client("revoked")
        self.wrong_eku = self.make_client("wrong_eku", eku=[SERVER_AUTH])
        self.foreign = self.make_client("foreign", issuer=self.foreign_root)

        self.crl_intermediate = self._crl("crl_intermediate", self.intermediate,
                                          [self.revoked.serial], self.now - datetime.timedelta(
                                              hours=1), self.now + 7 * day)
        self.crl_root = self._crl("crl_root", self.root, [], self.now - datetime.timedelta(
            hours=1), self.now + 7 * day)
        self.crl_expired = self._crl("crl_expired", self.intermediate, [self.revoked.serial],
                                     self.now - 8 * day, self.now - day)

        self.trusted_ca_pem = _pem(self.root.cert) + _pem(self.intermediate.cert)
        self.trusted_ca_file = directory / "trusted_ca.pem"
        self.trusted_ca_file.write_bytes(self.trusted_ca_pem)

    # ---- issuing ---------------------------------------------------------------------------

    def _issue(
        self,
        name: str,
        issuer: Issued | None,
        *,
        ca: bool = False,
        eku: list[x509.ObjectIdentifier] | None = None,
        san: list[x509.GeneralName] | None = None,
        cdp_url: str | None = None,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = _name(f"httpsys mtls {name}")
        signer_key = issuer.key if issuer is not None else key
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer.cert.subject if issuer is not None else subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or self.now - datetime.timedelta(days=1))
            .not_valid_after(not_after or self.now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(_key_usage(ca=ca), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()),
                critical=False,
            )
        )
        if eku:
            builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        if cdp_url is not None:
            builder = builder.add_extension(
                x509.CRLDistributionPoints(
                    [x509.DistributionPoint(
                        full_name=[x509.UniformResourceIdentifier(cdp_url)],
                        relative_name=None, reasons=None, crl_issuer=None)]
                ),
                critical=False,
            )
        cert = builder.sign(signer_key, hashes.SHA256())

        cert_pem = _pem(cert)
        # The chain: this certificate and its issuers, without the self-signed root at the top.
        chain_pem = cert_pem
        up = issuer
        while up is not None and up.cert.issuer != up.cert.subject:
            chain_pem += up.cert_pem
            up = self._issuer_of(up)
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        d = self.directory / name
        d.mkdir(exist_ok=True)
        (d / "cert.pem").write_bytes(cert_pem)
        (d / "key.pem").write_bytes(key_pem)
        os.chmod(d / "key.pem", 0o600)
        (d / "chain.pem").write_bytes(chain_pem)
        issued = Issued(name=name, cert=cert, key=key, cert_pem=cert_pem, key_pem=key_pem,
                        chain_pem=chain_pem, cert_file=d / "cert.pem", key_file=d / "key.pem",
                        chain_file=d / "chain.pem")
        if ca:
            self._cas.append(issued)
        return issued

    def _issuer_of(self, issued: Issued) -> Issued | None:
        for ca in self._cas:
            if ca.cert.subject == issued.cert.issuer:
                return ca
        return None

    def make_client(
        self,
        name: str,
        cdp_url: str | None = None,
        *,
        issuer: Issued | None = None,
        eku: list[x509.ObjectIdentifier] | None = None,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> Issued:
        """A client certificate issued by ``issuer`` (default: the intermediate) with the
        clientAuth EKU unless ``eku`` says otherwise, valid from yesterday for 30 days unless
        the dates are given, and a CRL Distribution Point with ``cdp_url`` if one is given. Its
        files go to ``directory/name/``, so ``name`` must be new."""
        return self._issue(
            name,
            issuer if issuer is not None else self.intermediate,
            eku=eku if eku is not None else [CLIENT_AUTH],
            san=[x509.RFC822Name(f"{name}@mtls.httpsys.test")],
            cdp_url=cdp_url,
            not_before=not_before,
            not_after=not_after,
        )

    # ---- CRLs ------------------------------------------------------------------------------

    def make_crl(
        self,
        name: str,
        issuer: Issued,
        serials: list[int],
        this_update: datetime.datetime,
        next_update: datetime.datetime,
        revocation_date: datetime.datetime | None = None,
    ) -> CRL:
        """A CRL signed by ``issuer`` listing ``serials`` (all revoked at ``revocation_date``,
        default ``this_update``), written to ``directory/name.crl`` (DER) and ``.crl.pem``."""
        return self._crl(name, issuer, serials, this_update, next_update, revocation_date)

    def _crl(
        self,
        name: str,
        issuer: Issued,
        serials: list[int],
        this_update: datetime.datetime,
        next_update: datetime.datetime,
        revocation_date: datetime.datetime | None = None,
    ) -> CRL:
        when = revocation_date or this_update
        # The list goes to the constructor: add_revoked_certificate copies the builder each time.
        revoked = [
            x509.RevokedCertificateBuilder().serial_number(s).revocation_date(when).build()
            for s in serials
        ]
        crl = (
            x509.CertificateRevocationListBuilder(
                issuer_name=issuer.cert.subject,
                last_update=this_update,
                next_update=next_update,
                revoked_certificates=revoked,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                critical=False,
            )
            .add_extension(x509.CRLNumber(int(this_update.timestamp())), critical=False)
            .sign(issuer.key, hashes.SHA256())
        )
        der = crl.public_bytes(serialization.Encoding.DER)
        pem = crl.public_bytes(serialization.Encoding.PEM)
        der_file, pem_file = self.directory / f"{name}.crl", self.directory / f"{name}.crl.pem"
        der_file.write_bytes(der)
        pem_file.write_bytes(pem)
        return CRL(name=name, crl=crl, der=der, pem=pem, der_file=der_file, pem_file=pem_file)

    @cached_property
    def crl_100k(self) -> CRL:
        """100,000 revoked serials (random 16-byte ones plus ``revoked``'s), one revocation
        date; built on first use (~1.5 s) and kept for the session, on disk too."""
        serials = {self.revoked.serial}
        while len(serials) < CRL_100K_SIZE:
            # Positive and non-zero, at most 16 octets of magnitude.
            serials.add(int.from_bytes(os.urandom(16), "big") >> 1 or 1)
        ordered = sorted(serials)
        return self._crl("crl_100k", self.intermediate, ordered,
                         self.now - datetime.timedelta(hours=1),
                         self.now + datetime.timedelta(days=7))

    # ---- clients ---------------------------------------------------------------------------

    def client_context(
        self,
        cert: Issued | None = None,
        tls_version: str | None = None,
        post_handshake_auth: bool = False,
    ) -> ssl.SSLContext:
        """A TLS client context that trusts ``root`` for the server (hostname checked), presents
        ``cert`` (with its chain) if given, speaks only TLS ``tls_version`` ("1.2" / "1.3") if
        given, and offers post-handshake authentication if asked."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=_pem(self.root.cert)
                                         .decode())
        if cert is not None:
            ctx.load_cert_chain(cert.chain_file, cert.key_file)
        if tls_version is not None:
            versions = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
            if tls_version not in versions:
                raise ValueError(f"tls_version must be '1.2' or '1.3', not {tls_version!r}")
            ctx.minimum_version = ctx.maximum_version = versions[tls_version]
        ctx.post_handshake_auth = post_handshake_auth
        return ctx
