"""systemd: socket activation (LISTEN_FDS on fd 3) and sd_notify READY/RELOADING/STOPPING."""

from __future__ import annotations

import http.client
import signal
import socket
import sys
from pathlib import Path

from support.server import Server, wait_for


def receive_all(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


def test_socket_activation_and_notify(tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.setblocking(False)
    fd = listener.fileno()
    # As systemd does it: the socket on fd 3, LISTEN_PID naming the process it is meant for.
    activate = (
        "import os, sys; os.dup2(int(sys.argv[1]), 3); os.environ['LISTEN_FDS'] = '1'; "
        "os.environ['LISTEN_PID'] = str(os.getpid()); os.execv(sys.argv[2], sys.argv[2:])"
    )
    wrapper = [sys.executable, "-c", activate, str(fd)]
    srv = Server(
        "support.apps:echo",
        "-b",
        "127.0.0.1:1",  # ignored: the activated socket replaces --bind
        workers=2,
        bind=False,
        wrapper=wrapper,
        env={"NOTIFY_SOCKET": str(notify_path)},
    )
    srv.extra_fds = [fd]  # type: ignore[attr-defined]
    seen: list[str] = []
    try:
        with srv:
            srv.wait_log(f"Listening at: http://127.0.0.1:{port}")
            wait_for(lambda: seen.extend(receive_all(notify)) or any("READY=1" in m for m in seen))
            assert "Booting worker" in srv.log()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/activated")
            assert conn.getresponse().status == 200
            conn.close()
            srv.signal(signal.SIGHUP)
            wait_for(
                lambda: seen.extend(receive_all(notify)) or any("RELOADING=1" in m for m in seen)
            )
            wait_for(
                lambda: seen.extend(receive_all(notify)) or sum("READY=1" in m for m in seen) == 2
            )
            srv.signal(signal.SIGTERM)
            assert srv.wait_exit() == 0
            wait_for(
                lambda: seen.extend(receive_all(notify)) or any("STOPPING=1" in m for m in seen)
            )
    finally:
        listener.close()
        notify.close()
    ready_index = next(i for i, m in enumerate(seen) if "READY=1" in m)
    assert "STATUS=Serving with 2 workers" in seen[ready_index]
