"""Run Autobahn|Testsuite's fuzzing client against corral's asgi worker and judge its report.

The suite (`wstest`, Python 2.7 only, built by autobahn_env.py) connects to a real
`corral -k asgi support.autobahn_echo:app` on loopback, plays each case, and writes one JSON
file per case plus reports/index.json. A case fails here when the suite says FAILED, or when its
closing handshake is FAILED, WRONG CODE or UNCLEAN; NON-STRICT and INFORMATIONAL pass and
are listed with their reason in docs/autobahn.md. UNIMPLEMENTED (the server declined an
extension the case needs) is reported separately.

Used by tests/integration/test_autobahn.py and, for the whole suite with the table printed, by
`make autobahn`, which runs `python tests/support/autobahn.py [--quick] [--cases ID...]
[--reports DIR]`. It never edits the report and never retries a case: what wstest saw is what
is judged.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Sections 1-10: framing, pings, reserved bits, opcodes, fragmentation, UTF-8, limits (9),
# closing. The suite has no section 8 or 11.
CORE_CASES = [f"{n}.*" for n in range(1, 11)]
# permessage-deflate: 12.x uses the default offer on five kinds of payload, 13.x varies the
# offer's parameters (context takeover, window bits). Each subsection has 18 cases of 1000
# messages (16 B to 128 KiB, some auto-fragmented): the whole set takes many minutes, mostly
# in the Python 2 client, so `make test` runs three cases of every subsection (16 B, 1 KiB, and
# 8 KiB split into 256-byte frames), and `make autobahn` runs all of them.
DEFLATE_CASES = ["12.*", "13.*"]
DEFLATE_QUICK = [
    f"{section}.{sub}.{n}"
    for section, subs in ((12, range(1, 6)), (13, range(1, 8)))
    for sub in subs
    for n in (1, 4, 11)
]
CLOSE_FAILURES = {"FAILED", "WRONG CODE", "UNCLEAN"}
OUTCOMES = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
AGENT = "corral"


@dataclass
class CaseResult:
    case_id: str
    behavior: str  # OK, NON-STRICT, INFORMATIONAL, UNIMPLEMENTED, FAILED
    behavior_close: str  # OK, INFORMATIONAL, FAILED, WRONG CODE, UNCLEAN
    description: str
    expectation: str
    expected: Any
    received: Any
    result: str
    result_close: str
    remote_close_code: int | None
    remote_close_reason: str | None

    @property
    def outcome(self) -> str:
        if self.behavior == "FAILED" or self.behavior_close in CLOSE_FAILURES:
            return "FAILED"
        return self.behavior

    @property
    def section(self) -> int:
        return int(self.case_id.split(".", 1)[0])

    def explain(self) -> str:
        """What the suite expected and what it saw, for a failure message or a report."""
        return (
            f"case {self.case_id} [{self.behavior}/{self.behavior_close}]: "
            f"{_plain(self.description)}\n"
            f"  expectation: {_plain(self.expectation)}\n"
            f"  expected: {_short(self.expected)}\n"
            f"  received: {_short(self.received)}\n"
            f"  result: {self.result} / close: {self.result_close} "
            f"(server's close code {self.remote_close_code}, "
            f"reason {self.remote_close_reason!r})"
        )


def _plain(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def _short(value: Any, limit: int = 300) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case_id.split("."))


def run_fuzzingclient(
    wstest: Path,
    url: str,
    cases: list[str],
    workdir: Path,
    exclude: Sequence[str] = (),
    timeout: float = 600.0,
) -> list[CaseResult]:
    """Play `cases` against `url` with wstest and return every case's result, in id order."""
    outdir = workdir / "reports"
    spec = {
        "outdir": str(outdir),
        "servers": [{"agent": AGENT, "url": url}],
        "cases": cases,
        "exclude-cases": list(exclude),
        "exclude-agent-cases": {},
    }
    spec_path = workdir / "fuzzingclient.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    log_path = workdir / "wstest.log"
    with log_path.open("wb") as log:
        proc = subprocess.run(
            [str(wstest), "-m", "fuzzingclient", "-s", str(spec_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            timeout=timeout,
            check=False,
        )
    index_path = outdir / "index.json"
    if proc.returncode != 0 or not index_path.exists():
        raise RuntimeError(
            f"wstest exited {proc.returncode} without a report:\n"
            + log_path.read_text(errors="replace")[-3000:]
        )
    return read_report(outdir)


def read_report(outdir: Path) -> list[CaseResult]:
    index = json.loads((outdir / "index.json").read_text())
    results = []
    for case_id, entry in index.get(AGENT, {}).items():
        detail = json.loads((outdir / entry["reportfile"]).read_text())
        results.append(
            CaseResult(
                case_id=case_id,
                behavior=entry["behavior"],
                behavior_close=entry["behaviorClose"],
                description=detail.get("description", ""),
                expectation=detail.get("expectation", ""),
                expected=detail.get("expected"),
                received=detail.get("received"),
                result=detail.get("result", ""),
                result_close=detail.get("resultClose", ""),
                remote_close_code=detail.get("remoteCloseCode"),
                remote_close_reason=detail.get("remoteCloseReason"),
            )
        )
    return sorted(results, key=lambda r: case_key(r.case_id))


def failures(results: list[CaseResult]) -> list[CaseResult]:
    return [r for r in results if r.outcome == "FAILED"]


def table(results: list[CaseResult]) -> str:
    """A Markdown table of outcomes per section."""
    counts: dict[int, Counter[str]] = {}
    for r in results:
        counts.setdefault(r.section, Counter())[r.outcome] += 1
    lines = [
        "| section | cases | " + " | ".join(OUTCOMES) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in OUTCOMES) + " |",
    ]
    for section in sorted(counts):
        row = counts[section]
        cells = " | ".join(str(row[o]) for o in OUTCOMES)
        lines.append(f"| {section} | {sum(row.values())} | {cells} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Start corral with the echo app, play the suite, print the table and what is not OK."""
    parser = argparse.ArgumentParser(description="Autobahn|Testsuite against corral -k asgi")
    parser.add_argument("--quick", action="store_true", help="the deflate subset of make test")
    parser.add_argument("--cases", nargs="+", help="case ids or patterns (default: all)")
    parser.add_argument("--reports", type=Path, help="keep wstest's JSON and HTML reports here")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from support import autobahn_env
    from support.server import Server

    wstest = autobahn_env.wstest()
    if wstest is None:
        print("Autobahn|Testsuite is not installed: python3 tests/support/autobahn_env.py install")
        return 2
    cases = args.cases or CORE_CASES + (DEFLATE_QUICK if args.quick else DEFLATE_CASES)
    with contextlib.ExitStack() as stack:
        srv = stack.enter_context(Server("support.autobahn_echo:app", "-k", "asgi"))
        workdir = args.reports or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="corral-autobahn-"))
        )
        workdir.mkdir(parents=True, exist_ok=True)
        url = f"ws://127.0.0.1:{srv.port}"
        results = run_fuzzingclient(wstest, url, cases, workdir.resolve(), timeout=3600)
        crashed = "Traceback" in srv.log()
        if crashed:
            print(srv.log())
    print(table(results))
    for r in results:
        if r.outcome != "OK":
            print(r.explain())
    bad = [r for r in results if r.outcome in ("FAILED", "UNIMPLEMENTED")]
    summary = f"{len(results)} cases, {len(bad)} failed or declined"
    print(summary + (", worker traceback" if crashed else ""))
    if args.reports:
        print(f"reports: {args.reports / 'reports' / 'index.html'}")
    return 1 if bad or crashed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
