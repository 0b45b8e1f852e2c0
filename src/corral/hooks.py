"""Calling the server hooks of a config file (on_starting, pre_fork, worker_exit, ...).

A hook that raises is logged with its traceback and never takes the server down; Gunicorn's
deliberate exceptions are the same here: SystemExit from a hook still ends the process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("corral.error")


def call_hook(settings: object, name: str, *args: object) -> None:
    hook: Callable[..., object] | None = getattr(settings, name, None)
    if hook is None:
        return
    try:
        hook(*args)
    except Exception:
        log.exception("Exception in %s hook", name)
