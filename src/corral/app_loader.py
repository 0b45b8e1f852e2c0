"""Turn an application spec such as ``pkg.app:create_app("prod")`` into a WSGI callable.

The spec is ``MODULE[:EXPRESSION]``. EXPRESSION defaults to ``application`` and is either a
dotted attribute path (``obj.app``) or a call of one with literal arguments only
(``create_app("prod", debug=False)``). The expression is parsed with :mod:`ast` and never
evaluated: a spec can name code to run, but it cannot carry code of its own.

Every failure is an :class:`~corral.errors.AppLoadError` whose message is one line saying what
is wrong; when the application's own code raised, the formatted traceback rides along in the
error's ``details`` attribute so the caller can print the line first and the traceback after it.

This module must never change ``sys.path`` or the working directory: ``--chdir`` and
``--pythonpath`` are the caller's business, done once before the first load.
"""

from __future__ import annotations

import ast
import importlib
import traceback
from collections.abc import Callable
from types import ModuleType
from typing import Any

from corral.errors import AppLoadError

DEFAULT_EXPRESSION = "application"

_MISSING = object()


def load_app(spec: str) -> Callable[..., Any]:
    """Import the module named by `spec` and return the application callable it names."""
    module_name, _, expression = spec.partition(":")
    module_name = module_name.strip()
    expression = expression.strip() or DEFAULT_EXPRESSION
    if not module_name or "" in module_name.split("."):
        raise _error(f"Invalid module name {module_name!r} in application spec {spec!r}.")
    path, call = _parse_expression(spec, expression)
    module = _import(module_name)
    target = _resolve(module, module_name, path)
    where = f"{module_name}:{'.'.join(path)}"
    if call is None:
        if not callable(target):
            raise _error(f"Application object '{where}' must be callable.")
        application: Callable[..., Any] = target
        return application
    made = _call_factory(target, where, call)
    if not callable(made):
        raise _error(f"Application object returned by factory '{where}' must be callable.")
    application = made
    return application


class _FactoryCall:
    """The literal arguments of a factory call written in the spec."""

    __slots__ = ("args", "kwargs")

    def __init__(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        self.args = args
        self.kwargs = kwargs


def _error(message: str, details: str = "") -> AppLoadError:
    return AppLoadError(message, details)


def _summary(exc: BaseException) -> str:
    """`ValueError: bad thing`, cut to its first line so the message stays one line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _parse_expression(spec: str, expression: str) -> tuple[list[str], _FactoryCall | None]:
    """Split EXPRESSION into an attribute path and, for a factory, its literal arguments."""
    try:
        node = ast.parse(expression, mode="eval").body
    except SyntaxError:
        raise _error(
            f"Failed to parse {expression!r} as an attribute name or function call "
            f"in application spec {spec!r}."
        ) from None
    if not isinstance(node, ast.Call):
        return _attribute_path(spec, node), None
    path = _attribute_path(spec, node.func)
    try:
        args = [_literal(arg) for arg in node.args]
        kwargs = {_keyword_name(kw): _literal(kw.value) for kw in node.keywords}
    except ValueError as exc:
        raise _error(
            f"Factory arguments in application spec {spec!r} must be literals: {exc}"
        ) from None
    return path, _FactoryCall(args, kwargs)


def _attribute_path(spec: str, node: ast.expr) -> list[str]:
    """`a.b.c` as ["a", "b", "c"]; anything but names and attribute access is refused."""
    path: list[str] = []
    while isinstance(node, ast.Attribute):
        path.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise _error(
            f"Application spec {spec!r} must name an attribute (module:name) "
            "or call one with literal arguments (module:factory(...))."
        )
    path.append(node.id)
    path.reverse()
    return path


def _literal(node: ast.expr) -> Any:
    if isinstance(node, ast.Starred):
        raise ValueError("*args unpacking is not allowed")
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(f"{ast.unparse(node)!r} is not a literal") from None


def _keyword_name(keyword: ast.keyword) -> str:
    if keyword.arg is None:
        raise ValueError("**kwargs unpacking is not allowed")
    return keyword.arg


def _import(module_name: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and _names_module_or_parent(exc.name, module_name):
            raise _error(f"{exc.msg}.") from None
        raise _error(f"Failed to import '{module_name}': {_summary(exc)}", _traceback(exc)) from exc
    # The module is the user's code: anything it raises while importing is reported, whatever
    # its type, the way a top-level guard would.
    except Exception as exc:
        raise _error(f"Failed to import '{module_name}': {_summary(exc)}", _traceback(exc)) from exc


def _names_module_or_parent(missing: str, module_name: str) -> bool:
    """True when the module that was not found is the spec's module or a package above it."""
    return module_name == missing or module_name.startswith(missing + ".")


def _resolve(module: ModuleType, module_name: str, path: list[str]) -> Any:
    target: Any = module
    owner = module_name
    for index, name in enumerate(path):
        target = getattr(target, name, _MISSING)
        if target is _MISSING:
            raise _error(f"Failed to find attribute '{name}' in '{owner}'.")
        owner = f"{module_name}:{'.'.join(path[: index + 1])}"
    return target


def _call_factory(factory: Any, where: str, call: _FactoryCall) -> Any:
    if not callable(factory):
        raise _error(f"Application factory '{where}' must be callable.")
    try:
        return factory(*call.args, **call.kwargs)
    # The factory is the user's code; see _import.
    except Exception as exc:
        raise _error(
            f"Application factory '{where}' raised {_summary(exc)}", _traceback(exc)
        ) from exc


def _traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
