"""The uwsgi FastAPI application (apps/uwsgi_fastapi_app.py) with the routes of the version
and framing checks in tests/integration/test_uwsgi_nginx.py: the scope's http_version, a
streamed response without Content-Length (GET and HEAD), a 204, and a response that sends
an early hint first (when the server offers the extension)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from starlette.types import Receive, Send

from apps.uwsgi_fastapi_app import app

__all__ = ["app"]


@app.get("/version")
async def version(request: Request) -> PlainTextResponse:
    return PlainTextResponse(request.scope["http_version"])


@app.api_route("/drip", methods=["GET", "HEAD"])
async def drip(count: int = 3, te: str | None = None) -> StreamingResponse:
    """`count` numbered lines, each its own body message, no Content-Length; with `te`, the
    application claims `Transfer-Encoding: chunked` itself (the server drops it)."""

    async def generate() -> AsyncIterator[bytes]:
        for i in range(count):
            yield b"line %06d\n" % i

    headers = {"Transfer-Encoding": "chunked"} if te is not None else None
    return StreamingResponse(generate(), media_type="text/plain", headers=headers)


@app.api_route("/empty", methods=["GET", "POST"])
async def empty() -> Response:
    return Response(status_code=204)


async def hint(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """A plain ASGI app (mounted at /hint): an early hint when the server offers the extension,
    then a small response."""
    if "http.response.early_hint" in scope.get("extensions", {}):
        await send({"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload"]})
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hinted"})


app.mount("/hint", hint)
