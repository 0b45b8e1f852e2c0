"""Converters for the logging settings added with syslog, logging configs and logger classes.

They follow the contract of `converters.py`: return the typed value or raise `ValueError` with
a short reason, and stay pure (no imports of user code, no files read: a logging config file
is read when logging is set up, a logger class imported by `corral.logs.logger.load_logger`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from corral.config.converters import to_str
from corral.logs import syslog

DEFAULT_LOGGER_CLASS = "corral.logs.logger.Logger"
# The setting's default, typed as the setting is (a path, or a class from a config file).
LOGGER_CLASS_DEFAULT: str | type[Any] = DEFAULT_LOGGER_CLASS
# Gunicorn's names for its default logger class, which corral's default stands in for.
GUNICORN_DEFAULT_LOGGERS = frozenset(
    {"gunicorn.glogging.Logger", "gunicorn.glogging:Logger", "simple", "egg:gunicorn#simple"}
)
_DOTTED_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*[.:][A-Za-z_]\w*")


def syslog_address(value: object) -> str:
    """`unix://PATH[#dgram|#stream]`, `udp://HOST[:PORT]` or `tcp://HOST[:PORT]`."""
    text = to_str(value).strip()
    syslog.parse_address(text)
    return text


def syslog_facility(value: object) -> str:
    """A syslog facility name, lower-cased: user, daemon, local0 ... local7, ..."""
    name = to_str(value).strip().lower()
    syslog.facility_code(name)
    return name


def logconfig_dict(value: object) -> dict[str, Any]:
    """A dict in logging.config.dictConfig's schema (checked when logging is set up)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError("must be a dict")
    return dict(value)


def logger_class(value: object) -> str | type[Any]:
    """A class (from a config file) or the dotted path of one, `package.module.Class` or
    `package.module:Class`. Gunicorn's name for its default logger means corral's default."""
    if isinstance(value, type):
        return value
    text = to_str(value).strip()
    if text in GUNICORN_DEFAULT_LOGGERS:
        return DEFAULT_LOGGER_CLASS
    if text.startswith(("gunicorn.", "egg:gunicorn")):
        raise ValueError(
            "Gunicorn's logger classes cannot run in corral; "
            f"subclass {DEFAULT_LOGGER_CLASS} instead"
        )
    if not _DOTTED_PATH.fullmatch(text):
        raise ValueError("expected the dotted path of a class, such as mypackage.logging.MyLogger")
    return text
