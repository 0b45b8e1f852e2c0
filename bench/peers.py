"""Installing what the benchmark needs on a bare machine: Debian packages and the peer venv.

Debian packages come through apt-get (wrk, hey, nginx, taskset, h2load, openssl, and gcc +
libev-dev to build bjoern); what is already there is skipped. The peer servers, Flask and
matplotlib go into a virtual environment of their own, bench/.peers, pinned in peers.txt, so
the project's .venv stays clean. Anything that fails to install is reported and the servers
needing it skipped: an install failure must never stop the run, except wrk and taskset,
without which nothing can be measured.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".peers"
REQUIREMENTS = HERE / "peers.txt"

# Command → the Debian package that provides it.
COMMANDS = {
    **{"wrk": "wrk", "hey": "hey", "nginx": "nginx", "taskset": "util-linux", "gcc": "gcc"},
    # The HTTP/2 scenarios: their load, and the TLS scenario's certificate.
    **{"h2load": "nghttp2-client", "openssl": "openssl"},
}
# Packages that provide no command, only files: checked with dpkg.
LIBRARIES = ("libev-dev",)
ESSENTIAL = ("wrk", "taskset")

Log = Callable[[str], None]


@dataclass
class Toolbox:
    """What is usable after provisioning, and what is not (with why)."""

    python: Path
    commands: set[str] = field(default_factory=set)
    versions: dict[str, str] = field(default_factory=dict)  # peer distribution → version
    failures: list[str] = field(default_factory=list)


def provision(log: Log) -> Toolbox:
    failures = install_debian(log)
    missing = [name for name in ESSENTIAL if shutil.which(name) is None]
    if missing:
        raise SystemExit(f"cannot benchmark without {', '.join(missing)}: {failures}")
    python = ensure_venv(log)
    failures += install_peers(python, log)
    return Toolbox(
        python=python,
        commands={name for name in COMMANDS if shutil.which(name)},
        versions=installed_versions(python, [pin.split("==")[0] for pin in requirements()]),
        failures=failures,
    )


def debian_missing() -> list[str]:
    packages = [pkg for cmd, pkg in COMMANDS.items() if shutil.which(cmd) is None]
    for pkg in LIBRARIES:
        status = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True
        )
        if "install ok installed" not in status.stdout:
            packages.append(pkg)
    return packages


def install_debian(log: Log) -> list[str]:
    missing = debian_missing()
    if not missing:
        return []
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return [f"{pkg}: not installed, and apt-get needs root here" for pkg in missing]
    log(f"apt-get install {' '.join(missing)}")
    subprocess.run(["apt-get", "update", "-q"], capture_output=True)
    failures = []
    # One package at a time, so one that is not packaged cannot block the others.
    for pkg in missing:
        done = subprocess.run(
            ["apt-get", "install", "-y", "-q", pkg],
            capture_output=True,
            text=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        if done.returncode != 0:
            failures.append(f"{pkg} (apt): {last_line(done.stderr or done.stdout)}")
    return failures


def ensure_venv(log: Log) -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        log(f"creating {VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    return python


def requirements() -> list[str]:
    lines = (line.strip() for line in REQUIREMENTS.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def installed_versions(python: Path, dists: list[str]) -> dict[str, str]:
    script = (
        "import importlib.metadata as m, json, sys\n"
        "found = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        found[name] = m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        pass\n"
        "print(json.dumps(found))\n"
    )
    done = subprocess.run(
        [str(python), "-c", script, *dists], capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout))


def install_peers(python: Path, log: Log) -> list[str]:
    pins = requirements()
    have = installed_versions(python, [pin.split("==")[0] for pin in pins])
    wanted = [pin for pin in pins if have.get(pin.split("==")[0]) != pin.split("==")[1]]
    failures = []
    for pin in wanted:
        log(f"pip install {pin} into {VENV.name}")
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", pin], capture_output=True, text=True
        )
        if done.returncode != 0:
            failures.append(f"{pin} (pip): {last_line(done.stderr or done.stdout)}")
    return failures


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("ERROR", "E:"))]
    return (errors or lines or ["failed with no message"])[-1]
