"""A FastAPI application for the HTTP/2 framework tests on the asgi worker
(tests/integration/test_h2_frameworks.py): JSON, a JSON body, a multipart upload, a
StreamingResponse larger than a stream's flow-control window, a 1 MiB FileResponse (with
ranges), FastAPI's own 404, an unhandled exception, and a WebSocket echo (served over HTTP/2
by RFC 8441's extended CONNECT).

What this module must never do: sleep, or keep state between requests.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Form, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel

app = FastAPI()

STREAM_CHUNKS = 400
CHUNK = b"y" * 1023 + b"\n"  # 400 KiB in all: several windows of 64 KiB


# A static file, served by FileResponse (http.response.pathsend when the server offers it).
FILE_DATA = hashlib.shake_256(b"fastapi file").digest(1 << 20)
# One fixed file, the same bytes every time: no directory left behind per server start.
FILE_PATH = Path(tempfile.gettempdir()) / "corral-h2-fastapi-file.bin"
if not FILE_PATH.exists() or FILE_PATH.read_bytes() != FILE_DATA:
    _partial = FILE_PATH.with_suffix(f".{os.getpid()}")
    _partial.write_bytes(FILE_DATA)
    os.replace(_partial, FILE_PATH)  # whole or not at all, for servers starting side by side


class Order(BaseModel):
    item: str
    quantity: int


@app.get("/items/{item_id}")
async def item(item_id: int, request: Request, q: str | None = None) -> dict[str, Any]:
    return {
        "id": item_id,
        "q": q,
        "http_version": request.scope["http_version"],
        "host": request.headers.get("host"),
        "scheme": request.url.scheme,
        "agent": request.headers.get("x-agent"),
    }


@app.post("/orders")
async def order(body: Order) -> dict[str, Any]:
    return {"item": body.item, "quantity": body.quantity, "total": body.quantity * 3}


@app.post("/upload")
async def upload(file: UploadFile, note: str = Form()) -> dict[str, Any]:
    data = await file.read()
    return {
        "note": note,
        "filename": file.filename,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


@app.get("/stream")
async def stream() -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(STREAM_CHUNKS):
            yield CHUNK

    return StreamingResponse(chunks(), media_type="application/octet-stream")


@app.get("/file")
async def file() -> FileResponse:
    return FileResponse(FILE_PATH, media_type="application/octet-stream")


@app.get("/boom")
async def boom() -> None:
    raise RuntimeError("boom from the h2 FastAPI app")


@app.websocket("/ws")
async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") == "scope?":
                scope = websocket.scope
                await websocket.send_json(
                    {"http_version": scope["http_version"], "scheme": scope["scheme"]}
                )
            elif message.get("text") is not None:
                await websocket.send_text("echo: " + message["text"])
            elif message.get("bytes") is not None:
                await websocket.send_bytes(message["bytes"][::-1])
    except WebSocketDisconnect:
        return
