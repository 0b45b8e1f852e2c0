"""The access log's one path: the compiled format, Gunicorn's values, odd environ values that
must never cost a request, the batch that threads fill and the loop writes."""

from __future__ import annotations

import decimal
import ipaddress
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.config import load_settings
from corral.errors import ConfigError
from corral.logs.access import (
    AccessRecord,
    access_writer,
    compile_format,
    json_line,
)
from corral.logs.batched_file import BatchedFile
from corral.logs.logger import Logger, error_log, load_logger

pytestmark = pytest.mark.usefixtures("restore_loggers")

ENVIRON: dict[str, Any] = {
    "REMOTE_ADDR": "10.0.0.7",
    "REQUEST_METHOD": "POST",
    "RAW_URI": "/a%20b?x=1",
    "PATH_INFO": "/a b",
    "QUERY_STRING": "x=1",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "HTTP_USER_AGENT": "agent",
    "HTTP_REFERER": "http://ref/",
}


def line(fmt: str, environ: dict[str, Any], status: Any = "200 OK", **extra: Any) -> str:
    record = AccessRecord(environ, status, extra.get("headers", []), extra.get("length", 5), 0.5)
    return compile_format(fmt)(record)


def logger_for(tmp_path: Path, *argv: str) -> tuple[Logger, Path]:
    path = tmp_path / "access.log"
    settings = load_settings(["--access-logfile", str(path), *argv], {}, cwd=str(tmp_path))
    logger = load_logger(settings.settings)
    logger.setup(settings.settings)
    return logger, path


# --- values as Gunicorn logs them -------------------------------------------------------------
# Gunicorn 27's atoms: a value the environ has is logged as it is, even when empty; the status
# atom is the status line's first word, whatever its length. (Where the environ lacks a value,
# Gunicorn writes "None" and corral "-", as docs/logging.md says.)


@pytest.mark.parametrize(
    ("fmt", "environ", "expected"),
    [
        ("%(m)s|%(U)s|%(q)s|%(H)s", {"REQUEST_METHOD": "", "PATH_INFO": "", "QUERY_STRING": ""},
         "|||-"),
        ("%(f)s|%(a)s|%({x-id}i)s", {"HTTP_REFERER": "", "HTTP_USER_AGENT": "", "HTTP_X_ID": ""},
         "||"),
        ("%(r)s", {"REQUEST_METHOD": "", "RAW_URI": "/p", "SERVER_PROTOCOL": "HTTP/1.1"},
         " /p HTTP/1.1"),
        ("%(r)s", {"RAW_URI": "/p"}, "- /p -"),
        ("%(m)s|%(U)s|%(q)s|%(H)s|%(f)s|%(a)s", {}, "-|-|-|-|-|-"),
    ],
)  # fmt: skip
def test_empty_values_are_logged_empty_and_missing_ones_as_dashes(
    fmt: str, environ: dict[str, Any], expected: str
) -> None:
    assert line(fmt, environ) == expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("200 OK", "200"),
        ("2000 OK", "2000"),
        ("404", "404"),
        ("", "-"),
        ('99"\x01 x', '99\\"\\x01'),
    ],
)
def test_status_is_the_first_word_of_the_status_line(status: str, expected: str) -> None:
    assert line("%(s)s", ENVIRON, status) == expected


def test_an_empty_remote_address_is_a_dash() -> None:
    # A unix socket's peer has no address; the first field of a line is never empty.
    assert line("%(h)s", {**ENVIRON, "REMOTE_ADDR": ""}) == "-"


# --- the format, compiled once ----------------------------------------------------------------


def test_printf_conversions_and_literal_percent_signs() -> None:
    fmt = "%(B)05d %(M)5d|%(h)-12s|%(s).1s|100%% %(D)x"
    assert line(fmt, ENVIRON, "201 Created", length=42) == "00042   500|10.0.0.7    |2|100% 7a120"


@pytest.mark.parametrize("fmt", ["", "plain text", "50%%", '"%%(h)s"'])
def test_formats_without_atoms(fmt: str) -> None:
    assert line(fmt, ENVIRON) == fmt.replace("%%", "%")


def test_literal_text_is_copied_as_it_is() -> None:
    fmt = '{"client": "%(h)s", "it\'s": %(s)s, "x": "{a}\\n\t"}'
    assert line(fmt, ENVIRON) == '{"client": "10.0.0.7", "it\'s": 200, "x": "{a}\\n\t"}'


