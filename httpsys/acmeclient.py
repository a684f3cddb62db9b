"""ACME (RFC 8555) issuance with the ``acme`` package: register, order, answer, finalize.

``issue(store, names, directory, ...)`` gets a certificate for ``names`` from the CA at
``directory`` and stores it in ``MY``; the challenges are answered by the running server,
which picks them up from the store (``acmestore``: the watcher applies TLS-ALPN-01 ones to
the core and serves HTTP-01 ones), so ``httpsys cert acme`` in one process and ``httpsys
serve`` in another work together.

Theory of operation:

- The account key (ECDSA P-256, ES256) is kept in the store per directory URL. Registering an
  existing key is answered 200 with its URL (``acme`` raises ConflictError with it): then the
  account is simply used. A CA that lost its state (a restarted test CA) gets a new account
  for the same key.
- ``acme`` 5.9 knows no TLS-ALPN-01 class: the challenge arrives as UnrecognizedChallenge; its
  key authorization is ``token + "." + base64url(JWK thumbprint)``, and the RFC 8737
  certificate carries the critical acmeIdentifier extension (1.3.6.1.5.5.7.1.31) holding the
  SHA-256 of it as an OCTET STRING.
- Some CAs (pebble) omit the ``Link: rel="up"`` header ``acme``'s answer_challenge expects, so
  the answer is a plain POST of ``{}`` to the challenge URL; badNonce is retried by ``acme``.
- Before telling the CA to validate, the challenge is written to the store and checked from
  here as the CA would see it (self-check, up to ``SELF_CHECK_TIMEOUT``), so the CA does not
  race the server's watcher; a failed self-check is logged and the CA asked anyway.
- The new certificate's key is made here and goes straight into the store with the chain.
"""

from __future__ import annotations

import datetime
import hashlib
import http.client
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from acme import challenges, client, messages
from acme import errors as acme_errors
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from josepy import b64, json_util, jwa, jwk

from . import acmestore
from .errors import HttpsysError, InvalidParameterError

log = logging.getLogger("httpsys.acme")

#: The acmeIdentifier extension of RFC 8737.
ACME_IDENTIFIER_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")
CHALLENGE_TYPES = ("tls-alpn-01", "http-01")
#: Seconds the self-check waits for the running server to answer a new challenge.
SELF_CHECK_TIMEOUT = 5.0
#: Seconds a refused connection is retried before the self-check gives up on it.
REFUSED_GRACE = 1.0
#: Seconds an order may take from the challenge answer to the certificate.
ORDER_TIMEOUT = 90.0


class _EmptyObject(json_util.JSONObjectWithFields):
    """``{}``: the payload that tells the CA a challenge is ready (RFC 8555 7.5.1)."""

    def __bool__(self) -> bool:
        # acme sends a falsy object as an empty payload, which is a POST-as-GET, not {}
        return True


class AcmeError(HttpsysError):
    """The CA refused or failed an order; the message says at which step and why."""

    exit_code = 1


@dataclass(frozen=True)
class Issued:
    thumbprint: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    renew_at: datetime.datetime


def key_authorization(token: str, account_key: jwk.JWK) -> str:
    """RFC 8555 section 8.1: the token, a dot, and the base64url SHA-256 JWK thumbprint."""
    return f"{token}.{b64.b64encode(account_key.thumbprint()).decode()}"


