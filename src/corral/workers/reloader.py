"""Restart-on-change for `--reload`: a thread that watches source files and reports the first edit.

The watched files are the source file of every module in sys.modules (rescanned every
`interval` seconds, so modules imported later are picked up) plus the `--reload-extra-file`
files. Two engines notice changes:

  poll     stats every watched file each interval and compares (mtime, size, inode)
  inotify  asks the kernel (inotify through ctypes on libc) for events in the directories
           holding watched files, and keeps only events that name a watched file

A file that disappears is not a change by itself (editors that save by delete-and-rewrite
would otherwise trigger a restart while the file is missing); its reappearance is.

This module must never restart, signal or exit anything itself: it calls `on_change(path)` once
and stops. It never imports application code and never writes to the watched files.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import select
import struct
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Protocol

# <sys/inotify.h>
IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE_SELF = 0x00000400
IN_Q_OVERFLOW = 0x00004000
_IN_CLOEXEC = os.O_CLOEXEC
_IN_NONBLOCK = os.O_NONBLOCK
_WATCH_MASK = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE_SELF
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then `len` bytes of NUL-padded name

Signature = tuple[int, int, int]


@functools.cache
def _inotify_libc() -> ctypes.CDLL | None:
    """The C library when it offers inotify, with argument types declared; else None."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        init, add = libc.inotify_init1, libc.inotify_add_watch
    except (OSError, AttributeError):
        return None
    init.argtypes, init.restype = [ctypes.c_int], ctypes.c_int
    add.argtypes, add.restype = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32], ctypes.c_int
    return libc


def available_engines() -> list[str]:
    """The engines this system supports, preferred first; `auto` picks the first."""
    return ["inotify", "poll"] if _inotify_libc() is not None else ["poll"]


def _signature(path: str) -> Signature | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class Watchlist:
    """The files to watch, as real paths mapped to the path they were named by."""

    def __init__(self, extra_files: Iterable[str]) -> None:
        self.files: dict[str, str] = {}
        self._named: set[str] = set()
        self._extra = [os.path.abspath(f) for f in extra_files]

    def refresh(self) -> list[str]:
        """Add the files of newly imported modules (and, the first time, the extra files);
        return the real paths added."""
        # dict.copy() is atomic under the GIL, unlike iterating sys.modules while imports run.
        files = (getattr(module, "__file__", None) for module in sys.modules.copy().values())
        named = self._extra + [f for f in files if isinstance(f, str)]
        added = []
        for name in named:
            if name in self._named:
                continue
            self._named.add(name)
            real = os.path.realpath(name)
            if real not in self.files:
                self.files[real] = name
                added.append(real)
        return added


def _first_changed(signatures: dict[str, Signature | None], watchlist: Watchlist) -> str | None:
    """The first file (as named) whose signature differs from the one recorded, if any."""
    for path, old in signatures.items():
        new = _signature(path)
        if new is not None and new != old:
            return watchlist.files[path]
    return None


class Engine(Protocol):
    def add(self, paths: list[str]) -> None: ...
    def wait(self, timeout: float) -> str | None: ...
    def wake(self) -> None: ...
    def close(self) -> None: ...


class PollEngine:
    """Compares each watched file's (mtime, size, inode) with the last one seen."""

    def __init__(self, watchlist: Watchlist) -> None:
        self._watchlist = watchlist
        self._signatures: dict[str, Signature | None] = {}
        self._woken = threading.Event()

    def add(self, paths: list[str]) -> None:
        for path in paths:
            self._signatures[path] = _signature(path)

    def wait(self, timeout: float) -> str | None:
        if self._woken.wait(timeout):
            return None
        return _first_changed(self._signatures, self._watchlist)

    def wake(self) -> None:
        self._woken.set()

    def close(self) -> None:
        pass


