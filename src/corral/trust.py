"""Which peers are trusted forwarders (`forwarded_allow_ips`): addresses and CIDR networks.

Only a trusted peer may set the URL scheme through `secure_scheme_headers` or send the
underscore forwarder headers. Unix-socket peers are local processes that passed the socket's
file permissions, and are trusted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from corral.errors import ProtocolError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=64)
def _networks(allowed: tuple[str, ...]) -> tuple[bool, tuple[Network, ...]]:
    if "*" in allowed:
        return True, ()
    nets = tuple(ipaddress.ip_network(item.strip(), strict=False) for item in allowed if item)
    return False, nets


@lru_cache(maxsize=1024)
def _address_trusted(host: str, allowed: tuple[str, ...]) -> bool:
    everyone, nets = _networks(allowed)
    if everyone:
        return True
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    return any(addr in net or (mapped is not None and mapped in net) for net in nets)


def is_trusted(peer: object, allowed: tuple[str, ...]) -> bool:
    if not isinstance(peer, tuple):
        return True  # unix socket
    return _address_trusted(str(peer[0]), allowed)


def stated_scheme(stated: Iterable[tuple[str, str]]) -> str | None:
    """The scheme a trusted proxy states with `secure_scheme_headers`: one (value sent, value
    meaning https) pair per such header present. A proxy that says both https and http is
    refused (400) rather than guessed; None when it says nothing."""
    schemes = {"https" if value.lower() == secure else "http" for value, secure in stated}
    if len(schemes) > 1:
        raise ProtocolError(400, "conflicting secure scheme headers")
    return schemes.pop() if schemes else None
