"""Certificates for TLS on the course's servers (lesson and lab 13): a local certificate authority (CA) that
signs a server certificate for this machine's loopback names and a client certificate for mutual TLS, made
with the `cryptography` package, and the server arguments and client options that use them.

    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=..." -keyout ca.key -out ca.crt
    (then a key and a signing request for the server and the client, each signed with `openssl x509 -req -CA ...`)

does the same; `make_certificates` keeps it in Python, so that it runs wherever the course runs.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import CourseError

DAYS = 30  # long enough for a course, short enough that a leaked key soon stops working
SERVER_NAMES = ("localhost", "127.0.0.1")  # what a client on this machine dials: each must be in the certificate


class TLSError(CourseError):
    """A certificate folder the course cannot use."""

    source = "the course's TLS helper"


@dataclass(frozen=True)
class Certificates:
    """The files `make_certificates` writes (PEM): the CA's certificate, and a certificate with its key for the
    server and for the client. The CA's own key is not kept: no one can sign another certificate with it."""

    folder: Path

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def server_cert(self) -> Path:
        return self.folder / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.folder / "server.key"

    @property
    def client_cert(self) -> Path:
        return self.folder / "client.crt"

    @property
    def client_key(self) -> Path:
        return self.folder / "client.key"

    def server_args(self, mutual: bool = False) -> list[str]:
        """tritonserver's switches for TLS on its gRPC port (src/command_line_parser.cc); with `mutual`, clients
        must also present a certificate signed by this CA."""
        args = ["--grpc-use-ssl=true", f"--grpc-server-cert={self.server_cert}", f"--grpc-server-key={self.server_key}"]
        if mutual:
            args += ["--grpc-use-ssl-mutual=true", f"--grpc-root-cert={self.ca_cert}"]
        return args

    def client_options(self, with_client_certificate: bool = True) -> dict[str, str | bool]:
        """tritonclient.grpc.InferenceServerClient's TLS options: trust this CA, and show the client's certificate."""
        options: dict[str, str | bool] = {"ssl": True, "root_certificates": str(self.ca_cert)}
        if with_client_certificate:
            options |= {"private_key": str(self.client_key), "certificate_chain": str(self.client_cert)}
        return options

    def server_pem(self) -> str:
        """The server's certificate and key in one PEM text, as HAProxy's `ssl crt` reads them."""
        return self.server_cert.read_text() + self.server_key.read_text()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Triton course"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)  # a private key: readable by its owner only


def _certificate(subject: str, key, issuer: x509.Name, signer, *, ca: bool, usage=None, names=()) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=DAYS))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(n)) if n[0].isdigit() else x509.DNSName(n) for n in names]),
            critical=False)
    return builder.sign(signer, hashes.SHA256())


def make_certificates(folder: str | Path, server_names: tuple[str, ...] = SERVER_NAMES) -> Certificates:
    """A new CA, and a server and a client certificate it signed, written to `folder` (made if missing; files
    there of the same names are replaced: the folder holds only what this makes). Keys are EC P-256."""
    certs = Certificates(Path(folder))
    certs.folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("Triton course CA", ca_key, _name("Triton course CA"), ca_key, ca=True)
    certs.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for subject, usage, names, cert_path, key_path in (
            ("triton server", ExtendedKeyUsageOID.SERVER_AUTH, server_names, certs.server_cert, certs.server_key),
            ("course client", ExtendedKeyUsageOID.CLIENT_AUTH, (), certs.client_cert, certs.client_key)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(subject, key, ca.subject, ca_key, ca=False, usage=usage, names=names)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, key_path)
    return certs


def describe(path: str | Path) -> str:
    """One certificate in a line: whose it is, who signed it, the names it holds and how long it is valid."""
    try:
        cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise TLSError(f"{path} is not a PEM certificate the course can read.", triton_said=str(exc),
                       fix="Make the certificates again with tls.make_certificates(folder).") from exc
    subject = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    issuer = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        held = ", ".join(str(n.value) for n in names)
    except x509.ExtensionNotFound:
        held = "none"
    days = round((cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() / 86400)
    return f"{Path(path).name}: '{subject}', signed by '{issuer}', names: {held}, valid {days} days"
