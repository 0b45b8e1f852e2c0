"""Run bjoern with N worker processes: `python bjoern_prefork.py MODULE:APP HOST PORT N`.

bjoern has no process manager of its own. This binds the socket once, forks N-1 copies and
runs bjoern's loop in each process, all accepting on the shared socket. The first process is
the parent of the others, so a signal to the process group stops them all.
"""

from __future__ import annotations

import importlib
import os
import sys

import bjoern  # type: ignore[import-not-found]


def main() -> None:
    target, host, port, workers = sys.argv[1:5]
    module_name, _, attr = target.partition(":")
    app = getattr(importlib.import_module(module_name), attr or "application")
    bjoern.listen(app, host, int(port))
    for _ in range(int(workers) - 1):
        if os.fork() == 0:
            break
    bjoern.run()


if __name__ == "__main__":
    main()
