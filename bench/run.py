"""corral against its peers: `make bench`, or `python bench/run.py --help`.

Installs what is missing (peers.py), then for each round runs every scenario on every server,
round-robin, a fresh server start each time, then the starvation and slow-clients checks;
finally writes results.md, results.json and ratios.png to bench/results/<YYYY-MM-DD>/. Never
part of `make test`. Only processes this benchmark started are ever signalled, and only 127.0.0.1
is ever loaded.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import gevent_io
import peers
import report
import session
import slow_clients
import starvation
import tables
from apps.wsgi_app import json_body
from scenarios import GROUPS, SCENARIOS, STATIC_SIZE, Scenario
from servers import BASELINE, ROOT, SERVERS, Context, Server

CORRAL_SRC = ROOT / "src" / "corral"

HERE = Path(__file__).resolve().parent
STARVATION = "starvation"
STARVATION_SERVERS = ("corral-gthread-1", "corral-gthread-4", "gunicorn-gthread-4")
SLOW_CLIENTS = "slow-clients"
SLOW_CLIENTS_SERVERS = (
    *("corral-sync", "corral-gthread-1", "corral-gthread-4"),
    *("gunicorn-sync", "gunicorn-gthread-1", "gunicorn-gthread-4", "granian"),
)
# corral's gevent worker beside Gunicorn's (bench/gevent_io.py: its own upstream, servers
# and tables, written to gevent-io.md beside results.md).
GEVENT = "gevent"
CHECKS = (STARVATION, SLOW_CLIENTS, GEVENT)


def log(message: str) -> None:
    print(message, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds of load per run [5]")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, medians reported [3]")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured load [1]")
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help=f"comma-separated, from: {', '.join(SERVERS)}"
    )
    parser.add_argument(
        "--scenarios",
        default=",".join([*SCENARIOS, *CHECKS]),
        help=f"comma-separated, from: {', '.join([*SCENARIOS, *CHECKS])}; "
        f"or a group: {', '.join(GROUPS)}",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of 3 s")
    parser.add_argument("--out", type=Path, help="results folder [bench/results/<date>]")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="DIR",
        help="measure nothing: redo results.md and ratios.png from DIR/results.json",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration = 1, 3
    args.servers = choose(args.servers, SERVERS, parser)
    args.scenarios = choose(args.scenarios, [*SCENARIOS, *CHECKS], parser)
    return args


def choose(value: str, known: Any, parser: argparse.ArgumentParser) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    names = [member for name in names for member in GROUPS.get(name, [name])]
    unknown = [name for name in names if name not in known]
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)}")
    return [name for name in known if name in names]  # the table's order, not the flag's


def usable(names: list[str], toolbox: peers.Toolbox, skipped: list[str]) -> list[Server]:
    servers = []
    for name in names:
        lacking = [
            need
            for need in SERVERS[name].needs
            if need not in toolbox.versions and need not in toolbox.commands
        ]
        if lacking:
            skipped.append(f"{name}: not installed ({', '.join(lacking)})")
        else:
            servers.append(SERVERS[name])
    return servers


def make_context(toolbox: peers.Toolbox) -> Context:
    workdir = Path(tempfile.mkdtemp(prefix="corral-bench-"))
    # nginx's workers may run as another user: they must be able to read the static file.
    workdir.chmod(0o755)
    static_file = workdir / "static-100k.bin"
    static_file.write_bytes(bytes(range(256)) * (STATIC_SIZE // 256))
    static_file.chmod(0o644)
    corral_src = workdir / "src"
    shutil.copytree(CORRAL_SRC, corral_src / "corral", ignore=shutil.ignore_patterns("*.pyc"))
    certfile, keyfile = certificate(workdir)
    return Context(
        toolbox.python, workdir, corral_src, static_file, json_body().decode(), certfile, keyfile
    )


def certificate(workdir: Path) -> tuple[Path | None, Path | None]:
    """A self-signed certificate for 127.0.0.1 (the TLS scenarios), or (None, None)."""
    certfile, keyfile = workdir / "cert.pem", workdir / "key.pem"
    argv = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    argv += ["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext"]
    argv += ["subjectAltName=IP:127.0.0.1", "-keyout", str(keyfile), "-out", str(certfile)]
    try:
        subprocess.run(argv, capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        log(f"no certificate, the TLS scenarios fail: {exc}")
        return None, None
    return certfile, keyfile


def fingerprint(tree: Path) -> str:
    """A short hash of every Python file under `tree`: which corral the numbers are for."""
    digest = hashlib.sha256()
    for path in sorted(tree.rglob("*.py")):
        digest.update(str(path.relative_to(tree)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def prime(ctx: Context, servers: list[Server], scenarios: list[Scenario]) -> None:
    """Start each server once per application and throw the figures away.

    The first start of a Python server compiles and caches its bytecode and pulls its files
    into the page cache; priming makes every measured start a warm start, for all alike.
    """
    for server in servers:
        primed: set[str] = set()
        for scenario in scenarios:
            app = scenario.app_for(server)
            if not scenario.admits(server) or app in primed:
                continue
            primed.add(app)
            port = session.free_port()
            try:
                with session.start(ctx, server, scenario, port) as proc:
                    proc.wait_first_response(port, scenario)
            except session.RunFailed as exc:
                log(f"  priming {server.name} ({app}) failed: {exc}")


def describe(run: session.RunResult) -> str:
    if not run.ok:
        return f"FAILED: {run.error}"
    flag = f"FLAGGED: {run.flagged}; " if run.flagged else ""
    return flag + (
        f"{run.requests_per_s:,.0f} req/s, {run.requests_per_cpu_s or 0:,.0f} req/CPU-s, "
        f"p99 {run.p99_ms:.2f} ms, {run.errors} errors, start {run.start_ms:.0f} ms, "
        f"other load {run.other_load or 0:.2f} cores"
        + (f", {run.protocol}" if run.protocol else "")
    )


def passes(scenarios: list[Scenario]) -> list[list[Scenario]]:
    """The scenarios grouped for running. A scenario that is compared with another
    (`right_after`) runs on each server straight after it, so both see the same machine."""
    groups: list[list[Scenario]] = []
    group_of: dict[str, list[Scenario]] = {}
    for scenario in scenarios:
        group = group_of.get(scenario.right_after or "")
        if group is None:
            group = []
            groups.append(group)
        group.append(scenario)
        group_of[scenario.name] = group
    return groups


class Rounds:
    """Every round: each scenario on each server, then the starvation and slow-clients
    checks."""

    def __init__(self, args: argparse.Namespace, ctx: Context, servers: list[Server]) -> None:
        self.args = args
        self.ctx = ctx
        self.servers = servers
        self.runs: list[session.RunResult] = []
        self.checks: list[starvation.StarvationResult] = []
        self.slow_checks: list[slow_clients.SlowClientsResult] = []
        # (server, app, HTTP/2, TLS) that did not start
        self.broken: set[tuple[str, str, bool, bool]] = set()

    def run(self, scenarios: list[Scenario]) -> None:
        for round_no in range(1, self.args.rounds + 1):
            # Rotate the order each round, so no server always follows the same neighbour.
            shift = (round_no - 1) % max(len(self.servers), 1)
            order = self.servers[shift:] + self.servers[:shift]
            for group in passes(scenarios):
                for server in order:
                    for scenario in group:
                        self.measure(server, scenario, round_no)
            if STARVATION in self.args.scenarios:
                for server in (s for s in order if s.name in STARVATION_SERVERS):
                    self.check_starvation(server, round_no)
            if SLOW_CLIENTS in self.args.scenarios:
                for server in (s for s in order if s.name in SLOW_CLIENTS_SERVERS):
                    self.check_slow_clients(server, round_no)

    def measure(self, server: Server, scenario: Scenario, round_no: int) -> None:
        start = (server.name, scenario.app_for(server), scenario.speaks_h2, scenario.tls)
        if not scenario.admits(server) or start in self.broken:
            return
        args = self.args
        result = session.measure(self.ctx, server, scenario, round_no, args.duration, args.warmup)
        if result.start_ms is None:
            self.broken.add(start)  # not retried: it would fail again
        self.runs.append(result)
        log(f"[{round_no}/{args.rounds}] {scenario.name:13} {server.name:19} {describe(result)}")

    def check_starvation(self, server: Server, round_no: int) -> None:
        check = starvation.check(self.ctx, server, round_no)
        self.checks.append(check)
        worst = f"{check.worst_ms:.1f} ms" if check.worst_ms is not None else "-"
        outcome = f"worst probe {worst}" if check.ok else f"FAILED: {check.error}"
        log(f"[{round_no}/{self.args.rounds}] {STARVATION:13} {server.name:19} {outcome}")

    def check_slow_clients(self, server: Server, round_no: int) -> None:
        check = slow_clients.check(self.ctx, server, round_no)
        self.slow_checks.append(check)
        if check.ok:
            p99 = slow_clients.percentile(check.probes_ms, 0.99)
            outcome = (
                f"p99 {'timeout' if p99 is None else f'{p99:.1f} ms'}, "
                f"{check.unanswered}/{len(check.probes_ms)} unanswered, "
                f"readers served {check.readers_started}/{slow_clients.READERS}, "
                f"slow closed {check.slow_closed}"
            )
        else:
            outcome = f"FAILED: {check.error}"
        log(f"[{round_no}/{self.args.rounds}] {SLOW_CLIENTS:13} {server.name:19} {outcome}")


def command_version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "?"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0] if lines else "?"


def versions(ctx: Context, toolbox: peers.Toolbox) -> dict[str, str]:
    corral = command_version(
        [
            str(ctx.python),
            "-c",
            f"import sys; sys.path.insert(0, {str(ctx.corral_src)!r}); "
            "import corral; print(corral.__version__)",
        ]
    )
    tree = fingerprint(ctx.corral_src / "corral")
    found = {"corral": f"{corral} (working tree, src/corral sha256 {tree})", **toolbox.versions}
    found["wrk"] = command_version(["wrk", "-v"])
    found["h2load"] = command_version(["h2load", "--version"])
    found["nginx"] = command_version(["nginx", "-v"])
    return found


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def loadavg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def metadata(
    args: argparse.Namespace,
    started: datetime.datetime,
    ctx: Context,
    toolbox: peers.Toolbox,
    servers: list[Server],
    scenarios: list[Scenario],
) -> dict[str, Any]:
    return {
        "date": started.date().isoformat(),
        "started": started.isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "cpu": cpu_model(),
            "kernel": platform.release(),
            "python": platform.python_version(),
        },
        "loadavg_start": loadavg(),
        "rounds": args.rounds,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "baseline": BASELINE,
        "baselines": {s.name: s.baseline for s in scenarios},
        "servers": [s.name for s in servers],
        "scenarios": [s.name for s in scenarios],
        "versions": versions(ctx, toolbox),
    }


def runnable(
    args: argparse.Namespace, toolbox: peers.Toolbox, skipped: list[str]
) -> tuple[list[Server], list[Scenario]]:
    """The servers and scenarios that can run with what got installed."""
    servers = usable(args.servers, toolbox, skipped)
    scenarios = [SCENARIOS[name] for name in args.scenarios if name in SCENARIOS]
    if "flask" not in toolbox.versions and any(s.name == "flask" for s in scenarios):
        skipped.append("scenario flask: Flask is not installed")
        scenarios = [s for s in scenarios if s.name != "flask"]
    if "h2load" not in toolbox.commands and any(s.h2load for s in scenarios):
        skipped.append("the HTTP/2 scenarios: h2load (nghttp2-client) is not installed")
        scenarios = [s for s in scenarios if not s.h2load]
    return servers, scenarios


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.render:
        doc = json.loads((args.render / "results.json").read_text())
        write(args.render, doc, peers.VENV / "bin" / "python", with_json=False)
        return
    started = datetime.datetime.now(datetime.timezone.utc)
    toolbox = peers.provision(log)
    skipped = [f"install failed: {failure}" for failure in toolbox.failures]
    servers, scenarios = runnable(args, toolbox, skipped)
    for line in skipped:
        log(f"skipped: {line}")
    ctx = make_context(toolbox)
    try:
        meta = metadata(args, started, ctx, toolbox, servers, scenarios)
        rounds = Rounds(args, ctx, servers)
        try:
            log("priming: one unmeasured start of each server and application")
            prime(ctx, servers, scenarios)
            rounds.run(scenarios)
        except KeyboardInterrupt:
            log("interrupted: reporting the runs done so far")
    finally:
        shutil.rmtree(ctx.workdir, ignore_errors=True)
    meta["skipped"] = skipped
    meta["loadavg_end"] = loadavg()
    meta["elapsed_s"] = round((datetime.datetime.now(datetime.timezone.utc) - started).seconds)
    out = args.out or HERE / "results" / meta["date"]
    doc = report.document(meta, rounds.runs, rounds.checks, rounds.slow_checks)
    write(out, doc, toolbox.python)
    if GEVENT in args.scenarios:
        log("gevent: corral's gevent worker beside Gunicorn's (bench/gevent_io.py)")
        sys.stdout.write("\n" + gevent_io.measure(args.rounds, args.duration, out))


def write(out: Path, doc: dict[str, Any], python: Path, with_json: bool = True) -> None:
    """results.json (unless re-rendering from it), results.md and ratios.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    if with_json:
        report.write_json(doc, out / "results.json")
    (out / "results.md").write_text(tables.render(doc))
    drawn = draw_chart(out, doc, python)
    log(f"wrote {out}: results.md, results.json" + (", ratios.png" if drawn else ""))
    sys.stdout.write("\n" + (out / "results.md").read_text())


def draw_chart(out: Path, doc: dict[str, Any], python: Path) -> bool:
    """ratios.png, when there are ratios: a run of the checks alone has none."""
    if not doc["summary"]:
        return False
    chart = [str(python), str(HERE / "chart.py"), str(out / "results.json")]
    drawn = subprocess.run([*chart, str(out / "ratios.png")], capture_output=True, text=True)
    if drawn.returncode != 0:
        log(f"chart failed (matplotlib missing?): {peers.last_line(drawn.stderr)}")
    return drawn.returncode == 0


if __name__ == "__main__":
    main()
