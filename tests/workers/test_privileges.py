"""Dropping to another user and group, in forked children so the test process stays root."""

from __future__ import annotations

import json
import os
import pwd
import select
import time
from collections.abc import Callable
from typing import Any

import pytest

from corral.workers.privileges import drop_privileges

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


def in_child(body: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run `body` in a forked child and return what it returned (or the error it raised)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        status = 0
        try:
            os.close(read_end)
            try:
                result = body()
            except OSError as exc:
                result = {"error": type(exc).__name__, "errno": exc.errno, "message": str(exc)}
            os.write(write_end, json.dumps(result).encode())
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 30
    try:
        while select.select([read_end], [], [], max(0.0, deadline - time.monotonic()))[0]:
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return json.loads(b"".join(chunks))  # type: ignore[no-any-return]


def ids() -> dict[str, Any]:
    try:
        os.setuid(0)
        regained = True
    except PermissionError:
        regained = False
    return {
        "ids": [os.getuid(), os.geteuid(), os.getgid(), os.getegid()],
        "groups": os.getgroups(),
        "regained_root": regained,
    }


@pytest.fixture
def nobody() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user on this system")


@needs_root
def test_drop_to_nobody(nobody: pwd.struct_passwd) -> None:
    uid, gid = nobody.pw_uid, nobody.pw_gid

    def body() -> dict[str, Any]:
        drop_privileges(uid, gid, initgroups=False)
        return ids()

    result = in_child(body)
    assert result == {"ids": [uid, uid, gid, gid], "groups": [], "regained_root": False}


@needs_root
def test_drop_with_initgroups(nobody: pwd.struct_passwd) -> None:
    uid, gid = nobody.pw_uid, nobody.pw_gid

    def body() -> dict[str, Any]:
        drop_privileges(uid, gid, initgroups=True)
        return ids()

    result = in_child(body)
    assert result["ids"] == [uid, uid, gid, gid]
    assert gid in result["groups"] and 0 not in result["groups"]
    assert not result["regained_root"]


@needs_root
def test_cannot_switch_back(nobody: pwd.struct_passwd) -> None:
    def body() -> dict[str, Any]:
        drop_privileges(nobody.pw_uid, nobody.pw_gid, initgroups=False)
        drop_privileges(0, 0, initgroups=False)
        return ids()

    result = in_child(body)
    assert result["error"] == "PermissionError"
    assert result["message"].startswith("[Errno 1] cannot switch to uid 0 and gid 0: could not")
    assert result["message"].endswith("(switching user requires starting as root)")


@needs_root
def test_initgroups_needs_a_known_user(nobody: pwd.struct_passwd) -> None:
    unknown = 4_000_000_000
    while True:
        try:
            pwd.getpwuid(unknown)
        except KeyError:
            break
        unknown -= 1

    def body() -> dict[str, Any]:
        drop_privileges(unknown, nobody.pw_gid, initgroups=True)
        return ids()

    result = in_child(body)
    assert result["error"] == "OSError"  # not a PermissionError: nothing was refused
    assert f"uid {unknown} is not in the password database" in result["message"]


@needs_root
def test_initgroups_with_explicit_name(nobody: pwd.struct_passwd) -> None:
    def body() -> dict[str, Any]:
        drop_privileges(4_000_000_001, nobody.pw_gid, initgroups=True, user_name="nobody")
        return ids()

    result = in_child(body)
    assert result["ids"] == [4_000_000_001, 4_000_000_001, nobody.pw_gid, nobody.pw_gid]
    assert nobody.pw_gid in result["groups"]


def test_same_ids_is_a_no_op() -> None:
    groups = os.getgroups()
    drop_privileges(os.geteuid(), os.getegid(), initgroups=True)
    assert os.getgroups() == groups
