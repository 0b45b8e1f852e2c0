"""A worker's open connections, one row each, in memory the master and that worker share.

    ConnectionTable  one anonymous shared mapping per worker, made by the master before fork
                     when the control socket is on. The worker's loop rewrites it about once a
                     second (`publish`), where it sets its connection gauges; the master reads
                     it for `show connections` (`read`). No request ever touches it.

Each row holds a connection's peer address and port, its engine state (CONNECTION_STATES), its
protocol, whether it is TLS, the monotonic time it was accepted (the clock is the same in every
process, so the master turns it into an age when it reads), the requests answered on it and its
open HTTP/2 streams. At most `capacity` rows are written; the table also holds the true number of
connections, so an answer can say how many were left out.

Torn reads. The worker writes without a lock, so the table holds two buffers and a generation
number: the worker fills the buffer the readers are not using, then publishes it by bumping the
generation, so a reader never waits for a write to end. The master copies the current buffer
and looks at the generation again: if the worker has published since, its next write may
already be going into the very buffer being copied, so the copy is thrown away and taken once
more (writes come once a second: a second miss in a row means a stalled master). Each row is
also checked as it is decoded, so whatever the copy holds gives rows that are whole or left
out, never garbage and never an exception. This module must never log, block or raise from
`publish`, and must never import from workers/ (the master reads it).
"""

from __future__ import annotations

import math
import mmap
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from corral.metrics.stats import CONNECTION_STATES

PROTOCOLS = ("http", "h2", "ws", "uwsgi")
HTTP, H2, WS, UWSGI = range(len(PROTOCOLS))
MAX_ROWS = 512
NO_PORT = -1  # unix sockets, and peers a proxy named without a port
UNKNOWN = -1  # requests not counted (asgi), streams of a connection not in HTTP/2

# What a worker passes per connection: (key, address, port, state index, protocol index, tls,
# accepted at or an earlier-bound estimate, requests, streams). The key is any hashable that
# identifies the connection for as long as it is open (the connection object itself): the table
# remembers when it first saw each key, for connections whose accept time nobody recorded.
Entry = tuple[object, str, int, int, int, bool, float, int, int]

_HEADER = struct.Struct("=QQQd")  # generation written, total, rows, published at (monotonic)
_HEADER_SIZE = 32
_ADDRESS_SIZE = 116  # "unix:" and the longest path a unix socket can have
# accepted (monotonic), requests, streams, port, state, protocol, tls, address length, address
_ROW = struct.Struct(f"=dqiiBBBB{_ADDRESS_SIZE}s")
_FIRST_BUFFER = 64  # the generation alone on the first cache line


@dataclass(frozen=True)
class ConnectionRow:
    address: str
    port: int | None
    state: str
    protocol: str
    tls: bool
    accepted: float  # time.monotonic() of the worker's accept
    requests: int | None
    streams: int | None


@dataclass(frozen=True)
class Listing:
    """One published copy of the table: `rows` are at most the table's capacity, `total` is
    every open connection."""

    total: int
    rows: list[ConnectionRow]
    published: float  # time.monotonic() of the worker's write

    @property
    def unlisted(self) -> int:
        return max(0, self.total - len(self.rows))


