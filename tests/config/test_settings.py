"""Settings: declarations, converters, sources and their precedence."""

from __future__ import annotations

import grp
import os
import pwd
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from corral.config import Settings, build_parser, format_settings, load_settings
from corral.config import converters as conv
from corral.config.settings import SECTIONS, SPECS, default_value
from corral.errors import ConfigError


def write_config(directory: Path, text: str, name: str = "gunicorn.conf.py") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, *argv: str, **environ: str) -> Settings:
    return load_settings(list(argv), environ, cwd=str(tmp_path)).settings


# --- declarations ----------------------------------------------------------------------------


def test_every_declaration_is_complete_and_its_default_converts_to_itself() -> None:
    for spec in SPECS:
        assert spec.help and spec.section in SECTIONS, spec.name
        if spec.is_hook:
            continue
        default = default_value(spec)
        assert spec.convert(default) == default, spec.name


def test_flags_and_config_names_are_unique() -> None:
    flags = [flag for spec in SPECS for flag in spec.flags]
    assert len(flags) == len(set(flags))
    assert len({spec.key for spec in SPECS}) == len(SPECS)


def test_defaults(tmp_path: Path) -> None:
    result = load_settings([], {}, cwd=str(tmp_path))
    settings = result.settings
    assert (result.action, result.warnings) == ("serve", [])
    assert settings.bind == ["127.0.0.1:8000"]
    assert (settings.workers, settings.worker_class, settings.threads) == (1, "sync", 1)
    assert (settings.timeout, settings.graceful_timeout, settings.keepalive) == (30, 30, 2)
    assert settings.chdir == str(tmp_path)
    assert (settings.user, settings.group) == (os.geteuid(), os.getegid())
    assert settings.forwarded_allow_ips == ["127.0.0.1", "::1"]
    assert settings.forwarder_headers == ["SCRIPT_NAME", "PATH_INFO"]
    assert settings.secure_scheme_headers["X-FORWARDED-PROTO"] == "https"
    assert settings.sendfile is None and settings.config is None and settings.app_spec is None
    assert settings.access_log_format.startswith('%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s')


def test_list_defaults_are_not_shared() -> None:
    first, second = Settings(), Settings()
    first.bind.append("0.0.0.0:1")
    assert second.bind == ["127.0.0.1:8000"]


# --- precedence ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("use_config", "env_args", "argv", "expected"),
    [
        (False, None, [], 2),
        (True, None, [], 3),
        (True, "-w 4", [], 4),
        (True, "-w 4", ["-w", "5"], 5),
        (False, None, ["-w", "5"], 5),
    ],
)
def test_precedence(
    tmp_path: Path, use_config: bool, env_args: str | None, argv: list[str], expected: int
) -> None:
    if use_config:
        write_config(tmp_path, "workers = 3\n")
    environ = {"WEB_CONCURRENCY": "2"}
    if env_args is not None:
        environ["CORRAL_CMD_ARGS"] = env_args
    assert load_settings(argv, environ, cwd=str(tmp_path)).settings.workers == expected


def test_a_source_overrides_only_what_it_names(tmp_path: Path) -> None:
    write_config(tmp_path, "timeout = 60\nbind = ['unix:/tmp/a.sock']\n")
    settings = load(tmp_path, "-w", "5", CORRAL_CMD_ARGS="--threads 2")
    assert (settings.timeout, settings.workers, settings.threads) == (60, 5, 2)
    assert settings.bind == ["unix:/tmp/a.sock"]


def test_command_line_list_replaces_config_list(tmp_path: Path) -> None:
    write_config(tmp_path, "bind = ['127.0.0.1:1', '127.0.0.1:2']\n")
    assert load(tmp_path, "-b", "127.0.0.1:3").bind == ["127.0.0.1:3"]


def test_gunicorn_cmd_args_is_the_fallback(tmp_path: Path) -> None:
    assert load(tmp_path, GUNICORN_CMD_ARGS="-w 7").workers == 7
    both = load(tmp_path, GUNICORN_CMD_ARGS="-w 7", CORRAL_CMD_ARGS="--threads 3")
    assert (both.workers, both.threads) == (1, 3)


