"""A small FastAPI application with a WebSocket chat room, served by corral's asgi worker:

    pip install fastapi
    cd examples && corral -k asgi fastapi_chat:app

GET / answers a page that joins the room at /ws; every message one browser tab sends is
broadcast to every tab in the room. GET /stats says how many are in the room and how many
messages went by since startup; the lifespan handler sets that up and says goodbye at
shutdown. Open two tabs on http://127.0.0.1:8000/ and type in one.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse

PAGE = """<!doctype html>
<title>corral + FastAPI chat</title>
<input id="text" autofocus placeholder="say something"><pre id="log"></pre>
<script>
const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
const log = (line) => document.getElementById("log").textContent += line + "\\n";
ws.onmessage = (event) => log(event.data);
document.getElementById("text").onkeydown = (event) => {
  if (event.key === "Enter") { ws.send(event.target.value); event.target.value = ""; }
};
</script>
"""


class Room:
    """The WebSockets in the room; one per worker process."""

    def __init__(self) -> None:
        self.members: set[WebSocket] = set()
        self.messages = 0

    async def broadcast(self, text: str) -> None:
        self.messages += 1
        for member in list(self.members):
            try:
                await member.send_text(text)
            except (WebSocketDisconnect, RuntimeError, OSError):
                self.members.discard(member)  # left while we were sending


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Room]]:
    room = Room()
    yield {"room": room}  # in every request's state (ASGI lifespan state)
    print(
        f"chat: {room.messages} messages, {len(room.members)} members left at shutdown",
        file=sys.stderr,
    )


app = FastAPI(lifespan=lifespan)


@app.get("/", response_class=HTMLResponse)
async def page() -> str:
    return PAGE


@app.get("/stats")
async def stats(request: Request) -> dict[str, int]:
    room: Room = request.state.room
    return {"members": len(room.members), "messages": room.messages}


@app.websocket("/ws")
async def chat(websocket: WebSocket) -> None:
    room: Room = websocket.state.room
    await websocket.accept()
    room.members.add(websocket)
    try:
        while True:
            text = await websocket.receive_text()
            await room.broadcast(text)
    except WebSocketDisconnect:
        pass
    finally:
        room.members.discard(websocket)
