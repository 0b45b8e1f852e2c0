"""load_app: module:attribute specs, factory calls with literal arguments, one-line errors."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.app_loader import load_app
from corral.errors import AppLoadError

WriteModule = Callable[[str, str], None]


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WriteModule]:
    """Write `name` (dotted names make packages) under tmp_path, importable for this test."""
    monkeypatch.syspath_prepend(str(tmp_path))
    roots: set[str] = set()

    def write(name: str, source: str) -> None:
        parts = name.split(".")
        roots.add(parts[0])
        directory = tmp_path
        for package in parts[:-1]:
            directory = directory / package
            directory.mkdir(exist_ok=True)
            (directory / "__init__.py").touch()
        (directory / f"{parts[-1]}.py").write_text(textwrap.dedent(source))

    yield write
    for loaded in list(sys.modules):
        if loaded.split(".")[0] in roots:
            del sys.modules[loaded]


def details(error: pytest.ExceptionInfo[AppLoadError]) -> str:
    value = getattr(error.value, "details", None)
    assert isinstance(value, str)
    return value


APP_SOURCE = """
def application(environ, start_response):
    return [b"default"]

def app(environ, start_response):
    return [b"app"]

class Holder:
    def app(self, environ, start_response):
        return [b"nested"]

holder = Holder()
not_callable = 42

def create_app(*args, **kwargs):
    def made(environ, start_response):
        return [repr((args, kwargs)).encode()]
    return made

def broken_factory():
    raise ValueError("no database\\nsecond line")

def returns_none():
    return None
