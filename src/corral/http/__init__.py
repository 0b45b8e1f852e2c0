"""HTTP/1.x on bytes alone (sans-IO): request heads, body framing and responses.

`grammar` holds the ABNF rules the others share (token, field value, quoted-string), `parser`
turns a request head into a `Request`, `body` decodes the Content-Length or chunked body that
follows it, `writer` builds response bytes, and `proxy` reads the PROXY protocol header a load
balancer may send first. Nothing in this package reads or writes a socket, and it must never
import socket, select, selectors, ssl, threading or asyncio: the workers own all I/O and feed
these modules bytes.
"""
