"""A Flask application that shows what it was given, served over uwsgi behind nginx in
tests/integration/test_uwsgi_nginx.py."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Flask, Response, jsonify, request

app = Flask(__name__)

_KEYS = (
    "REQUEST_METHOD",
    "PATH_INFO",
    "QUERY_STRING",
    "RAW_URI",
    "SERVER_PROTOCOL",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "SERVER_NAME",
    "SERVER_PORT",
    "CONTENT_TYPE",
    "CONTENT_LENGTH",
    "HTTP_HOST",
    "HTTP_X_CUSTOM",
    "wsgi.url_scheme",
)


@app.route("/info/<path:rest>", methods=["GET", "POST"])
def info(rest: str) -> Response:
    data = request.get_data()
    return jsonify(
        environ={key: request.environ.get(key) for key in _KEYS},
        args=request.args.to_dict(),
        rest=rest,
        body=data.decode("latin-1"),
        form=request.form.to_dict(),
    )


@app.route("/stream")
def stream() -> Response:
    count = int(request.args.get("count", "3"))

    def generate() -> Iterator[str]:
        for i in range(count):
            yield f"chunk {i}\n"

    return Response(generate(), mimetype="text/plain")
