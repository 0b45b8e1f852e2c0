"""Load the request corpus (tests/corpus/*.json) and hand its cases to tests that ask for it.

A test that takes a `corpus_case` argument runs once per case, with the case's name as its id.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

CORPUS = Path(__file__).resolve().parent.parent / "corpus"


def load_corpus() -> list[dict[str, Any]]:
    """Every case of every corpus file, with `raw` turned into bytes and `file` added."""
    cases = []
    for path in sorted(CORPUS.glob("*.json")):
        for case in json.loads(path.read_text(encoding="ascii")):
            case["raw"] = case["raw"].encode("latin-1")
            case["file"] = path.stem
            cases.append(case)
    return cases


@pytest.fixture(scope="session")
def corpus_cases() -> list[dict[str, Any]]:
    return load_corpus()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "corpus_case" in metafunc.fixturenames:
        cases = load_corpus()
        ids = [f"{case['file']}:{case['name']}" for case in cases]
        metafunc.parametrize("corpus_case", cases, ids=ids)
