"""A user's logging configuration (ini, JSON, dict) and a user's logger class."""

from __future__ import annotations

import json
import logging
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.config import Settings, load_settings
from corral.errors import ConfigError
from corral.logs.logger import Logger, access_log, close_logging, error_log, load_logger

ENVIRON: dict[str, Any] = {
    "REQUEST_METHOD": "GET",
    "RAW_URI": "/",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "192.0.2.7",
}


def all_loggers() -> list[logging.Logger]:
    known = logging.Logger.manager.loggerDict.values()
    return [logging.getLogger(), *(lg for lg in known if isinstance(lg, logging.Logger))]


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Put every logger back as it was: a logging configuration changes the whole process."""
    saved = {
        logger.name: (list(logger.handlers), logger.level, logger.propagate, logger.disabled)
        for logger in all_loggers()
    }
    yield
    close_logging()
    for logger in all_loggers():
        handlers, level, propagate, disabled = saved.get(logger.name, ([], 0, True, False))
        for handler in list(logger.handlers):
            if handler not in handlers:
                logger.removeHandler(handler)
                handler.close()
        for handler in handlers:
            if handler not in logger.handlers:
                logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled


def settings_for(tmp_path: Path, *argv: str) -> Settings:
    return load_settings(list(argv), {}, cwd=str(tmp_path)).settings


def set_up(settings: Settings) -> Logger:
    logger = load_logger(settings)
    logger.setup(settings)
    return logger


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


INI = """
    [loggers]
    keys = root, server

    [handlers]
    keys = app_file

    [formatters]
    keys = plain

    [logger_root]
    level = WARNING
    handlers =

    [logger_server]
    level = DEBUG
    handlers = app_file
    propagate = 0
    qualname = {qualname}

    [handler_app_file]
    class = FileHandler
    args = ('%(here)s/app.log', 'a')
    formatter = plain

    [formatter_plain]
    format = INI %(levelname)s %(message)s
