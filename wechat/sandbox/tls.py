"""Sandbox certificate authority: merchant API (client) certificates and the server's TLS certificate.

Pay v2 money APIs require mutual TLS with the merchant API certificate (§4.1); with ``--tls`` the server
asks for client certificates and those APIs answer ``CA_ERROR`` without one issued to the calling mch_id.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from wechat.sandbox import crypto

_VALIDITY = dt.timedelta(days=5 * 365)


@dataclass
class SandboxCA:
    """A self-signed CA; every certificate it issues is for sandbox use only."""

    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, key: rsa.RSAPrivateKey, now: dt.datetime) -> SandboxCA:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Hongli WeChat sandbox CA")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def _issue(
        self, public_key: rsa.RSAPublicKey, subject: x509.Name, now: dt.datetime
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + _VALIDITY)
        )

    def merchant_certificate(self, public_key: rsa.RSAPublicKey, mchid: str, now: dt.datetime) -> str:
        """``apiclient_cert.pem`` stand-in: CN = mch_id, like WeChat's merchant API certificates."""
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, mchid),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "WeChat Pay sandbox merchant"),
            ]
        )
        cert = (
            self._issue(public_key, subject, now)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    def server_context(self, host: str, key: rsa.RSAPrivateKey, now: dt.datetime) -> ssl.SSLContext:
        """TLS context for the sandbox server: a certificate for ``host``, client certificates optional."""
        try:
            alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            alt = x509.DNSName(host)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
        cert = (
            self._issue(key.public_key(), subject, now)
            .add_extension(x509.SubjectAlternativeName([alt, x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # load_cert_chain only reads files; it loads them at once, so the directory can go right after.
        with tempfile.TemporaryDirectory(prefix="wechat-sandbox-tls-") as tmp:
            folder = Path(tmp)
            (folder / "server.pem").write_text(cert.public_bytes(serialization.Encoding.PEM).decode())
            (folder / "server.key").touch(mode=0o600)
            (folder / "server.key").write_text(crypto.private_key_pem(key))
            context.load_cert_chain(folder / "server.pem", folder / "server.key")
        context.load_verify_locations(cadata=self.cert_pem)
        context.verify_mode = ssl.CERT_OPTIONAL  # v3 and OA APIs need no client certificate
        return context


def client_certificate_cn(pem: str | None) -> str | None:
    """Common name of the client certificate the TLS layer verified, if any."""
    if not pem:
        return None
    cert = x509.load_pem_x509_certificate(pem.encode())
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None
