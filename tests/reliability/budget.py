"""Sizes and durations of the reliability scenarios: the short form runs in `make test`, the
full form when `CORRAL_SOAK=1` (`make soak`)."""

from __future__ import annotations

import os
from typing import TypeVar

T = TypeVar("T")

SOAK = os.environ.get("CORRAL_SOAK", "") == "1"


def scaled(short: int, full: int) -> int:
    """`short` in the short form, `full` in the soak."""
    return full if SOAK else short


def scaled_list(short: list[T], full: list[T]) -> list[T]:
    """Parameter lists: fewer cases in the short form."""
    return full if SOAK else short
