"""Syslog: address parsing, and real messages received on UDP, TCP and unix sockets."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from logging.handlers import SysLogHandler
from pathlib import Path
from typing import Any

import pytest

from corral.config import Settings, load_settings
from corral.errors import ConfigError
from corral.logs.logger import Logger, error_log, load_logger
from corral.logs.syslog import SyslogAddress, facility_code, parse_address

ENVIRON: dict[str, Any] = {
    "REQUEST_METHOD": "GET",
    "RAW_URI": "/items?page=2",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "192.0.2.7",
    "HTTP_USER_AGENT": "curl/8.0",
}
# local3 is facility 19: PRI = 19 * 8 + severity (warning 4, info 6, error 3).
LOCAL3_WARNING, LOCAL3_INFO = "<156>", "<158>"


pytestmark = pytest.mark.usefixtures("restore_loggers")


def settings_for(tmp_path: Path, *argv: str) -> Settings:
    return load_settings(list(argv), {}, cwd=str(tmp_path)).settings


def set_up(settings: Settings) -> Logger:
    logger = load_logger(settings)
    logger.setup(settings)
    return logger


@pytest.fixture
def udp_server() -> Iterator[socket.socket]:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(10)
    try:
        yield server
    finally:
        server.close()


def udp_address(server: socket.socket) -> str:
    return f"udp://127.0.0.1:{server.getsockname()[1]}"


# --- addresses --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("udp://localhost:514", SyslogAddress(("localhost", 514), socket.SOCK_DGRAM)),
        ("udp://10.0.0.1", SyslogAddress(("10.0.0.1", 514), socket.SOCK_DGRAM)),
        ("UDP://LogHost:5514", SyslogAddress(("loghost", 5514), socket.SOCK_DGRAM)),
        ("udp://", SyslogAddress(("localhost", 514), socket.SOCK_DGRAM)),
        ("tcp://127.0.0.1:601", SyslogAddress(("127.0.0.1", 601), socket.SOCK_STREAM)),
        ("tcp://[::1]:601", SyslogAddress(("::1", 601), socket.SOCK_STREAM)),
        ("udp://[2001:db8::1]", SyslogAddress(("2001:db8::1", 514), socket.SOCK_DGRAM)),
        ("unix:///dev/log", SyslogAddress("/dev/log", None)),
        ("unix:///dev/log#dgram", SyslogAddress("/dev/log", socket.SOCK_DGRAM)),
        ("unix:///var/run/syslog#stream", SyslogAddress("/var/run/syslog", socket.SOCK_STREAM)),
    ],
)
def test_parse_address(text: str, expected: SyslogAddress) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "localhost:514",
        "http://localhost",
        "udp://localhost:syslog",
        "udp://localhost:0",
        "udp://localhost:70000",
        "udp://::1",
        "tcp://[::1",
        "tcp://[::1]514",
        "unix://",
        "unix:///dev/log#seqpacket",
    ],
)
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


def test_facilities() -> None:
    assert facility_code("user") == 1
    assert facility_code("LOCAL7") == 23
    assert facility_code("daemon") == 3
    with pytest.raises(ValueError, match="'nope'"):
        facility_code("nope")


@pytest.mark.parametrize(
    ("argv", "setting"),
    [
        (["--log-syslog-to", "localhost:514"], "syslog_addr"),
        (["--log-syslog-facility", "nope"], "syslog_facility"),
    ],
)
def test_bad_syslog_settings_fail_at_load(tmp_path: Path, argv: list[str], setting: str) -> None:
    with pytest.raises(ConfigError, match=f"Invalid value for {setting} "):
        settings_for(tmp_path, *argv)


def test_syslog_settings_defaults(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    assert settings.syslog is False
    assert settings.syslog_addr == "udp://localhost:514"
    assert settings.syslog_prefix is None
    assert settings.syslog_facility == "user"
    assert settings.disable_redirect_access_to_syslog is False


# --- messages on real sockets -----------------------------------------------------------------


def test_udp_error_and_access_lines(tmp_path: Path, udp_server: socket.socket) -> None:
    settings = settings_for(
        tmp_path,
        "--log-syslog",
        f"--log-syslog-to={udp_address(udp_server)}",
        "--log-syslog-prefix=shop",
        "--log-syslog-facility=local3",
        "--error-logfile",
        str(tmp_path / "error.log"),
    )
    logger = set_up(settings)
    error_log.warning("Worker timeout (pid:%s)", 4242)
    expected = f"{LOCAL3_WARNING}gunicorn.shop.error: [{os.getpid()}] Worker timeout (pid:4242)"
    assert udp_server.recv(4096) == f"{expected}\x00".encode()
    # The error log also still goes to its file.
    assert "Worker timeout (pid:4242)" in (tmp_path / "error.log").read_text()

    # No access log file: syslog alone is enough to turn access lines on.
    assert logger.access_enabled
    logger.access(ENVIRON, "200 OK", [], 12, 0.001)
    message = udp_server.recv(4096).decode()
    prefix = f"{LOCAL3_INFO}gunicorn.shop.access: [{os.getpid()}] 192.0.2.7 - - ["
    assert message.startswith(prefix)
    assert message.endswith('] "GET /items?page=2 HTTP/1.1" 200 12 "-" "curl/8.0"\x00')


def test_default_prefix_is_the_process_name(tmp_path: Path, udp_server: socket.socket) -> None:
    argv = ["--log-syslog", f"--log-syslog-to={udp_address(udp_server)}"]
    set_up(settings_for(tmp_path, *argv, "myproject.wsgi:application"))
    error_log.error("boom")
    assert udp_server.recv(4096).startswith(b"<11>gunicorn.myproject.wsgi.application.error: [")

    set_up(settings_for(tmp_path, *argv, "--name", "billing", "myproject.wsgi:application"))
    error_log.error("boom")
    assert udp_server.recv(4096).startswith(b"<11>gunicorn.billing.error: [")


def test_access_lines_can_stay_out_of_syslog(tmp_path: Path, udp_server: socket.socket) -> None:
    settings = settings_for(
        tmp_path,
        "--log-syslog",
        f"--log-syslog-to={udp_address(udp_server)}",
        "--disable-redirect-access-to-syslog",
    )
    logger = set_up(settings)
    assert not logger.access_enabled
    logger.access(ENVIRON, "200 OK", [], 12, 0.001)
    error_log.info("only this")
    assert udp_server.recv(4096).endswith(b"] only this\x00")


def test_access_to_file_and_syslog(tmp_path: Path, udp_server: socket.socket) -> None:
    access_path = tmp_path / "access.log"
    settings = settings_for(
        tmp_path,
        "--log-syslog",
        f"--log-syslog-to={udp_address(udp_server)}",
        "--access-logfile",
        str(access_path),
        "--access-logformat",
        "%(m)s %(U)s %(s)s",
    )
    logger = set_up(settings)
    logger.access({**ENVIRON, "PATH_INFO": "/items"}, "404 Not Found", [], 0, 0.0)
    assert access_path.read_text() == "GET /items 404\n"
    assert udp_server.recv(4096).endswith(b"] GET /items 404\x00")


@pytest.mark.parametrize("suffix", ["", "#dgram"])
def test_unix_datagram_socket(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / "log.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(10)
    try:
        set_up(settings_for(tmp_path, "--log-syslog", f"--log-syslog-to=unix://{path}{suffix}"))
        error_log.info("Listening at: %s", "http://127.0.0.1:8000")
        message = server.recv(4096).decode()
    finally:
        server.close()
    assert re.fullmatch(
        r"<14>gunicorn\.corral\.error: \[\d+\] Listening at: http://127\.0\.0\.1:8000\x00", message
    )


def receive_until_nul(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\x00"):
        chunk = conn.recv(4096)
        assert chunk, "the connection closed before a whole message arrived"
        data += chunk
    return data


def test_unix_stream_socket(tmp_path: Path) -> None:
    path = tmp_path / "log.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    server.settimeout(10)
    try:
        set_up(settings_for(tmp_path, "--log-syslog", f"--log-syslog-to=unix://{path}#stream"))
        conn, _ = server.accept()
        with conn:
            conn.settimeout(10)
            error_log.error("over a stream")
            message = receive_until_nul(conn)
    finally:
        server.close()
    assert message.startswith(b"<11>gunicorn.corral.error: [")
    assert message.endswith(b"] over a stream\x00")


def test_tcp(tmp_path: Path) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)
    port = server.getsockname()[1]
    try:
        argv = ["--log-syslog", f"--log-syslog-to=tcp://127.0.0.1:{port}", "--log-syslog-prefix=p"]
        set_up(settings_for(tmp_path, *argv))
        conn, _ = server.accept()
        with conn:
            conn.settimeout(10)
            error_log.critical("down")
            message = receive_until_nul(conn)
    finally:
        server.close()
    assert message == f"<10>gunicorn.p.error: [{os.getpid()}] down\x00".encode()


def test_tcp_connection_refused_is_a_config_error(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    settings = settings_for(tmp_path, "--log-syslog", f"--log-syslog-to=tcp://127.0.0.1:{port}")
    with pytest.raises(ConfigError, match=f"Cannot reach syslog at tcp://127.0.0.1:{port}: "):
        set_up(settings)


def test_syslog_program_can_be_changed_by_a_subclass(
    tmp_path: Path, udp_server: socket.socket
) -> None:
    class CorralTaggedLogger(Logger):
        syslog_program = "corral"

    settings = settings_for(tmp_path, "--log-syslog", f"--log-syslog-to={udp_address(udp_server)}")
    settings.logger_class = CorralTaggedLogger
    set_up(settings)
    error_log.warning("tagged")
    assert udp_server.recv(4096).startswith(b"<12>corral.corral.error: [")


def test_a_traceback_stays_in_one_message(tmp_path: Path, udp_server: socket.socket) -> None:
    set_up(settings_for(tmp_path, "--log-syslog", f"--log-syslog-to={udp_address(udp_server)}"))
    try:
        raise RuntimeError("in the app")
    except RuntimeError:
        error_log.exception("Error handling request /")
    message = udp_server.recv(65536).decode()
    assert message.startswith("<11>gunicorn.corral.error: [")
    assert "Traceback (most recent call last):" in message
    assert message.endswith("RuntimeError: in the app\x00")


def test_reload_replaces_the_syslog_handlers(tmp_path: Path, udp_server: socket.socket) -> None:
    settings = settings_for(tmp_path, "--log-syslog", f"--log-syslog-to={udp_address(udp_server)}")
    set_up(settings)
    set_up(settings)
    handlers = [h for h in error_log.handlers if isinstance(h, SysLogHandler)]
    assert len(handlers) == 1
    set_up(settings_for(tmp_path))
    assert not any(isinstance(h, SysLogHandler) for h in error_log.handlers)
