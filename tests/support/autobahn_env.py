"""Find or build the Python 2.7 virtualenv that holds Autobahn|Testsuite's `wstest`.

The suite runs only on Python 2.7, so it lives in its own virtualenv outside the repository
(`$CORRAL_AUTOBAHN_ENV`, by default `~/.cache/corral/autobahn-py27`), built from a Python 2.7
interpreter (`$CORRAL_PYTHON27`, `python2.7` on PATH, or pyenv's 2.7) with the exact pins in
autobahn-requirements.txt. Standard library only, so that .ci/run can call it with any python3
before corral's own virtualenv exists:

    python3 tests/support/autobahn_env.py install   # build it (about 15 s; needs PyPI)
    python3 tests/support/autobahn_env.py where     # print wstest's path, or exit 1

It never installs anything into the Python 2.7 interpreter itself, nor into the repository.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "autobahn-requirements.txt"
# The last virtualenv release that runs on Python 2.7 with no dependency of its own.
VIRTUALENV = "virtualenv==16.7.12"
STAMP = ".corral-requirements.sha256"  # which requirements the env was built from


def env_dir() -> Path:
    configured = os.environ.get("CORRAL_AUTOBAHN_ENV")
    if configured:
        return Path(configured)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "corral" / "autobahn-py27"


def find_python27() -> str | None:
    """A Python 2.7 interpreter, or None when the machine has none."""
    candidates = [os.environ.get("CORRAL_PYTHON27", ""), shutil.which("python2.7") or ""]
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    candidates += sorted(str(p) for p in pyenv_root.glob("versions/2.7*/bin/python2.7"))
    for candidate in candidates:
        if candidate and _is_python27(candidate):
            return candidate
    return None


def _is_python27(path: str) -> bool:
    try:
        out = subprocess.run(
            [path, "-c", "import sys; print(sys.version_info[:2] == (2, 7))"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.stdout.strip() == "True"


def _requirements_digest() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def wstest() -> Path | None:
    """wstest's path when the env exists and was built from the current pins, else None."""
    env = env_dir()
    script = env / "bin" / "wstest"
    stamp = env / STAMP
    if not (script.exists() and stamp.exists()):
        return None
    if stamp.read_text().strip() != _requirements_digest():
        return None
    return script


def install(python27: str) -> Path:
    """Build the env from scratch with `python27` (replacing a stale one); return wstest."""
    env = env_dir()
    if env.exists():
        shutil.rmtree(env)
    tools = env / ".virtualenv-tool"
    quiet = ["--disable-pip-version-check", "-q"]
    _run([python27, "-m", "pip", "install", *quiet, "--target", str(tools), VIRTUALENV])
    # --no-download: virtualenv seeds the env with the pip/setuptools wheels it ships.
    _run(
        [python27, "-m", "virtualenv", "-q", "--no-download", str(env)],
        env={**os.environ, "PYTHONPATH": str(tools)},
    )
    pip = [str(env / "bin" / "python"), "-m", "pip", "install", *quiet, "--no-compile"]
    _run([*pip, "-r", str(REQUIREMENTS)])
    (env / STAMP).write_text(_requirements_digest() + "\n")
    script = wstest()
    assert script is not None
    _run([str(script), "--autobahnversion"])
    return script


def _run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    print("+ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "where"
    if command == "where":
        script = wstest()
        print(script or f"not installed in {env_dir()}")
        return 0 if script else 1
    if command == "install":
        if wstest() is not None and "--force" not in argv:
            print(f"already installed: {wstest()}")
            return 0
        python27 = find_python27()
        if python27 is None:
            print("no Python 2.7 interpreter found: Autobahn|Testsuite cannot be installed")
            return 2
        try:
            print(f"installed: {install(python27)}")
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"Autobahn|Testsuite could not be installed with {python27}: {exc}")
            return 1
        return 0
    print(f"usage: {sys.argv[0]} [where | install [--force]]", file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
