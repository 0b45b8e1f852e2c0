"""The control socket's pieces in one process: the framing (fed whole, byte by byte and in
random chunks), the server driven through `handle_ready` with a clock the test moves, the
command table, the default paths and the tables `corral ctl` prints."""

from __future__ import annotations

import json
import os
import random
import socket
import stat
import struct
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from corral.control import tables
from corral.control.protocol import (
    GUNICORN_SOCKET_NAME,
    FrameError,
    FrameReader,
    default_socket_path,
    encode,
)
from corral.master import control_commands
from corral.master.control import CommandError, ControlServer, SocketInUse
from support.server import wait_for

MESSAGES = [
    {"id": 1, "command": "show", "args": ["workers"]},
    {"id": 2, "command": "worker add 2", "args": []},
    {"id": 3, "command": "héllo ✓", "args": ["x" * 5000]},
]
STREAM = b"".join(encode(m) for m in MESSAGES)


def feed_in(chunks: list[bytes]) -> list[dict[str, Any]]:
    reader = FrameReader()
    out: list[dict[str, Any]] = []
    for chunk in chunks:
        out += reader.feed(chunk)
    assert not reader.pending
    return out


def test_frames_whole_bytewise_and_in_random_chunks() -> None:
    assert feed_in([STREAM]) == MESSAGES
    assert feed_in([STREAM[i : i + 1] for i in range(len(STREAM))]) == MESSAGES
    rng = random.Random(13)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(STREAM)), 6))
        chunks = [STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(STREAM)], strict=True)]
        assert feed_in(chunks) == MESSAGES


@pytest.mark.parametrize(
    "frame",
    [
        struct.pack(">I", (1 << 20) + 1),  # refused from its length, before any payload
        struct.pack(">I", 3) + b"\xff\xfe{",
        struct.pack(">I", 8) + b"not json",
        struct.pack(">I", 7) + b"[1,2,3]",
        struct.pack(">I", 2) + b"42",
    ],
)
def test_broken_frames_raise(frame: bytes) -> None:
    with pytest.raises(FrameError):
        FrameReader().feed(frame)


def test_default_paths(tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir()
    env = {"XDG_RUNTIME_DIR": str(runtime), "HOME": str(tmp_path)}
    assert default_socket_path(env) == str(runtime / "corral.ctl")
    assert default_socket_path(env, GUNICORN_SOCKET_NAME) == str(runtime / "gunicorn.ctl")
    env["XDG_RUNTIME_DIR"] = str(tmp_path / "missing")
    assert default_socket_path(env) == str(tmp_path / ".corral" / "corral.ctl")
    assert default_socket_path(env, GUNICORN_SOCKET_NAME) == str(
        tmp_path / ".gunicorn" / "gunicorn.ctl"
    )


# ---- the server, driven by hand ------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """The dispatch callable: records what it is asked and answers from a small table."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], bool]] = []

    def __call__(self, words: list[str], privileged: bool) -> dict[str, Any]:
        self.calls.append((words, privileged))
        if words[0] == "fail":
            raise CommandError("no such thing")
        if words[0] == "crash":
            raise RuntimeError("bug")
        return {"words": words}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[ControlServer, Clock, Recorder]]:
    clock, recorder = Clock(), Recorder()
    srv = ControlServer(str(tmp_path / "sub" / "c.ctl"), 0o640, recorder, clock=clock)
    try:
        yield srv, clock, recorder
    finally:
        srv.close()


def connect(srv: ControlServer) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(srv.path)
    sock.settimeout(5)
    return sock


def answer(srv: ControlServer, sock: socket.socket) -> dict[str, Any]:
    reader = FrameReader()
    got: list[dict[str, Any]] = []

    def arrived() -> bool:
        srv.handle_ready()
        sock.setblocking(False)
        try:
            got.extend(reader.feed(sock.recv(65536)))
        except BlockingIOError:
            pass
        finally:
            sock.setblocking(True)
        return bool(got)

    wait_for(arrived, 5, "an answer")
    return got[0]


