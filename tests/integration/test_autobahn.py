"""Autobahn|Testsuite, the WebSocket conformance suite nobody here wrote, against a real
`corral -k asgi` serving an echo app (tests/support/autobahn_echo.py).

The suite runs on Python 2.7 only: the tests skip, saying why, when its virtualenv is not built
(`python3 tests/support/autobahn_env.py install`; .ci/run does it where Python 2.7 exists).
A case fails the test when the suite says FAILED or its close was FAILED, WRONG CODE or
UNCLEAN; the message lists each such case with what the suite expected and what it received.
NON-STRICT and INFORMATIONAL cases pass; docs/autobahn.md gives the reason for each.
`make autobahn` runs every permessage-deflate case, not only the subset below.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support import autobahn, autobahn_env
from support.server import Server

APP = "support.autobahn_echo:app"


@pytest.fixture
def wstest() -> Path:
    script = autobahn_env.wstest()
    if script is None:
        python27 = autobahn_env.find_python27()
        found = f"Python 2.7 is at {python27}" if python27 else "no Python 2.7 on this machine"
        pytest.skip(
            f"Autobahn|Testsuite is not installed ({found}): "
            "python3 tests/support/autobahn_env.py install"
        )
    return script


def play(wstest: Path, cases: list[str], workdir: Path) -> list[autobahn.CaseResult]:
    """Run the cases against a fresh server and check that no worker crashed or restarted."""
    with Server(APP, "-k", "asgi") as srv:
        url = f"ws://127.0.0.1:{srv.port}"
        results = autobahn.run_fuzzingclient(wstest, url, cases, workdir, timeout=150)
        log = srv.log()
    assert "Traceback" not in log, log
    assert log.count("Booting worker with pid") == 1, log
    return results


def assert_none_failed(results: list[autobahn.CaseResult]) -> None:
    failed = autobahn.failures(results)
    assert not failed, f"{len(failed)} of {len(results)} Autobahn cases failed:\n" + "\n".join(
        r.explain() for r in failed
    )


@pytest.mark.timeout(180)
def test_autobahn_cases_1_to_10(wstest: Path, tmp_path: Path) -> None:
    results = play(wstest, autobahn.CORE_CASES, tmp_path)
    # Sections 1-10 of wstest 0.8.2 hold 301 cases; a much smaller count means the spec
    # matched less than it should, and a pass would prove nothing.
    assert len(results) >= 290, [r.case_id for r in results]
    assert {r.section for r in results} == set(range(1, 11)) - {8}  # the suite has no 8.x
    assert not [r.case_id for r in results if r.outcome == "UNIMPLEMENTED"]
    assert_none_failed(results)


@pytest.mark.timeout(180)
def test_autobahn_permessage_deflate(wstest: Path, tmp_path: Path) -> None:
    results = play(wstest, autobahn.DEFLATE_QUICK, tmp_path)
    assert [r.case_id for r in results] == sorted(autobahn.DEFLATE_QUICK, key=autobahn.case_key)
    declined = [r.case_id for r in results if r.outcome == "UNIMPLEMENTED"]
    assert not declined, f"the worker declined permessage-deflate in {declined}"
    assert_none_failed(results)


def test_a_wrong_echo_is_reported_failed(wstest: Path, tmp_path: Path) -> None:
    """The control: an app that echoes reversed must fail the cases whose payload is not a
    palindrome (5.3 "fragment1fragment2", 6.2.1 a UTF-8 sentence) and pass 1.1.2 ("*" x 125),
    so the judgement above is known to catch a wrong echo."""
    with Server("support.autobahn_echo:reversing_app", "-k", "asgi") as srv:
        url = f"ws://127.0.0.1:{srv.port}"
        results = autobahn.run_fuzzingclient(
            wstest, url, ["1.1.2", "5.3", "6.2.1"], tmp_path, timeout=60
        )
    assert {r.case_id: r.outcome for r in results} == {
        "1.1.2": "OK",
        "5.3": "FAILED",
        "6.2.1": "FAILED",
    }
    assert "fragment1fragment2" in autobahn.failures(results)[0].explain()
