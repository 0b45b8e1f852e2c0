"""The shared ABNF rules of grammar.py: each one admits exactly the octets its RFC rule names,
and means the same in str patterns (latin-1 text) and in bytes patterns."""

from __future__ import annotations

import re

import pytest

from corral.http import grammar

# RFC 9110 §5.6.2
TCHARS = set(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# RFC 5234 B.1 VCHAR, RFC 9110 §5.5 obs-text
VCHARS = set(range(0x21, 0x7F)) | set(range(0x80, 0x100))


def members(pattern: str) -> set[int]:
    """The octets a one-octet pattern matches, checked as str and as bytes pattern alike."""
    text = re.compile(pattern)
    octets = re.compile(pattern.encode())
    found = {n for n in range(256) if text.fullmatch(chr(n))}
    assert found == {n for n in range(256) if octets.fullmatch(bytes([n]))}
    return found


def test_tchar_is_exactly_the_rfc_set() -> None:
    assert members(f"[{grammar.TCHAR}]") == TCHARS


def test_field_vchar_and_field_text() -> None:
    assert members(f"[{grammar.FIELD_VCHAR}]") == VCHARS
    assert members(f"[{grammar.FIELD_TEXT}]") == VCHARS | {0x09, 0x20}


def test_ows_is_only_space_and_tab() -> None:
    ows = re.compile(grammar.OWS)
    assert ows.fullmatch(" \t \t")
    assert ows.fullmatch("")
    for other in ("\x0b", "\x0c", "\r", "\n", "\xa0", "\x85"):
        assert not ows.fullmatch(other)


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ('""', True),
        ('"a b\tc"', True),
        ('"\\"quoted\\""', True),
        ('"\\\\"', True),
        ('"caf\xe9"', True),
        ('"a"b"', False),
        ('"unterminated', False),
        ('"\\"', False),  # the quote is escaped: no closing DQUOTE
        ('"a\x7fb"', False),  # DEL is no qdtext
        ('"a\rb"', False),
        ('"\\\n"', False),  # quoted-pair cannot escape a line break
    ],
)
def test_quoted_string(text: str, valid: bool) -> None:
    assert bool(re.fullmatch(grammar.QUOTED_STRING, text)) is valid
    as_bytes = re.fullmatch(grammar.QUOTED_STRING.encode(), text.encode("latin-1"))
    assert bool(as_bytes) is valid


def test_parameter_value_is_token_or_quoted_string() -> None:
    value = re.compile(grammar.PARAMETER_VALUE)
    assert value.fullmatch("abc")
    assert value.fullmatch('"a b"')
    assert not value.fullmatch("a b")
    assert not value.fullmatch("")


def test_token_re() -> None:
    assert grammar.TOKEN_RE.fullmatch("X-Custom_1.2~")
    for bad in ("", "a b", "a:b", "a\x00", "caf\xe9", "(x)"):
        assert not grammar.TOKEN_RE.fullmatch(bad)
