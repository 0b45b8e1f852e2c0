"""`corral ctl`: send commands to a running server's control socket (corral's, or Gunicorn
25.1+'s), one with `-c`, or at a prompt. Answers print as tables, or as JSON with `-j`.

Exit status: 0 when the command ran, 1 when the server answered with an error or could not be
reached. This module never starts or signals a server itself.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from corral.control.client import ClientError, CommandFailed, ControlClient
from corral.control.protocol import GUNICORN_SOCKET_NAME, default_socket_path
from corral.control.tables import render

PROMPT = "corral> "
EXAMPLES = """
examples:
  corral ctl -c "show workers"        the workers as a table
  corral ctl -c "show stats" -j       server statistics as JSON
  corral ctl -c "worker add 2"        two more workers
  corral ctl -s /run/app/corral.ctl   a prompt on another socket
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="corral ctl",
        description="Control a running corral (or Gunicorn 25.1+) server through its socket.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "-s",
        "--socket",
        help="the control socket (default: the server's default path, see docs/control.md)",
    )
    p.add_argument("-c", "--command", help="run one command and exit; without it, a prompt")
    p.add_argument("-j", "--json", action="store_true", help="print answers as JSON")
    return p


def socket_path(given: str | None) -> str:
    """The socket to use: the one given, else corral's default path, else Gunicorn's default
    when only that one exists."""
    if given:
        return os.path.abspath(given)
    ours = default_socket_path()
    theirs = default_socket_path(name=GUNICORN_SOCKET_NAME)
    if not os.path.exists(ours) and os.path.exists(theirs):
        return theirs
    return ours


def show(command: str, data: dict[str, Any], as_json: bool, out: TextIO) -> None:
    text = json.dumps(data, indent=2, sort_keys=True) if as_json else render(command, data)
    out.write(text + "\n")


def run_one(client: ControlClient, command: str, as_json: bool) -> int:
    try:
        data = client.send(command)
    except (ClientError, CommandFailed) as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 1
    show(command, data, as_json, sys.stdout)
    return 0


def prompt(client: ControlClient, as_json: bool) -> int:
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401 (line editing and history for input())
    client.connect()
    print(f"Connected to {client.path}. 'help' lists the commands, 'quit' leaves.")
    status = 0
    while True:
        try:
            line = input(PROMPT).strip()
        except EOFError:
            print()
            return status
        except KeyboardInterrupt:
            print()
            return 130
        if not line:
            continue
        if line.lower() in ("quit", "exit", "q"):
            return status
        try:
            try:
                data = client.send(line)
            except ClientError:
                client.close()  # the server ends idle sessions: one new connection, one retry
                data = client.send(line)
        except CommandFailed as exc:
            print(f"Error: {exc}")
            continue
        except ClientError as exc:
            print(f"Error: {exc}")
            return 1
        show(line, data, as_json, sys.stdout)


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(list(argv))
    client = ControlClient(socket_path(args.socket))
    try:
        if args.command is not None:
            return run_one(client, args.command, args.json)
        try:
            return prompt(client, args.json)
        except ClientError as exc:
            sys.stderr.write(f"Error: {exc}\n")
            return 1
    finally:
        client.close()
