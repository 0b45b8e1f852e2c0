"""A small FastAPI application for the asgi worker's tests (test_asgi_frameworks.py): the routes
every framework app answers (apps/asgi_common.py lists them), plus a dependency, a validation
error (422) and lifespan state read through `request.state`."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Form, Request, UploadFile, WebSocket
from fastapi.responses import StreamingResponse
from fastapi.websockets import WebSocketDisconnect

from apps.asgi_common import chunks, started, upload_summary, write_shutdown_mark


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    yield {"db": "connected", "started": started("fastapi")}
    write_shutdown_mark()


app = FastAPI(lifespan=lifespan)


def settings() -> dict[str, str]:
    return {"env": "test"}


@app.get("/json")
async def json_route() -> dict[str, str]:
    return {"framework": "fastapi"}


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None) -> dict[str, Any]:
    return {"item_id": item_id, "q": q}


@app.post("/echo")
async def echo(payload: dict[str, Any]) -> dict[str, Any]:
    return {"received": payload}


@app.post("/upload")
async def upload(file: UploadFile, field: str = Form()) -> dict[str, Any]:
    return upload_summary(file.filename, await file.read(), field)


@app.get("/state")
async def state(
    request: Request,
    config: dict[str, str] = Depends(settings),  # noqa: B008 (FastAPI style)
) -> dict[str, Any]:
    return {
        "db": request.state.db,
        "env": config["env"],
        "started": request.state.started,
        "pid": os.getpid(),
    }


@app.get("/stream")
async def stream(count: int = 3) -> StreamingResponse:
    return StreamingResponse(chunks(count), media_type="text/plain")


@app.get("/pid")
async def pid() -> dict[str, int]:
    return {"pid": os.getpid()}


@app.get("/boom")
async def boom() -> None:
    raise RuntimeError("boom from fastapi")


@app.websocket("/ws")
async def ws_echo(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text == "close":
                await ws.close(4000, "asked")
                return
            if text is not None:
                await ws.send_text(f"echo: {text}")
            else:
                await ws.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        return
