"""What the ASGI HTTP extensions need besides the exchange itself, and the request's record.

- `tls`: the connection's TLS facts as the ASGI TLS extension names them (`tls_info`).
- `http.response.early_hint`: a 103 interim response (`early_hints`).
- `http.response.trailers`: the client's consent (`TE: trailers`) and the trailer section
  (`trailer_section`).
- the access log and metrics see an ASGI request through a small CGI-style mapping
  (`access_environ`), built only when the access log is on.

What this module must never do: put a field in a trailer section or a 103 that the application
did not have validated, or a framing field in a trailer section (RFC 9110 §6.5.1).
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterable
from typing import Any

from corral.http.grammar import FIELD_TEXT, TOKEN
from corral.http.parser import Request
from corral.http.writer import HOP_BY_HOP

# RFC 9110 §5.1 / §5.5: one field line, name and value, checked with the shared grammar.
HEADER_LINE = re.compile(rf"{TOKEN}: [{FIELD_TEXT}]*\r\n\Z")
HEADER_BLOCK = re.compile(rf"(?:{TOKEN}: [{FIELD_TEXT}]*\r\n)*")

# Fields that must never be trailers (RFC 9110 §6.5.1: framing, routing, authentication,
# content handling); they are dropped rather than sent.
_NOT_TRAILERS = HOP_BY_HOP | {
    "content-length",
    "content-type",
    "content-encoding",
    "content-range",
    "host",
    "authorization",
    "set-cookie",
    "cache-control",
    "expect",
    "max-forwards",
    "pragma",
    "range",
    "age",
    "expires",
    "date",
    "location",
    "retry-after",
    "vary",
    "warning",
    "www-authenticate",
}


def field_lines(headers: Iterable[Any], what: str) -> str:
    """`name: value\\r\\n` lines from ASGI header pairs, each checked; RuntimeError if bad."""
    lines = []
    for name, value in headers:
        line = f"{bytes(name).decode('latin-1')}: {bytes(value).decode('latin-1')}\r\n"
        if HEADER_LINE.match(line) is None:
            raise RuntimeError(f"invalid {what} field {bytes(name)!r}")
        lines.append(line)
    return "".join(lines)


def early_hints(links: Iterable[Any]) -> bytes:
    """The 103 Early Hints interim response (RFC 8297) for the application's Link values."""
    lines = field_lines(((b"link", link) for link in links), "early hint")
    return f"HTTP/1.1 103 Early Hints\r\n{lines}\r\n".encode("latin-1")


def trailer_section(headers: Iterable[Any]) -> bytes:
    """The end of a chunked body with the application's trailer fields (RFC 9112 §7.1.2)."""
    allowed = [
        (name, value)
        for name, value in headers
        if bytes(name).decode("latin-1").lower() not in _NOT_TRAILERS
    ]
    return f"0\r\n{field_lines(allowed, 'trailer')}\r\n".encode("latin-1")


def trailer_fields(headers: Iterable[Any]) -> list[tuple[bytes, bytes]]:
    """The application's trailer fields for an HTTP/2 HEADERS frame: checked as in HTTP/1.1,
    names lower case, the fields that must never be trailers dropped."""
    allowed = [
        (bytes(name).lower(), bytes(value))
        for name, value in headers
        if bytes(name).decode("latin-1").lower() not in _NOT_TRAILERS
    ]
    field_lines(allowed, "trailer")
    return allowed


def accepts_trailers(req: Request) -> bool:
    """RFC 9110 §10.1.4: the client says it will take trailer fields with `TE: trailers`."""
    if req.version not in ("HTTP/1.1", "HTTP/2"):
        return False
    for name, value in req.headers:
        if name == "TE" and "trailers" in (part.strip().lower() for part in value.split(",")):
            return True
    return False


# --- tls ----------------------------------------------------------------------------------------

_TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


# RFC 4514 §3: the short names a distinguished name string uses; others keep their long name.
_SHORT_NAMES = {
    "commonName": "CN",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}
# RFC 4514 §2.4: characters escaped with a backslash in an attribute value.
_DN_SPECIAL = re.compile(r'[,+"\\<>;=]|^[#\s]|\s$')


def distinguished_name(subject: Any) -> str | None:
    """The subject as an RFC 4514 string, most specific part first ("CN=x,O=y,C=z")."""
    parts = []
    for rdn in reversed(subject):
        attributes = []
        for key, value in rdn:
            text = _DN_SPECIAL.sub(lambda m: "\\" + m.group(0), str(value))
            attributes.append(f"{_SHORT_NAMES.get(key, key)}={text}")
        parts.append("+".join(attributes))
    return ",".join(parts) or None


class TlsFacts:
    """What the `tls` extension reports that is the same for every connection of a worker:
    the server's certificate and the cipher suite numbers of its context."""

    def __init__(self, context: ssl.SSLContext, certfile: str | None) -> None:
        self.server_cert: str | None = None
        if certfile:
            try:
                with open(certfile, encoding="ascii", errors="replace") as file:
                    pem = file.read()
            except OSError:
                pem = ""
            end = pem.find("-----END CERTIFICATE-----")
            start = pem.find("-----BEGIN CERTIFICATE-----")
            if 0 <= start < end:
                self.server_cert = pem[start : end + 25] + "\n"
        # OpenSSL's cipher ids carry the two-byte IANA number in their low 16 bits.
        self.suites = {c["name"]: c["id"] & 0xFFFF for c in context.get_ciphers()}

    def info(self, ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> dict[str, Any] | None:
        """The scope's `extensions["tls"]` for one connection (ASGI TLS extension)."""
        if ssl_object is None:
            return None
        cipher = ssl_object.cipher()
        chain: list[str] = []
        name: str | None = None
        der = ssl_object.getpeercert(binary_form=True)
        if der:
            chain.append(ssl.DER_cert_to_PEM_cert(der))
            name = distinguished_name((ssl_object.getpeercert() or {}).get("subject", ()))
        return {
            "server_cert": self.server_cert,
            "client_cert_chain": chain,
            "client_cert_name": name,
            "client_cert_error": None,  # an unverified client certificate fails the handshake
            "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
            "cipher_suite": self.suites.get(cipher[0]) if cipher else None,
        }


# --- the request as the access log sees it ---------------------------------------------------


def access_environ(req: Request, client: tuple[str, int] | None) -> dict[str, Any]:
    """CGI-style names for the access log's atoms (`%(h)s`, `%(r)s`, `%({x-id}i)s`, ...)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": req.method,
        "RAW_URI": req.target,
        "PATH_INFO": req.path,
        "QUERY_STRING": req.query,
        "SERVER_PROTOCOL": req.version,
        "REMOTE_ADDR": client[0] if client else "",
        "REMOTE_PORT": str(client[1]) if client else "",
    }
    for name, value in req.headers:
        key = name.replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def response_headers(headers: Iterable[Any]) -> list[tuple[str, str]]:
    """The application's response headers as text, for the access log's `%({name}o)s`."""
    return [(bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in headers]
