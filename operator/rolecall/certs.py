"""The admission webhook's certificates: one CA and one serving certificate, shared by every replica.

They live in one Secret (type kubernetes.io/tls: tls.crt, tls.key, ca.crt, and ca.key when rolecall made
the CA itself). `plan` is the whole rotation policy as a pure function of that Secret's data and the clock,
so unit tests drive it with a fake clock; rolecall/webhook.py reads and writes the Secret and the webhook
configuration around it.

Rotation never leaves the apiserver without a CA for the certificate a replica serves:
- ca.crt is a bundle, newest CA first. A renewed CA is added in front of the old one, which stays until it
  expires, so a certificate the old CA signed is still trusted while replicas reload.
- The serving certificate moves to a new CA only once that CA's bundle has been in the webhook
  configuration's caBundle for a while (`published_for`), unless it is within a tenth of its lifetime of
  expiring.
- Either certificate is renewed when less than a third of its lifetime is left.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CA_COMMON_NAME = "rolecall-webhook-ca"
RENEW_WHEN_LEFT = 1 / 3  # of the lifetime
BACKDATE = dt.timedelta(minutes=1)  # a clock a little behind ours still accepts a fresh certificate


@dataclass(frozen=True)
class Lifetimes:
    ca: dt.timedelta = dt.timedelta(days=5 * 365)
    serving: dt.timedelta = dt.timedelta(days=90)
    # How long a renewed CA's bundle must have been in the webhook configuration before the serving
    # certificate moves to it: the apiserver reads webhook configurations from an informer.
    settle: dt.timedelta = dt.timedelta(seconds=30)


@dataclass(frozen=True)
class Material:
    """The Secret's data (PEM)."""

    ca_bundle: bytes  # every CA the apiserver should trust, newest first
    ca_key: bytes  # the newest CA's key; empty when the certificates come from elsewhere (cert-manager)
    tls_crt: bytes
    tls_key: bytes

    @classmethod
    def from_secret_data(cls, data: dict[str, bytes]) -> Material | None:
        if not data.get("tls.crt") or not data.get("tls.key") or not data.get("ca.crt"):
            return None
        return cls(data["ca.crt"], data.get("ca.key", b""), data["tls.crt"], data["tls.key"])

    def secret_data(self) -> dict[str, bytes]:
        data = {"ca.crt": self.ca_bundle, "tls.crt": self.tls_crt, "tls.key": self.tls_key}
        if self.ca_key:
            data["ca.key"] = self.ca_key
        return data

    def bundle_digest(self) -> str:
        return hashlib.sha256(self.ca_bundle).hexdigest()[:16]


@dataclass
class Plan:
    material: Material
    changes: list[str] = field(default_factory=list)  # what changed and why, for the log and the Event


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_ca(now: dt.datetime, lifetime: dt.timedelta) -> tuple[bytes, bytes]:
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME),
                      x509.NameAttribute(NameOID.SERIAL_NUMBER, str(x509.random_serial_number()))])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(now + lifetime)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return _pem(cert), _pem_key(key)


def _alt_names(names: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return out


def issue_serving(ca_crt: bytes, ca_key: bytes, names: list[str], now: dt.datetime,
                  lifetime: dt.timedelta) -> tuple[bytes, bytes]:
    """A server certificate for `names` (DNS names or IP addresses), never outliving its CA."""
    ca = x509.load_pem_x509_certificate(ca_crt)
    signer = serialization.load_pem_private_key(ca_key, password=None)
    assert isinstance(signer, ec.EllipticCurvePrivateKey)
    key = _key()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(min(now + lifetime, ca.not_valid_after_utc))
            .add_extension(x509.SubjectAlternativeName(_alt_names(names)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
            .sign(signer, hashes.SHA256()))
    return _pem(cert) + ca_crt, _pem_key(key)


def certificates(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem) if pem.strip() else []


def _lifetime(cert: x509.Certificate) -> dt.timedelta:
    return cert.not_valid_after_utc - cert.not_valid_before_utc - BACKDATE


def _due(cert: x509.Certificate, now: dt.datetime) -> bool:
    return cert.not_valid_after_utc - now < _lifetime(cert) * RENEW_WHEN_LEFT


def _names(cert: x509.Certificate) -> list[str]:
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n.value) for n in alt]


def plan(current: Material | None, names: list[str], now: dt.datetime, lifetimes: Lifetimes,
         published_for: dt.timedelta | None) -> Plan:
    """What the Secret should hold now. `published_for`: how long the current bundle has been the webhook
    configuration's caBundle (None: not yet)."""
    if current is None or not current.ca_key:
        if current is not None:  # someone else's certificates (cert-manager): never rewritten here
            return Plan(current)
        ca_crt, ca_key = make_ca(now, lifetimes.ca)
        tls_crt, tls_key = issue_serving(ca_crt, ca_key, names, now, lifetimes.serving)
        return Plan(Material(ca_crt, ca_key, tls_crt, tls_key), ["made a CA and a serving certificate"])
    changes: list[str] = []
    cas = certificates(current.ca_bundle)
    ca_crt, ca_key = _pem(cas[0]), current.ca_key
    kept = [c for c in cas if c.not_valid_after_utc > now]
    if len(kept) < len(cas):
        changes.append(f"dropped {len(cas) - len(kept)} expired CA(s) from the bundle")
    if not kept or _due(cas[0], now):
        ca_crt, ca_key = make_ca(now, lifetimes.ca)
        changes.append("renewed the CA (the old one stays in the bundle until it expires)")
    bundle = ca_crt + b"".join(_pem(c) for c in kept if _pem(c) != ca_crt)
    newest = x509.load_pem_x509_certificate(ca_crt)
    serving = certificates(current.tls_crt)[0]
    tls_crt, tls_key = current.tls_crt, current.tls_key
    settled = bundle == current.ca_bundle and published_for is not None and published_for >= lifetimes.settle
    on_newest = serving.issuer == newest.subject
    due = _due(serving, now) or sorted(_names(serving)) != sorted(names)
    # A due certificate waits for a new CA to settle, unless it would otherwise come close to expiring.
    urgent = serving.not_valid_after_utc - now < _lifetime(serving) / 10
    if urgent or (due and on_newest) or (not on_newest and settled):
        tls_crt, tls_key = issue_serving(ca_crt, ca_key, names, now, lifetimes.serving)
        changes.append("renewed the serving certificate")
    if not changes:
        return Plan(current)
    return Plan(Material(bundle, ca_key, tls_crt, tls_key), changes)


def not_after(pem: bytes) -> dt.datetime:
    return certificates(pem)[0].not_valid_after_utc
