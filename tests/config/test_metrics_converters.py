"""The metrics settings: converters, and the flags and config-file keys that reach them."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from corral.config import load_settings
from corral.config import metrics_converters as mc
from corral.errors import ConfigError


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        (None, None),
        ("localhost:8125", "localhost:8125"),
        ("statsd.internal", "statsd.internal:8125"),
        (" 10.0.0.5:9125 ", "10.0.0.5:9125"),
        ("[::1]:9125", "[::1]:9125"),
        ("[::1]", "[::1]:8125"),
        ("unix:/run/statsd.sock", "unix:/run/statsd.sock"),
        ("unix:///run/statsd.sock", "unix:/run/statsd.sock"),
        ("unix:8125", "unix:8125"),  # Gunicorn: the host named "unix", port 8125
        ("tcp://1.2.3.4:1", "1.2.3.4:1"),
    ],
)
def test_statsd_address(raw: str | None, canonical: str | None) -> None:
    assert mc.statsd_address(raw) == canonical


@pytest.mark.parametrize("raw", ["host:port", "host:70000", "unix:", "fd://3", "::1:8125", ":8125"])
def test_statsd_address_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        mc.statsd_address(raw)


def test_unix_path_and_split_address() -> None:
    assert mc.unix_path("unix:/run/s") == "/run/s"
    assert mc.unix_path("unix:8125") is None
    assert mc.unix_path("localhost:8125") is None
    assert mc.split_address("unix:8125", 1) == ("unix", 8125)
    assert mc.split_address("[::1]:9", 1) == ("::1", 9)
    assert mc.split_address("[::1]", 1) == ("::1", 1)
    assert mc.split_address("example.com", 7) == ("example.com", 7)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [(None, None), ("127.0.0.1:9100", "127.0.0.1:9100"), ("[::1]:9100", "[::1]:9100")],
)
def test_metrics_address(raw: str | None, canonical: str | None) -> None:
    assert mc.metrics_address(raw) == canonical


@pytest.mark.parametrize("raw", ["127.0.0.1", "[::1]", "unix:/tmp/m.sock", "fd://3", "x:y"])
def test_metrics_address_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        mc.metrics_address(raw)


def test_dogstatsd_tags() -> None:
    assert mc.dogstatsd_tags("") == ""
    assert mc.dogstatsd_tags(" env:prod , canary,, ") == "env:prod,canary"
    for bad in ("a|b", "a b", 3):
        with pytest.raises(ValueError):
            mc.dogstatsd_tags(bad)


def test_url_path() -> None:
    assert mc.url_path(None) is None
    assert mc.url_path("/healthz") == "/healthz"
    for bad in ("healthz", "/h?x=1", "/h#f", "/a b", ""):
        with pytest.raises(ValueError):
            mc.url_path(bad)


def test_flags_reach_typed_settings(tmp_path: Path) -> None:
    settings = load_settings(
        [
            "--statsd-host",
            "unix:///run/dd.sock",
            "--statsd-prefix",
            "shop",
            "--dogstatsd-tags",
            "env:prod",
            "--enable-backlog-metric",
            "--metrics-bind",
            "127.0.0.1:9100",
            "--health-path",
            "/healthz",
        ],
        {},
        cwd=str(tmp_path),
    ).settings
    assert settings.statsd_host == "unix:/run/dd.sock"
    assert settings.statsd_prefix == "shop"
    assert settings.dogstatsd_tags == "env:prod"
    assert settings.enable_backlog_metric is True
    assert settings.metrics_bind == "127.0.0.1:9100"
    assert settings.health_path == "/healthz"


def test_gunicorn_config_file_keys_are_settings_not_warnings(tmp_path: Path) -> None:
    (tmp_path / "gunicorn.conf.py").write_text(
        textwrap.dedent(
            """
            statsd_host = "localhost:8125"
            statsd_prefix = "app"
            dogstatsd_tags = "env:staging"
            enable_backlog_metric = True
            """
        ),
        encoding="utf-8",
    )
    result = load_settings([], {}, cwd=str(tmp_path))
    assert result.settings.statsd_host == "localhost:8125"
    assert result.settings.statsd_prefix == "app"
    assert result.settings.enable_backlog_metric is True
    assert not [w for w in result.warnings if "statsd" in w or "backlog" in w]


def test_bad_values_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="metrics_bind"):
        load_settings(["--metrics-bind", "localhost"], {}, cwd=str(tmp_path))
    with pytest.raises(ConfigError, match="statsd_host"):
        load_settings(["--statsd-host", "host:port"], {}, cwd=str(tmp_path))
