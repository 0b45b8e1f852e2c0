"""How an `asgi` worker connection comes to speak HTTP/2 (the rules are http/h2_negotiation.py).

- TLS: the handshake selected ALPN `h2` (`negotiate`, when the connection is made).
- Cleartext by prior knowledge, for a trusted peer when `http2_cleartext` allows it: the first
  bytes are the client preface (`sniff_preface`). Bytes that cannot become it are served as
  HTTP/1.1 when `Upgrade: h2c` is allowed too (`both`), and refused with 400 otherwise, as in
  Gunicorn: that port speaks HTTP/2 to such peers.
- Cleartext by `Upgrade: h2c` (`upgrade`): a 101, then the request is served as stream 1.

The switch hands the connection to workers/asgi_h2.py, imported only then, so a worker that
never serves HTTP/2 never imports the h2 library. What this module must never do: switch a
connection that did not ask to be switched, or one from a peer the settings do not allow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from corral.http.h2_negotiation import (
    H2,
    MORE,
    SWITCHING_PROTOCOLS,
    alpn_is_h2,
    cleartext_modes,
    preface_state,
    upgrade_settings,
)
from corral.http.parser import Request

if TYPE_CHECKING:
    from corral.workers.asgi_http import HttpProtocol


def negotiate(conn: HttpProtocol) -> None:
    """When the connection is made: HTTP/2 at once (ALPN), or what its first bytes may do."""
    worker = conn.worker
    if worker.h2_limits is None:
        return
    if conn.ssl_object is not None:
        if alpn_is_h2(conn.ssl_object.selected_alpn_protocol()):
            switch(conn)
        return
    conn.h2_prior, conn.h2_upgrade = cleartext_modes(
        worker.settings.http2_cleartext, conn.trusted, True
    )


def switch(conn: HttpProtocol, upgrade: tuple[bytes, Request] | None = None) -> None:
    """From now on the connection speaks HTTP/2."""
    from corral.workers.asgi_h2 import Http2Connection

    conn.cancel_idle()
    conn.h2_prior = conn.h2_upgrade = False
    h2 = Http2Connection(conn)
    conn.h2 = h2
    h2.start(upgrade)


def sniff_preface(conn: HttpProtocol, data: bytes) -> bool:
    """The first bytes of a cleartext connection that may be HTTP/2: True when they were taken
    here (the preface, a prefix of it, or refused), False when they are HTTP/1.1's."""
    buf = conn.buf + data
    state = preface_state(buf)
    if state == MORE:
        conn.buf = buf
        return True
    conn.h2_prior = False
    if state == H2:
        conn.buf = b""
        switch(conn)
        assert conn.h2 is not None
        conn.h2.data_received(buf)
        return True
    if not conn.h2_upgrade:
        conn.reject(400)
        return True
    return False


def upgrade(conn: HttpProtocol, req: Request) -> bool:
    """An HTTP/1.1 request that asks for `Upgrade: h2c` and may: 101, then HTTP/2."""
    settings = upgrade_settings(req)
    if settings is None or not settings_acceptable(conn, settings):
        return False
    conn.write(SWITCHING_PROTOCOLS)
    rest, conn.buf = conn.buf, b""
    switch(conn, (settings, req))
    if rest:  # the client preface and frames, sent after the upgrade request
        assert conn.h2 is not None
        conn.h2.data_received(rest)
    return True


def settings_acceptable(conn: HttpProtocol, settings: bytes) -> bool:
    """Whether h2 takes the HTTP2-Settings value: one that decodes but is no SETTINGS payload
    (a length not a multiple of 6, a value out of range) would only fail after the 101, as
    an exception out of data_received. Such a request is answered in HTTP/1.1 instead."""
    from h2.exceptions import H2Error
    from hyperframe.exceptions import HyperframeError

    from corral.http.h2 import H2Session

    limits = conn.worker.h2_limits
    assert limits is not None
    try:
        H2Session(limits).start(upgrade_settings=settings)
    except (H2Error, HyperframeError, ValueError):
        return False
    return True