def test_config_named_in_env_args_is_loaded_but_argv_wins(tmp_path: Path) -> None:
    env_config = write_config(tmp_path, "workers = 3\n", "env.conf.py")
    argv_config = write_config(tmp_path, "workers = 4\n", "argv.conf.py")
    settings = load(tmp_path, CORRAL_CMD_ARGS=f"-c {env_config}")
    assert (settings.workers, settings.config) == (3, str(env_config))
    assert load(tmp_path, "-c", str(argv_config), CORRAL_CMD_ARGS=f"-c {env_config}").workers == 4


def test_config_discovery_prefers_corral_conf(tmp_path: Path) -> None:
    write_config(tmp_path, "workers = 3\n")
    assert load(tmp_path).config == str(tmp_path / "gunicorn.conf.py")
    write_config(tmp_path, "workers = 4\n", "corral.conf.py")
    assert load(tmp_path).workers == 4


def test_relative_config_path_is_taken_from_cwd(tmp_path: Path) -> None:
    write_config(tmp_path, "workers = 6\n", "custom.py")
    assert load(tmp_path, "--config", "custom.py").workers == 6
    assert load(tmp_path, "-c", "file:custom.py").workers == 6


@pytest.mark.parametrize(
    ("environ", "field", "expected"),
    [
        ({"PORT": "5000"}, "bind", ["0.0.0.0:5000"]),
        ({"FORWARDED_ALLOW_IPS": "*"}, "forwarded_allow_ips", ["*"]),
        ({"FORWARDED_ALLOW_IPS": "10.0.0.0/8, ::1"}, "forwarded_allow_ips", ["10.0.0.0/8", "::1"]),
        ({"SENDFILE": "0"}, "sendfile", False),
        ({"SENDFILE": "off"}, "sendfile", False),
        ({"SENDFILE": "1"}, "sendfile", True),
        ({"WEB_CONCURRENCY": "9"}, "workers", 9),
        ({"WEB_CONCURRENCY": ""}, "workers", 1),
    ],
)
def test_environment_seeds(
    tmp_path: Path, environ: dict[str, str], field: str, expected: object
) -> None:
    assert getattr(load(tmp_path, **environ), field) == expected


def test_script_name_is_not_a_setting(tmp_path: Path) -> None:
    settings = load(tmp_path, SCRIPT_NAME="/app")
    assert "/app" not in format_settings(settings)


def test_bad_environment_seed_names_variable_and_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"workers.*WEB_CONCURRENCY.*'many'"):
        load(tmp_path, WEB_CONCURRENCY="many")
    with pytest.raises(ConfigError, match=r"bind.*PORT.*'http'"):
        load(tmp_path, PORT="http")


# --- command line ----------------------------------------------------------------------------


def test_repeatable_and_boolean_flags(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        *("-b", "127.0.0.1:1", "--bind", "[::1]:2", "-e", "A=1", "-e", "B=x=y"),
        *("--preload", "--no-sendfile", "--reuse-port", "-D", "--strip-header-spaces"),
        *("--log-file", "/tmp/err.log", "--limit-request-field_size", "100", "app:application"),
    )
    assert settings.bind == ["127.0.0.1:1", "[::1]:2"]
    assert settings.raw_env == ["A=1", "B=x=y"] and settings.env == {"A": "1", "B": "x=y"}
    assert settings.preload_app and settings.reuse_port and settings.daemon
    assert settings.sendfile is False and settings.strip_header_spaces
    assert settings.errorlog == "/tmp/err.log" and settings.limit_request_field_size == 100
    assert settings.app_spec == "app:application"
    assert load(tmp_path, "--limit-request-field-size", "7").limit_request_field_size == 7


@pytest.mark.parametrize(
    ("argv", "action"),
    [
        (["-v"], "version"),
        (["--version", "-w", "nonsense"], "version"),
        (["--check-config"], "check_config"),
        (["--print-config"], "print_config"),
        (["--print-config", "--check-config"], "print_config"),
    ],
)
def test_actions(tmp_path: Path, argv: list[str], action: str) -> None:
    assert load_settings(argv, {}, cwd=str(tmp_path)).action == action


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        load(tmp_path, "--no-such-flag")
    assert exit_info.value.code == 2
    assert "--no-such-flag" in capsys.readouterr().err