@pytest.mark.parametrize(
    "fmt", ["%(s)d", "%(h", "%(h)s %", "%s %(h)s", "%(h)y", "%(b)d", "%(nosuchatom)d"]
)
def test_formats_that_cannot_work_are_refused(fmt: str) -> None:
    with pytest.raises(ConfigError, match="Invalid access log format"):
        compile_format(fmt)


def test_pid_atom_follows_fork() -> None:
    build = compile_format("%(p)s")
    assert build(AccessRecord(ENVIRON, "200 OK", [], 0, 0.0)) == f"<{os.getpid()}>"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child reports through the pipe)
        os.write(write, build(AccessRecord(ENVIRON, "200 OK", [], 0, 0.0)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as child:
        assert child.read() == f"<{pid}>"


# --- values an application chose: rendered with str(), never a crash -------------------------


class Shouting:
    def __str__(self) -> str:
        return 'LOUD "value"\n'


ODD_VALUES: dict[str, Any] = {
    "REMOTE_ADDR": ipaddress.IPv4Address("192.0.2.9"),
    "REQUEST_METHOD": Shouting(),
    "RAW_URI": b"/raw",
    "PATH_INFO": 17,
    "QUERY_STRING": decimal.Decimal("1.5"),
    "SERVER_PROTOCOL": ipaddress.IPv6Address("::1"),
    "HTTP_REFERER": ["a", "b"],
    "HTTP_USER_AGENT": None,
    "HTTP_AUTHORIZATION": 12,
    "HTTP_X_ID": 3.25,
}


def test_values_that_are_not_str_are_rendered_with_str() -> None:
    fmt = "%(h)s|%(m)s|%(r)s|%(U)s|%(q)s|%(H)s|%(f)s|%(a)s|%(u)s|%({x-id}i)s|%({x-o}o)s|%(s)s"
    headers: Any = [("X-O", 99), (b"X-O", "bytes name")]
    assert line(fmt, ODD_VALUES, status=Shouting(), headers=headers) == (
        '192.0.2.9|LOUD \\"value\\"\\x0a|LOUD \\"value\\"\\x0a b\'/raw\' ::1|17|1.5|::1'
        "|['a', 'b']|-|-|3.25|99|LOUD"
    )


def test_json_lines_render_values_that_are_not_str() -> None:
    text = json_line(AccessRecord(ODD_VALUES, "200 OK", [], 1, 0.0))
    assert '"remote_addr":"192.0.2.9"' in text
    assert '"method":"LOUD \\"value\\"\\n"' in text
    assert '"path":"b\'/raw\'"' in text


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


@pytest.mark.parametrize("batched", [True, False], ids=["batched file", "logging"])
def test_a_line_that_cannot_be_built_is_reported_once_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, batched: bool
) -> None:
    logger, path = logger_for(tmp_path)
    assert logger.line_builder is not None
    # The same writer in front of the batch, or of the corral.access logger's file handler.
    write = logger.access_writer() if batched else access_writer(logger.line_builder, None)
    error_log.addHandler(caplog.handler)
    write({**ENVIRON, "HTTP_USER_AGENT": Unprintable()}, "200 OK", [], 0, 0.0)
    write(ENVIRON, "204 No Content", [], 0, 0.0)
    logger.flush()
    assert len(caplog.records) == 1
    assert caplog.records[0].levelno == logging.ERROR
    assert caplog.records[0].exc_info is not None
    assert "no text for you" in caplog.text
    lines = path.read_text().splitlines()
    assert len(lines) == 1 and '" 204 0 "' in lines[0]


# --- one writer, two destinations -------------------------------------------------------------


@pytest.mark.parametrize("argv", [[], ["--access-log-json"]], ids=["format", "json"])
def test_batched_file_and_logging_write_the_same_bytes(tmp_path: Path, argv: list[str]) -> None:
    odd = {**ENVIRON, "HTTP_USER_AGENT": 'é "q"\n\x00', "REMOTE_ADDR": ipaddress.ip_address("::1")}
    logger, path = logger_for(tmp_path, *argv)
    assert logger.access_file is not None and logger.line_builder is not None
    logger.access(odd, "200 OK", [], 10, 0.25)
    logger.flush()
    batched = path.read_bytes()
    path.write_bytes(b"")
    # The same line, through the corral.access logger's file handler.
    access_writer(logger.line_builder, None)(odd, "200 OK", [], 10, 0.25)
    logged = path.read_bytes()
    if argv:  # the time differs in its milliseconds
        batched, logged = batched.split(b'"remote_addr"')[1], logged.split(b'"remote_addr"')[1]
    assert batched == logged
    assert batched.count(b"\n") == 1


# --- the batch: threads append, the loop writes -----------------------------------------------


def test_a_line_reaches_the_file_on_flush(tmp_path: Path) -> None:
    logger, path = logger_for(tmp_path, "--access-logformat", "%(m)s %(s)s")
    write = logger.access_writer()
    write(ENVIRON, "200 OK", [], 0, 0.0)
    assert path.read_text() == ""  # held until the loop comes round...
    logger.flush()  # ...which it does before it next waits for events
    assert path.read_text() == "POST 200\n"
    before = path.stat()
    logger.flush()  # nothing waiting: no write at all
    assert path.stat().st_mtime_ns == before.st_mtime_ns and path.stat().st_size == before.st_size
    logger.close()
    assert path.read_text() == "POST 200\n"


def test_flush_without_an_access_file_is_harmless(tmp_path: Path) -> None:
    logger = load_logger(load_settings([], {}, cwd=str(tmp_path)).settings)
    logger.flush()
    logger.setup(logger.settings)
    logger.flush()
    assert logger.pending == ()


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Switch threads as often as the interpreter can, so that races show within a second."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def run_threads(count: int, target: Callable[[int], None]) -> None:
    threads = [threading.Thread(target=target, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)


@pytest.mark.usefixtures("busy_switching")
def test_threads_writing_and_flushing_at_once_lose_and_repeat_no_line(tmp_path: Path) -> None:
    logger, path = logger_for(tmp_path, "--access-logformat", "%(U)s")
    write, flush = logger.access_writer(), logger.flush
    threads, per_thread = 8, 3000
    done = threading.Event()
    errors: list[BaseException] = []

    def request_thread(n: int) -> None:
        try:
            for i in range(per_thread):
                write({"PATH_INFO": f"{n}-{i}"}, "200 OK", [], 0, 0.0)
                if i % 7 == 0:
                    flush()  # as a worker's loop would, in between
        except BaseException as exc:
            errors.append(exc)

    def loop() -> None:
        while not done.is_set():
            flush()

    looper = threading.Thread(target=loop)
    looper.start()
    try:
        run_threads(threads, request_thread)
    finally:
        done.set()
        looper.join(60)
    flush()
    assert errors == []
    lines = path.read_text().splitlines()
    expected = {f"{n}-{i}" for n in range(threads) for i in range(per_thread)}
    assert len(lines) == len(expected)
    assert set(lines) == expected


@pytest.mark.usefixtures("busy_switching")
def test_batched_file_flushes_from_many_threads_keep_every_line_once(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    batched = BatchedFile(str(path))

    def thread(n: int) -> None:
        for i in range(4000):
            batched.pending.append(f"{n} {i}")
            batched.flush()

    run_threads(6, thread)
    batched.close()
    lines = path.read_text().splitlines()
    assert sorted(lines) == sorted(f"{n} {i}" for n in range(6) for i in range(4000))


def test_batches_are_written_on_flush_at_the_limit_and_on_reopen(tmp_path: Path) -> None:
    logger, path = logger_for(tmp_path, "--access-logformat", "%(U)s")
    write = logger.access_writer()
    write({"PATH_INFO": "one"}, "200 OK", [], 0, 0.0)
    assert path.read_text() == ""
    logger.flush()
    assert path.read_text() == "one\n"
    for i in range(BatchedFile.LIMIT):  # no loop came by: the batch is bounded all the same
        write({"PATH_INFO": f"line {i}"}, "200 OK", [], 0, 0.0)
    assert path.read_text().count("\n") == 1 + BatchedFile.LIMIT
    write({"PATH_INFO": "pending"}, "200 OK", [], 0, 0.0)
    os.rename(path, tmp_path / "access.log.1")
    logger.reopen_files()
    write({"PATH_INFO": "after"}, "200 OK", [], 0, 0.0)
    logger.close()
    assert (tmp_path / "access.log.1").read_text().endswith("pending\n")
    assert path.read_text() == "after\n"


def descriptors_open_on(path: Path) -> int:
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == str(path))


def test_a_reload_leaves_no_descriptor_of_the_logger_it_replaces(tmp_path: Path) -> None:
    logger, path = logger_for(tmp_path)
    assert descriptors_open_on(path) == 2  # the logging handler's and the batch's
    logger, path = logger_for(tmp_path)  # HUP: the master replaces its logger, unclosed
    assert descriptors_open_on(path) == 2
    logger.close()
    assert descriptors_open_on(path) == 0
