"""The ASGI examples of the README, served as a newcomer starts them: `cd examples && corral
-k asgi fastapi_chat:app`, a browser page and two WebSocket clients in one chat room."""

from __future__ import annotations

import asyncio
import http.client
import json
from pathlib import Path

import pytest

from support.server import Server

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

pytest.importorskip("fastapi")
websockets = pytest.importorskip("websockets")


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


async def chat(port: int) -> tuple[str, str]:
    url = f"ws://127.0.0.1:{port}/ws"
    async with websockets.connect(url) as alice, websockets.connect(url) as bob:
        for _ in range(50):  # both are in the room once a message reaches both
            await alice.send("ping")
            if await asyncio.wait_for(bob.recv(), 10) == "ping":
                await asyncio.wait_for(alice.recv(), 10)
                break
            await asyncio.sleep(0.05)
        await bob.send("hello from bob")
        heard = [await asyncio.wait_for(ws.recv(), 10) for ws in (alice, bob)]
        return heard[0], heard[1]


def test_fastapi_chat_example(tmp_path: Path) -> None:
    with Server("fastapi_chat:app", "-k", "asgi", cwd=str(EXAMPLES)) as srv:
        status, body = get(srv.port, "/")
        assert status == 200 and b"new WebSocket" in body
        assert asyncio.run(chat(srv.port)) == ("hello from bob", "hello from bob")
        status, body = get(srv.port, "/stats")
        stats = json.loads(body)
        assert stats["members"] == 0 and stats["messages"] >= 2
        srv.stop()  # lifespan shutdown runs and reports
        assert "messages, 0 members left at shutdown" in srv.log()
