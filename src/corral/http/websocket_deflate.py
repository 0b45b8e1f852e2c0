"""permessage-deflate (RFC 7692): negotiation and per-message compression, sans-IO, with zlib.

`negotiate_deflate(offers)` picks the first acceptable permessage-deflate offer of a handshake
and returns the parameters and the Sec-WebSocket-Extensions value to answer with, or None.
`PerMessageDeflate` compresses the server's messages and inflates the client's, frame by frame
as the parser (websocket_parser.py) hands them over, refusing with 1009 a message that inflates
past the maximum message size: each frame's inflation is bounded by zlib's max_length to what
the message may still grow by, so a small compressed message never inflates to gigabytes in
memory, and fails before its later frames are even read.

Memory per connection (zlib's own formulas, zlib.h/zconf.h):
- compressor: (1 << (server_max_window_bits + 2)) + (1 << (MEM_LEVEL + 9)) bytes, 128 KiB +
  64 KiB = 192 KiB at 15 bits with MEM_LEVEL 7; 68 KiB at 10 bits.
- decompressor: (1 << client_max_window_bits) + about 7 KiB, 39 KiB at 15 bits.
- plus the inflated message itself, at most the maximum message size.
With server_no_context_takeover (resp. client_no_context_takeover) the compressor (resp.
decompressor) lives only while a message is being compressed (inflated), so an idle
connection holds nothing for that direction.

It never does I/O: it must never import socket, select, selectors, ssl, threading or asyncio.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from corral.http.websocket_frames import MESSAGE_TOO_BIG, PROTOCOL_ERROR, WebSocketError

NAME = "permessage-deflate"
# zlib's memLevel: 7 instead of the default 8 halves the hash table for a small loss of ratio.
MEM_LEVEL = 7
# RFC 7692 §7.2.1: the sender removes, and §7.2.2 the receiver appends, the 4 octets that end
# an empty stored block: what a sync flush writes last.
_TAIL = b"\x00\x00\xff\xff"
_WINDOW_BITS = frozenset(str(bits) for bits in range(8, 16))


@dataclass(frozen=True, slots=True)
class DeflateParams:
    """What was agreed (RFC 7692 §7.1). server_* govern our compressor, client_* the client's
    (and so our decompressor)."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = 15
    client_max_window_bits: int = 15

    def response(self) -> str:
        """The Sec-WebSocket-Extensions value that accepts these parameters."""
        parts = [NAME]
        if self.server_no_context_takeover:
            parts.append("server_no_context_takeover")
        if self.client_no_context_takeover:
            parts.append("client_no_context_takeover")
        if self.server_max_window_bits != 15:
            parts.append(f"server_max_window_bits={self.server_max_window_bits}")
        if self.client_max_window_bits != 15:
            parts.append(f"client_max_window_bits={self.client_max_window_bits}")
        return "; ".join(parts)


def _accept_offer(
    params: list[tuple[str, str | None]], max_window_bits: int, no_context_takeover: bool
) -> DeflateParams | None:
    """RFC 7692 §7.1: the parameters answering one offer, or None to decline it."""
    names = [name for name, _ in params]
    if len(set(names)) != len(names):
        return None  # §7.1: a parameter repeated declines the offer
    offer = dict(params)
    if set(offer) - {
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    }:
        return None  # §7.1: an unknown parameter declines the offer
    if offer.get("server_no_context_takeover") or offer.get("client_no_context_takeover"):
        return None  # §7.1.1.1, §7.1.1.2: these have no value
    server_bits = max_window_bits
    if "server_max_window_bits" in offer:
        # §7.1.2.1: a value 8-15 that our compressor must not exceed. zlib cannot make raw
        # deflate streams with an 8-bit window, so with 8 we send every message uncompressed,
        # which §6 allows (see PerMessageDeflate.compresses).
        value = offer["server_max_window_bits"]
        if value not in _WINDOW_BITS:
            return None
        server_bits = min(server_bits, int(value))
    client_bits = 15
    if "client_max_window_bits" in offer:
        # §7.1.2.2: the client accepts a limit on its window (no value, or a value 8-15 it
        # will not exceed anyway). Without the parameter we may not ask for a limit.
        value = offer["client_max_window_bits"]
        if value is not None and value not in _WINDOW_BITS:
            return None
        client_bits = min(max_window_bits, 15 if value is None else int(value))
    return DeflateParams(
        server_no_context_takeover="server_no_context_takeover" in offer or no_context_takeover,
        # §7.1.1.2: the server may always ask the client not to take over its context.
        client_no_context_takeover=no_context_takeover,
        server_max_window_bits=server_bits,
        client_max_window_bits=client_bits,
    )


