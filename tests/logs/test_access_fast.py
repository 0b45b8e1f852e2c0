"""The access log's fast path writes the same lines as the general one, in batches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corral.logs.access_fast import BatchedFile, compile_line
from corral.logs.access_lines import DEFAULT_ACCESS_LOG_FORMAT, _plan, _Request

ENVIRON = {
    "REMOTE_ADDR": "10.0.0.7",
    "REQUEST_METHOD": "POST",
    "RAW_URI": "/a%20b?x=1",
    "PATH_INFO": "/a b",
    "QUERY_STRING": "x=1",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "HTTP_USER_AGENT": 'agent "quoted"\nand a second line',
    "HTTP_REFERER": "http://ref/",
    "HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz",
    "HTTP_X_ID": "42",
}
FORMATS = [
    DEFAULT_ACCESS_LOG_FORMAT,
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(B)s %(b)s %(T)s %(D)s %(M)s %(L)s %(p)s',
    "%(m)s %(U)s %(q)s %(H)s %({x-id}i)s %({content-type}o)s %({remote_addr}e)s 100%%",
    "%(a)s|%(nope)s|%(f)s",
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("length", [None, 0, 1234])
def test_same_line_as_the_general_path(fmt: str, length: int | None) -> None:
    headers = [("Content-Type", "text/html")]
    expected = fmt % {
        key: atom(_Request(ENVIRON, "201 Created", headers, length, 1.5))
        for key, atom in _plan(fmt)
    }
    builder = compile_line(fmt)
    assert builder is not None
    assert builder(ENVIRON, "201 Created", headers, length, 1.5) == expected
    assert "\n" not in expected


def test_other_conversions_take_the_general_path() -> None:
    assert compile_line("%(s)d %(h)s") is None


def test_batches_are_written_on_flush_and_at_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    batched = BatchedFile(str(path))
    batched.write("one")
    assert path.read_text() == ""
    batched.flush()
    assert path.read_text() == "one\n"
    for i in range(BatchedFile.LIMIT):
        batched.write(f"line {i}")
    assert path.read_text().count("\n") == 1 + BatchedFile.LIMIT
    batched.write("pending")
    os.rename(path, tmp_path / "access.log.1")
    batched.reopen()
    batched.write("after")
    batched.close()
    assert (tmp_path / "access.log.1").read_text().endswith("pending\n")
    assert path.read_text() == "after\n"