"""


# --- ini (--log-config) -----------------------------------------------------------------------


@pytest.mark.parametrize("qualname", ["corral.error", "gunicorn.error"])
def test_ini_config_takes_over_the_error_log(tmp_path: Path, qualname: str) -> None:
    ini = write(tmp_path / "logging.ini", INI.format(qualname=qualname))
    access_path = tmp_path / "access.log"
    settings = settings_for(
        tmp_path,
        "--log-config",
        str(ini),
        "--error-logfile",
        str(tmp_path / "error.log"),
        "--access-logfile",
        str(access_path),
        "--access-logformat",
        "%(m)s %(s)s",
    )
    logger = set_up(settings)
    error_log.debug("from %s", "corral")
    assert (tmp_path / "app.log").read_text() == "INI DEBUG from corral\n"
    # The error log file is not even opened; the access log, not configured, still is.
    assert not (tmp_path / "error.log").exists()
    logger.access(ENVIRON, "200 OK", [], 0, 0.0)
    assert access_path.read_text() == "GET 200\n"


def test_ini_config_is_reopened_on_usr1(tmp_path: Path) -> None:
    ini = write(tmp_path / "logging.ini", INI.format(qualname="corral.error"))
    logger = set_up(settings_for(tmp_path, "--log-config", str(ini)))
    error_log.warning("before")
    os.rename(tmp_path / "app.log", tmp_path / "app.log.1")
    logger.reopen_files()
    error_log.warning("after")
    assert (tmp_path / "app.log.1").read_text() == "INI WARNING before\n"
    assert (tmp_path / "app.log").read_text() == "INI WARNING after\n"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[loggers]\nkeys = root\n", "KeyError: 'formatters'"),
        ("not an ini file\n", "MissingSectionHeaderError"),
        (INI.format(qualname="x").replace("FileHandler", "NoSuchHandler"), "NoSuchHandler"),
        (INI.format(qualname="x").replace("%(here)s", "/no/such/dir"), "No such file"),
    ],
)
def test_bad_ini_config_is_a_config_error(tmp_path: Path, text: str, reason: str) -> None:
    ini = write(tmp_path / "logging.ini", text)
    with pytest.raises(ConfigError) as caught:
        set_up(settings_for(tmp_path, "--log-config", str(ini)))
    message = str(caught.value)
    assert message.startswith(f"Invalid log config file {ini}: ")
    assert reason in message
    assert "\n" not in message


def test_missing_ini_config_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.ini"
    with pytest.raises(ConfigError, match=f"^Cannot read log config file {missing}: No such file"):
        set_up(settings_for(tmp_path, "--log-config", str(missing)))


# --- JSON (--log-config-json) and dict (logconfig_dict) ----------------------------------------


def file_handler_config(path: Path, logger_name: str, **extra: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "formatters": {"bare": {"format": "%(name)s %(message)s"}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": str(path), "formatter": "bare"}
        },
        "loggers": {logger_name: {"handlers": ["file"], "level": "INFO", "propagate": False}},
        **extra,
    }


@pytest.mark.parametrize("name", ["corral.access", "gunicorn.access"])
def test_json_config_turns_the_access_log_on(tmp_path: Path, name: str) -> None:
    path = tmp_path / "requests.log"
    config = write(tmp_path / "logging.json", json.dumps(file_handler_config(path, name)))
    logger = set_up(settings_for(tmp_path, "--log-config-json", str(config)))
    # No --access-logfile, but the configuration gave the access logger a handler.
    assert logger.access_enabled
    logger.access(ENVIRON, "204 No Content", [], None, 0.0)
    assert path.read_text().startswith("corral.access 192.0.2.7 - - [")
    assert path.read_text().endswith('] "GET / HTTP/1.1" 204 - "-" "-"\n')


def test_dict_config_from_the_config_file_and_its_defaults(tmp_path: Path) -> None:
    path = tmp_path / "server.log"
    config = file_handler_config(path, "gunicorn.error")
    # `error_console` and `generic` come from the defaults the configuration is laid over.
    config["loggers"]["gunicorn.error"]["handlers"] = ["file", "error_console"]
    config["handlers"]["file"]["formatter"] = "generic"
    write(tmp_path / "corral.conf.py", f"logconfig_dict = {config!r}\n")
    settings = settings_for(tmp_path)
    assert settings.logconfig_dict == config
    set_up(settings)
    error_log.info("Booting worker with pid: %s", 77)
    line = path.read_text()
    assert f"] [{os.getpid()}] [INFO] Booting worker with pid: 77" in line
    # dictConfig consumes the dicts it is given; the setting must survive for the next reload.
    assert settings.logconfig_dict == config
    set_up(settings)


def test_dict_wins_over_json_and_ini_and_says_so(tmp_path: Path) -> None:
    dict_log, json_log = tmp_path / "dict.log", tmp_path / "json.log"
    json_file = write(
        tmp_path / "logging.json", json.dumps(file_handler_config(json_log, "corral.error"))
    )
    ini = write(tmp_path / "logging.ini", INI.format(qualname="corral.error"))
    settings = settings_for(tmp_path, "--log-config-json", str(json_file), "--log-config", str(ini))
    settings.logconfig_dict = file_handler_config(dict_log, "corral.error")
    set_up(settings)
    assert dict_log.read_text().splitlines() == [
        "corral.error logconfig_json is ignored: logconfig_dict takes precedence",
        "corral.error logconfig is ignored: logconfig_dict takes precedence",
    ]
    assert not json_log.exists()
    assert not (tmp_path / "app.log").exists()


def test_json_wins_over_ini(tmp_path: Path) -> None:
    json_log = tmp_path / "json.log"
    json_file = write(
        tmp_path / "logging.json", json.dumps(file_handler_config(json_log, "corral.error"))
    )
    ini = write(tmp_path / "logging.ini", INI.format(qualname="corral.error"))
    set_up(settings_for(tmp_path, "--log-config", str(ini), "--log-config-json", str(json_file)))
    assert "logconfig is ignored: logconfig_json takes precedence" in json_log.read_text()


def test_loggers_the_config_leaves_alone_keep_their_destinations(tmp_path: Path) -> None:
    error_path, app_path = tmp_path / "error.log", tmp_path / "app.log"
    config = file_handler_config(app_path, "myapp", disable_existing_loggers=True)
    settings = settings_for(tmp_path, "--error-logfile", str(error_path))
    settings.logconfig_dict = config
    logger = set_up(settings)
    logging.getLogger("myapp").info("from the app")
    error_log.info("from the server")
    assert app_path.read_text() == "myapp from the app\n"
    # Not named by the configuration: still enabled (despite disable_existing_loggers) and
    # still writing to errorlog.
    assert error_path.read_text().endswith("[INFO] from the server\n")
    assert not logger.access_enabled


def test_reload_without_the_config_gives_the_loggers_back(tmp_path: Path) -> None:
    config_path = tmp_path / "config.log"
    settings = settings_for(tmp_path, "--error-logfile", str(tmp_path / "error.log"))
    settings.logconfig_dict = file_handler_config(config_path, "corral.error")
    set_up(settings)
    set_up(settings)
    assert len(error_log.handlers) == 1
    set_up(settings_for(tmp_path, "--error-logfile", str(tmp_path / "error.log")))
    error_log.warning("back to errorlog")
    assert config_path.read_text() == ""
    assert "back to errorlog" in (tmp_path / "error.log").read_text()
    assert len(error_log.handlers) == 1


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"version": 1,', "Invalid JSON in log config file {path}: Expecting"),
        ("[1, 2]", "Invalid log config file {path}: expected a JSON object"),
        ('{"version": 2}', "Invalid logging configuration in log config file {path}: "),
        (
            '{"handlers": {"h": {"class": "no.such.Handler"}}}',
            "Invalid logging configuration in log config file {path}: "
            "Unable to configure handler 'h'",
        ),
    ],
)
def test_bad_json_config_is_a_config_error(tmp_path: Path, text: str, reason: str) -> None:
    path = write(tmp_path / "logging.json", text)
    with pytest.raises(ConfigError) as caught:
        set_up(settings_for(tmp_path, "--log-config-json", str(path)))
    assert str(caught.value).startswith(reason.format(path=path))
    assert "\n" not in str(caught.value)


def test_missing_json_config_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError, match=f"^Cannot read log config file {missing}: No such"):
        set_up(settings_for(tmp_path, "--log-config-json", str(missing)))


def test_bad_dict_config_names_the_setting(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    settings.logconfig_dict = file_handler_config(tmp_path / "no" / "dir.log", "corral.error")
    with pytest.raises(ConfigError) as caught:
        set_up(settings)
    message = str(caught.value)
    assert message.startswith(
        "Invalid logging configuration in logconfig_dict: Unable to configure handler 'file': "
    )
    assert "No such file or directory" in message


def test_logconfig_dict_must_be_a_dict(tmp_path: Path) -> None:
    write(tmp_path / "corral.conf.py", "logconfig_dict = ['not', 'a', 'dict']\n")
    with pytest.raises(ConfigError, match=r"Invalid value for logconfig_dict .*must be a dict"):
        settings_for(tmp_path)


# --- logger_class -----------------------------------------------------------------------------

LOGGER_MODULE = """
    from corral.logs.logger import Logger

    class CountingLogger(Logger):
        def __init__(self, settings):
            super().__init__(settings)
            self.requests = []

        def access(self, environ, status, headers, length, request_time):
            self.requests.append((environ["RAW_URI"], status))
            super().access(environ, status, headers, length, request_time)

    class NotALogger:
        pass
