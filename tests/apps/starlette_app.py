"""A small Starlette application for the asgi worker's framework tests; its routes are the
ones every framework app answers (apps/asgi_common.py lists them)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from apps.asgi_common import chunks, started, upload_summary, write_shutdown_mark


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    yield {"started": started("starlette")}
    write_shutdown_mark()


async def json_route(request: Request) -> JSONResponse:
    return JSONResponse({"framework": "starlette"})


async def item(request: Request) -> JSONResponse:
    return JSONResponse(
        {"item_id": request.path_params["item_id"], "q": request.query_params.get("q")}
    )


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"received": await request.json()})


async def upload(request: Request) -> JSONResponse:
    async with request.form() as form:
        stored = form["file"]
        assert isinstance(stored, UploadFile)
        data = await stored.read()
        return JSONResponse(upload_summary(stored.filename, data, form["field"]))


async def stream(request: Request) -> StreamingResponse:
    count = int(request.query_params.get("count", "3"))
    return StreamingResponse(chunks(count), media_type="text/plain")


async def state(request: Request) -> JSONResponse:
    return JSONResponse({"started": request.state.started, "pid": os.getpid()})


async def pid(request: Request) -> JSONResponse:
    return JSONResponse({"pid": os.getpid()})


async def boom(request: Request) -> JSONResponse:
    raise RuntimeError("boom from starlette")


async def ws_echo(ws: WebSocket) -> None:
    await ws.accept()
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


app = Starlette(
    routes=[
        Route("/json", json_route),
        Route("/items/{item_id:int}", item),
        Route("/echo", echo, methods=["POST"]),
        Route("/upload", upload, methods=["POST"]),
        Route("/stream", stream),
        Route("/state", state),
        Route("/pid", pid),
        Route("/boom", boom),
        WebSocketRoute("/ws", ws_echo),
    ],
    lifespan=lifespan,
)