def test_usage_error_in_env_args_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"CORRAL_CMD_ARGS.*--bogus"):
        load(tmp_path, CORRAL_CMD_ARGS="--bogus")
    with pytest.raises(ConfigError, match="GUNICORN_CMD_ARGS"):
        load(tmp_path, GUNICORN_CMD_ARGS="-w 'unbalanced")


def test_help_lists_sections() -> None:
    text = build_parser().format_help()
    assert text.startswith("usage: corral [OPTIONS] [APP_MODULE]")
    for section in SECTIONS:
        if section != "Server Hooks":
            assert f"\n{section}:\n" in text
    assert "--worker-class" in text and "[sync]" in text


def test_help_names_the_ctl_subcommand() -> None:
    text = build_parser().format_help()
    assert "\n       corral ctl [-s SOCKET] [-c COMMAND] [-j]\n" in text
    assert "`corral ctl --help`" in text


def test_help_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        load(tmp_path, "--help")
    assert exit_info.value.code == 0
    assert "Worker Processes:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "setting", "value"),
    [
        (["-w", "0"], "workers", "'0'"),
        (["-w", "two"], "workers", "'two'"),
        (["--threads", "0"], "threads", "'0'"),
        (["-t", "-1"], "timeout", "'-1'"),
        (["-k", "eventlet"], "worker_class", "'eventlet'"),
        (["--log-level", "loud"], "loglevel", "'loud'"),
        (["-b", "::1"], "bind", "['::1']"),
        (["-e", "NOEQUALS"], "raw_env", "['NOEQUALS']"),
        (["--limit-request-line", "9000"], "limit_request_line", "'9000'"),
        (["--limit-request-fields", "40000"], "limit_request_fields", "'40000'"),
        (["--header-map", "keep"], "header_map", "'keep'"),
        (["--forwarded-allow-ips", "10.0.0.1/8"], "forwarded_allow_ips", "'10.0.0.1/8'"),
        (["-u", "no-such-user-corral"], "user", "'no-such-user-corral'"),
        (["-g", "no-such-group-corral"], "group", "'no-such-group-corral'"),
        (["-m", "9x"], "umask", "'9x'"),
        (["--chdir", "does/not/exist"], "chdir", "'does/not/exist'"),
    ],
)
def test_bad_value_names_setting_and_value(
    tmp_path: Path, argv: list[str], setting: str, value: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load(tmp_path, *argv)
    message = str(error.value)
    assert setting in message and value in message and "\n" not in message


def test_bad_value_in_env_args_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"Invalid value for workers \(-w/--workers in CORRAL"):
        load(tmp_path, CORRAL_CMD_ARGS="-w 0")


