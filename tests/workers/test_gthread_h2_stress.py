"""HTTP/2 on the gthread worker under load: h2load (nghttp2's load generator) with many
connections of many concurrent streams, run again and again against one server, plus uploads,
large responses and resets from many clients at once. Every request must succeed, and the
server must still answer normally afterwards with nothing in its log but routine lines.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from support.gthread_h2_client import Client
from support.server import Server

APP = "support.gthread_h2_apps:app"
H2_ARGS = ("-k", "gthread", "--http-protocols", "h2,h1", "--http2-cleartext", "both")

H2LOAD = shutil.which("h2load")
pytestmark = pytest.mark.skipif(H2LOAD is None, reason="needs h2load")

_SUMMARY = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed,"
    r" (\d+) errored"
)


def h2load(*args: str) -> tuple[int, int, int]:
    """(succeeded, failed, errored) of one h2load run."""
    out = subprocess.run([str(H2LOAD), *args], capture_output=True, text=True, timeout=120)
    match = _SUMMARY.search(out.stdout)
    assert match is not None, out.stdout + out.stderr
    _, _, _, succeeded, failed, errored = map(int, match.groups())
    return succeeded, failed, errored


def assert_clean(log: str) -> None:
    for word in ("Traceback", "Unexpected error", "ERROR", "CRITICAL"):
        assert word not in log, log


@pytest.mark.parametrize("threads", [8, 1])
def test_h2load_many_times(threads: int) -> None:
    with Server(APP, *H2_ARGS, "--threads", str(threads), workers=2) as srv:
        url = f"http://127.0.0.1:{srv.port}/"
        for _ in range(6):
            assert h2load("-n", "5000", "-c", "8", "-m", "16", url) == (5000, 0, 0)
        # Larger responses and uploads through the same machinery.
        assert h2load("-n", "400", "-c", "4", "-m", "8", url + "big?n=200000") == (400, 0, 0)
        assert h2load("-n", "1000", "-c", "4", "-m", "16", url + "sleep?ms=2") == (1000, 0, 0)
        with Client(srv.port) as client:
            assert client.response(client.request("/")) == (200, b"hello over HTTP/2")
        assert_clean(srv.log())


def test_uploads_and_windows_from_many_clients(tmp_path: Path) -> None:
    body = os.urandom(300000)
    data = tmp_path / "body"
    data.write_bytes(body)
    digest = hashlib.sha256(body).hexdigest()
    errors: list[BaseException] = []
    with Server(APP, *H2_ARGS, "--threads", "8") as srv:
        url = f"http://127.0.0.1:{srv.port}/upload"
        assert h2load("-n", "400", "-c", "4", "-m", "8", "-d", str(data), url) == (400, 0, 0)

        def client_run(seed: int) -> None:
            try:
                with Client(srv.port, window=1 << 16) as client:
                    for round_ in range(3):
                        sids = [client.request("/upload", "POST", body) for _ in range(4)]
                        big = client.request("/big?n=500000")
                        reset = client.request("/endless?name=stress")
                        for sid in sids:
                            status, answer = client.response(sid)
                            assert status == 200 and json.loads(answer)["sha256"] == digest
                        client.until(lambda sid=reset: len(client.data[sid]) > 0)
                        client.conn.reset_stream(reset, 0x8)
                        client.flush()
                        assert len(client.response(big)[1]) == 500000, (seed, round_)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=client_run, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors, errors
        with Client(srv.port) as client:
            assert client.response(client.request("/")) == (200, b"hello over HTTP/2")
        assert_clean(srv.log())