"""


@pytest.fixture
def logger_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    package = tmp_path / "site" / "corral_test_loggers"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    write(package / "custom.py", LOGGER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return "corral_test_loggers.custom"


@pytest.mark.parametrize("separator", [".", ":"])
def test_custom_logger_class_from_the_command_line(
    tmp_path: Path, logger_module: str, separator: str
) -> None:
    access_path = tmp_path / "access.log"
    settings = settings_for(
        tmp_path,
        "--logger-class",
        f"{logger_module}{separator}CountingLogger",
        "--access-logfile",
        str(access_path),
        "--access-logformat",
        "%(r)s",
    )
    logger = set_up(settings)
    assert type(logger).__name__ == "CountingLogger"
    logger.access(ENVIRON, "200 OK", [], 0, 0.0)
    assert logger.requests == [("/", "200 OK")]  # type: ignore[attr-defined]
    assert access_path.read_text() == "GET / HTTP/1.1\n"


def test_custom_logger_class_object_in_the_config_file(tmp_path: Path, logger_module: str) -> None:
    config = f"from {logger_module} import CountingLogger as logger_class\n"
    write(tmp_path / "corral.conf.py", config)
    settings = settings_for(tmp_path)
    assert isinstance(settings.logger_class, type)
    assert type(load_logger(settings)).__name__ == "CountingLogger"


@pytest.mark.parametrize(
    "spelling",
    ["corral.logs.logger.Logger", "gunicorn.glogging.Logger", "gunicorn.glogging:Logger", "simple"],
)
def test_default_logger_class_spellings(tmp_path: Path, spelling: str) -> None:
    settings = settings_for(tmp_path, "--logger-class", spelling)
    assert settings.logger_class == "corral.logs.logger.Logger"
    assert type(load_logger(settings)) is Logger


@pytest.mark.parametrize(
    ("spelling", "reason"),
    [
        ("gunicorn.instrument.statsd.Statsd", "Gunicorn's logger classes cannot run in corral"),
        ("Logger", "expected the dotted path of a class"),
        ("my logger.Class", "expected the dotted path of a class"),
    ],
)
def test_bad_logger_class_fails_at_load(tmp_path: Path, spelling: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=f"Invalid value for logger_class .*{reason}"):
        settings_for(tmp_path, "--logger-class", spelling)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("NotALogger", "not a subclass of corral.logs.logger.Logger"),
        ("Missing", "Cannot import logger_class .*: no 'Missing' in corral_test_loggers.custom"),
    ],
)
def test_logger_class_that_cannot_be_used(
    tmp_path: Path, logger_module: str, name: str, message: str
) -> None:
    settings = settings_for(tmp_path, "--logger-class", f"{logger_module}.{name}")
    with pytest.raises(ConfigError, match=message):
        load_logger(settings)


def test_logger_class_module_that_does_not_import(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "--logger-class", "corral_no_such_module.Logger")
    with pytest.raises(ConfigError, match="Cannot import logger_class 'corral_no_such_module"):
        load_logger(settings)


# --- the default Logger -----------------------------------------------------------------------


class ExplodingEnviron(dict[str, Any]):
    def get(self, key: str, default: Any = None) -> Any:
        raise AssertionError(f"an access line was built: {key} was read")


def test_default_logger_with_no_access_log_builds_no_lines(tmp_path: Path) -> None:
    logger = set_up(settings_for(tmp_path))
    assert not logger.access_enabled
    assert access_log.propagate is False
    # Called anyway (a subclass may turn access_enabled on): no line is built.
    logger.access(ExplodingEnviron(), "200 OK", [], 0, 0.0)


def test_bad_access_log_format_leaves_logging_alone(tmp_path: Path) -> None:
    error_path = tmp_path / "error.log"
    logger = set_up(settings_for(tmp_path, "--error-logfile", str(error_path)))
    with pytest.raises(ConfigError, match="Invalid access log format"):
        logger.setup(settings_for(tmp_path, "--access-logformat", "%(s)d"))
    error_log.warning("still here")
    assert "still here" in error_path.read_text()
    assert logger.line_builder is not None


def test_unopenable_log_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "error.log"
    with pytest.raises(ConfigError, match=f"Cannot open log file {missing}: No such file"):
        set_up(settings_for(tmp_path, "--error-logfile", str(missing)))
