"""Calling the server hooks of a config file, and what the request hooks are handed.

A hook that raises is logged with its traceback and never takes the server down; Gunicorn's
deliberate exceptions are the same here: SystemExit from a hook still ends the process.

`pre_request(worker, req)` and `post_request(worker, req, environ, resp)` receive `HookRequest`
and `HookResponse`: the attribute names and value types Gunicorn's own request and response
objects have (`req.version` is a tuple such as (1, 1), `req.uri` the target as sent,
`resp.status` the status line's text such as "200 OK", `resp.status_code` an int), over
corral's objects. They are built only when such a hook is set, so a server without request
hooks pays nothing. This module never touches a socket and never changes a request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("corral.error")

# "HTTP/1.1" -> (1, 1): Gunicorn's req.version is a (major, minor) tuple.
_VERSIONS = {"HTTP/1.1": (1, 1), "HTTP/1.0": (1, 0), "HTTP/2": (2, 0), "HTTP/2.0": (2, 0)}


def call_hook(settings: object, name: str, *args: object) -> None:
    hook: Callable[..., object] | None = getattr(settings, name, None)
    if hook is None:
        return
    try:
        hook(*args)
    except Exception:
        log.exception("Exception in %s hook", name)


def version_tuple(version: str) -> tuple[int, int]:
    known = _VERSIONS.get(version)
    if known is not None:
        return known
    major, _, minor = version.partition("/")[2].partition(".")
    try:
        return int(major), int(minor or 0)
    except ValueError:
        return (1, 1)


class HookRequest:
    """A parsed request as Gunicorn's hooks see one.

    `method`, `uri`, `path`, `query`, `fragment`, `version`, `headers` (a list of
    (NAME, value), names upper case, in the order received) and `trailers`; any other name
    is looked up on corral's request (`target`, `content_length`, `keep_alive`, ...). A hook
    may set attributes of its own (`req.started = time.time()` in pre_request): the same
    object reaches post_request.
    """

    def __init__(self, req: Any) -> None:
        self.request = req
        self.method: str = req.method
        self.uri: str = req.target
        self.path: str = req.path
        self.query: str = req.query
        self.fragment = ""  # a request target never carries one (RFC 9110 section 4.1)
        self.version = version_tuple(req.version)
        self.headers: list[tuple[str, str]] = req.headers
        self.trailers: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        # Only called for names not set above: corral's own request answers them.
        if name == "request":
            raise AttributeError(name)
        return getattr(self.request, name)

    def __repr__(self) -> str:
        return f"<HookRequest {self.method} {self.uri}>"


class HookResponse:
    """A response as Gunicorn's post_request sees one: `status` ("200 OK"), `status_code`
    (200), `headers` (as the application gave them), `sent` (body bytes sent) and `chunked`;
    other names are looked up on corral's response."""

    def __init__(self, resp: Any) -> None:
        self.response = resp
        status = resp.status
        self.status: str | None = status
        code = getattr(resp, "code", 0)
        self.status_code: int | None = code or _code_of(status)

    @property
    def headers(self) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = self.response.headers
        return headers

    @property
    def sent(self) -> int:
        sent: int = self.response.sent
        return sent

    def __getattr__(self, name: str) -> Any:
        if name == "response":
            raise AttributeError(name)
        return getattr(self.response, name)

    def __repr__(self) -> str:
        return f"<HookResponse {self.status}>"


def _code_of(status: str | None) -> int | None:
    try:
        return int(status.split(None, 1)[0]) if status else None
    except ValueError:
        return None
