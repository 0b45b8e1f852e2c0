"""Request statistics: per-worker counters in shared memory, summed by the master.

    WorkerStats      one anonymous shared mapping per worker, made by the master before fork.
                     The worker writes it on every request (`begin`, `end`, `record`); the
                     master only reads it. The hot path is a few integer stores into a
                     memoryview at precomputed slots: no system call, no allocation to speak of.
    StatsAggregator  the master's view: live workers' blocks plus the totals of workers that
                     have exited (`retire`), so that counters never go backwards, plus the
                     master's own counters (worker restarts by cause, worker count).
    listen_queue     how many connections wait in a listening TCP socket's accept queue
                     (Linux TCP_INFO); None where the kernel cannot tell.

Every slot is an unsigned 64-bit counter, except the sum of durations, a double. One block is
about 32 KB per worker: a counter per method and status code. This module must never log, never
write a file, never block, and never raise from `record`, `begin` or `end` for any method,
status or duration a worker can pass: a statistic must not cost a request. Formatting for
Prometheus or StatsD lives elsewhere.
"""

from __future__ import annotations

import mmap
import operator
import socket
import struct
import threading
from bisect import bisect_left
from dataclasses import dataclass

# The restart causes are a column of the table of exit reasons; re-exported for the formatters.
from corral.exit_reasons import RESTART_CAUSES as RESTART_CAUSES
from corral.exit_reasons import RestartCause as RestartCause

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other")
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
# Upper bounds (seconds, inclusive) of the latency histogram; one more bucket holds the rest.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Status codes counted one by one: 100..599.
FIRST_CODE = 100
CODE_COUNT = 500

# --- the block's layout, in 8-byte slots ------------------------------------------------------
# Requests are counted per (method, status code), one row of slots per method; the last slot of a
# row takes statuses outside 100..599. Status classes and per-code totals are sums made when the
# master reads, so the worker increments one slot where two tables would cost two.
_ROW = CODE_COUNT + 1
_OUT_OF_RANGE = CODE_COUNT
_BUCKET = len(METHODS) * _ROW  # len(BUCKETS) + 1 slots, not cumulative
_DURATION = _BUCKET + len(BUCKETS) + 1  # a double: seconds
_IN_FLIGHT = _DURATION + 1
# Open connections by engine state (workers/connection.py STATE_NAMES, without "closed"),
# gauges the worker's loop sets once a second.
CONNECTION_STATES = ("head", "body", "queued", "serving", "writing", "idle")
_CONNECTIONS = _IN_FLIGHT + 1
# Requests the worker has started (its max_requests count), a gauge the loop sets once a second:
# known even when no request counters are kept (the control socket's `show workers`).
_SERVED = _CONNECTIONS + len(CONNECTION_STATES)
SLOTS = _SERVED + 1
_SLOT_SIZE = 8

# method -> first slot of its row; anything else is "other".
_METHOD_ROW = {name: i * _ROW for i, name in enumerate(METHODS)}
_OTHER_ROW = _METHOD_ROW["other"]
_MAX_SECONDS = 1e9


