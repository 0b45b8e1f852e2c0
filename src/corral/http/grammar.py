"""The ABNF rules that several parts of HTTP/1.x share, written once as regex sources.

The request parser, the chunked body decoder and the response writer (and the WSGI response
adapter) build their patterns from these pieces, so a token or a field value means the same
bytes everywhere. Each rule sits under the RFC 9110 / RFC 9112 section that defines it.

Every piece is the *source* of a regex: character-class bodies (no brackets, to be put inside
`[...]`) or whole expressions. They are str and ASCII only, so they work unchanged in str
patterns over latin-1 text (one character per wire byte) and, `.encode()`d, in bytes patterns.
`\\x80-\\xff` then means the bytes 0x80-0xFF. Nothing here matches line breaks, so no pattern
built from these pieces can run across a line.

Pure data: this module never does I/O and must never import socket, select, selectors, ssl,
threading or asyncio.
"""

from __future__ import annotations

import re

# RFC 9110 §5.6.2 Tokens
#   tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" /
#           "~" / DIGIT / ALPHA
#   token = 1*tchar
TCHAR = r"!#$%&'*+\-.^_`|~0-9A-Za-z"
TOKEN = rf"[{TCHAR}]+"

# RFC 9110 §5.6.3 Whitespace
#   OWS = *( SP / HTAB ); BWS = OWS (whitespace allowed only for historical reasons)
OWS = r"[\t ]*"
BWS = OWS

# RFC 9110 §5.5 Field Values
#   field-vchar = VCHAR / obs-text; VCHAR = %x21-7E (RFC 5234); obs-text = %x80-FF
FIELD_VCHAR = r"\x21-\x7e\x80-\xff"
#   field-content = field-vchar [ 1*( SP / HTAB / field-vchar ) field-vchar ]
# The octets a field value may hold anywhere: SP, HTAB and field-vchar, that is no CTL but HTAB.
# RFC 9112 §4 reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ) is the same set.
FIELD_TEXT = rf"\t {FIELD_VCHAR}"

# RFC 9110 §5.6.4 Quoted Strings
#   quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE
#   qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
#   quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
QUOTED_STRING = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'

# RFC 9112 §7 Transfer Codings: transfer-parameter = token BWS "=" BWS ( token / quoted-string ),
# and RFC 9112 §7.1.1: chunk-ext-val = token / quoted-string, after chunk-ext-name BWS "=" BWS.
PARAMETER_VALUE = rf"(?:{TOKEN}|{QUOTED_STRING})"

# RFC 9110 §5.1: field-name = token. Compiled once for every module that checks a name alone.
TOKEN_RE = re.compile(TOKEN)
