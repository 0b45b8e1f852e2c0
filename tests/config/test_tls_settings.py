"""The SSL settings and the ssl_context hook: flags, config-file names, defaults, conversion."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from corral.config import Settings, load_settings
from corral.config.settings import SPECS_BY_NAME
from corral.errors import ConfigError


def load(tmp_path: Path, *argv: str, config: str | None = None) -> tuple[Settings, list[str]]:
    if config is not None:
        path = tmp_path / "gunicorn.conf.py"
        path.write_text(textwrap.dedent(config), encoding="utf-8")
    result = load_settings(list(argv), {}, cwd=str(tmp_path))
    return result.settings, result.warnings


def test_defaults_leave_tls_off(tmp_path: Path) -> None:
    settings, _ = load(tmp_path)
    assert (settings.certfile, settings.keyfile, settings.ca_certs) == (None, None, None)
    assert (settings.cert_reqs, settings.ciphers) == (0, None)
    assert settings.do_handshake_on_connect is False
    assert settings.suppress_ragged_eofs is True
    assert settings.ssl_context(settings, lambda: "built") == "built"
    assert {SPECS_BY_NAME[name].section for name in ("certfile", "cert_reqs", "ciphers")} == {"SSL"}


def test_gunicorn_tls_flags(tmp_path: Path) -> None:
    settings, _ = load(
        tmp_path,
        *("--certfile", "cert.pem", "--keyfile", "key.pem", "--ca-certs", "ca.pem"),
        *("--cert-reqs", "2", "--ciphers", "ECDHE+AESGCM"),
        *("--do-handshake-on-connect", "--suppress-ragged-eofs"),
    )
    assert (settings.certfile, settings.keyfile, settings.ca_certs) == (
        "cert.pem",
        "key.pem",
        "ca.pem",
    )
    assert (settings.cert_reqs, settings.ciphers) == (2, "ECDHE+AESGCM")
    assert settings.do_handshake_on_connect and settings.suppress_ragged_eofs


def test_gunicorn_tls_config_file_loads_without_warnings(tmp_path: Path) -> None:
    settings, warnings = load(
        tmp_path,
        config="""
        import ssl
        certfile = "/etc/ssl/site.pem"
        keyfile = "/etc/ssl/site.key"
        ca_certs = "/etc/ssl/clients-ca.pem"
        cert_reqs = ssl.CERT_REQUIRED
        suppress_ragged_eofs = False

        def ssl_context(config, default_ssl_context_factory):
            context = default_ssl_context_factory()
            context.minimum_version = ssl.TLSVersion.TLSv1_3
            return context
        """,
    )
    assert warnings == []
    assert settings.certfile == "/etc/ssl/site.pem" and settings.cert_reqs == 2
    assert settings.suppress_ragged_eofs is False
    assert settings.ssl_context.__name__ == "ssl_context"


@pytest.mark.parametrize(
    ("argv", "config", "match"),
    [
        (["--cert-reqs", "3"], None, r"Invalid value for cert_reqs .*'3': must be at most 2"),
        (["--cert-reqs", "required"], None, r"Invalid value for cert_reqs .*not an integer"),
        ([], "def ssl_context(config):\n    pass\n", r"Invalid value for ssl_context "),
    ],
)
def test_bad_tls_values_are_config_errors(
    tmp_path: Path, argv: list[str], config: str | None, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        load(tmp_path, *argv, config=config)
