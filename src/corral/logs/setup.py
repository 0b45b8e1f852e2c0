"""A user's own logging configuration, applied with the standard library as Gunicorn does.

Three settings, of which at most one is applied, in this order of precedence (Gunicorn's):
`logconfig_dict` (a dict in the config file), `logconfig_json` (a JSON file) and `logconfig`
(an ini file). The dict and the JSON go to `logging.config.dictConfig`, merged over
`DICT_DEFAULTS` so that they may use the handler and formatter names Gunicorn's defaults
define (`console`, `error_console`, `generic`); the ini file goes to `fileConfig`, with
`%(here)s` and `%(__file__)s` available for interpolation. Existing loggers stay enabled.

A configuration written for Gunicorn names Gunicorn's loggers, `gunicorn.error` and
`gunicorn.access`; they are read as corral's `corral.error` and `corral.access` (unless the
configuration names corral's loggers itself). `LogConfig.apply` returns the loggers the
configuration set up, so that `logger.py` leaves those alone and gives the others their usual
handlers.

Whatever goes wrong becomes a one-line `ConfigError` naming the file or setting. This module
never installs handlers of its own and never reads a file it was not given.
"""

from __future__ import annotations

import configparser
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from corral.errors import ConfigError

# "[2026-11-29 11:08:56 +0000] [1234] [INFO] Booting worker with pid: 1234", as Gunicorn
# writes it: people grep their logs for these lines.
ERROR_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
ERROR_DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"

LOGGER_ALIASES = {"gunicorn.error": "corral.error", "gunicorn.access": "corral.access"}

DICT_DEFAULTS: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "INFO", "handlers": ["console"]},
    "formatters": {"generic": {"format": ERROR_FORMAT, "datefmt": ERROR_DATE_FORMAT}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "generic",
            "stream": "ext://sys.stdout",
        },
        "error_console": {
            "class": "logging.StreamHandler",
            "formatter": "generic",
            "stream": "ext://sys.stderr",
        },
    },
}
# Sections merged name by name, so that a configuration adding a handler keeps `console`.
_MERGED_SECTIONS = ("formatters", "filters", "handlers")


@dataclass(frozen=True)
class LogConfig:
    """The logconfig, logconfig_json and logconfig_dict settings."""

    ini_path: str | None = None
    json_path: str | None = None
    mapping: Mapping[str, Any] = field(default_factory=dict)

    def apply(self) -> frozenset[str]:
        """Apply the configuration that takes precedence; return the names of the loggers it
        configured (corral's names where it used Gunicorn's). ConfigError on any failure."""
        if self.mapping:
            return apply_dict(self.mapping, "logconfig_dict")
        if self.json_path:
            return apply_dict(read_json(self.json_path), f"log config file {self.json_path}")
        if self.ini_path:
            return apply_ini(self.ini_path)
        return frozenset()

    @property
    def given(self) -> list[str]:
        """The settings that are set, the one applied first (the others are ignored)."""
        present = [
            ("logconfig_dict", bool(self.mapping)),
            ("logconfig_json", bool(self.json_path)),
            ("logconfig", bool(self.ini_path)),
        ]
        return [name for name, is_set in present if is_set]


def read_json(path: str) -> dict[str, Any]:
    """The dict a JSON log config file holds."""
    try:
        with open(path, encoding="utf-8") as file:
            config = json.load(file)
    except OSError as exc:
        raise ConfigError(f"Cannot read log config file {path}: {exc.strerror}") from None
    except ValueError as exc:  # json.JSONDecodeError, UnicodeDecodeError
        raise ConfigError(f"Invalid JSON in log config file {path}: {exc}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"Invalid log config file {path}: expected a JSON object")
    return config


def apply_dict(config: Mapping[str, Any], origin: str) -> frozenset[str]:
    """dictConfig(`config` over the defaults); `origin` names it in errors."""
    # dictConfig consumes the dicts it is given (it pops "class" and "()"): give it copies, so
    # that the setting is intact for the next reload.
    merged: dict[str, Any] = _copy_tree(dict(config))
    incremental = bool(merged.get("incremental"))
    if not incremental:
        merged = _with_defaults(merged)
    loggers = merged.get("loggers")
    if isinstance(loggers, dict):
        for old, new in LOGGER_ALIASES.items():
            if old in loggers and new not in loggers:
                loggers[new] = loggers.pop(old)
    try:
        import logging.config

        logging.config.dictConfig(merged)
    # The configuration names classes and factories of its own choosing: whatever they raise
    # is a configuration error.
    except Exception as exc:
        raise ConfigError(f"Invalid logging configuration in {origin}: {_one_line(exc)}") from None
    # An incremental configuration only adjusts levels: it owns no logger's handlers.
    if incremental or not isinstance(loggers, dict):
        return frozenset()
    return frozenset(loggers)


def apply_ini(path: str) -> frozenset[str]:
    """fileConfig(`path`), keeping existing loggers enabled."""
    here = os.path.dirname(os.path.abspath(path))
    parser = configparser.ConfigParser({"__file__": path, "here": here})
    try:
        with open(path, encoding="utf-8") as file:
            parser.read_file(file)
        names = _rename_ini_loggers(parser)
        import logging.config

        logging.config.fileConfig(parser, disable_existing_loggers=False)
    except OSError as exc:
        if exc.filename == path:
            raise ConfigError(f"Cannot read log config file {path}: {exc.strerror}") from None
        raise ConfigError(f"Invalid log config file {path}: {_one_line(exc)}") from None
    # The file's handler arguments are Python expressions, evaluated by fileConfig: whatever
    # they raise is a configuration error.
    except Exception as exc:
        raise ConfigError(f"Invalid log config file {path}: {_one_line(exc)}") from None
    return names


def _rename_ini_loggers(parser: configparser.ConfigParser) -> frozenset[str]:
    """Point `qualname = gunicorn.error/access` at corral's loggers; return every qualname."""
    keys = [key.strip() for key in parser.get("loggers", "keys", fallback="").split(",")]
    sections = [f"logger_{key}" for key in keys if key and key != "root"]
    qualnames = {
        section: parser.get(section, "qualname", raw=True, fallback="") for section in sections
    }
    names = set(qualnames.values())
    for section, qualname in qualnames.items():
        new = LOGGER_ALIASES.get(qualname)
        if new is not None and new not in names:
            parser.set(section, "qualname", new)
            names.discard(qualname)
            names.add(new)
    names.discard("")
    return frozenset(names)


def _with_defaults(config: dict[str, Any]) -> dict[str, Any]:
    merged = {**_copy_tree(DICT_DEFAULTS), **config}
    for section in _MERGED_SECTIONS:
        default, given = DICT_DEFAULTS.get(section), config.get(section)
        if isinstance(default, dict) and isinstance(given, dict):
            merged[section] = {**_copy_tree(default), **given}
    return merged


def _copy_tree(value: Any) -> Any:
    """Copies of the dicts and lists in `value`; anything else (a stream, a class) as it is."""
    if isinstance(value, Mapping):
        return {key: _copy_tree(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_tree(item) for item in value]
    return value


def _one_line(exc: BaseException) -> str:
    """The exception and its causes, on one line: "Unable to configure handler 'file': ..."."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(parts) < 4:
        text = str(current)
        if not isinstance(current, ValueError) or not text:
            text = f"{type(current).__name__}: {text}" if text else type(current).__name__
        parts.append(text)
        current = current.__cause__ or current.__context__
    return " ".join(": ".join(parts).split())
