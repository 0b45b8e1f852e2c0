"""Binding and describing the listening sockets: TCP (IPv4/IPv6), unix sockets and fd://N.

The master binds; workers inherit the sockets across fork. Errors here are startup errors that
name the address, never tracebacks.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import struct

from corral.addresses import split_host_port
from corral.errors import HaltServer

DEFAULT_PORT = 8000


def parse_address(bind: str) -> tuple[str, object]:
    """Return (kind, address): ("unix", path), ("fd", int) or ("tcp", (host, port))."""
    if bind.startswith("unix:"):
        return "unix", bind[5:]
    if bind.startswith("fd://"):
        return "fd", int(bind[5:])
    return "tcp", split_host_port(bind, DEFAULT_PORT)


def _bind_tcp(address: tuple[str, int], backlog: int, reuse_port: bool) -> socket.socket:
    host, port = address
    infos = socket.getaddrinfo(host or "0.0.0.0", port, type=socket.SOCK_STREAM)
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port and hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def _bind_unix(path: str, backlog: int, umask: int) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise HaltServer(f"Refusing to remove {path!r}: it exists and is not a socket.")
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(umask)
    try:
        sock.bind(path)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    return sock


def _from_fd(fd: int, backlog: int) -> socket.socket:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise HaltServer(f"fd://{fd} is not a usable socket: {exc.strerror}") from None
    sock.listen(backlog)
    return sock


def create_listener(
    bind: str, backlog: int, umask: int = 0, reuse_port: bool = False
) -> socket.socket:
    kind, address = parse_address(bind)
    try:
        if kind == "fd":
            assert isinstance(address, int)
            sock = _from_fd(address, backlog)
        elif kind == "unix":
            assert isinstance(address, str)
            sock = _bind_unix(address, backlog, umask)
        else:
            assert isinstance(address, tuple)
            sock = _bind_tcp(address, backlog, reuse_port)
    except OSError as exc:
        reason = errno.errorcode.get(exc.errno or 0, "") if exc.errno else ""
        raise HaltServer(
            f"Can't listen at {bind}: {exc.strerror or exc} {reason}".rstrip()
        ) from None
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        # Accepted sockets inherit TCP_NODELAY on Linux: responses leave without Nagle delay.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


def create_listeners(
    binds: list[str], backlog: int, umask: int = 0, reuse_port: bool = False
) -> list[socket.socket]:
    listeners: list[socket.socket] = []
    try:
        for bind in binds:
            listeners.append(create_listener(bind, backlog, umask, reuse_port))
    except BaseException:
        for sock in listeners:
            sock.close()
        raise
    return listeners


def activated_listeners(fds: list[int], backlog: int) -> list[socket.socket]:
    """Sockets passed by systemd socket activation (already bound and listening)."""
    listeners = []
    for fd in fds:
        sock = _from_fd(fd, backlog)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        listeners.append(sock)
    return listeners


def listener_url(sock: socket.socket) -> str:
    """How the lifecycle log names a listener: http://HOST:PORT or unix:PATH."""
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        return f"http://[{host}]:{port}"
    return f"http://{host}:{port}"


def refuse_new_connections(sock: socket.socket) -> None:
    """Before a final shutdown: new connection attempts no longer complete on this socket,
    while connections already queued stay there for the workers to take.

    A classic BPF filter that drops every packet stops SYNs from reaching the listening socket
    (clients retry, and are refused once the socket is closed); the backlog shrinks to nothing
    for the packets that got past it. Without this, a connection that completed its handshake
    after the workers had emptied the queue would be reset when the socket closes.
    """
    with contextlib.suppress(OSError):
        sock.listen(0)
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    import ctypes

    drop_all = (ctypes.c_ubyte * 8).from_buffer_copy(struct.pack("HBBI", 0x06, 0, 0, 0))
    program = struct.pack("HL", 1, ctypes.addressof(drop_all))  # struct sock_fprog
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, program)


_SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)


def close_listeners(listeners: list[socket.socket], unlink: bool) -> None:
    for sock in listeners:
        path = sock.getsockname() if sock.family == socket.AF_UNIX else None
        sock.close()
        if unlink and isinstance(path, str) and path:
            with contextlib.suppress(OSError):
                os.unlink(path)
