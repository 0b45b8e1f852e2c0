"""A throwaway PKI for TLS tests: a CA, a server certificate for 127.0.0.1, a client one."""

from __future__ import annotations

import subprocess
from pathlib import Path


def openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)


def make_pki(directory: Path, serial: str = "01") -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by it."""
    if not (directory / "ca.pem").exists():
        openssl(
            directory,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=corral test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        )
    for name, ext in (
        ("server", "subjectAltName=IP:127.0.0.1"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        openssl(
            directory,
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
        )
        (directory / f"{name}.ext").write_text(ext + "\n")
        openssl(
            directory,
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            serial,
            "-days",
            "2",
            "-extfile",
            f"{name}.ext",
            "-out",
            f"{name}.pem",
        )


def tls_args(pki: Path) -> list[str]:
    return ["--certfile", str(pki / "server.pem"), "--keyfile", str(pki / "server.key")]