def tls_alpn_certificate(name: str, key_auth: str) -> tuple[bytes, bytes]:
    """The RFC 8737 challenge certificate for ``name`` (self-signed, one dNSName, the critical
    acmeIdentifier extension = OCTET STRING of SHA-256(key authorization)): (cert PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(key_auth.encode()).digest()
    octet_string = bytes([0x04, len(digest)]) + digest
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.UnrecognizedExtension(ACME_IDENTIFIER_OID, octet_string), critical=True)
        .sign(key, hashes.SHA256())
    )
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def _connect_host(ipport: str | None) -> tuple[str, int] | None:
    """Where to reach the local server of a binding ``ip:port`` (a wildcard: loopback)."""
    if not ipport:
        return None
    host, _, port = ipport.rpartition(":")
    host = host.strip("[]")
    if ipaddress.ip_address(host).is_unspecified:
        host = "::1" if ":" in host else "127.0.0.1"
    return host, int(port)


def _self_check_tls_alpn(addr: tuple[str, int], name: str, key_auth: str) -> bool:
    want = hashlib.sha256(key_auth.encode()).digest()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["acme-tls/1"])
    try:
        with socket.create_connection(addr, timeout=2) as raw, \
                ctx.wrap_socket(raw, server_hostname=name) as tls:
            der = tls.getpeercert(binary_form=True)
    except ConnectionRefusedError:
        raise
    except OSError:
        return False
    if der is None:
        return False
    try:
        ext = x509.load_der_x509_certificate(der).extensions.get_extension_for_oid(
            ACME_IDENTIFIER_OID)
    except x509.ExtensionNotFound:
        return False
    value = ext.value.value if isinstance(ext.value, x509.UnrecognizedExtension) else b""
    return value[2:] == want


def _self_check_http(port: int, token: str, key_auth: str) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", f"/.well-known/acme-challenge/{token}")
        resp = conn.getresponse()
        return resp.status == 200 and resp.read().decode(errors="replace").strip() == key_auth
    except ConnectionRefusedError:
        raise
    except OSError:
        return False
    finally:
        conn.close()


def _wait_self_check(check: Any, *args: Any) -> None:
    start = time.monotonic()
    while time.monotonic() < start + SELF_CHECK_TIMEOUT:
        try:
            if check(*args):
                return
        except ConnectionRefusedError:
            # The HTTP-01 port opens when a watcher registers the prefix (a few 20 ms polls);
            # still refused after that, nothing will listen there however long we wait.
            if time.monotonic() > start + REFUSED_GRACE:
                break
        time.sleep(0.02)
    log.warning("acme: self-check of the challenge failed (is `httpsys serve` running and "
                "listening where the CA connects?); asking the CA anyway")


class AcmeClient:
    """One ACME session against a directory, with the account of the store."""

    def __init__(self, store: Any, directory: str, email: str | None = None,
                 ca_bundle: str | None = None, eab_kid: str | None = None,
                 eab_hmac: str | None = None) -> None:
        self.store = store
        self.directory_url = directory
        accounts = acmestore.AcmeStore(store)
        key_pem = accounts.account_key(directory)
        # A new key is stored once the CA accepted the account: a directory that cannot be
        # read, or a refused registration, leaves the store as it was.
        self._new_key: bytes | None = None
        if key_pem is None:
            new = ec.generate_private_key(ec.SECP256R1())
            key_pem = self._new_key = new.private_bytes(serialization.Encoding.PEM,
                                                        serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption())
        private = serialization.load_pem_private_key(key_pem, password=None)
        self.key = jwk.JWKEC(key=private)
        # verify_ssl goes to requests' verify=, which takes a CA bundle path too
        verify: Any = ca_bundle or True
        self.net = client.ClientNetwork(self.key, alg=jwa.ES256, verify_ssl=verify,
                                        user_agent="httpsys")
        try:
            self.directory = client.ClientV2.get_directory(directory, self.net)
        except Exception as e:  # noqa: BLE001 - any network/TLS failure: say where
            raise AcmeError(f"--directory: cannot read the ACME directory {directory}: {e}",
                            param="directory") from None
        self.acme = client.ClientV2(self.directory, self.net)
        self._register(accounts, email, eab_kid, eab_hmac)

    def _register(self, accounts: acmestore.AcmeStore, email: str | None, eab_kid: str | None,
                  eab_hmac: str | None) -> None:
        eab = None
        if eab_kid and eab_hmac:
            eab = messages.ExternalAccountBinding.from_data(
                account_public_key=self.key.public_key(), kid=eab_kid, hmac_key=eab_hmac,
                directory=self.directory)
        reg = messages.NewRegistration.from_data(email=email, terms_of_service_agreed=True,
                                                 external_account_binding=eab)
        try:
            regr = self.acme.new_account(reg)
            uri = regr.uri
        except acme_errors.ConflictError as e:  # this key has an account already
            uri = e.location
            self.net.account = messages.RegistrationResource(uri=uri,
                                                             body=messages.Registration())
        except messages.Error as e:
            raise AcmeError(f"the CA refused the account: {e}") from None
        accounts.set_account(self.directory_url, self._new_key, uri, email)

    # ---- one order ---------------------------------------------------------------------------

    def order(self, names: Sequence[str], challenge: str, *, bind: str | None = None,
              http_port: int = 80) -> tuple[bytes, bytes]:
        """Orders a certificate for ``names``, answering ``challenge`` through the running
        server; returns (full chain PEM, private key PEM)."""
        if challenge not in CHALLENGE_TYPES:
            raise InvalidParameterError(f"--challenge: {challenge!r} is not one of "
                                        f"{', '.join(CHALLENGE_TYPES)}", param="challenge")
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                              critical=False)
               .sign(key, hashes.SHA256()))
        csr_pem = csr.public_bytes(serialization.Encoding.PEM)
        try:
            orderr = self.acme.new_order(csr_pem)
        except messages.Error as e:
            raise AcmeError(f"the CA refused the order for {', '.join(names)}: {e}") from None
        pending = acmestore.AcmeStore(self.store)
        tokens: list[str] = []
        try:
            for authzr in orderr.authorizations:
                if authzr.body.status == messages.STATUS_VALID:
                    continue
                tokens.append(self._answer(authzr, challenge, pending, bind, http_port))
            deadline = datetime.datetime.now() + datetime.timedelta(seconds=ORDER_TIMEOUT)
            try:
                orderr = self.acme.poll_and_finalize(orderr, deadline)
            except acme_errors.ValidationError as e:
                details = "; ".join(
                    f"{a.body.identifier.value}: {c.error}" for a in e.failed_authzrs
                    for c in a.body.challenges if c.error is not None)
                raise AcmeError(f"validation failed ({challenge}): {details}") from None
            except (messages.Error, acme_errors.Error) as e:
                raise AcmeError(f"the order did not complete: {e}") from None
        finally:
            pending.delete_challenges(tokens)
        chain = orderr.fullchain_pem.encode() if orderr.fullchain_pem else b""
        if not chain:
            raise AcmeError("the CA sent no certificate")
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return chain, key_pem

    def _answer(self, authzr: messages.AuthorizationResource, challenge: str,
                pending: acmestore.AcmeStore, bind: str | None, http_port: int) -> str:
        name = authzr.body.identifier.value
        challb = next((c for c in authzr.body.challenges
                       if c.chall.to_partial_json().get("type") == challenge
                       or getattr(c.chall, "typ", None) == challenge), None)
        if challb is None:
            offered = ", ".join(str(c.chall.to_partial_json().get("type")) for c in
                                authzr.body.challenges)
            raise AcmeError(f"--challenge: the CA offers no {challenge} challenge for {name} "
                            f"(it offers {offered})", param="challenge")
        if isinstance(challb.chall, challenges.HTTP01):
            token = str(challb.chall.encode("token"))
        else:
            token = str(challb.chall.to_partial_json()["token"])
        key_auth = key_authorization(token, self.key)
        if challenge == "tls-alpn-01":
            cert_pem, key_pem = tls_alpn_certificate(name, key_auth)
            pending.add_challenge(token, name, challenge, key_auth, cert_pem, key_pem, None)
            addr = _connect_host(bind)
            if addr is not None:
                _wait_self_check(_self_check_tls_alpn, addr, name, key_auth)
            else:
                time.sleep(0.5)  # no address to check: give the watchers a few polls
        else:
            pending.add_challenge(token, name, challenge, key_auth, None, None, http_port)
            _wait_self_check(_self_check_http, http_port, token, key_auth)
        try:
            # A plain POST of {} (RFC 8555 7.5.1): pebble sends no Link rel=up for
            # answer_challenge.
            self.acme._post(challb.uri, _EmptyObject())
        except messages.Error as e:
            raise AcmeError(f"the CA refused the {challenge} answer for {name}: {e}") from None
        return token

    def renewal_time(self, chain_pem: bytes) -> datetime.datetime | None:
        """The time the CA's ACME Renewal Information suggests, or None if it offers none."""
        try:
            when, _ = self.acme.renewal_time(chain_pem)
        except acme_errors.ARIError as e:
            log.info("acme: renewal information unavailable: %s", e)
            return None
        return when