def negotiate_deflate(
    offers: list[tuple[str, list[tuple[str, str | None]]]],
    max_window_bits: int = 15,
    no_context_takeover: bool = False,
) -> DeflateParams | None:
    """The first permessage-deflate offer we accept (§5.1: offers are in preference order),
    skipping those that limit our window to 8 bits while a later one lets us compress.

    max_window_bits (9-15) caps both windows, where the client lets us cap its window;
    no_context_takeover asks for fresh contexts per message both ways, so that an idle
    connection holds no zlib state at all.
    """
    fallback = None
    for name, params in offers:
        if name == NAME:
            accepted = _accept_offer(params, max_window_bits, no_context_takeover)
            if accepted is not None and accepted.server_max_window_bits > 8:
                return accepted
            fallback = fallback or accepted
    return fallback


class PerMessageDeflate:
    """The compression state of one connection (RFC 7692 §7.2)."""

    __slots__ = ("_compressor", "_decompressor", "max_message_size", "params")

    def __init__(self, params: DeflateParams, max_message_size: int) -> None:
        self.params = params
        self.max_message_size = max_message_size
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None

    @property
    def compresses(self) -> bool:
        """Whether our messages go out compressed: not with an 8-bit window, which zlib
        cannot keep to; RFC 7692 §6 lets a sender leave any message uncompressed."""
        return self.params.server_max_window_bits > 8

    def compress(self, data: bytes) -> bytes:
        """§7.2.1: deflate, sync flush, drop the final 00 00 ff ff."""
        compressor = self._compressor
        if compressor is None:
            compressor = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION,
                zlib.DEFLATED,
                -self.params.server_max_window_bits,
                MEM_LEVEL,
            )
        out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        self._compressor = None if self.params.server_no_context_takeover else compressor
        return out[:-4] if out.endswith(_TAIL) else out

    def decompress(self, data: bytes) -> bytes:
        """A whole compressed message inflated, at most max_message_size bytes (else 1009)."""
        return self.inflate(data, True, self.max_message_size)

    def inflate(self, data: bytes, final: bool, limit: int) -> bytes:
        """§7.2.2: one frame's part of a compressed message, inflated to at most limit bytes.

        Inflation stops at limit + 1 bytes (zlib's max_length), so a small frame that would
        inflate to gigabytes costs at most limit bytes before it fails with 1009. final marks
        the message's last frame: 00 00 ff ff is appended, and the context is kept for the
        next message only when the client takes it over.
        """
        decompressor = self._decompressor
        if decompressor is None:
            # A client that agreed to 8 bits and uses zlib sends 9-bit streams (zlib cannot
            # deflate with 256 bytes): a 9-bit window reads both.
            bits = max(9, self.params.client_max_window_bits)
            decompressor = self._decompressor = zlib.decompressobj(-bits)
        try:
            out = decompressor.decompress(data + _TAIL if final else data, limit + 1)
        except zlib.error:
            raise WebSocketError(PROTOCOL_ERROR, "invalid compressed data") from None
        if len(out) > limit or decompressor.unconsumed_tail:
            raise WebSocketError(MESSAGE_TOO_BIG, "message inflates past the maximum size")
        if decompressor.eof and decompressor.unused_data not in (b"", _TAIL):
            # A final deflate block ended the stream and more data followed it in the message.
            raise WebSocketError(PROTOCOL_ERROR, "data after the end of the compressed stream")
        if final and (self.params.client_no_context_takeover or decompressor.eof):
            # A stream ended with a BFINAL block cannot go on: the next message starts afresh.
            self._decompressor = None
        return out
