"""A small Flask application: routing, a URL converter, a JSON response and the request
context, the per-request work a typical framework adds on top of the server's.

`GET /` answers plain text (the readiness probe); `GET /users/<id>` is what the load hits.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return "Hello, World!"


@app.get("/users/<int:user_id>")
def user(user_id: int) -> dict[str, Any]:
    return {
        "id": user_id,
        "name": f"user-{user_id}",
        "active": True,
        "roles": ["reader", "writer"],
        "agent": request.headers.get("User-Agent", ""),
    }
