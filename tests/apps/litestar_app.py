"""A small Litestar application for the asgi worker's framework tests; its routes are the ones
every framework app answers (apps/asgi_common.py lists them)."""

from __future__ import annotations

import os
from typing import Annotated, Any

from litestar import Litestar, Request, WebSocket, get, post, websocket
from litestar.datastructures import State, UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Stream

from apps.asgi_common import chunks, started, upload_summary, write_shutdown_mark


def on_startup(app: Litestar) -> None:
    app.state.started = started("litestar")


@get("/json")
async def json_route() -> dict[str, str]:
    return {"framework": "litestar"}


@get("/items/{item_id:int}")
async def item(item_id: int, q: str | None = None) -> dict[str, Any]:
    return {"item_id": item_id, "q": q}


@post("/echo", status_code=200)
async def echo(data: dict[str, Any]) -> dict[str, Any]:
    return {"received": data}


@post("/upload", status_code=200)
async def upload(
    data: Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART)],
) -> dict[str, Any]:
    stored: UploadFile = data["file"]
    return upload_summary(stored.filename, await stored.read(), data["field"])


@get("/stream")
async def stream(count: int = 3) -> Stream:
    return Stream(chunks(count), media_type="text/plain")


@get("/state")
async def state(state: State) -> dict[str, Any]:
    return {"started": state.started, "pid": os.getpid()}


@get("/pid")
async def pid() -> dict[str, int]:
    return {"pid": os.getpid()}


@get("/boom")
async def boom(request: Request[Any, Any, Any]) -> None:
    raise RuntimeError("boom from litestar")


@websocket("/ws")
async def ws_echo(socket: WebSocket[Any, Any, Any]) -> None:
    await socket.accept()
    while True:
        message = await socket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text == "close":
            await socket.close(4000, "asked")
            return
        if text is not None:
            await socket.send_text(f"echo: {text}")
        else:
            await socket.send_bytes(message["bytes"])


app = Litestar(
    route_handlers=[json_route, item, echo, upload, stream, state, pid, boom, ws_echo],
    on_startup=[on_startup],
    on_shutdown=[lambda: write_shutdown_mark()],
)