class WorkerStats:
    """One worker's counters, in memory the master and that worker share.

    With `threaded`, updates take a lock: a gthread worker records from several threads, and a
    read-modify-write of a slot is several bytecodes. A single-threaded worker skips the lock.
    The lock is created in the master and never taken there, so it is free in every child.
    """

    __slots__ = ("_counts", "_lock", "_mem", "_seconds")
    counting = True  # whether begin/end/record count (see ConnectionGauges)

    def __init__(self, threaded: bool = False) -> None:
        # fileno -1: anonymous memory; MAP_SHARED (the default) keeps it shared across fork.
        self._mem = mmap.mmap(-1, SLOTS * _SLOT_SIZE)
        self._counts = memoryview(self._mem).cast("Q")
        self._seconds = memoryview(self._mem).cast("d")
        self._lock = threading.Lock() if threaded else None

    def begin(self) -> None:
        """A request has started (the in-flight gauge goes up)."""
        lock = self._lock
        if lock:
            lock.acquire()
        try:
            self._counts[_IN_FLIGHT] += 1
        finally:
            if lock:
                lock.release()

    def end(self) -> None:
        """A request counted by `begin` has finished, answered or not."""
        counts = self._counts
        lock = self._lock
        if lock:
            lock.acquire()
        try:
            if counts[_IN_FLIGHT]:
                counts[_IN_FLIGHT] -= 1
        finally:
            if lock:
                lock.release()

    def record(self, method: str, status: int, seconds: float) -> None:
        """Count one answered request: its method, status code and duration in seconds."""
        row = _METHOD_ROW.get(method, _OTHER_ROW)
        code = status - FIRST_CODE
        slot = row + code if 0 <= code < CODE_COUNT else row + _OUT_OF_RANGE
        if not 0.0 <= seconds < _MAX_SECONDS:
            seconds = 0.0  # NaN, negative or absurd: a broken clock must not break the request
        counts = self._counts
        lock = self._lock
        if lock:
            lock.acquire()
        try:
            counts[slot] += 1
            counts[_BUCKET + bisect_left(BUCKETS, seconds)] += 1
            self._seconds[_DURATION] += seconds
        finally:
            if lock:
                lock.release()

    def set_connections(self, counts: list[int]) -> None:
        """The worker's open connections by state (CONNECTION_STATES order). Only the loop
        sets them, by plain stores: no lock."""
        slots = self._counts
        for i, count in enumerate(counts[: len(CONNECTION_STATES)]):
            slots[_CONNECTIONS + i] = count

    def set_served(self, count: int) -> None:
        """Requests the worker has started, as its loop counts them; a plain store."""
        self._counts[_SERVED] = count

    def worker_counts(self) -> WorkerCounts:
        """This worker's own numbers, for a per-worker listing (the control socket)."""
        counts = self._counts
        answered = sum(counts[:_BUCKET]) if self.counting else None
        return WorkerCounts(
            served=int(counts[_SERVED]),
            answered=answered,
            in_flight=int(counts[_IN_FLIGHT]) if self.counting else None,
            connections={
                state: int(counts[_CONNECTIONS + i]) for i, state in enumerate(CONNECTION_STATES)
            },
        )

    def snapshot(self) -> list[int | float]:
        """Every slot, copied at once (the layout is private to this module)."""
        slots: list[int | float] = list(self._counts.tolist())
        slots[_DURATION] = self._seconds[_DURATION]
        return slots

    @property
    def closed(self) -> bool:
        return self._mem.closed

    def close(self) -> None:
        """Unmap the block; safe to call more than once."""
        if not self._mem.closed:
            self._counts.release()
            self._seconds.release()
            self._mem.close()


class ConnectionGauges(WorkerStats):
    """A worker's block when no request counters are wanted (no Prometheus, no StatsD) but the
    control socket lists workers: only the gauges the loop sets once a second (connections by
    state, requests served) are kept; `begin`, `end` and `record` do nothing, so a request
    costs nothing more."""

    __slots__ = ()
    counting = False

    def begin(self) -> None:
        pass

    def end(self) -> None:
        pass

    def record(self, method: str, status: int, seconds: float) -> None:
        pass


@dataclass(frozen=True)
class WorkerCounts:
    """One worker's numbers; `answered` and `in_flight` are None without request counters."""

    served: int
    answered: int | None
    in_flight: int | None
    connections: dict[str, int]


@dataclass(frozen=True)
class Totals:
    """What the master knows at one moment, ready to be formatted."""

    requests: dict[tuple[str, str], int]  # (method, status class) -> count, every pair
    buckets: tuple[tuple[float, int], ...]  # (upper bound, cumulative count), last bound inf
    duration_sum: float  # seconds
    duration_count: int
    in_flight: int
    connections: dict[str, int]  # engine state -> open connections, every state
    status_codes: dict[int, int]  # only codes seen at least once
    workers: int
    restarts: dict[str, int]  # cause -> count, every cause
    served: int = 0  # requests started, living and gone workers (their loops' counts)

    @property
    def requests_total(self) -> int:
        return sum(self.requests.values())


