"""ASGI apps whose lifespan startup or shutdown takes `LIFESPAN_SLEEP` seconds (an environment
variable, so one app serves every test), for the lifespan timeout tests."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

Scope = dict[str, Any]


def _seconds() -> float:
    return float(os.environ.get("LIFESPAN_SLEEP", "0"))


async def _hello(send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def slow_startup(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await asyncio.sleep(_seconds())
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    await _hello(send)


async def slow_shutdown(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        try:
            await asyncio.sleep(_seconds())
        except asyncio.CancelledError:
            print("slow_shutdown: cancelled", file=sys.stderr, flush=True)
            raise
        print("slow_shutdown: done", file=sys.stderr, flush=True)
        await send({"type": "lifespan.shutdown.complete"})
        return
    await _hello(send)
