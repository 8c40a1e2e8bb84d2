"""Certificates and keys for the local cluster, made with the openssl CLI (EC P-256: fast to generate)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_key(path: Path) -> None:
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(path))
    path.chmod(0o600)


def make_ca(dir: Path) -> None:
    make_key(dir / "ca.key")
    _openssl("req", "-x509", "-new", "-key", str(dir / "ca.key"), "-days", "3650",
             "-subj", "/CN=rolecall-testbed-ca", "-out", str(dir / "ca.crt"))


def make_cert(dir: Path, name: str, cn: str, orgs: tuple[str, ...] = (), sans: tuple[str, ...] = (),
              server: bool = False) -> None:
    """Signs `name`.crt for `name`.key with the bed's CA; client certs carry the user in CN, groups in O."""
    make_key(dir / f"{name}.key")
    subject = "".join(f"/O={o}" for o in orgs) + f"/CN={cn}"
    csr = dir / f"{name}.csr"
    _openssl("req", "-new", "-key", str(dir / f"{name}.key"), "-subj", subject, "-out", str(csr))
    ext = dir / f"{name}.ext"
    usage = "serverAuth" if server else "clientAuth"
    lines = ["basicConstraints=CA:FALSE", "keyUsage=digitalSignature,keyEncipherment",
             f"extendedKeyUsage={usage}"]
    if sans:
        lines.append("subjectAltName=" + ",".join(sans))
    ext.write_text("\n".join(lines) + "\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(dir / "ca.crt"), "-CAkey", str(dir / "ca.key"),
             "-CAcreateserial", "-days", "3650", "-extfile", str(ext), "-out", str(dir / f"{name}.crt"))
    csr.unlink()
    ext.unlink()


def make_service_account_keys(dir: Path) -> None:
    make_key(dir / "sa.key")
    _openssl("ec", "-in", str(dir / "sa.key"), "-pubout", "-out", str(dir / "sa.pub"))
