"""The hello-world WSGI app every server in the benchmark serves."""

BODY = b"Hello, World!"


def application(environ, start_response):  # type: ignore[no-untyped-def]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [BODY]
