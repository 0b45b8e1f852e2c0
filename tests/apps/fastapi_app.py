"""A small FastAPI application for the asgi worker's tests (test_asgi_frameworks.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import StreamingResponse


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    yield {"db": "connected"}


app = FastAPI(lifespan=lifespan)


def settings() -> dict[str, str]:
    return {"env": "test"}


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None) -> dict[str, Any]:
    return {"item_id": item_id, "q": q}


@app.post("/echo")
async def echo(payload: dict[str, Any]) -> dict[str, Any]:
    return {"received": payload}


@app.get("/state")
async def state(
    request: Request,
    config: dict[str, str] = Depends(settings),  # noqa: B008 (FastAPI style)
) -> dict[str, Any]:
    return {"db": request.state.db, "env": config["env"]}


@app.get("/stream")
async def stream() -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for n in range(3):
            yield b"chunk %d\n" % n

    return StreamingResponse(chunks(), media_type="text/plain")
