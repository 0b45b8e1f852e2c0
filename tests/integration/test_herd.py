"""No thundering herd: one new connection wakes one idle worker, not all of them.

Wake-ups are counted by the kernel: every time a worker sleeping in epoll_wait is woken, its
voluntary context-switch count rises, even when epoll finds nothing left to report and puts it
back to sleep without returning to Python. With the listener shared by 8 idle workers and no
EPOLLEXCLUSIVE, each connection would cost about 8 switches.
"""

from __future__ import annotations

from pathlib import Path

from support.client import exchange
from support.server import Server


def context_switches(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


def test_one_wakeup_per_connection_with_eight_idle_workers() -> None:
    connections = 300
    with Server("support.apps:echo", "--timeout", "120", workers=8) as srv:
        exchange(srv.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        pids = srv.worker_pids()
        assert len(pids) == 8
        before = context_switches(pids)
        for i in range(connections):
            reply = exchange(srv.port, f"GET /{i} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
            assert reply.startswith(b"HTTP/1.1 200")
        switches = context_switches(pids) - before
    per_connection = switches / connections
    print(f"{connections} connections, 8 idle workers: {per_connection:.2f} wake-ups each")
    # One worker wakes for the connection (and may sleep once more mid-request); a herd
    # would wake all eight.
    assert per_connection < 3
