"""Error and access logging: destinations, the line formats, every atom, escaping, reopening."""

from __future__ import annotations

import base64
import logging
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from corral.errors import ConfigError
from corral.logs.access import access_writer, compile_format
from corral.logs.logger import (
    DEFAULT_ACCESS_LOG_FORMAT,
    access_log,
    access_logging_enabled,
    close_logging,
    error_log,
    escape,
    reopen_log_files,
    setup_logging,
)

ERROR_LINE = re.compile(
    r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[(?P<pid>\d+)\] \[(?P<level>[A-Z]+)\] "
    r"(?P<message>.*)$"
)
CLF_DATE = re.compile(r"^\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]$")


pytestmark = pytest.mark.usefixtures("restore_loggers")


ENVIRON: dict[str, Any] = {
    "REQUEST_METHOD": "POST",
    "RAW_URI": "/submit/form?x=1&y=2",
    "SCRIPT_NAME": "",
    "PATH_INFO": "/submit/form",
    "QUERY_STRING": "x=1&y=2",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "192.0.2.7",
    "CONTENT_TYPE": "application/x-www-form-urlencoded",
    "HTTP_HOST": "example.com",
    "HTTP_USER_AGENT": "curl/8.0",
    "HTTP_REFERER": "https://example.com/",
    "HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"alice:secret").decode(),
    "HTTP_X_REQUEST_ID": "abc-123",
    "wsgi.url_scheme": "https",
}
HEADERS = [("Content-Type", "text/html"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]


def log_request(fmt: str, *request: Any) -> None:
    """One request through the `corral.access` logger and its handlers (setup_logging's)."""
    access_writer(compile_format(fmt), None)(*request)


def access_line(
    path: Path,
    fmt: str,
    environ: Mapping[str, Any] = ENVIRON,
    status: str = "201 Created",
    headers: Any = HEADERS,
    length: int | None = 1234,
    request_time: float = 1.002345,
) -> str:
    log_request(fmt, environ, status, headers, length, request_time)
    lines = path.read_text().splitlines()
    assert lines, "nothing was logged"
    return lines[-1]


# --- error log --------------------------------------------------------------------------------


def test_error_log_file_line_format_and_level(tmp_path: Path) -> None:
    path = tmp_path / "error.log"
    setup_logging(str(path), "info", None)
    error_log.debug("hidden %s", "debug")
    error_log.info("Listening at: %s (%s)", "http://127.0.0.1:8000", os.getpid())
    error_log.warning("careful")
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    first = ERROR_LINE.match(lines[0])
    assert first is not None
    assert first["pid"] == str(os.getpid())
    assert first["level"] == "INFO"
    assert first["message"] == f"Listening at: http://127.0.0.1:8000 ({os.getpid()})"
    second = ERROR_LINE.match(lines[1])
    assert second is not None
    assert (second["level"], second["message"]) == ("WARNING", "careful")


def test_error_log_appends_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "error.log"
    path.write_text("earlier line\n")
    setup_logging(str(path), "debug", None)
    error_log.debug("later")
    lines = path.read_text().splitlines()
    assert lines[0] == "earlier line"
    assert lines[1].endswith("[DEBUG] later")


def test_error_log_dash_is_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("-", "warning", None)
    error_log.info("not shown")
    error_log.error("shown %d", 42)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.endswith("[ERROR] shown 42\n")
    assert ERROR_LINE.match(captured.err.rstrip("\n"))


@pytest.mark.parametrize("level", ["DEBUG", "Info", "warning", "error", "critical"])
def test_log_levels_are_case_insensitive(level: str) -> None:
    setup_logging("-", level, None)
    assert error_log.level == getattr(logging, level.upper())


def test_unknown_log_level_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'verbose'"):
        setup_logging("-", "verbose", None)


def test_setup_again_replaces_the_handlers(tmp_path: Path) -> None:
    setup_logging(str(tmp_path / "one.log"), "info", str(tmp_path / "a1.log"))
    setup_logging(str(tmp_path / "two.log"), "info", str(tmp_path / "a2.log"))
    assert len(error_log.handlers) == 1
    assert len(access_log.handlers) == 1
    error_log.info("only in two")
    assert (tmp_path / "one.log").read_text() == ""
    assert "only in two" in (tmp_path / "two.log").read_text()


def test_close_logging_removes_what_setup_added(tmp_path: Path) -> None:
    setup_logging(str(tmp_path / "e.log"), "info", "-")
    close_logging()
    assert error_log.handlers == []
    assert access_log.handlers == []


def test_capture_output_sends_fds_1_and_2_to_the_error_log(tmp_path: Path) -> None:
    # In a child process: redirecting fds 1 and 2 here would swallow pytest's own output.
    path = tmp_path / "error.log"
    script = textwrap.dedent(
        f"""
        import os, sys
        from corral.logs.logger import error_log, setup_logging
        setup_logging({str(path)!r}, "info", None, capture_output=True)
        print("from print")
        sys.stderr.write("from stderr\\n")
        os.write(1, b"from fd 1\\n")
        error_log.info("from the logger")
        os._exit(0)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == ""
    text = path.read_text()
    for expected in ("from print", "from stderr", "from fd 1", "[INFO] from the logger"):
        assert expected in text


# --- destinations and reopening ---------------------------------------------------------------


def test_access_log_dash_is_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("-", "info", "-")
    log_request("%(m)s %(U)s", ENVIRON, "200 OK", [], 0, 0.0)
    assert capsys.readouterr().out == "POST /submit/form\n"


def test_access_log_is_independent_of_the_error_log_level(access_file: Path) -> None:
    setup_logging("-", "critical", str(access_file))
    assert access_line(access_file, "%(s)s") == "201"


def test_access_log_none_is_disabled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    setup_logging(str(tmp_path / "error.log"), "debug", None)
    assert access_log.handlers == []
    assert access_log.propagate is False
    assert not access_log.isEnabledFor(logging.CRITICAL)
    assert not access_logging_enabled()
    assert capsys.readouterr() == ("", "")
    assert caplog.records == []


def test_reopen_after_rename_recreates_the_files(tmp_path: Path) -> None:
    error_path = tmp_path / "error.log"
    access_path = tmp_path / "access.log"
    setup_logging(str(error_path), "info", str(access_path))
    access = access_writer(compile_format("%(m)s %(s)s"), None)
    error_log.info("before rotation")
    access(ENVIRON, "200 OK", [], 0, 0.0)

    os.rename(error_path, tmp_path / "error.log.1")
    os.rename(access_path, tmp_path / "access.log.1")
    error_log.info("still to the moved file")
    reopen_log_files()
    error_log.info("after rotation")
    access(ENVIRON, "404 Not Found", [], 0, 0.0)

    rotated = (tmp_path / "error.log.1").read_text()
    assert "before rotation" in rotated
    assert "still to the moved file" in rotated
    assert "after rotation" not in rotated
    fresh = error_path.read_text().splitlines()
    assert len(fresh) == 1
    assert fresh[0].endswith("[INFO] after rotation")
    assert (tmp_path / "access.log.1").read_text() == "POST 200\n"
    assert access_path.read_text() == "POST 404\n"


def test_reopen_with_only_streams_is_harmless(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("-", "info", "-")
    reopen_log_files()
    error_log.info("still here")
    assert "still here" in capsys.readouterr().err


# --- atoms ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("atom", "expected"),
    [
        ("h", "192.0.2.7"),
        ("l", "-"),
        ("u", "alice"),
        ("r", "POST /submit/form?x=1&y=2 HTTP/1.1"),
        ("m", "POST"),
        ("U", "/submit/form"),
        ("q", "x=1&y=2"),
        ("H", "HTTP/1.1"),
        ("s", "201"),
        ("B", "1234"),
        ("b", "1234"),
        ("f", "https://example.com/"),
        ("a", "curl/8.0"),
        ("T", "1"),
        ("D", "1002345"),
        ("M", "1002"),
        ("L", "1.002345"),
        ("p", "<pid>"),  # this process's (not in the test id: parallel runs must agree on ids)
        ("{x-request-id}i", "abc-123"),
        ("{X-Request-ID}i", "abc-123"),
        ("{Content-Type}i", "application/x-www-form-urlencoded"),
        ("{host}i", "example.com"),
        ("{content-type}o", "text/html"),
        ("{CONTENT-TYPE}o", "text/html"),
        ("{set-cookie}o", "a=1, b=2"),
        ("{wsgi.url_scheme}e", "https"),
        ("{REMOTE_ADDR}e", "192.0.2.7"),
        ("{remote_addr}e", "192.0.2.7"),
        ("{x-missing}i", "-"),
        ("{x-missing}o", "-"),
        ("{MISSING_VAR}e", "-"),
        ("nosuchatom", "-"),
        ("{x}z", "-"),
    ],
)
def test_atom(access_file: Path, atom: str, expected: str) -> None:
    expected = expected.replace("<pid>", f"<{os.getpid()}>")
    assert access_line(access_file, f"%({atom})s") == expected


def test_date_atom(access_file: Path) -> None:
    assert CLF_DATE.match(access_line(access_file, "%(t)s"))


def test_numeric_atoms_are_integers(access_file: Path) -> None:
    line = access_line(access_file, "%(B)05d %(T)d %(D)d %(M)d", request_time=0.25)
    assert line == "01234 0 250000 250"


@pytest.mark.parametrize(
    ("length", "b", "big_b"), [(None, "-", "0"), (0, "0", "0"), (17, "17", "17")]
)
def test_response_length_atoms(access_file: Path, length: int | None, b: str, big_b: str) -> None:
    assert access_line(access_file, "%(b)s %(B)s", length=length) == f"{b} {big_b}"


def test_missing_environ_values_are_dashes(access_file: Path) -> None:
    line = access_line(access_file, "%(h)s %(u)s %(f)s %(a)s %(m)s %(U)s %(q)s %(H)s", environ={})
    assert line == "- - - - - - - -"


def test_request_line_without_raw_uri(access_file: Path) -> None:
    environ = {**ENVIRON, "SCRIPT_NAME": "/app"}
    del environ["RAW_URI"]
    assert access_line(access_file, "%(r)s", environ) == "POST /app/submit/form?x=1&y=2 HTTP/1.1"


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer abc.def",
        "Basic !!!not-base64",
        "Basic " + base64.b64encode(b"\xff\xfe").decode(),
        "Basic",
    ],
)
def test_user_atom_without_usable_basic_auth(access_file: Path, authorization: str) -> None:
    environ = {**ENVIRON, "HTTP_AUTHORIZATION": authorization}
    assert access_line(access_file, "%(u)s", environ) == "-"


def test_default_format(access_file: Path) -> None:
    line = access_line(access_file, DEFAULT_ACCESS_LOG_FORMAT)
    before, date, after = re.split(r"(\[[^]]*\])", line, maxsplit=1)
    assert before == "192.0.2.7 - alice "
    assert CLF_DATE.match(date)
    assert after == (
        ' "POST /submit/form?x=1&y=2 HTTP/1.1" 201 1234 "https://example.com/" "curl/8.0"'
    )


def test_custom_format_with_literal_text(access_file: Path) -> None:
    fmt = "rid=%({x-request-id}i)s status=%(s)s took=%(M)dms 100%% done"
    assert access_line(access_file, fmt) == "rid=abc-123 status=201 took=1002ms 100% done"


@pytest.mark.parametrize("fmt", ["%(s)d", "%(h", "%(h)s %"])
def test_broken_format_is_refused_up_front(fmt: str) -> None:
    with pytest.raises(ConfigError, match="access log format"):
        compile_format(fmt)


# --- laziness ---------------------------------------------------------------------------------


class RecordingEnviron(dict[str, Any]):
    """An environ that remembers which keys were looked at."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        super().__init__(data)
        self.seen: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.seen.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.seen.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        assert isinstance(key, str)
        self.seen.add(key)
        return super().__contains__(key)


class ExplodingHeaders(list[tuple[str, str]]):
    def __iter__(self) -> Iterator[tuple[str, str]]:
        raise AssertionError("response headers were read for a format that does not use them")


def test_only_the_atoms_in_the_format_are_computed(access_file: Path) -> None:
    environ = RecordingEnviron(ENVIRON)
    line = access_line(access_file, "%({x-request-id}i)s", environ, headers=ExplodingHeaders())
    assert line == "abc-123"
    assert environ.seen == {"HTTP_X_REQUEST_ID"}


def test_environ_atom_reads_only_its_variable(access_file: Path) -> None:
    environ = RecordingEnviron(ENVIRON)
    assert access_line(access_file, "%({HTTP_HOST}e)s", environ) == "example.com"
    assert environ.seen == {"HTTP_HOST"}


def test_response_header_atom_reads_headers_only_when_used(access_file: Path) -> None:
    environ = RecordingEnviron(ENVIRON)
    assert access_line(access_file, "%({content-type}o)s", environ) == "text/html"
    assert environ.seen == set()


def test_an_atom_used_twice_is_computed_once(access_file: Path) -> None:
    environ = RecordingEnviron(ENVIRON)
    calls = 0
    original_get = environ.get

    def counting_get(key: str, default: Any = None) -> Any:
        nonlocal calls
        calls += 1
        return original_get(key, default)

    environ.get = counting_get  # type: ignore[method-assign]
    assert access_line(access_file, "%(a)s|%(a)s", environ) == "curl/8.0|curl/8.0"
    assert calls == 1


# --- escaping ---------------------------------------------------------------------------------


def test_newline_in_a_header_cannot_forge_a_line(access_file: Path) -> None:
    forged = 'curl\r\n203.0.113.9 - - [01/Jan/2026:00:00:00 +0000] "GET /admin HTTP/1.1" 200 0'
    environ = {**ENVIRON, "HTTP_USER_AGENT": forged}
    log_request(DEFAULT_ACCESS_LOG_FORMAT, environ, "200 OK", [], 0, 0.0)
    lines = access_file.read_text().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith(
        '"curl\\x0d\\x0a203.0.113.9 - - [01/Jan/2026:00:00:00 +0000] '
        '\\"GET /admin HTTP/1.1\\" 200 0"'
    )


@pytest.mark.parametrize(
    "atom",
    ["r", "U", "q", "f", "a", "u", "{x-request-id}i", "{x-echo}o", "{HTTP_X_REQUEST_ID}e"],
)
def test_client_values_are_escaped_in_every_atom(access_file: Path, atom: str) -> None:
    evil = 'x\nfake\x00\x1b[31m\x7f"\\'
    environ = {
        **ENVIRON,
        "RAW_URI": "/" + evil,
        "PATH_INFO": "/" + evil,
        "QUERY_STRING": evil,
        "HTTP_REFERER": evil,
        "HTTP_USER_AGENT": evil,
        "HTTP_X_REQUEST_ID": evil,
        "HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{evil}:pw".encode()).decode(),
    }
    line = access_line(access_file, f"%({atom})s", environ, headers=[("X-Echo", evil)])
    assert 'x\\x0afake\\x00\\x1b[31m\\x7f\\"\\\\' in line
    assert not re.search(r"[\x00-\x1f\x7f]", line)


def test_escape() -> None:
    assert escape("plain text é") == "plain text é"
    assert escape('a"b\\c\td\r\n') == 'a\\"b\\\\c\\x09d\\x0d\\x0a'
    assert escape(b"x\n") == "b'x\\\\n'"  # type: ignore[arg-type] (any value is str()ed)