# ---- issuance and renewal -------------------------------------------------------------------

def _renew_at(chain_pem: bytes, suggested: datetime.datetime | None) -> datetime.datetime:
    """When to renew: inside the CA's suggested window (ARI) when it gave one, else once two
    thirds of the certificate's lifetime have passed."""
    if suggested is not None:
        return suggested if suggested.tzinfo else suggested.replace(tzinfo=datetime.timezone.utc)
    cert = x509.load_pem_x509_certificate(chain_pem)
    nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
    return nb + (na - nb) * 2 / 3


def _bind(c: Any, ipport: str, appid: str | None, thumbprint: str) -> None:
    """Inside the caller's transaction: points the binding at the new certificate (the running
    servers' watchers swap it live), or adds it."""
    kind, _, key = ipport.partition("=")
    if c.execute("UPDATE sslcert SET certhash = ? WHERE kind = ? AND key = ?",
                 (thumbprint, kind, key)).rowcount == 0:
        if not appid:
            raise InvalidParameterError(f"--bind: {ipport} is not bound yet: give appid={{GUID}}",
                                        param="bind")
        c.execute("INSERT INTO sslcert (kind, key, certhash, appid) VALUES (?, ?, ?, ?)",
                  (kind, key, thumbprint, appid))


def issue(store: Any, names: Sequence[str], directory: str, *, challenge: str = "tls-alpn-01",
          email: str | None = None, ca_bundle: str | None = None, bind: str | None = None,
          appid: str | None = None, http_port: int = 80, eab_kid: str | None = None,
          eab_hmac: str | None = None, previous: str | None = None) -> Issued:
    """Orders a certificate for ``names`` and stores it in MY (source acme, with its renewal
    time); ``bind`` (``ipport=IP:PORT`` or ``hostnameport=NAME:PORT``) is pointed at it in the
    same transaction. ``previous``: the certificate this renews (its renewal row moves)."""
    from .certstore import CertStore

    session = AcmeClient(store, directory, email=email, ca_bundle=ca_bundle, eab_kid=eab_kid,
                         eab_hmac=eab_hmac)
    chain, key = session.order(names, challenge, bind=bind.partition("=")[2] if bind and
                               bind.startswith("ipport=") else None, http_port=http_port)
    renew_at = _renew_at(chain, session.renewal_time(chain))
    certs = CertStore(store)
    with store.transaction() as c:
        thumb = certs.put_chain(c, chain, key, source="acme", renew_at=renew_at)
        acmestore.AcmeStore(store).put(c, acmestore.AcmeCertificate(
            thumb, directory, tuple(names), challenge, http_port, email, ca_bundle, bind, appid),
            previous)
        if bind:
            _bind(c, bind, appid, thumb)
    cert = x509.load_pem_x509_certificate(chain)
    log.info("acme: certificate %s for %s issued by %s, renewal at %s", thumb, ", ".join(names),
             directory, acmestore.iso(renew_at))
    return Issued(thumb, cert.not_valid_before_utc, cert.not_valid_after_utc, renew_at)


def renew(store: Any, thumbprint: str) -> Issued:
    """Renews an ACME certificate now, the way it was first ordered, and swaps its binding.
    Raises NotFoundError-like InvalidParameterError for a certificate ACME does not renew, and
    AcmeError (or any network error) when the renewal fails: the current certificate stays."""
    entry = acmestore.AcmeStore(store).get(thumbprint)
    if entry is None:
        raise InvalidParameterError(f"thumbprint: certificate {thumbprint} was not issued "
                                    "through ACME (httpsys cert acme): nothing to renew",
                                    param="thumbprint")
    return issue(store, entry.names, entry.directory, challenge=entry.challenge,
                 email=entry.email, ca_bundle=entry.ca_bundle, bind=entry.bind_ipport,
                 appid=entry.bind_appid, http_port=entry.http_port, previous=entry.thumbprint)
