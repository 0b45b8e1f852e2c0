"""Shared fixtures for the http tests: the request corpus and the ways of feeding it.

A test that takes a `corpus_case` argument runs once per case of tests/corpus/*.json, with
`file:name` as its id; `case_limits(case)` gives the `Limits` its `limits` and `options` ask for.
`splits` cuts raw bytes into the pieces a network might deliver, and `run_request` feeds such
pieces to the parser and the body decoder the way a worker does.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from corral.errors import ProtocolError
from corral.http.body import ChunkedDecoder, decoder_for
from corral.http.parser import DEFAULT_LIMITS, Limits, parse_head

CORPUS = Path(__file__).resolve().parent.parent / "corpus"


def load_corpus() -> list[dict[str, Any]]:
    """Every case of every corpus file, with `raw` turned into bytes and `file` added."""
    cases = []
    for path in sorted(CORPUS.glob("*.json")):
        for case in json.loads(path.read_text(encoding="utf-8")):
            case["raw"] = case["raw"].encode("latin-1")
            case["file"] = path.stem
            cases.append(case)
    return cases


# The leniency options a case may turn on (the settings of the same names).
OPTIONS = frozenset(
    {
        "permit_obsolete_folding",
        "strip_header_spaces",
        "permit_unconventional_http_method",
        "permit_unconventional_http_version",
        "casefold_http_method",
    }
)


def limits_for(case: dict[str, Any]) -> Limits:
    """The Limits a corpus case runs with: its `limits` (sizes) and `options` (leniency)."""
    options = case.get("options", {})
    unknown = set(options) - OPTIONS
    assert not unknown, f"{case['file']}:{case['name']}: unknown options {sorted(unknown)}"
    return Limits(**case.get("limits", {}), **options)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "corpus_case" in metafunc.fixturenames:
        cases = load_corpus()
        ids = [f"{case['file']}:{case['name']}" for case in cases]
        metafunc.parametrize("corpus_case", cases, ids=ids)


@pytest.fixture(scope="session")
def corpus_cases() -> list[dict[str, Any]]:
    return load_corpus()


def _random_pieces(seed: int) -> Callable[[bytes], list[bytes]]:
    def split(raw: bytes) -> list[bytes]:
        rng = random.Random(seed)
        pieces, pos = [], 0
        while pos < len(raw):
            # Empty pieces on purpose: feeding b"" must be harmless.
            size = rng.choice((0, 1, 2, 3, 5, 8, 13, 64))
            pieces.append(raw[pos : pos + size])
            pos += size
        return pieces

    return split


SPLITS: dict[str, Callable[[bytes], list[bytes]]] = {
    "whole": lambda raw: [raw],
    "lines": lambda raw: raw.splitlines(keepends=True),
    "bytes": lambda raw: [raw[i : i + 1] for i in range(len(raw))],
    **{f"random{seed}": _random_pieces(seed) for seed in range(3)},
}


def run_pieces(pieces: Iterable[bytes], limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Parse a head from pieces arriving one by one (re-parsing the growing buffer), then
    decode the body from the rest. Returns the outcome as a dict, {"status": n} on
    ProtocolError, or {"head_complete": False}."""
    stream = iter(pieces)
    buf = bytearray()
    try:
        parsed = None
        for piece in stream:
            buf += piece
            parsed = parse_head(buf, limits)
            if parsed is not None:
                break
        if parsed is None:
            return {"head_complete": False}
        request, used = parsed
        decoder = decoder_for(request)
        body, leftover = bytearray(), bytearray()
        for piece in (bytes(buf[used:]), *stream):
            data, rest = decoder.feed(piece)
            body += data
            leftover += rest
    except ProtocolError as exc:
        assert 400 <= exc.status < 600
        return {"status": exc.status}
    trailers = decoder.trailers if isinstance(decoder, ChunkedDecoder) else []
    return {
        "method": request.method,
        "target": request.target,
        "path": request.path,
        "query": request.query,
        "version": request.version,
        "headers": [list(pair) for pair in request.headers],
        "content_length": request.content_length,
        "chunked": request.chunked,
        "keep_alive": request.keep_alive,
        "expect_continue": request.expect_continue,
        "authority": request.authority,
        "body": body.decode("latin-1"),
        "trailers": [list(pair) for pair in trailers],
        "leftover": leftover.decode("latin-1"),
        "body_complete": decoder.done,
    }


@pytest.fixture(scope="session")
def case_limits() -> Callable[[dict[str, Any]], Limits]:
    return limits_for


@pytest.fixture(scope="session")
def splits() -> dict[str, Callable[[bytes], list[bytes]]]:
    return SPLITS


@pytest.fixture(scope="session")
def run_request() -> Callable[..., dict[str, Any]]:
    return run_pieces