def is_closed(srv: ControlServer, sock: socket.socket) -> bool:
    srv.handle_ready()
    sock.setblocking(False)
    try:
        return sock.recv(10) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.setblocking(True)


def test_socket_mode_directory_and_answers(server: tuple[ControlServer, Clock, Recorder]) -> None:
    srv, _, recorder = server
    assert stat.S_IMODE(os.stat(srv.path).st_mode) == 0o640
    assert stat.S_IMODE(os.stat(os.path.dirname(srv.path)).st_mode) == 0o700
    with connect(srv) as sock:
        sock.sendall(encode({"id": 9, "command": "show 'two words'", "args": [3]}))
        assert answer(srv, sock) == {
            "id": 9,
            "status": "ok",
            "data": {"words": ["show", "two words", "3"]},
        }
        sock.sendall(encode({"id": 10, "command": "fail"}))
        assert answer(srv, sock) == {"id": 10, "status": "error", "error": "no such thing"}
        sock.sendall(encode({"id": 11, "command": "crash"}))
        assert answer(srv, sock)["error"] == "Command failed: bug"
        sock.sendall(encode({"id": 12, "command": ["show"]}))
        assert answer(srv, sock)["status"] == "error"
        sock.sendall(encode({"id": 13, "command": "  "}))
        assert answer(srv, sock)["error"] == "Empty command"
        sock.sendall(encode({"command": "say 'unbalanced"}))
        assert answer(srv, sock)["id"] == 0
    assert recorder.calls[0] == (["show", "two words", "3"], True)  # we are the owner


def test_deadlines(server: tuple[ControlServer, Clock, Recorder]) -> None:
    srv, clock, _ = server
    silent, chatty, partial = connect(srv), connect(srv), connect(srv)
    srv.handle_ready()
    chatty.sendall(encode({"id": 1, "command": "hello"}))
    assert answer(srv, chatty)["status"] == "ok"
    partial.sendall(encode({"id": 1, "command": "hello"})[:6])
    srv.handle_ready()
    clock.now += 5.5
    assert wait_for(lambda: is_closed(srv, silent), 5)  # nothing sent in 5 s
    assert wait_for(lambda: is_closed(srv, partial), 5)  # a frame begun and not finished
    assert not is_closed(srv, chatty)  # a session between commands stays
    chatty.sendall(encode({"id": 2, "command": "again"}))
    assert answer(srv, chatty)["id"] == 2
    clock.now += 301
    assert wait_for(lambda: is_closed(srv, chatty), 5)
    for sock in (silent, chatty, partial):
        sock.close()


def test_a_bad_frame_closes_only_its_client(server: tuple[ControlServer, Clock, Recorder]) -> None:
    srv, _, _ = server
    good, bad = connect(srv), connect(srv)
    bad.sendall(struct.pack(">I", 0xFFFFFFFF))
    assert wait_for(lambda: is_closed(srv, bad), 5)
    good.sendall(encode({"id": 1, "command": "still here"}))
    assert answer(srv, good)["status"] == "ok"
    good.close()
    bad.close()


def test_in_use_stale_and_foreign_paths(tmp_path: Path) -> None:
    path = str(tmp_path / "c.ctl")
    first = ControlServer(path, 0o600, Recorder())
    try:
        with pytest.raises(SocketInUse):
            ControlServer(path, 0o600, Recorder())
    finally:
        first.close()
    assert not os.path.exists(path)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)  # bound, never listening: nobody answers
    stale.close()
    second = ControlServer(path, 0o600, Recorder())
    # Someone replaces the path: closing must leave theirs alone.
    os.unlink(path)
    Path(path).write_text("not a socket")
    second.close()
    assert Path(path).read_text() == "not a socket"
    with pytest.raises(OSError, match="not a socket"):
        ControlServer(path, 0o600, Recorder())


# ---- the command table ---------------------------------------------------------------------


def fake_arbiter() -> Any:
    arbiter = SimpleNamespace(num_workers=2, signals=[], workers={}, killed=[])
    arbiter.queue_signal = arbiter.signals.append
    arbiter.kill_worker = lambda pid, sig: arbiter.killed.append((pid, sig))
    return arbiter


