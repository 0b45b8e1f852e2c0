"""An append-only log file written in batches: any thread adds lines, the worker's loop writes.

With access logging to a plain file, a line per request through the `logging` module would cost
a record object, a handler lock and a system call each. Instead request threads append finished
lines to `pending` (deque.append is atomic: no lock per line), and the worker's loop writes all
that is waiting in one system call before it next waits for events (`Logger.flush`). So a line
is in the file before the process could sleep, and so before it could be killed while idle.

Flushes, reopens and closes take a lock among themselves only; appending never does. This
module never formats lines and never writes to a file it did not open.
"""

from __future__ import annotations

import collections
import threading
from typing import Any


class BatchedFile:
    """An append-only log file (or stdout for "-") and the lines waiting to be written to it.

    Any thread appends to `pending` (deque.append is atomic: no lock per line); `flush` writes
    what is waiting in one system call. The worker's loop flushes before it next waits for
    events, so a line is in the file before the process could sleep, and so before it could
    be killed while idle. Flushes, reopens and closes take a lock among themselves only.
    """

    LIMIT = 512  # lines; whoever appends the 512th writes the batch (should no loop come by)

    def __init__(self, path: str) -> None:
        self.path = path
        self.pending: collections.deque[str] = collections.deque()
        self._lock = threading.Lock()
        self.file = self._open()

    def _open(self) -> Any:
        if self.path == "-":
            return open(1, "ab", buffering=0, closefd=False)
        return open(self.path, "ab", buffering=0)

    def flush(self) -> None:
        with self._lock:
            pending = self.pending
            # Only lock holders take lines, so the count can only grow while we take them.
            batch = [pending.popleft() for _ in range(len(pending))]
            if not batch:
                return
            data = ("\n".join(batch) + "\n").encode("utf-8", "backslashreplace")
            view = memoryview(data)
            try:
                while view:
                    view = view[self.file.write(view) :]
            except (OSError, ValueError):
                pass  # a full disk must not take requests down; the error log says the rest

    def reopen(self) -> None:
        """USR1: logrotate moved the file; write what is pending, then open the path anew."""
        self.flush()
        with self._lock:
            old, self.file = self.file, self._open()
            old.close()

    def close(self) -> None:
        self.flush()
        with self._lock:
            self.file.close()

    def __del__(self) -> None:
        # The master replaces its logger on HUP without closing the old one: its file must
        # not stay open for as long as the master lives.
        if hasattr(self, "file"):  # not when opening it failed
            self.close()
