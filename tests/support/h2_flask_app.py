"""A Flask application for the HTTP/2 framework tests on the gthread worker
(tests/integration/test_h2_frameworks.py): JSON, a form POST, a streamed generator larger than
a stream's flow-control window, a 1 MiB file by send_file (with ranges), Flask's own 404, an
error handler and an unhandled exception.

What this module must never do: sleep, or depend on anything but Flask.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from flask import Flask, Response, jsonify, request, send_file

app = Flask(__name__)

STREAM_LINES = 400
LINE = "%04d " + "x" * 1018 + "\n"  # 1 KiB a line: 400 KiB, several windows of 64 KiB


# A static file, served by send_file (wsgi.file_wrapper; ranges and conditional requests).
FILE_DATA = hashlib.shake_256(b"flask file").digest(1 << 20)
# One fixed file, the same bytes every time: no directory left behind per server start.
FILE_PATH = Path(tempfile.gettempdir()) / "corral-h2-flask-file.bin"
if not FILE_PATH.exists() or FILE_PATH.read_bytes() != FILE_DATA:
    _partial = FILE_PATH.with_suffix(f".{os.getpid()}")
    _partial.write_bytes(FILE_DATA)
    os.replace(_partial, FILE_PATH)  # whole or not at all, for servers starting side by side


class Teapot(Exception):
    """Raised by a route; the error handler turns it into a 418 JSON answer."""


@app.errorhandler(Teapot)
def teapot(error: Teapot) -> tuple[Response, int]:
    return jsonify(error="teapot", detail=str(error)), 418


@app.get("/items/<int:item_id>")
def item(item_id: int) -> Response:
    return jsonify(
        id=item_id,
        q=request.args.get("q"),
        protocol=request.environ["SERVER_PROTOCOL"],
        host=request.host,
        scheme=request.scheme,
        agent=request.headers.get("X-Agent"),
    )


@app.post("/form")
def form() -> Response:
    return jsonify(fields=request.form.to_dict(flat=False), length=request.content_length)


@app.get("/stream")
def stream() -> Response:
    def lines() -> Iterator[bytes]:
        for n in range(STREAM_LINES):
            yield (LINE % n).encode()

    return Response(lines(), mimetype="text/plain")


@app.get("/file")
def file() -> Response:
    return send_file(FILE_PATH, mimetype="application/octet-stream", conditional=True)


@app.get("/teapot")
def brew() -> Response:
    raise Teapot("short and stout")


@app.get("/boom")
def boom() -> Response:
    raise RuntimeError("boom from the h2 Flask app")
