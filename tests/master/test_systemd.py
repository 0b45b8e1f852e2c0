"""systemd socket activation and sd_notify, against real unix datagram sockets."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.master.systemd import Notifier, listen_fds, notify_address


def test_listen_fds_for_our_pid() -> None:
    environ = {"LISTEN_PID": "4242", "LISTEN_FDS": "3", "LISTEN_FDNAMES": "a:b:c", "X": "1"}
    assert listen_fds(environ, pid=4242) == [3, 4, 5]
    assert environ == {"X": "1"}


def test_listen_fds_defaults_to_getpid() -> None:
    environ = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1"}
    assert listen_fds(environ) == [3]


def test_listen_fds_keeps_environ_when_asked() -> None:
    environ = {"LISTEN_PID": "7", "LISTEN_FDS": "2"}
    assert listen_fds(environ, pid=7, unset=False) == [3, 4]
    assert environ == {"LISTEN_PID": "7", "LISTEN_FDS": "2"}


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"LISTEN_FDS": "2"},
        {"LISTEN_PID": "8", "LISTEN_FDS": "2"},  # another process's sockets
        {"LISTEN_PID": "7", "LISTEN_FDS": "two"},
        {"LISTEN_PID": "seven", "LISTEN_FDS": "2"},
        {"LISTEN_PID": "7", "LISTEN_FDS": "-1"},
        {"LISTEN_PID": "7"},
    ],
)
def test_listen_fds_not_for_us(environ: dict[str, str]) -> None:
    assert listen_fds(environ, pid=7) == []
    assert "LISTEN_PID" not in environ and "LISTEN_FDS" not in environ


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(10)
    yield sock
    sock.close()


def test_notify_to_path(notify_socket: socket.socket) -> None:
    environ = {"NOTIFY_SOCKET": notify_socket.getsockname()}
    notifier = Notifier(environ)
    assert notifier.enabled
    assert notifier.ready(status="Listening at: http://127.0.0.1:8000\nsecond line")
    assert notify_socket.recv(4096) == (
        b"READY=1\nSTATUS=Listening at: http://127.0.0.1:8000 second line"
    )
    assert notifier.notify("WATCHDOG=1")
    assert notify_socket.recv(4096) == b"WATCHDOG=1"
    assert notifier.stopping()
    assert notify_socket.recv(4096) == b"STOPPING=1"
    assert notifier.status("3 workers")
    assert notify_socket.recv(4096) == b"STATUS=3 workers"
    assert notifier.main_pid(1234)
    assert notify_socket.recv(4096) == b"MAINPID=1234"
    notifier.close()
    assert "NOTIFY_SOCKET" in environ


def test_reloading_sends_monotonic_usec(notify_socket: socket.socket) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": notify_socket.getsockname()})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = notify_socket.recv(4096).decode().split("\n")
    assert first == "RELOADING=1"
    key, value = second.split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after
    notifier.close()


def test_notify_to_abstract_socket() -> None:
    name = f"corral-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        receiver.settimeout(10)
        environ = {"NOTIFY_SOCKET": "@" + name}
        assert notify_address(environ) == b"\0" + name.encode()
        notifier = Notifier(environ, unset=True)
        assert environ == {}
        assert notifier.ready()
        assert receiver.recv(4096) == b"READY=1"
        notifier.close()


@pytest.mark.parametrize("value", [None, "", "@", "relative/path", "vsock:2:1234"])
def test_notify_disabled(value: str | None) -> None:
    environ = {} if value is None else {"NOTIFY_SOCKET": value}
    notifier = Notifier(environ)
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.reloading()


def test_notify_never_raises_when_nobody_listens(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.enabled
    assert not notifier.ready()
    assert not notifier.stopping()
    notifier.close()
