"""docs/settings.md must be what `make docs` generates from the declarations today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from corral.config.reference import render_reference
from corral.config.settings import SPECS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_docs_settings_md_is_up_to_date() -> None:
    written = DOCS.read_text(encoding="utf-8") if DOCS.exists() else ""
    assert written == render_reference(), (
        "docs/settings.md is stale: run `make docs` and commit the result"
    )


def test_reference_documents_every_setting() -> None:
    text = render_reference()
    for spec in SPECS:
        assert f"### `{spec.key}`" in text
        for flag in spec.flags:
            assert f"`{flag}" in text


def test_module_prints_the_reference() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "corral.config.reference"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout == render_reference()
