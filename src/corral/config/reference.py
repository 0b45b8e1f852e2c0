"""Generate docs/settings.md, the settings reference, from the declarations in `settings.py`.

`python -m corral.config.reference` prints it; `make docs` writes it to docs/settings.md, and a
test fails when the file no longer matches. The output depends on nothing but the declarations
(no current directory, user id or environment), so it is the same on every machine.
"""

from __future__ import annotations

import sys

from corral.config.settings import SECTIONS, SPECS, SettingSpec, default_value

HEADER = """\
# Settings reference

<!-- Generated from src/corral/config/settings.py by `make docs`; do not edit by hand. -->

corral reads the same settings as Gunicorn, under the same names, flags and defaults, so a
Gunicorn command line or config file works unchanged. Each setting is looked for in these
sources; a later source overrides an earlier one, but only for the settings it names:

1. the default shown below;
2. a few environment variables that seed a default: `WEB_CONCURRENCY` (workers), `PORT`
   (bind becomes `0.0.0.0:$PORT`), `FORWARDED_ALLOW_IPS` and `SENDFILE`;
3. the config file: the one named by `-c`/`--config`, or else `corral.conf.py` in the current
   directory, or else `gunicorn.conf.py` there. It is plain Python, and every top-level name
   that is a setting's config-file name sets that setting. Other names draw a warning (the
   closest setting name is suggested), except names starting with `_`, upper-case names
   (constants), and imported modules, classes and functions. `-c python:MODULE` imports a
   module instead of reading a file;
4. `CORRAL_CMD_ARGS`, holding command-line flags (or `GUNICORN_CMD_ARGS` when
   `CORRAL_CMD_ARGS` is not set);
5. the command line.

Server hooks can only be set in the config file, by defining functions with the hook's name.
"""


def _code(text: str) -> str:
    return f"`{text}`"


def _flags(spec: SettingSpec) -> str:
    if spec.action == "positional":
        return f"{_code(str(spec.meta))} (positional argument)"
    if not spec.flags:
        return "none (config file only)"
    metavar = f" {spec.meta or spec.name.upper()}" if spec.action in ("store", "append") else ""
    return ", ".join(_code(flag + metavar) for flag in spec.flags)


def _default(spec: SettingSpec) -> str:
    return spec.default_doc or _code(repr(default_value(spec)))


def _config_file(spec: SettingSpec) -> str:
    if spec.is_hook:
        params = ", ".join(spec.hook_params or ())
        return _code(f"def {spec.key}({params}): ...")
    if not spec.file_settable:
        return "cannot be set in a config file"
    return _code(spec.key)


def render_setting(spec: SettingSpec) -> str:
    """One setting's entry: heading, facts, help."""
    facts = [
        f"- **Config file:** {_config_file(spec)}",
        f"- **Command line:** {_flags(spec)}",
    ]
    if spec.env:
        facts.append(f"- **Environment variable:** {_code(spec.env)}")
    facts.append(f"- **Default:** {_default(spec)}")
    facts.append(f"- **Type:** {_code(spec.type_doc)}")
    return "\n".join([f"### `{spec.key}`", "", *facts, "", spec.help, ""])


def render_reference() -> str:
    """The whole of docs/settings.md, ending with one newline."""
    parts = [HEADER]
    for section in SECTIONS:
        specs = [spec for spec in SPECS if spec.section == section]
        if specs:
            parts.append(f"## {section}\n")
            parts.extend(render_setting(spec) for spec in specs)
    return "\n".join(parts).rstrip("\n") + "\n"


def main() -> None:
    sys.stdout.write(render_reference())


if __name__ == "__main__":
    main()
