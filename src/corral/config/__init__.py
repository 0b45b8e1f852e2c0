"""Configuration: every setting declared once (`settings.py`), and the sources that set them.

The CLI calls `load_settings(argv, environ)` and reads the typed fields of the `Settings` it
gets back; `format_settings` renders them for --print-config. Nothing here starts servers.
"""

from corral.config.settings import (
    Hook,
    NworkersChangedHook,
    PostRequestHook,
    PreRequestHook,
    ServerHook,
    ServerWorkerHook,
    Settings,
    SettingSpec,
    WorkerHook,
    format_settings,
)
from corral.config.sources import LoadResult, build_parser, load_settings, version_text

__all__ = [
    "Hook",
    "LoadResult",
    "NworkersChangedHook",
    "PostRequestHook",
    "PreRequestHook",
    "ServerHook",
    "ServerWorkerHook",
    "SettingSpec",
    "Settings",
    "WorkerHook",
    "build_parser",
    "format_settings",
    "load_settings",
    "version_text",
]
