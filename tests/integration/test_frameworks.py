"""Flask and Django applications served by corral, per worker class, driven by a real client.

Each site is a real server subprocess (module-scoped), and every route does real framework
work: forms (with Django's CSRF cookie round-trip), 2 MB multipart uploads, streamed
generators, a ~1 MB JSON body, cookies, redirects and 404s. Cookies are carried by hand in
headers, so what is asserted is exactly what went over the wire. A framework that is not
installed skips its own sites; the other still runs.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie

import pytest

from support.server import Server


@dataclass(frozen=True)
class Framework:
    module: str
    app: str
    routes: dict[str, str]
    # (path, status, Location, text found in the body once the redirect is followed)
    redirects: list[tuple[str, int, str, str]] = field(default_factory=list)


FRAMEWORKS = {
    "flask": Framework(
        module="flask",
        app="apps.flask_app:app",
        routes={
            "hello": "/",
            "pid": "/pid",
            "form": "/form",
            "upload": "/upload",
            "stream": "/stream",
            "large": "/large.json",
            "cookie_set": "/cookie/set",
            "cookie_get": "/cookie/get",
        },
        redirects=[("/redirect", 302, "/?name=redirected", "Hello, redirected!")],
    ),
    "django": Framework(
        module="django",
        app="apps.django_project.wsgi:application",
        routes={
            "hello": "/hello/",
            "pid": "/pid/",
            "form": "/form/",
            "upload": "/upload/",
            "stream": "/stream/",
            "large": "/large.json",
            "cookie_set": "/cookie/set/",
            "cookie_get": "/cookie/get/",
        },
        redirects=[
            ("/redirect/", 302, "/form/", 'action="/form/"'),
            ("/home/", 302, "/hello/", "Hello, world!"),  # RedirectView(url=reverse_lazy(...))
            ("/hello", 301, "/hello/", "Hello, world!"),  # CommonMiddleware's APPEND_SLASH
        ],
    ),
}

SYNC = ["-k", "sync"]
GTHREAD = ["-k", "gthread", "--threads", "4"]

# site id -> (framework, corral arguments, workers)
SITES = {
    "flask-sync": ("flask", SYNC, 1),
    "flask-gthread": ("flask", GTHREAD, 1),
    "django-sync": ("django", SYNC, 1),
    "django-gthread": ("django", GTHREAD, 1),
    "django-preload": ("django", [*SYNC, "--preload"], 2),
}

CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
FORM_ACTION = re.compile(r'<form method="post" action="([^"]+)"')


@dataclass
class Site:
    name: str
    framework: Framework
    server: Server

    @property
    def preload(self) -> bool:
        return "--preload" in self.server.args

    def path(self, route: str) -> str:
        return self.framework.routes[route]

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)


@pytest.fixture(params=sorted(SITES), scope="module")
def site(request: pytest.FixtureRequest) -> Iterator[Site]:
    framework_name, args, workers = SITES[request.param]
    framework = FRAMEWORKS[framework_name]
    pytest.importorskip(framework.module)
    with Server(framework.app, *args, workers=workers) as server:
        yield Site(request.param, framework, server)
        # A response can look right while the server logged a failure (e.g. on close()).
        log = server.log()
        assert "Traceback" not in log and "[ERROR]" not in log, log


def fetch(
    site: Site,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> tuple[http.client.HTTPResponse, bytes]:
    """One request; on `conn` if given (kept open for the caller), else on a fresh connection."""
    own = conn is None
    conn = conn or site.connect()
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp, resp.read()
    finally:
        if own:
            conn.close()


def cookies_from(resp: http.client.HTTPResponse) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    for value in resp.headers.get_all("Set-Cookie") or []:
        jar.load(value)
    return jar


def form_credentials(site: Site) -> tuple[str, dict[str, str], dict[str, str]]:
    """GET the form page as a browser would: its action, hidden fields and cookies to send back."""
    resp, data = fetch(site, "GET", site.path("form"))
    assert resp.status == 200
    assert resp.getheader("Content-Type", "").startswith("text/html")
    page = data.decode()
    action = FORM_ACTION.search(page)
    assert action, page
    hidden: dict[str, str] = {}
    cookie_header: dict[str, str] = {}
    token = CSRF_INPUT.search(page)
    if token:
        hidden["csrfmiddlewaretoken"] = token.group(1)
        csrf_cookie = cookies_from(resp)["csrftoken"]
        cookie_header["Cookie"] = f"csrftoken={csrf_cookie.value}"
    return action.group(1), hidden, cookie_header


def multipart(
    fields: dict[str, str], files: dict[str, tuple[str, str, bytes]]
) -> tuple[bytes, str]:
    """A multipart/form-data body (RFC 7578) and its Content-Type, built by hand."""
    boundary = "corral-" + os.urandom(16).hex()
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    for name, (filename, content_type, data) in files.items():
        parts.append(
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def test_hello(site: Site) -> None:
    resp, data = fetch(site, "GET", site.path("hello"))
    assert resp.status == 200
    assert resp.getheader("Content-Type", "").startswith("text/plain")
    assert resp.getheader("Content-Length") == str(len(data))
    assert data == b"Hello, world!"


def test_form_post_round_trip(site: Site) -> None:
    action, hidden, cookie_header = form_credentials(site)
    assert action == site.path("form")
    sent = [
        ("name", "Zoë Ångström"),
        ("topic", "billing"),
        ("topic", "a & b = c"),
        ("message", "line one\r\nline two: 100% ✓"),
    ]
    body = urllib.parse.urlencode([*hidden.items(), *sent]).encode()
    resp, data = fetch(
        site,
        "POST",
        action,
        body,
        {"Content-Type": "application/x-www-form-urlencoded", **cookie_header},
    )
    assert resp.status == 200, data[:500]
    assert json.loads(data) == {
        "fields": {
            "name": ["Zoë Ångström"],
            "topic": ["billing", "a & b = c"],
            "message": ["line one\r\nline two: 100% ✓"],
        }
    }


def test_django_rejects_form_post_without_csrf_token(site: Site) -> None:
    if site.framework.module != "django":
        pytest.skip("CSRF protection is Django's")
    body = urllib.parse.urlencode({"name": "mallory"}).encode()
    resp, _ = fetch(
        site, "POST", site.path("form"), body, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert resp.status == 403


def test_upload_2mb_file(site: Site) -> None:
    _, hidden, cookie_header = form_credentials(site)
    payload = os.urandom(2 * 1024 * 1024)
    body, content_type = multipart(
        {**hidden, "caption": "random bytes"},
        {"file": ("noise.bin", "application/octet-stream", payload)},
    )
    resp, data = fetch(
        site, "POST", site.path("upload"), body, {"Content-Type": content_type, **cookie_header}
    )
    assert resp.status == 200, data[:500]
    result = json.loads(data)
    assert result["filename"] == "noise.bin"
    assert result["content_type"] == "application/octet-stream"
    assert result["size"] == len(payload)
    assert result["sha256"] == hashlib.sha256(payload).hexdigest()
    assert result["fields"] == {"caption": "random bytes"}
    if site.framework.module == "django":
        # Above FILE_UPLOAD_MAX_MEMORY_SIZE: Django spooled it to a temporary file.
        assert result["on_disk"] is True


def test_streamed_response_arrives_complete(site: Site) -> None:
    count, size = 500, 1000
    resp, data = fetch(site, "GET", f"{site.path('stream')}?count={count}&size={size}")
    assert resp.status == 200
    assert resp.getheader("Content-Length") is None
    assert resp.getheader("Transfer-Encoding") == "chunked"
    expected = "".join(f"{i:06d}:" + "x" * size + "\n" for i in range(count)).encode()
    assert len(data) == len(expected)
    assert data == expected


def test_large_json(site: Site) -> None:
    resp, data = fetch(site, "GET", site.path("large"))
    assert resp.status == 200
    assert resp.getheader("Content-Type") == "application/json"
    assert resp.getheader("Content-Length") == str(len(data))
    assert len(data) > 1_000_000
    result = json.loads(data)
    assert result["count"] == 20_000
    assert result["items"][0] == {"id": 0, "name": "item-0", "tags": ["a", "b", "c"]}
    assert result["items"][-1]["name"] == "item-19999"
    assert [item["id"] for item in result["items"]] == list(range(20_000))


def test_head_sends_no_body_and_keeps_the_connection_usable(site: Site) -> None:
    conn = site.connect()
    try:
        get_resp, get_data = fetch(site, "GET", site.path("large"), conn=conn)
        assert get_resp.status == 200
        head_resp, head_data = fetch(site, "HEAD", site.path("large"), conn=conn)
        assert head_resp.status == 200
        assert head_data == b""
        assert head_resp.getheader("Content-Length") == str(len(get_data))
        # Had the server sent the HEAD's body anyway, this response would be read from it.
        resp, data = fetch(site, "GET", site.path("hello"), conn=conn)
        assert resp.status == 200
        assert data == b"Hello, world!"
    finally:
        conn.close()


def test_cookie_set_then_read_back(site: Site) -> None:
    conn = site.connect()
    try:
        resp, data = fetch(site, "GET", f"{site.path('cookie_set')}?value=ginger", conn=conn)
        assert resp.status == 200
        assert data == b"cookie set"
        morsel = cookies_from(resp)["flavour"]
        assert morsel.value == "ginger"
        assert morsel["path"] == "/"
        assert morsel["httponly"] is True
        assert morsel["samesite"] == "Lax"

        resp, data = fetch(
            site, "GET", site.path("cookie_get"), headers={"Cookie": "flavour=ginger"}, conn=conn
        )
        assert resp.status == 200
        assert json.loads(data) == {"flavour": "ginger"}

        resp, data = fetch(site, "GET", site.path("cookie_get"), conn=conn)
        assert json.loads(data) == {"flavour": None}
    finally:
        conn.close()


def test_redirects(site: Site) -> None:
    assert site.framework.redirects
    for path, status, location, text in site.framework.redirects:
        resp, _ = fetch(site, "GET", path)
        assert resp.status == status, path
        assert resp.getheader("Location") == location, path
        resp, data = fetch(site, "GET", location)
        assert resp.status == 200, location
        assert text in data.decode(), location


def test_not_found_then_next_request_on_same_connection(site: Site) -> None:
    conn = site.connect()
    try:
        resp, data = fetch(site, "GET", "/no/such/page", conn=conn)
        assert resp.status == 404
        assert resp.getheader("Content-Type", "").startswith("text/html")
        assert b"Not Found" in data
        resp, data = fetch(site, "GET", site.path("hello"), conn=conn)
        assert resp.status == 200
        assert data == b"Hello, world!"
    finally:
        conn.close()


def test_application_loaded_in_master_only_with_preload(site: Site) -> None:
    resp, data = fetch(site, "GET", site.path("pid"))
    assert resp.status == 200
    result = json.loads(data)
    assert result["pid"] in site.server.worker_pids()
    if site.preload:
        assert result["loaded_in"] == site.server.proc.pid  # type: ignore[union-attr]
    else:
        assert result["loaded_in"] == result["pid"]
