"""The ASGI lifespan protocol (2.0) around an `asgi` worker's life.

Startup runs before the worker listens, shutdown after its connections are done. Each waits
for the application's answer within its own setting (`asgi_startup_timeout`,
`asgi_shutdown_timeout`), beating the heartbeat meanwhile: a startup that awaits is slow, not
stuck, so the master's `timeout` must not kill it (one that blocks the loop is killed as
usual). What this module must never do: take a real startup failure for "lifespan
unsupported" (only an application that raises before receiving anything is unsupported in
`auto`), or wait for the application longer than its setting or the worker's graceful stop
allows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from corral.adapters.asgi import ASGIApp

log = logging.getLogger("corral.error")

# How often the heartbeat is beaten while waiting for the application's answer: well within
# the smallest `timeout` the master may use.
_BEAT_EVERY = 0.2


class LifespanFailed(Exception):
    """The application failed its lifespan startup (or does not support it with `on`)."""


class Lifespan:
    """The ASGI lifespan protocol (2.0) around the worker's life."""

    def __init__(
        self,
        app: ASGIApp,
        mode: str,
        state: dict[str, Any],
        *,
        startup_timeout: float = 0.0,
        shutdown_timeout: float = 0.0,
        beat: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.mode = mode
        self.state = state
        self.startup_timeout = startup_timeout  # 0: for ever
        self.shutdown_timeout = shutdown_timeout
        self.beat = beat
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.received = False
        self.answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.abandoned = False  # the application took too long and was cancelled

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
            if self.abandoned and isinstance(exc, asyncio.CancelledError):
                return  # cancelled by us after a timeout, already logged
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
        answer = await self.answer_within(self.startup_timeout)
        if answer is None:
            await self.abandon(1.0)
            raise LifespanFailed(
                f"lifespan startup did not complete within {self.startup_timeout:g} s"
                " (asgi_startup_timeout)"
            )
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
        """Ask the application to shut down; wait at most `asgi_shutdown_timeout` and never
        more than `budget` (what the worker's graceful stop leaves)."""
        if self.task is None or self.task.done():
            return
        limit, bound = max(budget, 0.1), "graceful_timeout"
        if self.shutdown_timeout and self.shutdown_timeout <= limit:
            limit, bound = self.shutdown_timeout, "asgi_shutdown_timeout"
        await self.inbox.put({"type": "lifespan.shutdown"})
        answer = await self.answer_within(limit)
        if answer is None:
            log.warning(
                "ASGI lifespan shutdown did not complete within %g s (%s); exiting anyway",
                round(limit, 1),
                bound,
            )
            await self.abandon(0.25)  # within the reserve the worker keeps before the kill
            return
        if answer["type"] == "lifespan.shutdown.failed":
            log.error("Application shutdown failed: %s", answer.get("message", ""))

    async def answer_within(self, seconds: float) -> dict[str, Any] | None:
        """The application's next answer, or None when `seconds` (0: no limit) pass first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds if seconds > 0 else None
        waiter = loop.create_task(self.answers.get())
        try:
            while True:
                step = _BEAT_EVERY if deadline is None else min(_BEAT_EVERY, deadline - loop.time())
                if step <= 0:
                    return None
                done, _ = await asyncio.wait({waiter}, timeout=step)
                if done:
                    return waiter.result()
                if self.beat is not None:
                    self.beat()
        finally:
            waiter.cancel()

    async def abandon(self, seconds: float) -> None:
        """Cancel an application that took too long, giving its `finally` blocks `seconds`."""
        task = self.task
        if task is None or task.done():
            return
        self.abandoned = True
        task.cancel()
        await asyncio.wait({task}, timeout=seconds)
