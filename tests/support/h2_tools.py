"""Running the HTTP/2 clients nobody here wrote (curl, nghttp, h2load) and reading what they
print, for the tests in tests/integration/test_h2_*.py.

What this module must never do: hide a client's failure (each runner asserts on its exit
status and shows the client's own output), or reach beyond loopback.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import subprocess
from pathlib import Path

from support.client import read_response
from support.h2_servers import need
from support.server import Server

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # RFC 9113 §6.5, no parameters


def url(srv: Server, path: str = "/", tls: bool = False) -> str:
    return f"{'https' if tls else 'http'}://127.0.0.1:{srv.port}{path}"


def run(*cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def curl(tmp_path: Path, *args: str) -> tuple[list[str], list[bytes], str]:
    """curl's `%{http_version} %{response_code}` per URL, each URL's body, and its stderr
    (with -v, the HTTP/1.1 lines of an upgrade)."""
    urls = [a for a in args if a.startswith("http")]
    outs = [tmp_path / f"body-{n}" for n in range(len(urls))]
    out_args = [x for out in outs for x in ("-o", str(out))]
    result = run(
        need("curl"), "-sS", "--max-time", "30", "-w", "%{http_version} %{response_code}\n",
        *out_args, *args,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.split("\n")[:-1], [out.read_bytes() for out in outs], result.stderr


def upload_file(tmp_path: Path, size: int = 256 * 1024) -> Path:
    path = tmp_path / "upload.bin"
    path.write_bytes(hashlib.shake_256(b"upload").digest(size))
    return path


def nghttp(*args: str) -> tuple[dict[int, int], str]:
    """Run `nghttp -nv`; the :status of each stream it received, and its frame log."""
    if "--timeout" not in args:
        args = ("--timeout", "20", *args)
    result = run(need("nghttp"), "-nv", *args)
    statuses = {
        int(stream): int(status)
        for stream, status in re.findall(r"recv \(stream_id=(\d+)\) :status: (\d+)", result.stdout)
    }
    assert result.returncode == 0, (
        f"nghttp exited {result.returncode} ({result.stderr.strip()}); statuses by stream: "
        f"{statuses}; the end of its frame log:\n{result.stdout[-4000:]}"
    )
    return statuses, result.stdout


def ended_streams(log: str) -> set[int]:
    """Streams whose END_STREAM the client received."""
    frames = re.findall(r"recv \w+ frame <[^>]*flags=0x(\w+), stream_id=(\d+)>", log)
    return {int(stream) for flags, stream in frames if int(flags, 16) & 0x1}


def several(srv: Server, tls: bool = False) -> list[str]:
    return [url(srv, path, tls) for path in ("/", "/peer", "/?n=3", "/missing")]


def h2load_counts(out: str) -> list[int]:
    """total, started, done, succeeded, failed, errored, timeout, from h2load's summary."""
    counts = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        out,
    )
    assert counts is not None, out
    return [int(n) for n in counts.groups()]


def http1_peer(sock: socket.socket) -> tuple[int, dict[str, object]]:
    sock.sendall(b"GET /peer HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    resp, _ = read_response(sock)
    return resp.status, json.loads(resp.body)