class StatsAggregator:
    """The master's sum over workers, living and gone.

    `add` each WorkerStats when its worker is spawned; `retire` it when the worker has been
    reaped, and only then close it. A block closed without being retired is skipped (its counts
    are lost, the master carries on).
    """

    def __init__(self) -> None:
        self._live: dict[int, WorkerStats] = {}
        self._retired: list[int | float] = [0] * SLOTS
        self._restarts: dict[str, int] = dict.fromkeys(RESTART_CAUSES, 0)

    def add(self, stats: WorkerStats) -> None:
        self._live[id(stats)] = stats

    def retire(self, stats: WorkerStats) -> None:
        """Fold an exited worker's final counts into the totals and stop reading its block."""
        if self._live.pop(id(stats), None) is None or stats.closed:
            return  # never added, or retired already: counting it again would double it
        final = stats.snapshot()
        final[_IN_FLIGHT] = 0  # a worker that died mid-request has nothing in flight any more
        for i in range(len(CONNECTION_STATES)):
            final[_CONNECTIONS + i] = 0  # nor open connections
        self._retired = list(map(operator.add, self._retired, final))

    def count_restart(self, cause: RestartCause) -> None:
        """A worker is being replaced because of `cause` (one of RESTART_CAUSES)."""
        if cause not in self._restarts:
            raise ValueError(f"unknown restart cause {cause!r}")
        self._restarts[cause] += 1

    @property
    def workers(self) -> int:
        """Worker processes alive now (added and not yet retired)."""
        return len(self._live)

    def collect(self) -> Totals:
        slots = self._retired
        for stats in list(self._live.values()):
            if not stats.closed:
                slots = list(map(operator.add, slots, stats.snapshot()))
        return _totals(slots, self.workers, dict(self._restarts))


def _totals(slots: list[int | float], workers: int, restarts: dict[str, int]) -> Totals:
    requests = dict.fromkeys(((m, c) for m in METHODS for c in STATUS_CLASSES), 0)
    per_code = [0] * _ROW
    for m, method in enumerate(METHODS):
        row = slots[m * _ROW : (m + 1) * _ROW]
        for c, cls in enumerate(STATUS_CLASSES):
            requests[method, cls] += int(sum(row[c * 100 : (c + 1) * 100]))
        requests[method, "5xx"] += int(row[_OUT_OF_RANGE])  # a nonsense status is a server error
        per_code = list(map(operator.add, per_code, row))
    cumulative = 0
    buckets = []
    for i, bound in enumerate((*BUCKETS, float("inf"))):
        cumulative += int(slots[_BUCKET + i])
        buckets.append((bound, cumulative))
    return Totals(
        requests=requests,
        buckets=tuple(buckets),
        duration_sum=float(slots[_DURATION]),
        duration_count=cumulative,
        in_flight=int(slots[_IN_FLIGHT]),
        connections={
            state: int(slots[_CONNECTIONS + i]) for i, state in enumerate(CONNECTION_STATES)
        },
        status_codes={FIRST_CODE + i: int(n) for i, n in enumerate(per_code[:CODE_COUNT]) if n},
        workers=workers,
        restarts=restarts,
        served=int(slots[_SERVED]),
    )


# --- listen queue -------------------------------------------------------------------------------

# The head of Linux's struct tcp_info (include/uapi/linux/tcp.h): eight u8 fields (state, ca_state,
# retransmits, probes, backoff, options, the two window-scale nibbles, and a flags byte), then u32
# rto, ato, snd_mss, rcv_mss, unacked, sacked. For a socket in LISTEN, tcp_get_info() reports the
# accept queue's current length in tcpi_unacked and its limit (the backlog) in tcpi_sacked.
_TCP_INFO_HEAD = struct.Struct("=B7x6I")
_TCP_LISTEN = 10  # TCP_LISTEN in the kernel's enum of TCP states


def listen_queue_info(sock: socket.socket) -> tuple[int, int] | None:
    """(connections waiting to be accepted, the queue's limit) for a listening TCP socket.

    None for unix sockets, sockets not listening, systems without TCP_INFO, or any error.
    """
    tcp_info = getattr(socket, "TCP_INFO", None)
    if tcp_info is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, tcp_info, _TCP_INFO_HEAD.size)
    except OSError:
        return None
    if len(raw) < _TCP_INFO_HEAD.size:
        return None
    state, _rto, _ato, _snd_mss, _rcv_mss, unacked, sacked = _TCP_INFO_HEAD.unpack(raw)
    if state != _TCP_LISTEN:
        return None
    return unacked, sacked


def listen_queue(sock: socket.socket) -> int | None:
    """Connections waiting in a listening TCP socket's accept queue, or None (see above)."""
    info = listen_queue_info(sock)
    return None if info is None else info[0]
