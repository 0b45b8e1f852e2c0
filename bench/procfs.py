"""What /proc says about the processes of one server (its process group, their CPU time, the
memory of its workers) and about the machine (how busy it is).

A server runs in a session of its own (start_new_session=True), so its process group id is
the pid of the process we started, and every process it forks (workers, helpers) is in that
group. This module only reads /proc; it never signals anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    pgrp: int
    state: str
    cpu_ticks: int  # utime + stime, every thread of the process included


@dataclass(frozen=True)
class Memory:
    rss_kib: int
    pss_kib: int


def read_stat(pid: int) -> ProcStat | None:
    """The fields we need from /proc/<pid>/stat, or None if the process is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = text.rsplit(")", 1)[1].split()
    return ProcStat(
        pid=pid,
        state=fields[0],
        ppid=int(fields[1]),
        pgrp=int(fields[2]),
        cpu_ticks=int(fields[11]) + int(fields[12]),
    )


def group(pgid: int) -> dict[int, ProcStat]:
    """Every live process whose process group is `pgid` (zombies are not alive)."""
    members = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        stat = read_stat(int(entry.name))
        if stat is not None and stat.pgrp == pgid and stat.state != "Z":
            members[stat.pid] = stat
    return members


def cpu_ticks(pgid: int) -> dict[int, int]:
    """CPU ticks used so far by each process of the group."""
    return {pid: stat.cpu_ticks for pid, stat in group(pgid).items()}


def cpu_seconds_between(before: dict[int, int], after: dict[int, int]) -> float:
    """CPU seconds the group used between two `cpu_ticks` snapshots.

    A process born in between counts from zero; one that died in between is lost, which the
    servers here never do during a run.
    """
    ticks = sum(used - before.get(pid, 0) for pid, used in after.items())
    return ticks / CLOCK_TICKS


def workers(pgid: int) -> list[int]:
    """The group's worker processes: those with no child in the group.

    For a pre-fork server these are the workers, not the master; a single-process server is
    its own worker. multiprocessing's resource tracker (Hypercorn starts one) has no child
    either, but serves nothing: it is left out.
    """
    members = group(pgid)
    parents = {stat.ppid for stat in members.values()}
    return sorted(pid for pid in members if pid not in parents and not helper(pid))


def helper(pid: int) -> bool:
    """A process of the group that is no worker: multiprocessing's resource tracker."""
    try:
        command = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return False
    return b"multiprocessing.resource_tracker" in command


def machine_busy_seconds() -> float:
    """CPU seconds the machine's processes have used, all cores, since boot, plus the time the
    hypervisor stole. Interrupt time is left out: it is mostly our own loopback traffic, which
    no process is charged for."""
    fields = (PROC / "stat").read_text().split("\n", 1)[0].split()
    user, nice, system, steal = (int(fields[i]) for i in (1, 2, 3, 8))
    return (user + nice + system + steal) / CLOCK_TICKS


def memory(pid: int) -> Memory | None:
    """Resident and proportional set size of one process, from smaps_rollup."""
    try:
        lines = (PROC / str(pid) / "smaps_rollup").read_text().splitlines()
    except OSError:
        return None
    values = {}
    for line in lines:
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            values[key] = int(rest.split()[0])
    return Memory(rss_kib=values.get("Rss", 0), pss_kib=values.get("Pss", 0))
