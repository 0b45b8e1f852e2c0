"""corral.master.loop_server: the non-blocking server core under the control socket and the
metrics endpoint, driven by hand (`handle_ready`, a clock the test moves) with real clients on
a unix socket: answers, deadlines, a client that breaks the protocol, an answer nobody reads,
more clients than it holds, the last reply's half-close, and close."""

from __future__ import annotations

import select
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from corral.master.loop_server import ACCEPTS_PER_CALL, Client, LoopServer
from support.server import wait_for

FIRST_TIMEOUT = 5.0
LINE_TIMEOUT = 10.0
MAX_LINE = 64


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


class Lines:
    """A line protocol for the test: a line comes back upper-cased and moves the client's
    deadline on; `big N` answers N bytes; `quit` is answered last; a line longer than
    MAX_LINE breaks the protocol."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, client: Client[bytearray], data: bytes, now: float) -> bool:
        self.calls += 1
        pending = client.session
        pending += data
        while (end := pending.find(b"\n")) >= 0:
            line = bytes(pending[:end])
            del pending[: end + 1]
            client.deadline = now + LINE_TIMEOUT
            if line.startswith(b"big "):
                client.reply(b"b" * int(line[4:]))
            else:
                client.reply(line.upper() + b"\n", last=line == b"quit")
        return len(pending) <= MAX_LINE


@dataclass
class Harness:
    srv: LoopServer[bytearray]
    clock: Clock
    lines: Lines
    socks: list[socket.socket] = field(default_factory=list)

    def dial(self, count: int = 1) -> list[socket.socket]:
        """`count` clients, connected and accepted."""
        srv, before = self.srv, self.srv.clients
        fresh = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(count)]
        self.socks += fresh
        for sock in fresh:
            sock.settimeout(5)
            sock.connect(srv.sock.getsockname())
        turn_until(srv, lambda: srv.clients >= min(before + count, srv.max_clients))
        return fresh


Make = Callable[..., Harness]


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Make]:
    made: list[Harness] = []

    def build(max_clients: int = 4, max_outbox: int = 1 << 20) -> Harness:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(tmp_path / f"s{len(made)}"))
        listener.listen(64)
        listener.setblocking(False)
        clock, lines = Clock(), Lines()
        srv = LoopServer(
            listener,
            name="Test server",
            open_session=lambda conn: bytearray(),
            received=lines,
            first_timeout=FIRST_TIMEOUT,
            max_clients=max_clients,
            max_outbox=max_outbox,
            clock=clock,
        )
        made.append(Harness(srv, clock, lines))
        return made[-1]

    yield build
    for harness in made:
        harness.srv.close()
        for sock in harness.socks:
            sock.close()


def turn_until(srv: LoopServer[bytearray], condition: Callable[[], object]) -> None:
    def turned() -> object:
        srv.handle_ready()
        return condition()

    wait_for(turned, 5)


def read_exactly(srv: LoopServer[bytearray], sock: socket.socket, size: int) -> bytes:
    got = bytearray()

    def arrived() -> bool:
        if select.select([sock], [], [], 0)[0]:
            got.extend(sock.recv(size - len(got)))
        return len(got) >= size

    turn_until(srv, arrived)
    return bytes(got)


def ended(srv: LoopServer[bytearray], sock: socket.socket) -> bool:
    """Whether the server closed its side (pending bytes are read and thrown away)."""
    srv.handle_ready()
    if not select.select([sock], [], [], 0)[0]:
        return False
    try:
        return sock.recv(1 << 20) == b""
    except ConnectionResetError:
        return True


def test_answers_and_deadlines(make: Make) -> None:
    h = make()
    srv, clock = h.srv, h.clock
    talker, silent = h.dial(2)
    talker.sendall(b"hello\n")
    assert read_exactly(srv, talker, 6) == b"HELLO\n"
    clock.now += FIRST_TIMEOUT + 0.5
    assert wait_for(lambda: ended(srv, silent), 5), "silent past its first deadline"
    assert not ended(srv, talker), "the protocol moved this one's deadline on"
    assert srv.clients == 1
    clock.now += LINE_TIMEOUT
    assert wait_for(lambda: ended(srv, talker), 5)
    assert srv.clients == 0


def test_a_client_that_breaks_the_protocol_is_dropped_alone(make: Make) -> None:
    h = make()
    srv = h.srv
    good, bad = h.dial(2)
    bad.sendall(b"x" * (MAX_LINE + 1))
    assert wait_for(lambda: ended(srv, bad), 5)
    good.sendall(b"still\n")
    assert read_exactly(srv, good, 6) == b"STILL\n"
    assert srv.clients == 1


def test_while_an_answer_waits_nothing_more_is_read(make: Make) -> None:
    h = make()
    srv, lines = h.srv, h.lines
    (sock,) = h.dial()
    size = 900_000  # more than a unix socket buffers, less than the outbox cap
    sock.sendall(b"big %d\n" % size)
    turn_until(srv, lambda: lines.calls == 1)
    sock.sendall(b"next\n")
    for _ in range(20):
        srv.handle_ready()
    assert lines.calls == 1, "the server read on while its answer waited"
    assert read_exactly(srv, sock, size + 5) == b"b" * size + b"NEXT\n"
    assert lines.calls == 2


def test_an_answer_past_the_outbox_cap_drops_the_client(make: Make) -> None:
    h = make(max_outbox=1 << 20)
    srv = h.srv
    hoarder, other = h.dial(2)
    hoarder.sendall(b"big %d\n" % (8 << 20))  # and never read
    assert wait_for(lambda: ended(srv, hoarder), 5)
    other.sendall(b"ok\n")
    assert read_exactly(srv, other, 3) == b"OK\n"


def test_more_clients_than_held_the_nearest_deadline_goes_first(
    make: Make,
) -> None:
    h = make(max_clients=4)
    srv, clock = h.srv, h.clock
    oldest = h.dial(2)
    clock.now += 1
    newer = h.dial(4)
    assert srv.clients == 4
    for sock in oldest:
        assert wait_for(lambda: ended(srv, sock), 5)  # noqa: B023 - waited on at once
    for sock in newer:
        sock.sendall(b"here\n")
        assert read_exactly(srv, sock, 5) == b"HERE\n"


def test_a_burst_is_accepted_a_batch_per_wake_up(make: Make) -> None:
    h = make(max_clients=64)
    srv = h.srv
    count = ACCEPTS_PER_CALL * 2 + 3
    socks = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(count)]
    h.socks += socks
    for sock in socks:
        sock.connect(srv.sock.getsockname())  # all waiting in the backlog
    srv.handle_ready()
    assert srv.clients == ACCEPTS_PER_CALL, "one wake-up accepts one batch, not the flood"
    turn_until(srv, lambda: srv.clients == count)
    socks[-1].sendall(b"last\n")
    assert read_exactly(srv, socks[-1], 5) == b"LAST\n"


def test_the_last_reply_half_closes_and_what_follows_is_discarded(
    make: Make,
) -> None:
    h = make()
    srv, lines = h.srv, h.lines
    (sock,) = h.dial()
    sock.sendall(b"quit\n")
    assert read_exactly(srv, sock, 5) == b"QUIT\n"
    assert sock.recv(1) == b"", "the server's side is shut once the last reply is out"
    sock.sendall(b"more\n")
    for _ in range(5):
        srv.handle_ready()
    assert lines.calls == 1 and srv.clients == 1  # held, reading only to see it close
    sock.close()
    turn_until(srv, lambda: srv.clients == 0)


def test_close_ends_every_client_and_the_listener(make: Make) -> None:
    h = make()
    srv = h.srv
    path = srv.sock.getsockname()
    socks = h.dial(3)
    srv.close()
    assert all(sock.recv(1) == b"" for sock in socks)
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as late,
        pytest.raises(ConnectionRefusedError),
    ):
        late.connect(path)