def test_chdir_is_resolved_against_cwd(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    assert load(tmp_path, "--chdir", "site").chdir == str(tmp_path / "site")


def test_sync_with_threads_runs_gthread(tmp_path: Path) -> None:
    assert load(tmp_path, "--threads", "4").effective_worker_class == "gthread"
    assert load(tmp_path).effective_worker_class == "sync"


# --- config file -----------------------------------------------------------------------------

GUNICORN_STYLE_CONFIG = """
    import multiprocessing
    import os

    BASE_DIR = os.path.dirname(__file__)
    _seen = []

    wsgi_app = "myproject.wsgi:application"
    bind = "0.0.0.0:8080"
    workers = multiprocessing.cpu_count() * 2 + 1
    worker_class = "gunicorn.workers.gthread.ThreadWorker"
    threads = 4
    timeout = 120
    keepalive = 5
    max_requests = 1000
    max_requests_jitter = 50
    accesslog = "-"
    errorlog = "-"
    loglevel = "WARNING"
    raw_env = ["DJANGO_SETTINGS_MODULE=myproject.settings"]
    forwarded_allow_ips = "*"
    secure_scheme_headers = {"X-FORWARDED-PROTO": "https"}
    umask = "022"
    preload_app = True
    sendfile = False

    def helper(value):
        return value

    def on_starting(server):
        _seen.append(("on_starting", server))

    def post_fork(server, worker):
        _seen.append(("post_fork", worker))

    def post_request(worker, req):
        _seen.append(("post_request", req))

    def nworkers_changed(server, new_value, old_value):
        _seen.append(("nworkers_changed", new_value, old_value))

    def worker_exit(server, worker, *rest):
        pass
"""


def test_gunicorn_style_config_loads(tmp_path: Path) -> None:
    write_config(tmp_path, GUNICORN_STYLE_CONFIG)
    result = load_settings([], {}, cwd=str(tmp_path))
    settings = result.settings
    assert result.warnings == []
    assert settings.app_spec == "myproject.wsgi:application"
    assert settings.bind == ["0.0.0.0:8080"]
    assert settings.workers == (os.cpu_count() or 1) * 2 + 1
    assert (settings.worker_class, settings.threads, settings.timeout) == ("gthread", 4, 120)
    assert (settings.max_requests, settings.max_requests_jitter) == (1000, 50)
    assert (settings.accesslog, settings.loglevel, settings.umask) == ("-", "warning", 0o22)
    assert settings.forwarded_allow_ips == ["*"]
    assert settings.secure_scheme_headers == {"X-FORWARDED-PROTO": "https"}
    assert settings.preload_app and settings.sendfile is False

    settings.on_starting("server")
    settings.post_fork("server", "worker")
    settings.post_request("worker", "req", {}, "resp")
    settings.nworkers_changed("server", 3, None)
    settings.pre_fork("server", "worker")  # the default: does nothing
    assert "post_request = <post_request()>" in " ".join(format_settings(settings).split())


def test_argv_app_spec_beats_wsgi_app(tmp_path: Path) -> None:
    write_config(tmp_path, "wsgi_app = 'a:b'\n")
    assert load(tmp_path).app_spec == "a:b"
    assert load(tmp_path, "c:d").app_spec == "c:d"


def test_unknown_names_warn_with_suggestion(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        import os
        wokers = 3
        colour = "blue"
        dirty_workers = 2
        def post_forks(server, worker):
            pass
        def helper():
            pass
        config = "other.py"
        """,
    )
    warnings = load_settings([], {}, cwd=str(tmp_path)).warnings
    assert f"Unknown setting 'wokers' in {path}; did you mean 'workers'?" in warnings
    assert f"Unknown setting 'colour' in {path}" in warnings
    assert any("'dirty_workers'" in w and "not supported" in w for w in warnings)
    assert f"Unknown hook 'post_forks' in {path}; did you mean 'post_fork'?" in warnings
    assert any("'config' cannot be set" in w for w in warnings)
    assert len(warnings) == 5


@pytest.mark.parametrize(
    ("text", "hook"),
    [
        ("post_fork = 42\n", "post_fork"),
        ("def when_ready():\n    pass\n", "when_ready"),
        ("def pre_fork(server):\n    pass\n", "pre_fork"),
        ("def post_request(worker):\n    pass\n", "post_request"),
        ("on_exit = 'no_such_module_corral.func'\n", "on_exit"),
    ],
)
def test_bad_hook_is_a_config_error(tmp_path: Path, text: str, hook: str) -> None:
    write_config(tmp_path, text)
    with pytest.raises(ConfigError, match=f"Invalid value for {hook} "):
        load(tmp_path)


def test_bad_value_in_config_file_names_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "workers = 'lots'\n")
    with pytest.raises(ConfigError, match=f"workers \\({path}\\): 'lots'"):
        load(tmp_path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("workers = 2\nraise RuntimeError('boom')\n", "line 2: RuntimeError: boom"),
        ("workers = = 2\n", "line 1: SyntaxError"),
        ("import no_such_module_corral\n", "line 1: ModuleNotFoundError"),
    ],
)
def test_config_file_that_fails_to_run(tmp_path: Path, text: str, expected: str) -> None:
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load(tmp_path)
    assert str(path) in str(error.value) and expected in str(error.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.py"):
        load(tmp_path, "-c", "missing.py")


def test_config_file_can_import_its_neighbours(tmp_path: Path) -> None:
    (tmp_path / "corral_neighbour_values.py").write_text("WORKERS = 8\n", encoding="utf-8")
    write_config(tmp_path, "from corral_neighbour_values import WORKERS as workers\n")
    assert load(tmp_path).workers == 8


def test_python_module_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "corral_test_conf_module.py").write_text(
        "workers = 11\nwokers = 1\ndef on_exit(server):\n    pass\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(modules))
    monkeypatch.delitem(sys.modules, "corral_test_conf_module", raising=False)
    result = load_settings(["-c", "python:corral_test_conf_module"], {}, cwd=str(tmp_path))
    assert result.settings.workers == 11
    assert result.settings.on_exit.__name__ == "on_exit"
    assert result.settings.config == "python:corral_test_conf_module"
    assert result.warnings == [
        "Unknown setting 'wokers' in python:corral_test_conf_module; did you mean 'workers'?"
    ]


def test_python_module_config_that_cannot_be_imported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no_such_module_corral"):
        load(tmp_path, "-c", "python:no_such_module_corral")


def test_format_settings(tmp_path: Path) -> None:
    lines = format_settings(load(tmp_path, "-w", "3", "app:app")).splitlines()
    keys = [line.split(" = ")[0].strip() for line in lines]
    assert keys == sorted(keys) and len(keys) == len(SPECS)
    assert "workers = 3" in [" ".join(line.split()) for line in lines]
    assert "wsgi_app = app:app" in [" ".join(line.split()) for line in lines]
    assert "on_starting = <on_starting()>" in [" ".join(line.split()) for line in lines]


# --- converters ------------------------------------------------------------------------------

GOOD: list[tuple[Callable[[Any], object], object, object]] = [
    (conv.to_int, "5", 5),
    (conv.to_int, 5, 5),
    (conv.to_int, " 12 ", 12),
    (conv.positive_int, "1", 1),
    (conv.non_negative_int, 0, 0),
    (conv.request_line_limit, 8190, 8190),
    (conv.header_fields_limit, "32768", 32768),
    (conv.to_bool, True, True),
    (conv.to_bool, "false", False),
    (conv.to_bool, "Yes", True),
    (conv.optional_bool, None, None),
    (conv.to_str, " x ", "x"),
    (conv.optional_str, None, None),
    (conv.umask, "022", 0o22),
    (conv.umask, "0o22", 0o22),
    (conv.umask, "18", 18),
    (conv.umask, "0x12", 18),
    (conv.umask, 0o77, 0o77),
    (conv.umask, "0", 0),
    (conv.worker_class, "sync", "sync"),
    (conv.worker_class, "gthread", "gthread"),
    (conv.worker_class, "gunicorn.workers.sync.SyncWorker", "sync"),
    (conv.worker_class, "gunicorn.workers.gthread.ThreadWorker", "gthread"),
    (conv.log_level, "DEBUG", "debug"),
    (conv.log_level, "critical", "critical"),
    (conv.header_map, "Refuse", "refuse"),
    (conv.header_map, "dangerous", "dangerous"),
    (conv.user_id, "0", 0),
    (conv.user_id, 1000, 1000),
    (conv.user_id, pwd.getpwuid(os.geteuid()).pw_name, os.geteuid()),
    (conv.group_id, "0", 0),
    (conv.group_id, grp.getgrgid(os.getegid()).gr_name, os.getegid()),
    (conv.str_list, "one", ["one"]),
    (conv.str_list, ["a", "b"], ["a", "b"]),
    (conv.comma_list, "a, b,,c", ["a", "b", "c"]),
    (conv.comma_list, "", []),
    (conv.forwarded_ips, "*", ["*"]),
    (conv.forwarded_ips, "10.0.0.0/8, 127.0.0.1", ["10.0.0.0/8", "127.0.0.1"]),
    (conv.forwarded_ips, ["::1", "fd00::/8"], ["::1", "fd00::/8"]),
    (conv.header_names, "script_name,Remote_User", ["SCRIPT_NAME", "REMOTE_USER"]),
    (conv.env_list, ["A=1", "B=x=y", "C="], ["A=1", "B=x=y", "C="]),
    (conv.env_list, "A=1", ["A=1"]),
    (conv.str_dict, {"X-A": "on"}, {"X-A": "on"}),
    (conv.str_dict, {}, {}),
    (conv.bind_list, "127.0.0.1:8000", ["127.0.0.1:8000"]),
    (conv.bind_list, ["a:1", "unix:/s"], ["a:1", "unix:/s"]),
    (conv.bind_from_port, "5000", ["0.0.0.0:5000"]),
    (conv.sendfile_from_env, "no", False),
]
BAD: list[tuple[Callable[[Any], object], object]] = [
    (conv.to_int, "5.0"),
    (conv.to_int, True),
    (conv.to_int, 5.0),
    (conv.to_int, None),
    (conv.to_int, ""),
    (conv.positive_int, 0),
    (conv.non_negative_int, "-1"),
    (conv.request_line_limit, 8191),
    (conv.header_fields_limit, 32769),
    (conv.to_bool, "maybe"),
    (conv.to_bool, 1),
    (conv.to_str, 3),
    (conv.umask, "abc"),
    (conv.umask, "-1"),
    (conv.umask, "0o1000"),
    (conv.umask, True),
    (conv.worker_class, "eventlet"),
    (conv.worker_class, "eventlet"),
    (conv.worker_class, "SYNC"),
    (conv.worker_class, 3),
    (conv.log_level, "warn"),
    (conv.log_level, None),
    (conv.header_map, "keep"),
    (conv.user_id, "no-such-user-corral"),
    (conv.user_id, -1),
    (conv.group_id, "no-such-group-corral"),
    (conv.str_list, 3),
    (conv.str_list, ["a", 3]),
    (conv.forwarded_ips, "10.0.0.1/8"),
    (conv.forwarded_ips, "proxy.local"),
    (conv.env_list, ["A"]),
    (conv.env_list, ["=x"]),
    (conv.str_dict, ["X-A"]),
    (conv.str_dict, {"X-A": 1}),
    (conv.bind_list, []),
    (conv.bind_list, [""]),
    (conv.sendfile_from_env, "sometimes"),
]


@pytest.mark.parametrize(("convert", "raw", "expected"), GOOD)
def test_converter_accepts(convert: Callable[[Any], object], raw: object, expected: object) -> None:
    assert convert(raw) == expected


@pytest.mark.parametrize(("convert", "raw"), BAD)
def test_converter_rejects(convert: Callable[[Any], object], raw: object) -> None:
    with pytest.raises(ValueError):
        convert(raw)


@pytest.mark.parametrize(
    ("address", "canonical"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("localhost:8000", "localhost:8000"),
        ("0.0.0.0:0", "0.0.0.0:0"),
        (":8000", ":8000"),
        ("[::1]", "[::1]"),
        ("[::1]:8000", "[::1]:8000"),
        ("[fe80::1%eth0]:80", "[fe80::1%eth0]:80"),
        ("unix:/tmp/corral.sock", "unix:/tmp/corral.sock"),
        ("unix:///tmp/corral.sock", "unix:/tmp/corral.sock"),
        ("unix:relative.sock", "unix:relative.sock"),
        ("fd://3", "fd://3"),
        ("tcp://example.com:80", "example.com:80"),
    ],
)
def test_bind_address_accepts(address: str, canonical: str) -> None:
    assert conv.bind_address(address) == canonical


@pytest.mark.parametrize(
    "address",
    [
        "",
        "::1",
        "::1:8000",
        "[::1",
        "[::1]8000",
        "[not-ipv6]:80",
        "[::1]:http",
        "host:99999",
        "host:",
        "host:abc",
        "bad host:80",
        "-bad:80",
        "unix:",
        "fd://",
        "fd://x",
    ],
)
def test_bind_address_rejects(address: str) -> None:
    with pytest.raises(ValueError):
        conv.bind_address(address)


def test_hook_converter_counts_positional_parameters() -> None:
    def two(a: object, b: object) -> None:
        pass

    def flexible(*args: object) -> None:
        pass

    def defaulted(a: object, b: object = None) -> None:
        pass

    convert = conv.hook(("server", "worker"))
    assert convert(two) is two and convert(flexible) is flexible and convert(defaulted) is defaulted
    with pytest.raises(ValueError, match=r"1 positional argument \(server\)"):
        conv.hook(("server",))(two)
    with pytest.raises(ValueError, match=r"2 positional arguments \(server, worker\)"):
        convert(lambda: None)
    with pytest.raises(ValueError, match="callable"):
        convert("not callable at all")
    assert conv.hook(("server",))("os.fspath") is os.fspath


def test_post_request_hook_adapts_shorter_signatures() -> None:
    calls: list[tuple[object, ...]] = []

    def three(worker: object, req: object, environ: object) -> None:
        calls.append((worker, req, environ))

    conv.post_request_hook(three)("w", "r", "e", "resp")
    assert calls == [("w", "r", "e")]
