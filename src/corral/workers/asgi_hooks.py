"""The `pre_request` and `post_request` hooks around an HTTP request of the `asgi` worker.

Whether a worker has request hooks is decided once, when it starts (`request_hooks` returns
None without them, and the request path then does nothing for them). With them, each HTTP/1.1
request and each HTTP/2 request stream gets one `HookRequest` (corral.hooks): `pre_request`
sees it just before the application is called, `post_request` the same object once the
response is over, with a CGI-style environ of the request and the response the client got.
WebSocket sessions get no request hooks (docs/hooks.md says why).

What this module must never do: let a hook's exception reach the request or the worker (it is
logged with its traceback), or change the request, its scope or its response.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote_to_bytes

from corral.adapters.asgi_extensions import access_environ, response_headers
from corral.config import settings as default_hooks
from corral.hooks import HookRequest, HookResponse
from corral.http.parser import Request
from corral.http.writer import REASONS

if TYPE_CHECKING:
    from corral.workers.asgi import AsgiWorker

log = logging.getLogger("corral.error")


class Answered(Protocol):
    """An HTTP/1.1 exchange (adapters.asgi.Exchange) or an HTTP/2 stream, as a response."""

    status: int
    head_sent: bool
    headers: Any
    sent: int


def request_hooks(worker: AsgiWorker) -> RequestHooks | None:
    """The worker's request hooks, or None when the config file sets neither."""
    s = worker.settings
    pre = s.pre_request if s.pre_request is not default_hooks.pre_request else None
    post = s.post_request if s.post_request is not default_hooks.post_request else None
    if pre is None and post is None:
        return None
    return RequestHooks(worker, pre, post)


class RequestHooks:
    """`before` a request's application call, `after` its response."""

    def __init__(
        self,
        worker: AsgiWorker,
        pre: Callable[..., object] | None,
        post: Callable[..., object] | None,
    ) -> None:
        self.worker = worker
        self.pre = pre
        self.post = post

    def before(self, req: Request) -> HookRequest:
        """pre_request, just before the application. As on the sync and gthread workers, a
        hook that raises is logged and the request is served all the same."""
        view = HookRequest(req)
        if self.pre is not None:
            try:
                self.pre(self.worker, view)
            except Exception:
                log.exception("Exception in pre_request hook")
        return view

    def after(self, view: HookRequest, scope: dict[str, Any], exchange: Answered) -> None:
        """post_request, once the response is over (sent, or given up on)."""
        if self.post is None:
            return
        try:
            environ = hook_environ(view.request, scope)
            self.post(self.worker, view, environ, HookResponse(SentResponse(exchange)))
        except Exception:
            log.exception("Exception in post_request hook")


class SentResponse:
    """What the client got: the status of the head sent (500 when the application failed or
    returned before starting a response, as the access log counts it), the application's
    headers, the body bytes sent and whether the body was chunked (never on HTTP/2)."""

    __slots__ = ("chunked", "code", "headers", "sent", "status")

    def __init__(self, exchange: Answered) -> None:
        code = exchange.status if exchange.head_sent else 500
        self.code = code
        self.status = f"{code} {REASONS.get(code, '')}".rstrip()
        self.headers = response_headers(exchange.headers)
        self.sent = exchange.sent
        self.chunked: bool = getattr(exchange, "chunked", False)


def hook_environ(req: Request, scope: dict[str, Any]) -> dict[str, Any]:
    """The request as CGI/WSGI names it (PEP 3333: PATH_INFO percent-decoded, as latin-1),
    with the scope the application got under `asgi.scope`."""
    environ = access_environ(req, scope["client"])
    path = req.path
    if "%" in path:
        path = unquote_to_bytes(path).decode("latin-1")
    host, port = scope["server"] or ("", None)
    environ.update(
        {
            "SCRIPT_NAME": scope["root_path"],
            "PATH_INFO": path,
            "SERVER_NAME": host,
            "SERVER_PORT": "" if port is None else str(port),
            "wsgi.url_scheme": scope["scheme"],
            "asgi.scope": scope,
        }
    )
    return environ
