"""The ASGI lifespan protocol (2.0) around an `asgi` worker's life.

Startup runs before the worker listens, shutdown after its connections are done. What this
module must never do: take a real startup failure for "lifespan unsupported" (only an application
that raises before receiving anything is unsupported in `auto`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from corral.adapters.asgi import ASGIApp

log = logging.getLogger("corral.error")


class LifespanFailed(Exception):
    """The application failed its lifespan startup (or does not support it with `on`)."""


class Lifespan:
    """The ASGI lifespan protocol (2.0) around the worker's life."""

    def __init__(self, app: ASGIApp, mode: str, state: dict[str, Any]) -> None:
        self.app = app
        self.mode = mode
        self.state = state
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.received = False
        self.answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def receive(self) -> dict[str, Any]:
        self.received = True
        return await self.inbox.get()

    async def send(self, message: Any) -> None:
        await self.answers.put(dict(message))

    async def run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        scope["state"] = self.state
        try:
            await self.app(scope, self.receive, self.send)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            if not self.received and self.mode == "auto":
                log.info("ASGI 'lifespan' protocol appears unsupported.")
                await self.answers.put({"type": "unsupported"})
                return
            log.error("Exception in the ASGI lifespan protocol", exc_info=exc)
            await self.answers.put({"type": "failed", "message": repr(exc)})
            return
        # Returned without (more) answers: e.g. `if scope["type"] != "http": return`.
        await self.answers.put({"type": "returned"})

    async def startup(self) -> None:
        if self.mode == "off":
            return
        self.task = asyncio.get_running_loop().create_task(self.run())
        await self.inbox.put({"type": "lifespan.startup"})
        answer = await self.answers.get()
        kind = answer["type"]
        if kind == "lifespan.startup.complete":
            return
        if kind == "unsupported" or (kind == "returned" and self.mode == "auto"):
            if kind == "returned":
                log.info("ASGI 'lifespan' protocol appears unsupported.")
            self.task = None
            return
        raise LifespanFailed(answer.get("message") or kind)

    async def shutdown(self, budget: float) -> None:
        if self.task is None or self.task.done():
            return
        await self.inbox.put({"type": "lifespan.shutdown"})
        try:
            answer = await asyncio.wait_for(self.answers.get(), max(budget, 0.1))
        except asyncio.TimeoutError:
            log.warning("ASGI lifespan shutdown did not complete within %.1f s", budget)
            return
        if answer["type"] == "lifespan.shutdown.failed":
            log.error("Application shutdown failed: %s", answer.get("message", ""))
