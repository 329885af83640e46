"""Certificates for SeaweedFS's gRPC mutual TLS (issue 9): a private CA, one certificate for the servers
(master, volume, filer, S3 gateway, which also present it to each other) and one for clients (`weed shell`).

    python grpc_certs.py DIR    # DIR/server/{ca.crt,server.crt,server.key}, DIR/client/{ca.crt,client.crt,client.key}

With them every gRPC port (and weed's /tmp/seaweedfs-*-grpc-*.sock, served by the same gRPC servers) refuses
a client that has no certificate signed by this CA: no `weed shell`, `weed backup` or `fs.meta.cat` for
strangers. Existing certificates are kept when all six files are there; otherwise all are made afresh (a
server and a client from different CAs would not talk). Files are owner-only. The CA's private key is not
kept: nothing is ever signed with it again, so to rotate, delete DIR and run this again.

Standalone (Python and `cryptography`, a dependency of the project and of its images): docker compose runs
it in a one-shot service, the dev overlay's setup command on the developer's machine, and `make run` and the
tests through scripts/devstack (security.py).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import sys
from pathlib import Path

SERVER_FILES = ("ca.crt", "server.crt", "server.key")
CLIENT_FILES = ("ca.crt", "client.crt", "client.key")
VALID_DAYS = 3650
# Host names are not checked by weed (it authenticates by CA), but a server certificate should name its hosts.
SERVER_NAMES = ("seaweedfs", "localhost")


def complete(directory: Path) -> bool:
    """All six files are there."""
    directory = Path(directory)
    return all((directory / "server" / name).is_file() for name in SERVER_FILES) and all(
        (directory / "client" / name).is_file() for name in CLIENT_FILES
    )


def _write(path: Path, data: bytes) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # owner-only from the start
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write(directory: Path, *, days: int = VALID_DAYS) -> Path:
    """Make a fresh CA, server and client certificate under `directory` (see the module docstring)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def builder(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("portraits seaweedfs grpc ca")
    ca = (
        builder(ca_name, ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(common_name: str, usages: list[x509.ObjectIdentifier], san: list[x509.GeneralName]) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            builder(name(common_name), ca_name, key)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        if san:
            cert = cert.add_extension(x509.SubjectAlternativeName(san), critical=False)
        pem_key = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return cert.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM), pem_key

    server_san: list[x509.GeneralName] = [x509.DNSName(host) for host in SERVER_NAMES]
    server_san.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    # The servers dial each other too (volume -> master, S3 -> filer): their certificate is also a client one.
    server = leaf("seaweedfs-server", [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], server_san)
    client = leaf("seaweedfs-client", [ExtendedKeyUsageOID.CLIENT_AUTH], [])
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)

    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for part, (cert_pem, key_pem) in (("server", server), ("client", client)):
        folder = directory / part
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        _write(folder / "ca.crt", ca_pem)
        _write(folder / f"{part}.crt", cert_pem)
        _write(folder / f"{part}.key", key_pem)
    return directory


def ensure(directory: Path) -> bool:
    """`write` unless the certificates are all there; True when they were made now."""
    if complete(directory):
        return False
    write(directory)
    return True


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    made = ensure(Path(argv[0]))
    print(f"seaweedfs gRPC certificates {'made' if made else 'kept'} in {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
