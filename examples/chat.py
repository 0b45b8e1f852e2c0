"""A small ASGI application with a WebSocket, for the asgi worker, with no dependency:

    cd examples && corral -k asgi chat:app

GET / answers a page that opens a WebSocket to /ws; every text message sent there is answered
by the server, in upper case. GET /health answers "ok". The same routes work behind FastAPI or
Starlette; this one only shows what the worker does with plain ASGI messages.
"""

from __future__ import annotations

from typing import Any

PAGE = b"""<!doctype html>
<title>corral chat</title>
<input id="text" autofocus><pre id="log"></pre>
<script>
const ws = new WebSocket(`ws://${location.host}/ws`);
const log = (line) => document.getElementById("log").textContent += line + "\\n";
ws.onmessage = (event) => log("server: " + event.data);
document.getElementById("text").onkeydown = (event) => {
  if (event.key === "Enter") { ws.send(event.target.value); event.target.value = ""; }
};
</script>
"""


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
    elif scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text") or ""
            await send({"type": "websocket.send", "text": text.upper()})
    else:
        body, kind = (b"ok", b"text/plain") if scope["path"] == "/health" else (PAGE, b"text/html")
        headers = [(b"content-type", kind)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
