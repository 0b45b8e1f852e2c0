"""HTTP/1.x on bytes alone (sans-IO): request heads, body framing and responses.

`parser` turns a request head into a `Request`, `body` decodes the Content-Length or chunked
body that follows it, `writer` builds response bytes. Nothing in this package reads or writes
a socket, and it must never import socket, select, selectors, ssl, threading or asyncio: the
workers own all I/O and feed these modules bytes.
"""