class InotifyEngine:
    """Watches the directories of watched files; the kernel queues the events between reads."""

    def __init__(self, watchlist: Watchlist) -> None:
        libc = _inotify_libc()
        if libc is None:
            raise OSError("inotify is not available from the C library")
        self._libc = libc
        self._watchlist = watchlist
        self._fd = self._check(libc.inotify_init1(_IN_CLOEXEC | _IN_NONBLOCK))
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._lock = threading.Lock()
        self._poller = select.poll()
        self._poller.register(self._fd, select.POLLIN)
        self._poller.register(self._wake_r, select.POLLIN)
        self._directories: dict[int, str] = {}  # watch descriptor -> directory
        self._watched_directories: set[str] = set()
        # Kept only to find the changed file when the kernel's event queue overflowed.
        self._signatures: dict[str, Signature | None] = {}

    @staticmethod
    def _check(result: int) -> int:
        if result < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))
        return result

    def add(self, paths: list[str]) -> None:
        for path in paths:
            self._signatures[path] = _signature(path)
            directory = os.path.dirname(path)
            if directory in self._watched_directories:
                continue
            wd = self._libc.inotify_add_watch(self._fd, os.fsencode(directory), _WATCH_MASK)
            # Below 0: the directory is missing or the user's watch limit is reached; the
            # files there stay unwatched by this engine.
            if wd >= 0:
                self._directories[wd] = directory
                self._watched_directories.add(directory)

    def wait(self, timeout: float) -> str | None:
        ready = {fd for fd, _ in self._poller.poll(timeout * 1000)}
        if self._wake_r in ready or self._fd not in ready:
            return None
        try:
            data = os.read(self._fd, 64 * 1024)
        except BlockingIOError:
            return None
        return self._match(data)

    def _match(self, data: bytes) -> str | None:
        files = self._watchlist.files
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            name = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
            offset += _EVENT.size + length
            if mask & IN_Q_OVERFLOW:  # events were lost: compare the files themselves
                changed = _first_changed(self._signatures, self._watchlist)
                if changed is not None:
                    return changed
                continue
            directory = self._directories.get(wd)
            if directory is None:
                continue
            if mask & IN_DELETE_SELF:  # the directory holding watched files is gone
                gone = (n for p, n in files.items() if os.path.dirname(p) == directory)
                return next(gone, None) or directory
            path = os.path.join(directory, os.fsdecode(name))
            if path in files:
                return files[path]
        return None

    def wake(self) -> None:
        # The lock keeps a wake from writing to a descriptor number close() released and the
        # process reused for something else.
        with self._lock:
            if self._fd >= 0:
                with contextlib.suppress(BlockingIOError):  # already woken
                    os.write(self._wake_w, b"x")

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                for fd in (self._fd, self._wake_r, self._wake_w):
                    os.close(fd)
                self._fd = -1


ENGINES: dict[str, Callable[[Watchlist], Engine]] = {
    "poll": PollEngine,
    "inotify": InotifyEngine,
}


class Reloader(threading.Thread):
    """Calls `on_change(path)` once, from this thread, when a watched file changes, then ends.

    Files are first read in `start()`, in the caller's thread: a change made after `start()`
    returns is seen. `engine` is `auto`, `poll` or `inotify`; an unknown or unavailable engine
    raises ValueError here, so the caller can report it as a configuration error.
    """

    def __init__(
        self,
        on_change: Callable[[str], None],
        extra_files: Iterable[str] = (),
        interval: float = 1.0,
        engine: str = "auto",
    ) -> None:
        super().__init__(name="corral-reloader", daemon=True)
        available = available_engines()
        self.engine = available[0] if engine == "auto" else engine
        if self.engine not in available:
            known = ", ".join(["auto", *ENGINES])
            raise ValueError(
                f"reload engine {engine!r} is not available here (known: {known}; "
                f"available: {', '.join(available)})"
            )
        self.on_change = on_change
        self.interval = interval
        self._watchlist = Watchlist(extra_files)
        self._engine = ENGINES[self.engine](self._watchlist)
        self._stopped = threading.Event()

    def is_watching(self, path: str) -> bool:
        return os.path.realpath(path) in self._watchlist.files

    def start(self) -> None:
        self._engine.add(self._watchlist.refresh())
        super().start()

    def run(self) -> None:
        try:
            while not self._stopped.is_set():
                changed = self._engine.wait(self.interval)
                if changed is not None and not self._stopped.is_set():
                    self.on_change(changed)
                    return
                self._engine.add(self._watchlist.refresh())
        finally:
            self._engine.close()

    def stop(self) -> None:
        """End the thread without reporting anything (join() waits for it); release the
        engine's descriptors when the thread was never started."""
        self._stopped.set()
        if self.ident is None:
            self._engine.close()
        else:
            self._engine.wake()
