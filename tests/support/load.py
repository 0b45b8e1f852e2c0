"""Continuous client load for reload and shutdown tests: counts answers and failures."""

from __future__ import annotations

import http.client
import threading


class Load:
    """Threads that hammer the server with keep-alive and new-connection requests."""

    def __init__(self, port: int, keepalive: int = 3, fresh: int = 2, path: str = "/load") -> None:
        self.port = port
        self.path = path
        self.ok = 0
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.keepalive_client) for _ in range(keepalive)]
        self.threads += [threading.Thread(target=self.fresh_client) for _ in range(fresh)]

    def record(self, status: int | None, error: str = "") -> None:
        with self.lock:
            if status == 200:
                self.ok += 1
            else:
                self.errors.append(error or f"status {status}")

    def keepalive_client(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        while not self.stopping.is_set():
            try:
                conn.request("GET", self.path)
                resp = conn.getresponse()
                resp.read()
                self.record(resp.status)
                if resp.will_close:
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                self.record(None, f"keep-alive: {exc!r}")
                conn.close()
        conn.close()

    def fresh_client(self) -> None:
        while not self.stopping.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
            try:
                conn.request("GET", self.path, headers={"Connection": "close"})
                resp = conn.getresponse()
                resp.read()
                self.record(resp.status)
            except (OSError, http.client.HTTPException) as exc:
                self.record(None, f"new connection: {exc!r}")
            finally:
                conn.close()

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)