class ConnectionTable:
    """Written by one worker's loop, read by the master (see the module docstring)."""

    def __init__(self, capacity: int = MAX_ROWS) -> None:
        self.capacity = capacity
        self._buffer_size = _HEADER_SIZE + capacity * _ROW.size
        # fileno -1: anonymous memory; MAP_SHARED (the default) keeps it shared across fork.
        # Pages are only backed once written, so a worker with few connections costs little.
        self._mem = mmap.mmap(-1, _FIRST_BUFFER + 2 * self._buffer_size)
        # A native, aligned 8-byte slot: one store and one load each time (struct's "=Q"
        # goes byte by byte, and a reader could see half of a new generation).
        self._generation = memoryview(self._mem)[:8].cast("Q")
        self._seen: dict[object, float] = {}  # the writer's: key -> accepted (estimate)

    # ---- the worker's side --------------------------------------------------------------------

    def publish(self, entries: Iterable[Entry], now: float) -> None:
        """Write every connection's row (up to capacity) into the idle buffer, then make it
        the current one. Once a second, from the worker's loop only."""
        mem = self._mem
        generation = self._generation[0] + 1
        base = self._offset(generation)
        seen = self._seen
        fresh: dict[object, float] = {}
        total = 0
        pack = _ROW.pack_into
        offset = base + _HEADER_SIZE
        end = offset + self.capacity * _ROW.size
        for key, address, port, state, protocol, tls, since, requests, streams in entries:
            accepted = fresh[key] = seen.get(key, since)
            total += 1
            if offset < end:
                raw = address.encode("utf-8", "replace")[:_ADDRESS_SIZE]
                flags = (tls, len(raw), raw)
                try:
                    pack(mem, offset, accepted, requests, streams, port, state, protocol, *flags)
                except struct.error:
                    continue  # a value out of the row's range: the row is left out
                offset += _ROW.size
        self._seen = fresh  # connections gone since the last write are forgotten
        rows = (offset - base - _HEADER_SIZE) // _ROW.size
        _HEADER.pack_into(mem, base, generation, total, rows, now)
        self._generation[0] = generation

    # ---- the master's side --------------------------------------------------------------------

    def read(self) -> Listing | None:
        """The last published rows; an empty listing before the first write, None when the
        worker published during each of two copies in a row."""
        mem = self._mem
        for _ in range(2):
            generation = self._generation[0]
            if generation == 0:
                return Listing(0, [], 0.0)
            base = self._offset(generation)
            # The rows written only: pages past them are never touched (so never backed).
            count = min(_HEADER.unpack_from(mem, base)[2], self.capacity)
            raw = mem[base : base + _HEADER_SIZE + count * _ROW.size]
            # Still the current buffer: the worker has not started writing into it again (a
            # write of the next generation goes to the other buffer, and the one after that,
            # into this one, begins only once the next is published).
            if self._generation[0] == generation:
                return decode(raw, generation, self.capacity)
        return None

    def _offset(self, generation: int) -> int:
        return _FIRST_BUFFER + (generation & 1) * self._buffer_size

    @property
    def closed(self) -> bool:
        return self._mem.closed

    def close(self) -> None:
        """Unmap the table; safe to call more than once."""
        if not self._mem.closed:
            self._generation.release()
            self._mem.close()


def decode(raw: bytes, generation: int, capacity: int) -> Listing | None:
    """One buffer's rows; rows that do not hold a valid connection are left out (counted as
    unlisted). None when the buffer is not the one published for `generation`."""
    if len(raw) < _HEADER_SIZE:
        return None
    written, total, count, published = _HEADER.unpack_from(raw, 0)
    if written != generation or not math.isfinite(published):
        return None
    count = min(count, capacity, (len(raw) - _HEADER_SIZE) // _ROW.size)
    rows = []
    for i in range(count):
        row = _row(_ROW.unpack_from(raw, _HEADER_SIZE + i * _ROW.size))
        if row is not None:
            rows.append(row)
    return Listing(max(total, len(rows)), rows, published)


def _row(fields: tuple[float, int, int, int, int, int, int, int, bytes]) -> ConnectionRow | None:
    accepted, requests, streams, port, state, protocol, tls, length, address = fields
    valid = (
        math.isfinite(accepted)
        and state < len(CONNECTION_STATES)
        and protocol < len(PROTOCOLS)
        and tls <= 1
        and length <= _ADDRESS_SIZE
        and NO_PORT <= port <= 0xFFFF
        and requests >= UNKNOWN
        and streams >= UNKNOWN
    )
    if not valid:
        return None
    return ConnectionRow(
        address=address[:length].decode("utf-8", "replace"),
        port=None if port == NO_PORT else port,
        state=CONNECTION_STATES[state],
        protocol=PROTOCOLS[protocol],
        tls=bool(tls),
        accepted=accepted,
        requests=None if requests == UNKNOWN else requests,
        streams=None if streams == UNKNOWN else streams,
    )
