"""The whole exception tree of corral, and the process exit codes.

    CorralError
     ├── ConfigError        a setting, config file or command line that cannot be used
     ├── AppLoadError       the application spec does not name a callable we can import
     ├── ProtocolError      the peer sent bytes that are not valid HTTP/1.x (carries `status`)
     ├── ClientDisconnected the peer went away or stalled mid-request (also a ConnectionError,
     │                      so applications that catch OSError around wsgi.input see it)
     └── HaltServer         the master must stop (carries `reason` and `exit_status`)

Nothing here imports anything from corral: every module may import this one.
"""

from __future__ import annotations

# Exit statuses, as Gunicorn uses them so that supervisors see the same codes.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_WORKER_BOOT_ERROR = 3
EXIT_APP_LOAD_ERROR = 4


class CorralError(Exception):
    """Base of every error corral raises on purpose."""


class ConfigError(CorralError):
    """A setting or config source that cannot be used; the message names it."""


class AppLoadError(CorralError):
    """The application could not be imported or is not callable.

    The message is one line naming what is wrong; `details` holds the traceback of the import
    or factory call when there was one.
    """

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


class ProtocolError(CorralError):
    """The request is not valid HTTP; `status` is the response code to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason

    def __repr__(self) -> str:
        return f"ProtocolError({self.status}, {self.reason!r})"


class ClientDisconnected(CorralError, ConnectionError):
    """The client closed the connection (or timed out) before the request body ended."""


class HaltServer(CorralError):
    """Raised in the master to stop it with a message and an exit status."""

    def __init__(self, reason: str, exit_status: int = EXIT_ERROR) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exit_status = exit_status
