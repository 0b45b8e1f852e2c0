"""`sync`: one request at a time, the application called inline, each connection closed after
its response (Gunicorn's sync worker). Heads are still read by the non-blocking engine, so a
client that trickles its request never holds the worker."""

from __future__ import annotations

from corral.workers.engine import Worker


class SyncWorker(Worker):
    keep_alive_allowed = False
