"""split_host_port: the one HOST:PORT parser, for every form a user or a client writes."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from corral.addresses import split_host_port
from corral.config import converters as conv
from corral.config import metrics_converters as mc
from corral.logs.syslog import SyslogAddress, parse_address
from corral.master import listeners


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8000", ("127.0.0.1", 8000)),
        ("127.0.0.1", ("127.0.0.1", None)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("localhost:65535", ("localhost", 65535)),
        ("example.com:80", ("example.com", 80)),
        ("Example.COM", ("Example.COM", None)),  # no case folding: the caller decides
        ("unix:8125", ("unix", 8125)),  # a host named "unix" (Gunicorn's StatsD reading)
        (":8000", ("", 8000)),
        ("", ("", None)),
        ("[::1]:8000", ("::1", 8000)),
        ("[::1]", ("::1", None)),
        ("[2001:db8::1]:443", ("2001:db8::1", 443)),
        ("[fe80::1%eth0]:80", ("fe80::1%eth0", 80)),
        ("[::ffff:192.0.2.1]:1", ("::ffff:192.0.2.1", 1)),
    ],
)
def test_splits(text: str, expected: tuple[str, int | None]) -> None:
    assert split_host_port(text) == expected


def test_default_port_only_when_missing() -> None:
    assert split_host_port("example.com", 8125) == ("example.com", 8125)
    assert split_host_port("[::1]", 8125) == ("::1", 8125)
    assert split_host_port("example.com:9", 8125) == ("example.com", 9)
    assert split_host_port("[::1]:0", 8125) == ("::1", 0)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("::1", "need brackets"),  # bare IPv6: refused rather than guessed
        ("::1:8000", "need brackets"),
        ("2001:db8::1", "need brackets"),
        ("[::1", "written [ADDRESS]"),
        ("[::1]8000", "written [ADDRESS]"),
        ("[::1]]:80", "written [ADDRESS]"),
        ("[example.com]:80", "not an IPv6 address"),
        ("[127.0.0.1]:80", "not an IPv6 address"),
        ("[]:80", "not an IPv6 address"),
        ("host:", "port ''"),
        ("[::1]:", "port ''"),
        ("host:http", "port 'http'"),
        ("host:65536", "port '65536'"),
        ("host:99999", "port '99999'"),
        ("host:-1", "port '-1'"),
        ("host: 80", "port ' 80'"),
        ("host:٨٠", "port"),  # Arabic-Indic digits are digits, but not a port
    ],
)
def test_refuses(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("[", r"\[")):
        split_host_port(text, 80)


def _outcome(parse: Callable[[], object]) -> object:
    try:
        return parse()
    except ValueError:
        return None


@pytest.mark.parametrize(
    "text",
    [
        "127.0.0.1:8000",
        "example.com",
        "[::1]:8000",
        "[::1]",
        "[example.com]:80",  # syslog took this as a host name
        "host:",  # syslog took this as the default port
        "::1",
        "[::1]8000",
        "host:http",
        "host:65536",
    ],
)
def test_every_reader_of_an_address_agrees(text: str) -> None:
    """A bind address, a metrics or StatsD target and a syslog target accept and refuse the
    same HOST:PORT spellings, and read the same host and port from them."""
    split = _outcome(lambda: split_host_port(text, 514))
    accepted = split is not None
    assert (_outcome(lambda: conv.bind_address(text)) is not None) == accepted
    syslog = _outcome(lambda: parse_address("tcp://" + text))
    assert (syslog is not None) == accepted
    if accepted:
        assert isinstance(syslog, SyslogAddress)
        assert syslog.address == split
        assert listeners.parse_address(text) == ("tcp", split_host_port(text, 8000))
        assert mc.split_address(text, 514) == split
