"""The reloader notices edits to watched files, with each engine, through real files."""

from __future__ import annotations

import importlib
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from corral.workers.reloader import ENGINES, Reloader, available_engines

DEADLINE = 10.0
ENGINE_PARAMS = [
    pytest.param(
        name,
        marks=pytest.mark.skipif(
            name not in available_engines(), reason=f"{name} is not available here"
        ),
    )
    for name in ENGINES
]


class Changes:
    """Records on_change calls; `event` is set at the first."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.event = threading.Event()

    def __call__(self, path: str) -> None:
        self.paths.append(path)
        self.event.set()

    def first(self) -> str:
        assert self.event.wait(DEADLINE), "no change reported before the deadline"
        return self.paths[0]


MakeReloader = Callable[..., tuple[Reloader, Changes]]


@pytest.fixture
def make_reloader() -> Iterator[MakeReloader]:
    started: list[Reloader] = []

    def make(extra_files: Sequence[str] = (), engine: str = "auto") -> tuple[Reloader, Changes]:
        changes = Changes()
        reloader = Reloader(changes, extra_files=extra_files, interval=0.05, engine=engine)
        reloader.start()
        started.append(reloader)
        return reloader, changes

    yield make
    for reloader in started:
        reloader.stop()
        reloader.join(DEADLINE)
        assert not reloader.is_alive()


def wait_until(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    done = threading.Event()
    while not predicate():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        done.wait(0.01)


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_extra_file_change(tmp_path: Path, engine: str, make_reloader: MakeReloader) -> None:
    watched = tmp_path / "template.html"
    watched.write_text("<p>old</p>")
    reloader, changes = make_reloader(extra_files=[str(watched)], engine=engine)
    assert reloader.engine == engine
    (tmp_path / "unrelated.txt").write_text("not watched")
    watched.write_text("<p>new content</p>")
    assert changes.first() == str(watched)
    reloader.join(DEADLINE)
    assert not reloader.is_alive(), "the reloader stops after reporting a change"
    assert changes.paths == [str(watched)]


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_extra_file_created_later(tmp_path: Path, engine: str, make_reloader: MakeReloader) -> None:
    watched = tmp_path / "settings.ini"
    _, changes = make_reloader(extra_files=[str(watched)], engine=engine)
    watched.write_text("[main]\n")
    assert changes.first() == str(watched)


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_deletion_alone_is_not_a_change(
    tmp_path: Path, engine: str, make_reloader: MakeReloader
) -> None:
    deleted, edited = tmp_path / "a.txt", tmp_path / "b.txt"
    deleted.write_text("a")
    edited.write_text("b")
    _, changes = make_reloader(extra_files=[str(deleted), str(edited)], engine=engine)
    deleted.unlink()
    edited.write_text("bb")
    assert changes.first() == str(edited)


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_replaced_by_rename(tmp_path: Path, engine: str, make_reloader: MakeReloader) -> None:
    watched = tmp_path / "conf.py"
    watched.write_text("x = 1\n")
    _, changes = make_reloader(extra_files=[str(watched)], engine=engine)
    staging = tmp_path / ".conf.py.swp"
    staging.write_text("x = 2\n")
    staging.replace(watched)
    assert changes.first() == str(watched)


@pytest.fixture
def module_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    name = f"corral_reload_probe_{tmp_path.name.replace('-', '_')}"
    source = tmp_path / f"{name}.py"
    source.write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield source
    sys.modules.pop(name, None)


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_imported_module_is_watched(
    module_in_tmp: Path, engine: str, make_reloader: MakeReloader
) -> None:
    module = importlib.import_module(module_in_tmp.stem)
    assert module.__file__ == str(module_in_tmp)
    reloader, changes = make_reloader(engine=engine)
    assert reloader.is_watching(str(module_in_tmp))
    module_in_tmp.write_text("VALUE = 2  # edited\n")
    assert changes.first() == str(module_in_tmp)


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_module_imported_after_start_is_watched(
    module_in_tmp: Path, engine: str, make_reloader: MakeReloader
) -> None:
    reloader, changes = make_reloader(engine=engine)
    assert not reloader.is_watching(str(module_in_tmp))
    importlib.import_module(module_in_tmp.stem)
    wait_until(lambda: reloader.is_watching(str(module_in_tmp)))
    module_in_tmp.write_text("VALUE = 3  # edited later\n")
    assert changes.first() == str(module_in_tmp)


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_stop_reports_nothing(tmp_path: Path, engine: str) -> None:
    changes = Changes()
    reloader = Reloader(changes, extra_files=[str(tmp_path / "x")], interval=60, engine=engine)
    reloader.start()
    reloader.stop()
    reloader.join(DEADLINE)
    assert not reloader.is_alive()
    assert changes.paths == []


def test_stop_before_start_releases_the_engine() -> None:
    reloader = Reloader(Changes())
    reloader.stop()
    reloader.stop()


def test_auto_picks_the_preferred_engine() -> None:
    reloader = Reloader(Changes())
    assert reloader.engine == available_engines()[0]
    assert "poll" in available_engines()
    reloader.stop()


def test_unknown_engine() -> None:
    with pytest.raises(ValueError, match="reload engine 'fsevents' is not available"):
        Reloader(Changes(), engine="fsevents")
