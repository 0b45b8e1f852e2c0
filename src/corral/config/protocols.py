"""The `protocol` setting's values: what the bytes on a listener are (HTTP or uwsgi).

A converter only: it must never import the workers or the parsers.
"""

from __future__ import annotations

from typing import Literal

ServerProtocol = Literal["http", "uwsgi"]
_PROTOCOLS: dict[str, ServerProtocol] = {"http": "http", "uwsgi": "uwsgi"}


def server_protocol(value: object) -> ServerProtocol:
    """`http` or `uwsgi` (any case, surrounding blanks ignored)."""
    if isinstance(value, str) and (found := _PROTOCOLS.get(value.strip().lower())):
        return found
    raise ValueError("the protocol must be one of: http, uwsgi")
