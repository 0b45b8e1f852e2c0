"""OOM counter sources, RSS and limit warnings, on fake /proc and cgroup trees and on this host."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest

from corral.resources import FD_HEADROOM, OomCounter, limit_warnings, rss_bytes

V1_CGROUP = "12:memory:/system.slice/app.service\n11:cpu,cpuacct:/system.slice/app.service\n"
MEMORY_EVENTS = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n"
OOM_CONTROL = "oom_kill_disable 0\nunder_oom 0\noom_kill 5\n"
VMSTAT = "nr_free_pages 1000\npgfault 4242\noom_kill 9\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def absent(tmp_path: Path) -> dict[str, str]:
    """Paths for limit_warnings that do not exist, so only the limit under test speaks."""
    return {"somaxconn_path": str(tmp_path / "absent"), "file_max_path": str(tmp_path / "absent")}


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    root = tmp_path / "proc"
    write(root / "vmstat", VMSTAT)
    return root


def test_oom_cgroup_v2(tmp_path: Path, proc: Path) -> None:
    write(proc / "self" / "cgroup", "0::/system.slice/app.service\n")
    events = write(tmp_path / "cg" / "system.slice" / "app.service" / "memory.events", "")
    counter = OomCounter(proc_root=str(proc), cgroup_root=str(tmp_path / "cg"))
    assert counter.source == str(proc / "vmstat"), "an events file without oom_kill is skipped"
    events.write_text(MEMORY_EVENTS)
    counter = OomCounter(proc_root=str(proc), cgroup_root=str(tmp_path / "cg"))
    assert counter.source == str(events)
    assert counter.read() == 2
    events.write_text(MEMORY_EVENTS.replace("oom_kill 2", "oom_kill 3"))
    assert counter.read() == 3


def test_oom_cgroup_v2_namespaced_mount(tmp_path: Path, proc: Path) -> None:
    write(proc / "self" / "cgroup", "0::/docker/0123abcd\n")
    events = write(tmp_path / "cg" / "memory.events", MEMORY_EVENTS)
    counter = OomCounter(proc_root=str(proc), cgroup_root=str(tmp_path / "cg"))
    assert (counter.source, counter.read()) == (str(events), 2)


def test_oom_cgroup_v1(tmp_path: Path, proc: Path) -> None:
    # Hybrid layout: an empty unified hierarchy next to the v1 memory controller.
    write(proc / "self" / "cgroup", V1_CGROUP + "0::/\n")
    control = tmp_path / "cg" / "memory" / "system.slice" / "app.service" / "memory.oom_control"
    write(control, OOM_CONTROL)
    counter = OomCounter(proc_root=str(proc), cgroup_root=str(tmp_path / "cg"))
    assert (counter.source, counter.read()) == (str(control), 5)


def test_oom_vmstat_fallback(tmp_path: Path, proc: Path) -> None:
    write(proc / "self" / "cgroup", V1_CGROUP)  # no memory cgroup files under cgroup_root
    counter = OomCounter(proc_root=str(proc), cgroup_root=str(tmp_path / "missing"))
    assert (counter.source, counter.read()) == (str(proc / "vmstat"), 9)


def test_oom_no_source(tmp_path: Path) -> None:
    write(tmp_path / "proc" / "vmstat", "nr_free_pages 1\n")  # kernel before 4.13
    counter = OomCounter(proc_root=str(tmp_path / "proc"), cgroup_root=str(tmp_path))
    assert (counter.source, counter.read()) == ("", None)


def test_oom_source_vanishes(tmp_path: Path, proc: Path) -> None:
    counter = OomCounter(proc_root=str(proc), cgroup_root=str(tmp_path))
    assert counter.read() == 9
    (proc / "vmstat").unlink()
    assert counter.read() is None


def test_oom_on_this_host() -> None:
    counter = OomCounter()
    value = counter.read()
    assert value is None or value >= 0
    assert (value is None) == (counter.source == "")


def test_rss_of_self_and_by_pid(tmp_path: Path) -> None:
    ours = rss_bytes()
    assert ours > 1024 * 1024
    assert rss_bytes(os.getpid()) > 1024 * 1024
    write(tmp_path / "123" / "statm", "5000 300 100 10 0 200 0\n")
    assert rss_bytes(123, proc_root=str(tmp_path)) == 300 * os.sysconf("SC_PAGE_SIZE")
    with pytest.raises(FileNotFoundError):
        rss_bytes(124, proc_root=str(tmp_path))


def test_no_warnings_when_limits_suffice(tmp_path: Path) -> None:
    somaxconn = write(tmp_path / "somaxconn", "4096\n")
    file_max = write(tmp_path / "file-max", "9223372036854775807\n")
    warnings = limit_warnings(
        2048,
        1000,
        4,
        nofile=(1000 + FD_HEADROOM, 4096),
        somaxconn_path=str(somaxconn),
        file_max_path=str(file_max),
    )
    assert warnings == []
    infinite = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    unlimited = limit_warnings(
        1, 10**9, 1, nofile=infinite, somaxconn_path=str(somaxconn), file_max_path=str(file_max)
    )
    assert unlimited == []


def test_nofile_warning(tmp_path: Path) -> None:
    (line,) = limit_warnings(1, 2000, 1, nofile=(1024, 4096), **absent(tmp_path))
    assert "RLIMIT_NOFILE" in line and "is 1024" in line and "ulimit -n 2064" in line
    assert "hard limit" not in line
    (line,) = limit_warnings(1, 2000, 1, nofile=(1024, 1024), **absent(tmp_path))
    assert "the hard limit (1024) must be raised too" in line
    assert "\n" not in line


def test_somaxconn_warning(tmp_path: Path) -> None:
    somaxconn = write(tmp_path / "somaxconn", "128\n")
    (line,) = limit_warnings(
        2048,
        10,
        1,
        nofile=(4096, 4096),
        somaxconn_path=str(somaxconn),
        file_max_path=str(tmp_path / "absent"),
    )
    assert line.startswith("net.core.somaxconn is 128, below --backlog 2048")
    assert "sysctl -w net.core.somaxconn=2048" in line


def test_file_max_warning(tmp_path: Path) -> None:
    file_max = write(tmp_path / "file-max", "10000\n")
    (line,) = limit_warnings(
        1,
        1000,
        16,
        nofile=(65536, 65536),
        somaxconn_path=str(tmp_path / "absent"),
        file_max_path=str(file_max),
    )
    total = 16 * (1000 + FD_HEADROOM)
    assert line == (
        f"fs.file-max is 10000, below the {total} descriptors the workers may hold together "
        f"(16 x {1000 + FD_HEADROOM}): raise it with sysctl -w fs.file-max={total}."
    )


def test_warnings_on_this_host() -> None:
    assert all(isinstance(line, str) for line in limit_warnings(2048, 1000, 2))
