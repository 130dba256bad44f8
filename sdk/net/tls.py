"""TLS for the validator links and the client API: certificates, contexts, channel binding.

Validator links: every validator's listener presents a certificate of its own (self-signed,
made by ``accord init``; nobody needs to trust it). Who is at the other end is not decided by
the certificate but by the handshake (:mod:`accord.net.handshake`): both BLS signatures cover
:func:`channel_binding`, the SHA-256 of the certificate the TLS session runs under. A man in
the middle who terminates TLS has to show the dialer a certificate of its own (it does not
hold the listener's TLS key), so the dialer's binding differs from the listener's and neither
signature verifies. This is the ``tls-server-end-point`` binding (RFC 5929): Python's ``ssl``
offers no keying-material exporter, and the certificate is enough because only the holder of
its private key can finish the TLS handshake that both sides then sign over.

Client API: an ordinary server certificate (from the consortium's CA, or self-signed), which
clients check against a CA file or pin by its SHA-256 (:func:`client_context`,
:func:`check_pin`).
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import ssl
from collections.abc import Iterable
from pathlib import Path

from accord.base.errors import ValidationError
from accord.base.keys import write_private


def make_self_signed(
    cert_path: str | Path,
    key_path: str | Path,
    *,
    name: str,
    hosts: Iterable[str] = (),
    days: int = 3650,
) -> bytes:
    """Write a new P-256 key (mode 0600) and a self-signed certificate for it; return the
    certificate's DER. ``hosts`` (names or IP addresses) go into subjectAltName, which a
    client checking the certificate against itself as CA needs; validator links ignore it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64] or "accord")])
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    )
    Path(cert_path).parent.mkdir(parents=True, exist_ok=True)
    Path(cert_path).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert.public_bytes(serialization.Encoding.DER)


def cert_der(cert_path: str | Path) -> bytes:
    """The DER bytes of the first certificate in a PEM file (clear error if unreadable)."""
    try:
        pem = Path(cert_path).read_text()
        start = pem.index("-----BEGIN CERTIFICATE-----")
        end = pem.index("-----END CERTIFICATE-----", start) + len("-----END CERTIFICATE-----")
        return ssl.PEM_cert_to_DER_cert(pem[start:end])
    except (OSError, ValueError) as e:
        raise ValidationError(f"cannot read a PEM certificate from {cert_path}: {e}") from None


def channel_binding(der: bytes) -> bytes:
    """What both handshake signatures cover on a TLS link: SHA-256 of the listener's
    certificate as the TLS session presented it."""
    return hashlib.sha256(der).digest()


def fingerprint(der: bytes) -> str:
    """The SHA-256 of a certificate in hex: what a client pins."""
    return hashlib.sha256(der).hexdigest()


def server_context(cert_path: str | Path, key_path: str | Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context for ``cert_path`` / ``key_path`` (clear error if they do
    not load or do not match)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert_path), str(key_path))
    except (OSError, ssl.SSLError) as e:
        raise ValidationError(
            f"cannot load the TLS certificate {cert_path} with key {key_path}: {e}"
        ) from None
    return ctx


def link_server_context(cert_path: str | Path, key_path: str | Path) -> ssl.SSLContext:
    """The validator listener's context: TLS 1.3 only (every validator runs this code)."""
    ctx = server_context(cert_path, key_path)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def link_client_context() -> ssl.SSLContext:
    """The validator dialer's context. It checks no certificate chain or name on purpose:
    the peer is authenticated by its genesis key over :func:`channel_binding`, which a
    certificate authority could add nothing to (and whose absence a MITM cannot exploit)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def normalize_pin(pin: str) -> bytes:
    """A SHA-256 certificate pin from hex (colons allowed), or a clear error."""
    try:
        raw = bytes.fromhex(pin.replace(":", "").strip())
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ValidationError(
            f"a certificate pin is the SHA-256 of the certificate in hex (64 digits): {pin!r}"
        )
    return raw


def client_context(ca_file: str | Path | None = None, pin: str | None = None) -> ssl.SSLContext:
    """A client context for an https API URL.

    ``ca_file``: the CA (or the server's own self-signed certificate) the server's chain and
    name are checked against. ``pin`` alone: no chain check, the certificate must have this
    SHA-256 instead (see :func:`check_pin`; self-signed certificates without a CA). Neither:
    the system's CAs."""
    if pin is not None and ca_file is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    try:
        return ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
    except (OSError, ssl.SSLError) as e:
        raise ValidationError(f"cannot load the CA file {ca_file}: {e}") from None


def check_pin(der: bytes | None, pin: bytes) -> None:
    """Raise ``ssl.SSLError`` unless the server's certificate has the pinned SHA-256."""
    if der is None or hashlib.sha256(der).digest() != pin:
        got = "none" if der is None else fingerprint(der)
        raise ssl.SSLError(f"the server's certificate {got} is not the pinned one {pin.hex()}")
