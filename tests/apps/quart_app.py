"""A small Quart application for the asgi worker's framework tests; its routes are the ones
every framework app answers (apps/asgi_common.py lists them)."""

from __future__ import annotations

import os
from typing import Any

from quart import Quart, Response, request, websocket

from apps.asgi_common import chunks, started, upload_summary, write_shutdown_mark

app = Quart(__name__)


@app.before_serving
async def startup() -> None:
    app.config["STARTED"] = started("quart")


@app.after_serving
async def shutdown() -> None:
    write_shutdown_mark()


@app.get("/json")
async def json_route() -> dict[str, str]:
    return {"framework": "quart"}


@app.get("/items/<int:item_id>")
async def item(item_id: int) -> dict[str, Any]:
    return {"item_id": item_id, "q": request.args.get("q")}


@app.post("/echo")
async def echo() -> dict[str, Any]:
    return {"received": await request.get_json()}


@app.post("/upload")
async def upload() -> dict[str, Any]:
    files = await request.files
    form = await request.form
    stored = files["file"]
    return upload_summary(stored.filename, stored.read(), form["field"])


@app.get("/stream")
async def stream() -> Response:
    count = int(request.args.get("count", "3"))
    return Response(chunks(count), mimetype="text/plain")


@app.get("/state")
async def state() -> dict[str, Any]:
    return {"started": app.config["STARTED"], "pid": os.getpid()}


@app.get("/pid")
async def pid() -> dict[str, int]:
    return {"pid": os.getpid()}


@app.get("/boom")
async def boom() -> None:
    raise RuntimeError("boom from quart")


@app.websocket("/ws")
async def ws_echo() -> None:
    while True:
        message = await websocket.receive()
        if message == "close":
            await websocket.close(4000, "asked")
            return
        if isinstance(message, str):
            await websocket.send(f"echo: {message}")
        else:
            await websocket.send(message)