def test_commands_change_the_arbiter_only_for_the_owner() -> None:
    arbiter = fake_arbiter()
    run = control_commands.dispatch
    assert run(arbiter, ["worker", "add", "3"], True) == {"added": 3, "previous": 2, "total": 5}
    assert run(arbiter, ["worker", "remove", "10"], True) == {
        "removed": 4,
        "previous": 5,
        "total": 1,
    }
    assert run(arbiter, ["WORKER", "kill", "42"], True)["success"] is False
    arbiter.workers[42] = object()
    assert run(arbiter, ["worker", "kill", "42"], True) == {"success": True, "killed": 42}
    assert arbiter.killed == [(42, 15)]
    assert run(arbiter, ["shutdown", "quick"], True)["mode"] == "quick"
    assert run(arbiter, ["reload"], True) == {"status": "reloading"}
    assert run(arbiter, ["reopen"], True) == {"status": "reopening"}
    assert run(arbiter, ["shutdown"], True) == {"status": "shutting_down", "mode": "graceful"}
    assert arbiter.signals == [2, 1, 10, 15]
    assert "show workers" in run(arbiter, ["help"], False)["commands"]
    for words in (["worker", "add"], ["reload"], ["shutdown"], ["dirty", "add"]):
        with pytest.raises(CommandError, match="Permission denied"):
            run(arbiter, words, False)
    assert arbiter.num_workers == 1 and arbiter.signals == [2, 1, 10, 15]


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["frobnicate"], "Unknown command: frobnicate"),
        (["show"], "Missing show target"),
        (["show", "everything"], "Unknown show target: everything"),
        (["worker"], "Missing worker target"),
        (["worker", "add", "many"], "Invalid argument"),
        (["worker", "kill"], "Missing PID"),
        (["shutdown", "now"], "Unknown shutdown mode"),
        (["dirty", "add"], "no dirty workers"),
    ],
)
def test_command_errors(words: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        control_commands.dispatch(fake_arbiter(), words, True)


# ---- tables ---------------------------------------------------------------------------------


def test_tables_for_corral_and_gunicorn_answers() -> None:
    ours = {
        "workers": [
            {
                "pid": 11,
                "age": 1,
                "state": "serving",
                "uptime": 3725.0,
                "requests": 10,
                "in_flight": 2,
                "rss": 40 << 20,
                "last_heartbeat": 0.25,
            }
        ],
        "count": 1,
    }
    lines = tables.render("show  WORKERS", ours).splitlines()
    assert lines[1].split() == [
        "11",
        "1",
        "serving",
        "1h02m",
        "10",
        "2",
        "40.0",
        "MiB",
        "0.2s",
        "ago",
    ]
    theirs = {"workers": [{"pid": 7, "age": 2, "booted": True, "last_heartbeat": 1.5}], "count": 1}
    assert tables.render("show workers", theirs).splitlines()[1].split() == [
        "7", "2", "serving", "-", "-", "-", "-", "1.5s", "ago",
    ]  # fmt: skip
    assert tables.render("worker add", {}) == "OK"
    assert json.loads(tables.render("worker add", {"added": 1})) == {"added": 1}
    assert json.loads(tables.render("show workers", {"workers": "odd"})) == {"workers": "odd"}


def test_show_config_hides_env_values_from_other_users() -> None:
    from corral.config import Settings

    arbiter = fake_arbiter()
    arbiter.settings = Settings(raw_env=["SECRET_KEY=hunter2", "MODE=prod"], workers=3)
    owner = control_commands.dispatch(arbiter, ["show", "config"], True)
    other = control_commands.dispatch(arbiter, ["show", "config"], False)
    assert owner["raw_env"] == ["SECRET_KEY=hunter2", "MODE=prod"]
    assert other["raw_env"] == ["SECRET_KEY=***", "MODE=***"]
    assert owner["workers"] == other["workers"] == 3
    assert owner["post_fork"].startswith("<") and json.dumps(owner)  # all of it is JSON
