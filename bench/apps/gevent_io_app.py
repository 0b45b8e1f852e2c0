"""A Flask application whose requests wait on the network, for the gevent benchmark.

`GET /` answers plain text (the readiness probe). `GET /io` calls the upstream named by the
BENCH_UPSTREAM environment variable with plain urllib (a new connection per call, as most
code does) and answers what it got: per request, a little framework work and one outbound
round trip that the worker must wait on without holding anyone else.
"""

from __future__ import annotations

import os
import urllib.request

from flask import Flask

app = Flask(__name__)
UPSTREAM = os.environ.get("BENCH_UPSTREAM", "")


@app.get("/")
def index() -> str:
    return "Hello, World!"


@app.get("/io")
def io() -> str:
    with urllib.request.urlopen(UPSTREAM, timeout=30) as resp:
        return "upstream said: " + resp.read().decode()
