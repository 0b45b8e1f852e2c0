"""What the ASGI framework apps under tests/apps/ share (test_asgi_frameworks.py drives them).

Every one of them answers the same routes, so one test drives them all:

- `GET /json`, `GET /items/{item_id}?q=`, `POST /echo` (JSON body), `POST /upload` (multipart:
  a file and a field; the answer carries the file's size and SHA-256);
- `GET /stream?count=N`: N chunks from an async generator, with a pause between them so that
  they leave as separate writes;
- `GET /state`: what the lifespan startup stored, and the worker's pid; the lifespan shutdown
  writes "shutdown <pid>" to the file named by CORRAL_TEST_SHUTDOWN_FILE;
- `GET /boom`: raises (a 500, and the worker goes on); `GET /pid`: the worker's pid;
- `WS /ws`: echoes text as "echo: <text>" and bytes as they came; "close" closes with 4000.

This module imports no framework, so each app needs only its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

SHUTDOWN_FILE = "CORRAL_TEST_SHUTDOWN_FILE"


def started(framework: str) -> str:
    """What a lifespan startup stores: the framework and the pid that ran the startup."""
    return f"{framework} {os.getpid()}"


def write_shutdown_mark() -> None:
    """The lifespan shutdown's visible effect."""
    target = os.environ.get(SHUTDOWN_FILE)
    if target:
        Path(target).write_text(f"shutdown {os.getpid()}")


async def chunks(count: int) -> AsyncIterator[bytes]:
    for n in range(count):
        yield b"chunk %d\n" % n
        await asyncio.sleep(0.01)


def upload_summary(filename: str | None, data: bytes, field: object) -> dict[str, Any]:
    return {
        "filename": filename,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "field": field,
    }
