"""What both worker families need to serve HTTP/2: the session limits from the settings.

What this module must never do: import h2 at module level (the library is an optional extra,
and a server that does not serve HTTP/2 must start without it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from corral.http.parser import Limits

if TYPE_CHECKING:
    from corral.config import Settings
    from corral.http.h2 import H2Limits


def h2_enabled(settings: Settings) -> bool:
    return "h2" in settings.http_protocols


def h2_limits(settings: Settings, limits: Limits, connect_protocol: bool = False) -> H2Limits:
    from corral.http.h2 import H2Limits

    return H2Limits(
        max_concurrent_streams=settings.http2_max_concurrent_streams,
        initial_window_size=settings.http2_initial_window_size,
        max_frame_size=settings.http2_max_frame_size,
        max_header_list_size=settings.http2_max_header_list_size,  # resolved: never 0
        connect_protocol=connect_protocol,
        request=limits,
    )
