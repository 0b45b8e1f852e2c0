"""Sizes and durations of the reliability scenarios: the short form runs in `make test`, the
full form when `CORRAL_SOAK=1` (`make soak`)."""

from __future__ import annotations

import os

SOAK = os.environ.get("CORRAL_SOAK", "") == "1"


def scaled(short: int, full: int) -> int:
    """`short` in the short form, `full` in the soak."""
    return full if SOAK else short
