"""JSON access lines (--access-log-json): keys, types, and lines no client can forge."""

from __future__ import annotations

import datetime
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from corral.config import load_settings
from corral.logs.access import access_writer, json_line
from corral.logs.logger import load_logger

ENVIRON: dict[str, Any] = {
    "REQUEST_METHOD": "POST",
    "RAW_URI": "/submit/form?x=1&y=%22",
    "SCRIPT_NAME": "",
    "PATH_INFO": "/submit/form",
    "QUERY_STRING": "x=1&y=%22",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "192.0.2.7",
    "HTTP_USER_AGENT": "curl/8.0",
    "HTTP_REFERER": "https://example.com/",
}
KEYS = [
    "time",
    "remote_addr",
    "method",
    "path",
    "query",
    "protocol",
    "status",
    "response_length",
    "request_time_us",
    "referer",
    "user_agent",
    "pid",
]
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d")


pytestmark = pytest.mark.usefixtures("restore_loggers")


def logged_json(
    path: Path,
    environ: dict[str, Any] = ENVIRON,
    status: str = "201 Created",
    length: int | None = 1234,
    request_time: float = 1.002345,
) -> dict[str, Any]:
    access_writer(json_line, None)(environ, status, [], length, request_time)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1, lines
    record = json.loads(lines[0])
    assert isinstance(record, dict)
    return record


def test_keys_and_values(access_file: Path) -> None:
    record = logged_json(access_file)
    assert list(record) == KEYS
    assert ISO_TIME.fullmatch(record.pop("time"))
    assert record == {
        "remote_addr": "192.0.2.7",
        "method": "POST",
        "path": "/submit/form",
        "query": "x=1&y=%22",
        "protocol": "HTTP/1.1",
        "status": 201,
        "response_length": 1234,
        "request_time_us": 1002345,
        "referer": "https://example.com/",
        "user_agent": "curl/8.0",
        "pid": os.getpid(),
    }


def test_time_is_now_with_the_local_offset(access_file: Path) -> None:
    before = datetime.datetime.now().astimezone()
    stamp = datetime.datetime.fromisoformat(logged_json(access_file)["time"])
    after = datetime.datetime.now().astimezone()
    assert stamp.utcoffset() == before.utcoffset()
    assert before - datetime.timedelta(milliseconds=1) <= stamp <= after


def test_missing_values_are_null(access_file: Path) -> None:
    record = logged_json(access_file, environ={}, status="200 OK", length=None, request_time=0.0)
    del record["time"], record["pid"]
    assert record == {
        "remote_addr": None,
        "method": None,
        "path": "",
        "query": None,
        "protocol": None,
        "status": 200,
        "response_length": None,
        "request_time_us": 0,
        "referer": None,
        "user_agent": None,
    }


def test_path_without_raw_uri(access_file: Path) -> None:
    environ = {**ENVIRON, "SCRIPT_NAME": "/app"}
    del environ["RAW_URI"]
    record = logged_json(access_file, environ)
    assert (record["path"], record["query"]) == ("/app/submit/form", "x=1&y=%22")


def test_a_status_that_is_not_a_number_is_null(access_file: Path) -> None:
    assert logged_json(access_file, status="abc")["status"] is None


def test_a_value_that_is_not_a_string_is_still_logged(access_file: Path) -> None:
    environ = {**ENVIRON, "HTTP_USER_AGENT": 42, "HTTP_REFERER": b"bytes"}
    record = logged_json(access_file, environ)
    assert (record["user_agent"], record["referer"]) == (42, "b'bytes'")


@pytest.mark.parametrize(
    "forged",
    [
        'curl", "status": 500, "user_agent": "evil',
        'curl"}\n{"time": "2026-01-01T00:00:00.000+00:00", "path": "/admin", "status": 200}',
        "curl\r\nfake line",
        'curl\\", "status": 500, "x": "',
        "curl\u2028fake line\u0085another\x1c\x1d\x1e\x0b\x0c",
        "curl\x00\x1b[31mred\x7f",
    ],
)
def test_client_values_cannot_forge_a_field_or_a_line(access_file: Path, forged: str) -> None:
    environ = {
        **ENVIRON,
        "HTTP_USER_AGENT": forged,
        "HTTP_REFERER": forged,
        "RAW_URI": "/" + forged,
        "REQUEST_METHOD": forged,
    }
    record = logged_json(access_file, environ, status="404 Not Found")
    assert list(record) == KEYS
    assert record["status"] == 404
    assert record["user_agent"] == forged
    assert record["referer"] == forged
    assert record["method"] == forged
    text = access_file.read_text(encoding="utf-8")
    # One line by any tool's definition (str.splitlines splits at U+2028, U+0085, \x1c...).
    assert text.isascii()
    assert len(text.splitlines()) == 1
    assert not re.search(r"[\x00-\x1f\x7f]", text.rstrip("\n"))


def test_non_ascii_values_survive_the_round_trip(access_file: Path) -> None:
    agent = "Café/1.0 ☕"
    assert logged_json(access_file, {**ENVIRON, "HTTP_USER_AGENT": agent})["user_agent"] == agent


def test_access_log_json_setting(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    argv = ["--access-log-json", "--access-logfile", str(path), "--access-logformat", "%(h)s"]
    settings = load_settings(argv, {}, cwd=str(tmp_path)).settings
    logger = load_logger(settings)
    logger.setup(settings)
    assert logger.line_builder is json_line
    logger.access(ENVIRON, "200 OK", [], 5, 0.25)
    os.rename(path, tmp_path / "access.log.1")
    logger.reopen_files()  # what USR1 does: what is batched goes to the old file first
    logger.access(ENVIRON, "500 Internal Server Error", [], None, 0.5)
    logger.flush()  # the worker's loop does this before it next waits for events
    first = json.loads((tmp_path / "access.log.1").read_text())
    second = json.loads(path.read_text())
    assert (first["status"], first["response_length"], first["request_time_us"]) == (200, 5, 250000)
    assert (second["status"], second["response_length"]) == (500, None)
