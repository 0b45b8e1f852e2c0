"""Quick side-by-side: corral vs Gunicorn (same worker class), wrk on a pinned core.

Usage: python bench/quick.py [--duration 5] [--rounds 3]
Needs wrk (Debian package) and a separate venv with gunicorn at bench/.peers (made on first run).
Reports requests/s and requests per CPU-second of the server's processes, as ratios to
Gunicorn measured in the same run. Never part of `make test`.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = HERE / ".peers"
CLK = os.sysconf("SC_CLK_TCK")


def ensure_peers() -> Path:
    python = PEERS / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "gunicorn"], check=True)
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK


def group_pids(pgid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "-g", str(pgid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def wait_up(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(100).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not come up")


def run_one(cmd: list[str], port: int, duration: int, close: bool) -> tuple[float, float]:
    proc = subprocess.Popen(
        ["taskset", "-c", "0", *cmd],
        cwd=HERE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_up(port)
        pids = group_pids(proc.pid)
        before = cpu_seconds(pids)
        wrk = ["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{duration}s"]
        if close:
            wrk += ["-H", "Connection: close"]
        out = subprocess.run(
            [*wrk, f"http://127.0.0.1:{port}/"], capture_output=True, text=True
        ).stdout
        cpu = cpu_seconds(pids) - before
        match = re.search(r"Requests/sec:\s+([\d.]+)", out)
        rps = float(match.group(1)) if match else 0.0
        return rps, (rps * duration / cpu if cpu else 0.0)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    peer_python = ensure_peers()
    corral = [str(ROOT / ".venv" / "bin" / "corral")]
    gunicorn = [str(peer_python.parent / "gunicorn")]
    scenarios = {
        "sync, new connection per request": (["-k", "sync"], True),
        "gthread, keep-alive": (["-k", "gthread", "--threads", "1"], False),
        "gthread 4 threads, keep-alive": (["-k", "gthread", "--threads", "4"], False),
    }
    print("| scenario | server | req/s | req per CPU-s | ratio (req/CPU-s) |")
    print("|---|---|---|---|---|")
    for name, (worker_args, close) in scenarios.items():
        results: dict[str, list[tuple[float, float]]] = {"corral": [], "gunicorn": []}
        for _ in range(args.rounds):
            for server, base in (("gunicorn", gunicorn), ("corral", corral)):
                port = free_port()
                cmd = [*base, "-w", "1", "-b", f"127.0.0.1:{port}", *worker_args,
                       "hello_app:application"]
                results[server].append(run_one(cmd, port, args.duration, close))
        med = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v))
               for k, v in results.items()}
        for server in ("gunicorn", "corral"):
            rps, per_cpu = med[server]
            ratio = per_cpu / med["gunicorn"][1] if med["gunicorn"][1] else 0.0
            print(f"| {name} | {server} | {rps:,.0f} | {per_cpu:,.0f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
