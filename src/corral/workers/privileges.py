"""`--user`, `--group`, `--initgroups`: switch a process (a worker) to another user for good.

The order matters and is fixed: supplementary groups first and the group second, while the
process is still root and allowed to change them, then the user. As root, setgid() and setuid()
set the real, effective and saved ids together, so the process cannot switch back.

Supplementary groups are always replaced when the user or group changes: with `initgroups`,
by the target user's groups from the group database, otherwise by none. Keeping root's
supplementary groups (group 0 among them) would hand a worker that runs as `nobody` root's
group access.

This module must never be called in the master (it would lose the right to bind privileged
ports and signal workers), never half-switch silently (any failure raises), and never look up
the configuration: callers pass numeric ids.
"""

from __future__ import annotations

import errno
import os
import pwd


def drop_privileges(uid: int, gid: int, initgroups: bool, user_name: str | None = None) -> None:
    """Run as `uid`/`gid` from now on; a no-op when they are already the effective ids.

    `user_name` is the name `initgroups` looks up; by default the password database's name
    for `uid`. Raises OSError (PermissionError when not root) with a message that names the
    ids and the step that failed.
    """
    if uid == os.geteuid() and gid == os.getegid():
        return
    step = "set the supplementary groups"
    try:
        if os.geteuid() == 0:
            if initgroups:
                os.initgroups(user_name or _user_name(uid), gid)
            else:
                os.setgroups([])
        step = f"set the group id to {gid}"
        os.setgid(gid)
        step = f"set the user id to {uid}"
        os.setuid(uid)
    except OSError as exc:
        hint = " (switching user requires starting as root)" if os.geteuid() != 0 else ""
        message = f"cannot switch to uid {uid} and gid {gid}: could not {step}: "
        message += f"{exc.strerror or exc}{hint}"
        if exc.errno is None:
            raise OSError(message) from exc
        raise type(exc)(exc.errno, message) from exc


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        raise OSError(
            errno.EINVAL, f"uid {uid} is not in the password database (needed for initgroups)"
        ) from None
