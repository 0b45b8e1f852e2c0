"""Engine limits through a real server: worker_connections without a busy loop, and a request
thread stuck past `timeout` reported with its stack and its worker replaced."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time

from support.client import connect, read_response
from support.server import Server, wait_for

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def get(port: int, path: str) -> int:
    with connect(port, timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        return read_response(sock)[0].status


def test_at_worker_connections_the_loop_sleeps_and_resumes() -> None:
    args = ["-k", "gthread", "--threads", "2", "--worker-connections", "2", "--timeout", "30"]
    with Server("support.apps:echo", *args) as srv:
        (pid,) = srv.worker_pids()
        held = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(2)]
        for sock in held:  # both become established connections of the worker
            sock.sendall(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
            assert read_response(sock)[0].status == 200
        waiting = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        waiting.sendall(b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n")
        before = cpu_seconds(pid)
        time.sleep(1.5)  # a measurement window, not synchronisation
        used = cpu_seconds(pid) - before
        # The listener stays ready while the worker is full; watching it spun at 100%.
        assert used < 0.5, f"worker used {used:.2f} s of CPU in 1.5 s while full"
        held[0].close()
        assert read_response(waiting)[0].status == 200
        waiting.close()
        held[1].close()


def test_stuck_request_thread_is_reported_and_worker_replaced() -> None:
    args = ["-k", "gthread", "--threads", "4", "--timeout", "2", "--graceful-timeout", "30"]
    with Server("support.apps:echo", *args) as srv:
        (first,) = srv.worker_pids()
        stuck = threading.Thread(target=lambda: _ignore_errors(srv.port, "/slow?60"), daemon=True)
        stuck.start()
        # Other requests go on while one thread is stuck.
        for _ in range(20):
            assert get(srv.port, "/ok") == 200
        srv.wait_log("stack of its thread", timeout=15)
        log = srv.log()
        assert "_slow" in log.partition("stack of its thread")[2], log[-3000:]
        # The worker exits and is replaced long before graceful_timeout or the hung request.
        wait_for(lambda: first not in srv.worker_pids() and srv.worker_pids(), 15, "replacement")
        assert get(srv.port, "/after") == 200
        assert srv.log().count("stack of its thread") == 1


def _ignore_errors(port: int, path: str) -> None:
    with contextlib.suppress(OSError):
        get(port, path)


def test_a_burst_spreads_over_the_workers_by_free_threads() -> None:
    """50 slow requests at once on 2 workers x 25 threads: a worker takes new connections only
    as far as it has free threads, so neither serves more than 25 of them (one used to take up
    to 16 per wake-up whatever its threads were doing, and the excess waited a whole request)."""
    import json

    args = ["-w", "2", "-k", "gthread", "--threads", "25"]
    with Server("support.apps:echo", *args) as srv:
        srv.wait_booted(2)
        pids: list[int] = []

        def one() -> None:
            with connect(srv.port, timeout=20) as sock:
                sock.sendall(b"GET /pid?0.5 HTTP/1.1\r\nHost: a\r\n\r\n")
                pids.append(json.loads(read_response(sock)[0].body)["pid"])

        clients = [threading.Thread(target=one) for _ in range(50)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(30)
    assert len(pids) == 50
    counts = sorted(pids.count(pid) for pid in set(pids))
    assert max(counts) <= 25, counts


def test_request_body_timeout_is_a_total_deadline() -> None:
    """A client that keeps trickling (so never idle for `timeout`) still gets its 408 once
    --request-body-timeout has passed."""
    args = ["-k", "gthread", "--threads", "2", "--request-body-timeout", "2", "--timeout", "30"]
    with Server("support.apps:echo", *args) as srv, connect(srv.port, timeout=20) as sock:
        sock.sendall(b"POST /echo-body HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n")
        started = time.monotonic()
        answer = b""
        sock.settimeout(0.3)
        while not answer and time.monotonic() - started < 15:
            with contextlib.suppress(OSError):
                sock.sendall(b"x")  # one byte at a time, never idle for long
            with contextlib.suppress(TimeoutError):
                answer = sock.recv(100)
        assert answer.startswith(b"HTTP/1.1 408 "), answer


def server_socket_inode(server_port: int, client_port: int) -> str:
    """The inode of the server's side of a loopback connection (from /proc/net/tcp)."""
    with open("/proc/net/tcp") as fh:
        for line in fh.readlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if (
                int(local.split(":")[1], 16) == server_port
                and int(remote.split(":")[1], 16) == client_port
            ):
                return fields[9]
    raise AssertionError("connection not found in /proc/net/tcp")


def holds_socket(pid: int, inode: str) -> bool:
    target = f"socket:[{inode}]"
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{name}") == target:
                return True
    return False


def test_response_write_timeout_is_a_total_deadline() -> None:
    """A reader that drains a little now and then (never idle for `timeout`) is cut off once
    --response-write-timeout has passed: the worker lets go of the connection (the client only
    sees the end after reading what the kernel had already buffered)."""
    args = ["-k", "gthread", "--threads", "2", "--response-write-timeout", "2"]
    with Server("reliability.apps:app", *args) as srv:
        (pid,) = srv.worker_pids()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", srv.port))
        with sock:
            sock.sendall(b"GET /bytes?50000000 HTTP/1.1\r\nHost: a\r\n\r\n")
            sock.recv(1024)
            inode = server_socket_inode(srv.port, sock.getsockname()[1])
            assert holds_socket(pid, inode)  # the worker is writing the response

            def released() -> bool:
                sock.recv(1024)  # a slow reader: the connection never goes idle
                return not holds_socket(pid, inode)

            wait_for(released, 15, "the worker to drop the slow reader")
