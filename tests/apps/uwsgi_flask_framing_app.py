"""The uwsgi Flask application (apps/uwsgi_flask_app.py) with the routes of the version and
framing checks in tests/integration/test_uwsgi_nginx.py: the version the application was given,
a streamed response without Content-Length (GET and HEAD) and a 204."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Response, request

from apps.uwsgi_flask_app import app

__all__ = ["app"]


@app.route("/version")
def version() -> Response:
    return Response(request.environ["SERVER_PROTOCOL"], mimetype="text/plain")


@app.route("/drip", methods=["GET", "HEAD"])
def drip() -> Response:
    """`count` numbered lines, each its own body chunk, no Content-Length; with `te`, the
    application claims `Transfer-Encoding: chunked` itself (a hop-by-hop field it may not set:
    the server drops it)."""
    count = int(request.args.get("count", "3"))

    def generate() -> Iterator[bytes]:
        for i in range(count):
            yield b"line %06d\n" % i

    response = Response(generate(), mimetype="text/plain")
    if "te" in request.args:
        response.headers["Transfer-Encoding"] = "chunked"
    return response


@app.route("/empty", methods=["GET", "POST"])
def empty() -> Response:
    return Response(status=204)
