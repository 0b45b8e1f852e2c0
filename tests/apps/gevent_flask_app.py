"""A Flask application for the gevent worker's tests, written the way gevent users write theirs:
plain blocking calls (urllib, time.sleep, socket) that the worker's monkey-patching makes
cooperative.

- /fetch calls the URL in the CORRAL_TEST_UPSTREAM environment variable with urllib and
  answers what it got (the concurrency test points it at a slow local server);
- /patched answers whether socket, time and select were patched when this module was imported
  (they must be, without --preload);
- /nap sleeps with time.sleep for ?seconds (cooperative once patched);
- /spin runs a busy loop that never yields, for the master's timeout and stack dump;
- / answers a short greeting.
"""

from __future__ import annotations

import os
import time
import urllib.request

from flask import Flask, jsonify, request

app = Flask(__name__)

PATCHED_AT_IMPORT: dict[str, bool] = {}
try:
    from gevent import monkey

    PATCHED_AT_IMPORT = {
        name: bool(monkey.is_module_patched(name)) for name in ("socket", "time", "select")
    }
except ImportError:  # the module is imported by the test process too
    pass
LOADED_IN_PID = os.getpid()


@app.route("/")
def index() -> str:
    return "hello from gevent"


@app.route("/fetch")
def fetch() -> str:
    url = os.environ["CORRAL_TEST_UPSTREAM"]
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read().decode()


@app.route("/patched")
def patched() -> object:
    return jsonify(patched=PATCHED_AT_IMPORT, loaded_in=LOADED_IN_PID, serving_in=os.getpid())


@app.route("/nap")
def nap() -> str:
    time.sleep(float(request.args.get("seconds", "1")))
    return "rested"


def spin_forever() -> None:
    while True:
        pass


@app.route("/spin")
def spin() -> str:
    spin_forever()
    return "unreachable"