"""


def call(app: Callable[..., Any]) -> Any:
    return app({}, lambda status, headers: None)


def test_default_attribute_is_application(write_module: WriteModule) -> None:
    write_module("la_default", APP_SOURCE)
    assert call(load_app("la_default")) == [b"default"]
    assert call(load_app("la_default:")) == [b"default"]


def test_named_attribute_in_a_package(write_module: WriteModule) -> None:
    write_module("la_pkg.web.main", APP_SOURCE)
    assert call(load_app("la_pkg.web.main:app")) == [b"app"]


def test_dotted_attribute_path(write_module: WriteModule) -> None:
    write_module("la_dotted", APP_SOURCE)
    assert call(load_app("la_dotted:holder.app")) == [b"nested"]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("create_app()", "((), {})"),
        ('create_app("prod", debug=False)', "(('prod',), {'debug': False})"),
        (
            "create_app(1, -2.5, None, [1, 2], {'a': (3,)}, b'x')",
            "((1, -2.5, None, [1, 2], {'a': (3,)}, b'x'), {})",
        ),
        ("  create_app( name = 'x' )  ", "((), {'name': 'x'})"),
    ],
)
def test_factory_with_literal_arguments(
    write_module: WriteModule, expression: str, expected: str
) -> None:
    write_module("la_factory", APP_SOURCE)
    body = call(load_app(f"la_factory:{expression}"))
    assert body == [expected.encode()]


def test_load_app_does_not_touch_sys_path(write_module: WriteModule) -> None:
    write_module("la_path", APP_SOURCE)
    before = list(sys.path)
    load_app("la_path:app")
    assert sys.path == before


def test_missing_module_is_one_line(write_module: WriteModule) -> None:
    with pytest.raises(AppLoadError) as error:
        load_app("la_no_such_module:app")
    assert str(error.value) == "No module named 'la_no_such_module'."
    assert details(error) == ""


def test_missing_parent_package_names_it(write_module: WriteModule) -> None:
    with pytest.raises(AppLoadError) as error:
        load_app("la_no_such_pkg.app")
    assert str(error.value) == "No module named 'la_no_such_pkg'."


def test_missing_dependency_inside_the_module_keeps_the_traceback(
    write_module: WriteModule,
) -> None:
    write_module("la_dep", "import la_not_installed_dependency\napplication = None\n")
    with pytest.raises(AppLoadError) as error:
        load_app("la_dep")
    message = str(error.value)
    assert message.startswith("Failed to import 'la_dep': ModuleNotFoundError")
    assert "la_not_installed_dependency" in details(error)
    assert "Traceback" in details(error)


def test_module_raising_on_import(write_module: WriteModule) -> None:
    write_module("la_raises", "x = 1\nraise RuntimeError('boom')\n")
    with pytest.raises(AppLoadError) as error:
        load_app("la_raises:app")
    assert str(error.value) == "Failed to import 'la_raises': RuntimeError: boom"
    assert "la_raises.py" in details(error)
    assert "RuntimeError: boom" in details(error)


def test_module_with_syntax_error(write_module: WriteModule) -> None:
    write_module("la_syntax", "def broken(:\n")
    with pytest.raises(AppLoadError) as error:
        load_app("la_syntax")
    assert str(error.value).startswith("Failed to import 'la_syntax': SyntaxError")
    assert "\n" not in str(error.value)
    assert "SyntaxError" in details(error)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("app2", "Failed to find attribute 'app2' in 'la_attr'."),
        ("holder.missing", "Failed to find attribute 'missing' in 'la_attr:holder'."),
        ("nothing.app", "Failed to find attribute 'nothing' in 'la_attr'."),
        ("nothing()", "Failed to find attribute 'nothing' in 'la_attr'."),
    ],
)
def test_missing_attribute(write_module: WriteModule, expression: str, message: str) -> None:
    write_module("la_attr", APP_SOURCE)
    with pytest.raises(AppLoadError) as error:
        load_app(f"la_attr:{expression}")
    assert str(error.value) == message
    assert details(error) == ""


def test_non_callable_application(write_module: WriteModule) -> None:
    write_module("la_nc", APP_SOURCE)
    with pytest.raises(AppLoadError) as error:
        load_app("la_nc:not_callable")
    assert str(error.value) == "Application object 'la_nc:not_callable' must be callable."


def test_factory_returning_non_callable(write_module: WriteModule) -> None:
    write_module("la_none", APP_SOURCE)
    with pytest.raises(AppLoadError, match="returned by factory 'la_none:returns_none'"):
        load_app("la_none:returns_none()")


def test_calling_a_non_callable(write_module: WriteModule) -> None:
    write_module("la_call_nc", APP_SOURCE)
    with pytest.raises(AppLoadError, match="factory 'la_call_nc:not_callable' must be callable"):
        load_app("la_call_nc:not_callable()")


def test_factory_raising_names_it_and_keeps_the_traceback(write_module: WriteModule) -> None:
    write_module("la_broken", APP_SOURCE)
    with pytest.raises(AppLoadError) as error:
        load_app("la_broken:broken_factory()")
    assert str(error.value) == (
        "Application factory 'la_broken:broken_factory' raised ValueError: no database"
    )
    assert "raise ValueError" in details(error)


def test_factory_called_with_wrong_arguments(write_module: WriteModule) -> None:
    write_module("la_args", APP_SOURCE)
    with pytest.raises(AppLoadError, match="'la_args:broken_factory' raised TypeError"):
        load_app("la_args:broken_factory(1)")


@pytest.mark.parametrize(
    "expression",
    [
        "create_app(",  # not Python
        "app;import os",  # not an expression
        "create_app(os.getcwd())",  # a call inside the arguments
        "create_app(x)",  # a name, not a literal
        "create_app(*[1])",
        "create_app(**{'a': 1})",
        "create_app()()",  # a call of a call
        "apps[0]",  # subscript
        "'app'",  # a constant
        "__import__('os').system('true')",
        "create_app(1 + 2)",
    ],
)
def test_bad_expression_names_the_spec(write_module: WriteModule, expression: str) -> None:
    write_module("la_bad", APP_SOURCE)
    spec = f"la_bad:{expression}"
    with pytest.raises(AppLoadError) as error:
        load_app(spec)
    assert repr(spec) in str(error.value)
    assert "\n" not in str(error.value)


def test_bad_expression_is_refused_before_importing(write_module: WriteModule) -> None:
    write_module("la_not_imported", "raise RuntimeError('must not run')\n")
    with pytest.raises(AppLoadError, match="must name an attribute"):
        load_app("la_not_imported:apps[0]")
    assert "la_not_imported" not in sys.modules


@pytest.mark.parametrize("spec", [":app", "", ".relative:app", "a..b:app"])
def test_bad_module_name(spec: str) -> None:
    with pytest.raises(AppLoadError, match="Invalid module name"):
        load_app(spec)
