"""A FastAPI application that shows what it was given, served over uwsgi behind nginx in
tests/integration/test_uwsgi_nginx.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

app = FastAPI()


async def _info(rest: str, request: Request) -> dict[str, Any]:
    scope = request.scope
    body = await request.body()
    return {
        "scope": {
            "method": scope["method"],
            "path": scope["path"],
            "query_string": scope["query_string"].decode("latin-1"),
            "raw_path": scope["raw_path"].decode("latin-1"),
            "client": list(scope["client"]) if scope.get("client") else None,
            "server": list(scope["server"]) if scope.get("server") else None,
            "scheme": scope["scheme"],
        },
        "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
        "args": dict(request.query_params),
        "rest": rest,
        "body": body.decode("latin-1"),
    }


@app.get("/info/{rest:path}")
async def info_get(rest: str, request: Request) -> dict[str, Any]:
    return await _info(rest, request)


@app.post("/info/{rest:path}")
async def info_post(rest: str, request: Request) -> dict[str, Any]:
    return await _info(rest, request)


@app.get("/stream")
async def stream(count: int = 3) -> StreamingResponse:
    async def generate() -> AsyncIterator[bytes]:
        for i in range(count):
            yield f"chunk {i}\n".encode()

    return StreamingResponse(generate(), media_type="text/plain")
