"""A small Flask application with the routes a real site has, served by corral in the tests.

Every route does real framework work (form parsing, multipart uploads, a streamed generator
that still reads the request context, a large JSON body, cookies, `url_for` redirects), so a
server that hands Flask a wrong environ or frames a response badly shows up as a failed test.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

from flask import Flask, Response, jsonify, redirect, request, stream_with_context, url_for

app = Flask(__name__)

# Recorded at import time: with --preload this is the master's pid, otherwise the worker's.
LOADED_IN_PID = os.getpid()

FORM_PAGE = """<!doctype html>
<title>Contact</title>
<form method="post" action="{action}">
  <input name="name"> <input name="topic"> <input name="topic">
  <textarea name="message"></textarea>
  <button>Send</button>
</form>
"""


@app.get("/")
def hello() -> Response:
    name = request.args.get("name", "world")
    return Response(f"Hello, {name}!", mimetype="text/plain")


@app.get("/pid")
def pid() -> Response:
    return jsonify(pid=os.getpid(), loaded_in=LOADED_IN_PID)


@app.route("/form", methods=["GET", "POST"])
def form() -> Response | str:
    if request.method == "GET":
        return FORM_PAGE.format(action=url_for("form"))
    return jsonify(fields=request.form.to_dict(flat=False))


@app.post("/upload")
def upload() -> Response:
    stored = request.files["file"]
    digest = hashlib.sha256()
    size = 0
    while chunk := stored.stream.read(65536):
        digest.update(chunk)
        size += len(chunk)
    return jsonify(
        filename=stored.filename,
        content_type=stored.mimetype,
        size=size,
        sha256=digest.hexdigest(),
        fields=request.form.to_dict(),
    )


@app.get("/stream")
def stream() -> Response:
    def generate() -> Iterator[str]:
        # Reading `request` here, after the view returned, needs stream_with_context.
        count = int(request.args.get("count", "10"))
        size = int(request.args.get("size", "100"))
        for i in range(count):
            yield f"{i:06d}:" + "x" * size + "\n"

    return Response(stream_with_context(generate()), mimetype="text/plain")


@app.get("/large.json")
def large_json() -> Response:
    items = [{"id": i, "name": f"item-{i}", "tags": ["a", "b", "c"]} for i in range(20_000)]
    return jsonify(count=len(items), items=items)


@app.get("/cookie/set")
def cookie_set() -> Response:
    resp = Response("cookie set", mimetype="text/plain")
    resp.set_cookie("flavour", request.args.get("value", "oatmeal"), httponly=True, samesite="Lax")
    return resp


@app.get("/cookie/get")
def cookie_get() -> Response:
    return jsonify(flavour=request.cookies.get("flavour"))


@app.get("/redirect")
def go_home() -> Response:
    return redirect(url_for("hello", name="redirected"))
