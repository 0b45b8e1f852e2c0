"""The HTTP/2 settings: flags, config file, CORRAL_CMD_ARGS, validation, the startup rules, and
the ALPN names they stand for."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from corral.config import Settings, load_settings
from corral.config import http2 as h2_conv
from corral.config.settings import SPECS_BY_NAME
from corral.config.sources import GUNICORN_ONLY
from corral.errors import ConfigError

HTTP2_SETTINGS = (
    "http_protocols",
    "http2_cleartext",
    "http2_max_concurrent_streams",
    "http2_initial_window_size",
    "http2_max_frame_size",
    "http2_max_header_list_size",
)
# What the settings need to start without an HTTP/2 error or warning.
SERVES_H2 = ("-k", "gthread", "--certfile", "site.pem")


def load(
    tmp_path: Path, *argv: str, config: str | None = None, **environ: str
) -> tuple[Settings, list[str]]:
    if config is not None:
        path = tmp_path / "gunicorn.conf.py"
        path.write_text(textwrap.dedent(config), encoding="utf-8")
    result = load_settings(list(argv), environ, cwd=str(tmp_path))
    return result.settings, result.warnings


def refused(tmp_path: Path, *argv: str, config: str | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, *argv, config=config)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- declarations and defaults ---------------------------------------------------------------


def test_defaults_are_gunicorns_and_change_nothing(tmp_path: Path) -> None:
    settings, warnings = load(tmp_path)
    assert settings.http_protocols == ["h1"]
    assert settings.http2_cleartext == "off"
    assert settings.http2_max_concurrent_streams == 100
    assert settings.http2_initial_window_size == 65535
    assert settings.http2_max_frame_size == 16384
    assert settings.http2_max_header_list_size == 65536
    assert warnings == []
    assert h2_conv.alpn_protocols(settings) == ["http/1.1"]


def test_declared_in_the_http2_section_with_gunicorns_flags() -> None:
    for name in HTTP2_SETTINGS:
        spec = SPECS_BY_NAME[name]
        assert spec.section == "HTTP/2"
        assert spec.flags == ("--" + name.replace("_", "-"),)
        assert name not in GUNICORN_ONLY


# --- sources ---------------------------------------------------------------------------------


def test_command_line(tmp_path: Path) -> None:
    settings, warnings = load(
        tmp_path,
        *("--http-protocols", "h2,h1", "--http2-cleartext", "both"),
        *("--http2-max-concurrent-streams", "250", "--http2-initial-window-size", "1048576"),
        *("--http2-max-frame-size", "32768", "--http2-max-header-list-size", "131072"),
        *("-k", "asgi"),
    )
    assert settings.http_protocols == ["h2", "h1"]
    assert settings.http2_cleartext == "both"
    assert settings.http2_max_concurrent_streams == 250
    assert settings.http2_initial_window_size == 1048576
    assert settings.http2_max_frame_size == 32768
    assert settings.http2_max_header_list_size == 131072
    assert warnings == []


def test_config_file(tmp_path: Path) -> None:
    settings, warnings = load(
        tmp_path,
        config="""
        worker_class = "gthread"
        http_protocols = "h2, h1"
        http2_cleartext = True
        http2_max_concurrent_streams = 32
        http2_initial_window_size = 0
        http2_max_frame_size = 16777215
        http2_max_header_list_size = 8192
        """,
    )
    assert settings.http_protocols == ["h2", "h1"]
    assert settings.http2_cleartext == "prior-knowledge"
    assert (settings.http2_max_concurrent_streams, settings.http2_initial_window_size) == (32, 0)
    assert settings.http2_max_frame_size == 16777215
    assert settings.http2_max_header_list_size == 8192
    assert warnings == []


def test_config_file_list_and_false(tmp_path: Path) -> None:
    settings, warnings = load(
        tmp_path,
        *SERVES_H2,
        config="""
        http_protocols = ["H1", "h2"]
        http2_cleartext = False
        """,
    )
    assert settings.http_protocols == ["h1", "h2"]
    assert settings.http2_cleartext == "off"
    assert warnings == []
    assert h2_conv.alpn_protocols(settings) == ["http/1.1", "h2"]


def test_environment_arguments_and_command_line_precedence(tmp_path: Path) -> None:
    settings, _ = load(
        tmp_path,
        *("--http2-max-frame-size", "65536"),
        CORRAL_CMD_ARGS="-k gthread --http-protocols h2 --http2-cleartext upgrade "
        "--http2-max-frame-size 20000",
    )
    assert settings.http_protocols == ["h2"]
    assert settings.http2_cleartext == "upgrade"
    assert settings.http2_max_frame_size == 65536
    gunicorn, _ = load(tmp_path, GUNICORN_CMD_ARGS="--http2-max-concurrent-streams 7")
    assert gunicorn.http2_max_concurrent_streams == 7


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("h1", ["h1"]),
        ("h2", ["h2"]),
        ("H2 , h1", ["h2", "h1"]),
        ("h1,h2,", ["h1", "h2"]),
        ("", ["h1"]),
        (None, ["h1"]),
        (("h2",), ["h2"]),
    ],
)
def test_http_protocols_accepted(value: object, expected: list[str]) -> None:
    assert h2_conv.http_protocols(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("h3", "unknown protocol 'h3'"),
        ("h2,http/1.1", "unknown protocol 'http/1.1'"),
        ("h2,h2", "h2 is listed twice"),
        ("h1,H1", "h1 is listed twice"),
        (2, "comma-separated"),
        (["h2", 1], "comma-separated"),
    ],
)
def test_http_protocols_refused(value: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        h2_conv.http_protocols(value)


def test_http2_cleartext_values() -> None:
    for mode in ("off", "prior-knowledge", "upgrade", "both"):
        assert h2_conv.http2_cleartext(mode) == mode
        assert h2_conv.http2_cleartext(f" {mode.upper()} ") == mode
    assert h2_conv.http2_cleartext(True) == "prior-knowledge"
    assert h2_conv.http2_cleartext(False) == "off"
    assert h2_conv.http2_cleartext(None) == "off"
    for bad in ("on", "true", "h2c", 1):
        with pytest.raises(ValueError, match="off, prior-knowledge, upgrade, both"):
            h2_conv.http2_cleartext(bad)


def test_header_list_size_zero_means_the_ceiling_never_unbounded() -> None:
    assert h2_conv.http2_header_list_size(0) == 1024 * 1024
    assert h2_conv.http2_header_list_size("0") == 1024 * 1024
    assert h2_conv.http2_header_list_size(1024 * 1024 + 1) == 1024 * 1024
    assert h2_conv.http2_header_list_size(10**12) == 1024 * 1024
    assert h2_conv.http2_header_list_size(1) == 1


@pytest.mark.parametrize(
    ("flag", "value", "reason"),
    [
        ("--http-protocols", "h2,h3", "unknown protocol 'h3'"),
        ("--http-protocols", "h1,h1", "h1 is listed twice"),
        ("--http2-cleartext", "yes", "the mode must be one of"),
        ("--http2-max-concurrent-streams", "0", "must be at least 1"),
        ("--http2-max-concurrent-streams", "ten", "not an integer"),
        ("--http2-initial-window-size", "-1", "must be between 0 and 2147483647"),
        ("--http2-initial-window-size", "2147483648", "must be between 0 and 2147483647"),
        ("--http2-max-frame-size", "16383", "must be between 16384 and 16777215"),
        ("--http2-max-frame-size", "16777216", "must be between 16384 and 16777215"),
        ("--http2-max-header-list-size", "-1", "must be at least 0"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_setting(
    tmp_path: Path, flag: str, value: str, reason: str
) -> None:
    message = refused(tmp_path, flag, value)
    key = flag.removeprefix("--").replace("-", "_")
    assert message.startswith(f"Invalid value for {key} ({flag}): {value!r}: "), message
    assert reason in message


def test_config_file_booleans_are_refused_where_they_mean_nothing(tmp_path: Path) -> None:
    message = refused(tmp_path, config="http2_max_frame_size = True\n")
    assert "http2_max_frame_size" in message and "not a boolean" in message
    message = refused(tmp_path, config="http_protocols = {'h2': 1}\n")
    assert "http_protocols" in message


# --- startup rules ---------------------------------------------------------------------------


@pytest.mark.parametrize("worker", [(), ("-k", "sync"), ("-k", "gunicorn.workers.sync.SyncWorker")])
def test_h2_on_the_sync_worker_is_refused(tmp_path: Path, worker: tuple[str, ...]) -> None:
    message = refused(tmp_path, *worker, "--http-protocols", "h2,h1", "--certfile", "site.pem")
    assert "sync worker" in message and "-k gthread or -k asgi" in message
    assert "multiplex" in message


def test_sync_with_threads_runs_gthread_and_may_serve_h2(tmp_path: Path) -> None:
    settings, warnings = load(
        tmp_path, "--threads", "4", "--http-protocols", "h2", "--certfile", "x"
    )
    assert settings.effective_worker_class == "gthread"
    assert warnings == []


def test_h2_without_the_library_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes `import h2` raise ImportError, as when it is missing.
    monkeypatch.setitem(sys.modules, "h2", None)
    message = refused(tmp_path, *SERVES_H2, "--http-protocols", "h2,h1")
    assert message.startswith("HTTP/2 (http_protocols includes h2) needs the h2 library")
    assert message.endswith("install corral[http2] (pip install 'corral[http2]')")
    # Without h2 asked for, the library is never imported.
    settings, warnings = load(tmp_path, "--http-protocols", "h1")
    assert settings.http_protocols == ["h1"] and warnings == []


def test_h2_library_too_old_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import h2

    monkeypatch.setattr(h2, "__version__", "4.0.0")
    message = refused(tmp_path, *SERVES_H2, "--http-protocols", "h2")
    assert "needs h2 4.1 or later, found 4.0.0" in message


def test_h2_that_can_never_be_negotiated_is_a_warning(tmp_path: Path) -> None:
    settings, warnings = load(tmp_path, "-k", "asgi", "--http-protocols", "h2,h1")
    assert settings.http_protocols == ["h2", "h1"]
    assert len(warnings) == 1
    assert "no TLS" in warnings[0] and "never be negotiated" in warnings[0]
    for mode in ("prior-knowledge", "upgrade", "both"):
        _, warnings = load(
            tmp_path, "-k", "asgi", "--http-protocols", "h2", "--http2-cleartext", mode
        )
        assert warnings == []


def test_cleartext_without_h2_is_a_warning(tmp_path: Path) -> None:
    settings, warnings = load(tmp_path, "--http2-cleartext", "prior-knowledge")
    assert settings.http2_cleartext == "prior-knowledge"
    assert warnings == [
        "http2_cleartext is prior-knowledge but http_protocols does not include h2: "
        "no cleartext HTTP/2 will be served"
    ]


def test_cleartext_with_tls_is_a_warning(tmp_path: Path) -> None:
    _, warnings = load(tmp_path, *SERVES_H2, "--http-protocols", "h2", "--http2-cleartext", "both")
    assert len(warnings) == 1 and "ignored" in warnings[0]


# --- ALPN ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocols", "alpn"),
    [
        ("h1", ["http/1.1"]),
        ("h2,h1", ["h2", "http/1.1"]),
        ("h1,h2", ["http/1.1", "h2"]),
        ("h2", ["h2"]),
    ],
)
def test_alpn_follows_http_protocols(tmp_path: Path, protocols: str, alpn: list[str]) -> None:
    settings, _ = load(tmp_path, *SERVES_H2, "--http-protocols", protocols)
    assert h2_conv.alpn_protocols(settings) == alpn


@pytest.mark.parametrize("worker", ["gevent", "gevent_pywsgi"])
def test_h2_on_the_gevent_worker_is_refused(tmp_path: Path, worker: str) -> None:
    message = refused(tmp_path, "-k", worker, "--http-protocols", "h2,h1", "--certfile", "x")
    assert "gevent worker" in message and "-k gthread or -k asgi" in message
