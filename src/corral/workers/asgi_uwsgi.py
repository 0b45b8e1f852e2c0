"""The asgi worker's side of `--protocol uwsgi`: a connection's uwsgi packet read as its
request, with what a trusted proxy says about the client, the server and the scheme.

The packet itself is parsed by http/uwsgi.py; this module only applies its result to the
connection and the scope. It must never read or write the transport.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from corral.errors import ProtocolError
from corral.http.parser import Request, parse_head
from corral.http.uwsgi import Packet, parse_packet
from corral.trust import is_trusted

if TYPE_CHECKING:
    from corral.workers.asgi_http import HttpProtocol


def parse_request(conn: HttpProtocol) -> tuple[Request, int] | None:
    """The request at the head of the connection's buffer: an HTTP head, or under
    --protocol uwsgi a uwsgi packet. Raises ProtocolError when it is malformed."""
    worker = conn.worker
    if worker.settings.protocol != "uwsgi":
        return parse_head(conn.buf, worker.limits)
    if conn.client is not None and not is_trusted(
        conn.client, tuple(worker.settings.uwsgi_allow_ips)
    ):  # a TCP peer outside uwsgi_allow_ips (a unix peer has no client address)
        raise ProtocolError(403, "uwsgi request from a peer not in uwsgi_allow_ips")
    parsed = parse_packet(conn.buf, worker.limits)
    if parsed is None:
        return None
    packet, used = parsed
    if conn.trusted:
        apply_proxy_vars(conn, packet)
    return packet.request, used


def _port(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() and len(text) <= 5 else None


def apply_proxy_vars(conn: HttpProtocol, packet: Packet) -> None:
    """REMOTE_ADDR/REMOTE_PORT become the scope's client, SERVER_NAME/SERVER_PORT its
    server, HTTPS its scheme (applied by `apply_scheme` once the scope is built)."""
    if packet.remote_addr is not None:
        conn.client = (packet.remote_addr, _port(packet.remote_port) or 0)
    if packet.server_name is not None or packet.server_port is not None:
        host, port = conn.server or ("", None)
        conn.server = (packet.server_name or host, _port(packet.server_port) or port)
    if packet.https is not None and conn.ssl_object is None:
        conn.uwsgi_scheme = "https" if packet.https else "http"


def apply_scheme(conn: HttpProtocol, scope: dict[str, Any]) -> None:
    """The scheme a trusted uwsgi proxy stated (HTTPS), over the connection's own."""
    if conn.uwsgi_scheme is not None:
        scope["scheme"] = conn.uwsgi_scheme
