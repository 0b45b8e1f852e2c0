"""TLS for worker connections: the server context, and connections that speak TLS.

`build_context` turns the SSL settings (and the `ssl_context` hook) into one `ssl.SSLContext`,
which a worker builds once and shares between its connections. `TLSConnection` is a
`Connection` whose bytes go through that context by way of two `ssl.MemoryBIO`s: the socket
stays non-blocking and belongs to corral, and OpenSSL only ever sees memory. So the handshake
advances one step each time the loop finds the socket readable (`advance()`), a client that
never finishes it costs a slot until its deadline but never holds the loop, and after the
handshake `recv`, `send`, `write_some` and `sendfile_some` keep the base class's contracts over
the encrypted stream.

What this module must never do: block the worker's loop (`advance` only reads what is there and
writes what the socket takes), log a traceback for a peer's misbehaviour, or read certificate
files after the context is built (renewed certificates come with new workers, on HUP).
"""

from __future__ import annotations

import _socket
import contextlib
import logging
import os
import select
import ssl
from typing import TYPE_CHECKING, Any

from corral.config.http2 import alpn_protocols
from corral.errors import ClientDisconnected, ConfigError
from corral.workers.connection import RECV_SIZE, Connection

if TYPE_CHECKING:
    from corral.config import Settings

log = logging.getLogger("corral.error")

# Plaintext is encrypted and written this much at a time, so a large response never sits in
# memory twice (once clear, once encrypted) and the socket is fed while OpenSSL works.
SEND_CHUNK = 256 * 1024
_READ = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP
_WRITE = select.POLLOUT | select.POLLERR | select.POLLHUP

# What `_decrypt` found after the plaintext it returns.
_OPEN = "open"  # more may come
_CLOSED = "closed"  # close_notify, or a ragged EOF while suppress_ragged_eofs is on
_RAGGED = "ragged"  # the transport ended without close_notify (suppress_ragged_eofs off)
_FAILED = "failed"  # a TLS error: bad record, alert from the peer

_STREAM_ERRORS = {
    _RAGGED: "TLS connection closed without close_notify",
    _FAILED: "TLS error",
}


# --- the context ----------------------------------------------------------------------------


def build_context(settings: Settings) -> ssl.SSLContext | None:
    """The server context for these settings, or None when TLS is off (no certfile).

    Calls the `ssl_context` hook with the settings and a factory for the context corral would
    build itself; the hook's result is used. Unusable files raise a one-line ConfigError that
    names the file; so does a hook that returns something other than an SSLContext.
    """
    if settings.certfile is None:
        return None

    def default_factory() -> ssl.SSLContext:
        return default_context(settings)

    context = settings.ssl_context(settings, default_factory)
    if not isinstance(context, ssl.SSLContext):
        raise ConfigError(
            f"The ssl_context hook returned {type(context).__name__}, not an ssl.SSLContext"
        )
    if context.verify_mode != ssl.CERT_NONE and not context.cert_store_stats()["x509_ca"]:
        log.warning(
            "Client certificates are requested (cert_reqs=%d) but no CA certificate is loaded "
            "(ca_certs): every client certificate will be refused",
            int(context.verify_mode),
        )
    return context


def default_context(settings: Settings) -> ssl.SSLContext:
    """The context the SSL settings describe (what `default_factory()` returns)."""
    certfile = _path(settings, settings.certfile or "")
    keyfile = _path(settings, settings.keyfile) if settings.keyfile else None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # Client-initiated renegotiation only serves to make the server work harder.
    context.options |= ssl.OP_NO_RENEGOTIATION
    # http_protocols in its order of preference: ["http/1.1"] unless h2 is asked for.
    context.set_alpn_protocols(alpn_protocols(settings))
    _load_cert_chain(context, certfile, keyfile)
    if settings.ca_certs:
        cafile = _path(settings, settings.ca_certs)
        _read(cafile, "ca_certs")
        try:
            context.load_verify_locations(cafile=cafile)
        except ssl.SSLError as exc:
            raise ConfigError(f"Cannot load ca_certs {cafile}: {_reason(exc)}") from None
    context.verify_mode = ssl.VerifyMode(settings.cert_reqs)
    if settings.ciphers:
        try:
            context.set_ciphers(settings.ciphers)
        except ssl.SSLError:
            raise ConfigError(
                f"Invalid value for ciphers: {settings.ciphers!r}: no cipher matches it"
            ) from None
    return context


def _path(settings: Settings, path: str) -> str:
    """Relative paths are taken from `chdir`, wherever the worker happens to be."""
    return os.path.normpath(os.path.join(settings.chdir, path))


def _read(path: str, setting: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise ConfigError(f"Cannot read {setting} {path}: {exc.strerror}") from None


def _load_cert_chain(context: ssl.SSLContext, certfile: str, keyfile: str | None) -> None:
    """load_cert_chain, with errors that say which file is wrong (OpenSSL says "PEM lib")."""
    cert = _read(certfile, "certfile")
    key = _read(keyfile, "keyfile") if keyfile else cert
    key_setting, key_path = ("keyfile", keyfile) if keyfile else ("certfile", certfile)
    if b"-----BEGIN CERTIFICATE-----" not in cert:
        raise ConfigError(f"Cannot load certfile {certfile}: no PEM certificate in it")
    if b"PRIVATE KEY-----" not in key:
        raise ConfigError(f"Cannot load {key_setting} {key_path}: no PEM private key in it")

    def refuse_passphrase() -> bytes:
        # Without this, OpenSSL would prompt on the terminal and block the worker.
        raise ConfigError(
            f"Cannot load {key_setting} {key_path}: the key needs a passphrase; "
            "load it in the ssl_context hook"
        )

    try:
        context.load_cert_chain(certfile, keyfile, password=refuse_passphrase)
    except ssl.SSLError as exc:
        pair = f"certfile {certfile} and keyfile {keyfile}" if keyfile else f"certfile {certfile}"
        raise ConfigError(f"Cannot load {pair}: {_reason(exc)}") from None


def _reason(exc: ssl.SSLError) -> str:
    """OpenSSL's short reason (WRONG_VERSION_NUMBER), or the message when there is none; for a
    refused certificate, why it was refused."""
    reason = getattr(exc, "reason", None)
    text = str(reason) if reason else str(exc.args[-1] if exc.args else exc)
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        text = f"{text} ({exc.verify_message})"
    return text


# --- connections ----------------------------------------------------------------------------


class TLSConnection(Connection):
    """A client connection speaking TLS over the worker's non-blocking socket.

    Loop contract: while `handshaking`, and afterwards whenever the socket is readable, the
    loop calls `advance()` instead of `sock.recv()`. It returns the plaintext that arrived
    (b"" when there is none yet, which is normal mid-handshake) or None when the connection
    is over (peer closed, handshake failed, TLS error); the loop then calls `close()`. When
    `wants_write` is true, TLS output is waiting for the socket to drain; the loop may watch
    for writability and call `advance()` then, though handshake messages are small enough to
    go out at once in practice.

    Handshake deadline: `since` is the accept time (the base class's rule, unchanged until the
    first request is served), and a connection still `handshaking` after `timeout` seconds
    from `since` is to be closed by the loop's sweep, as it closes a connection that has not
    sent a complete head in that time; no 408 is sent then (there is no TLS session to send
    it on). `handshake_expired(now)` states the rule.

    `recv`, `send`, `write_some` and `sendfile_some` keep the base class's contracts over the
    decrypted stream
    (and, if called during the handshake, first finish it, waiting up to `timeout` per read).
    """

    __slots__ = ("_incoming", "_outgoing", "_tls", "_unsent", "handshaking", "suppress_ragged_eofs")

    scheme = "https"

    def __init__(
        self,
        sock: _socket.socket,
        peer: object,
        server: tuple[str, str],
        trusted: bool,
        timeout: float,
        now: float,
        *,
        context: ssl.SSLContext,
        suppress_ragged_eofs: bool = True,
    ) -> None:
        super().__init__(sock, peer, server, trusted, timeout, now)
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._unsent = b""  # encrypted bytes the socket has not taken yet
        self.handshaking = True
        self.suppress_ragged_eofs = suppress_ragged_eofs

    # --- for the loop ---

    def advance(self) -> bytes | None:
        """Read what the socket holds, move the handshake on, return the plaintext available
        now (b"" for none yet), or None when the connection is over. Never waits."""
        try:
            data = self.sock.recv(self._read_size())
        except BlockingIOError:
            data = None
        except OSError as exc:
            log.debug("TLS connection from %s lost: %s", self.remote_addr, exc)
            return None
        if data is not None:
            self._feed(data)
        if self.handshaking:
            if not self._handshake_step():
                return None
            if self.handshaking:
                return b""
        plaintext, state = self._decrypt()
        if not self._flush_nowait():
            return None
        if state == _OPEN or (plaintext and state == _CLOSED):
            return plaintext
        if state == _RAGGED:
            log.debug("%s from %s", _STREAM_ERRORS[state], self.remote_addr)
        return None

    @property
    def wants_write(self) -> bool:
        """Whether encrypted output waits for the socket to become writable."""
        return bool(self._unsent) or self._outgoing.pending > 0

    @property
    def alpn(self) -> str | None:
        """The protocol ALPN selected in the handshake ("h2", "http/1.1"), or None (no
        handshake yet, or the client offered none we serve)."""
        return None if self.handshaking else self._tls.selected_alpn_protocol()

    def handshake_expired(self, now: float) -> bool:
        """The handshake deadline: still handshaking `timeout` seconds after `since`."""
        return self.handshaking and now - self.since > self.timeout

    def peer_certificate(self) -> dict[str, Any] | None:
        """The client's verified certificate as `ssl.SSLSocket.getpeercert()` decodes it, or
        None when the client sent none (or cert_reqs did not ask for one)."""
        if self.handshaking:
            return None
        return self._tls.getpeercert() or None

    def peer_certificate_pem(self) -> str | None:
        """The client's certificate in PEM form (as Apache's SSL_CLIENT_CERT), or None."""
        der = None if self.handshaking else self._tls.getpeercert(binary_form=True)
        return ssl.DER_cert_to_PEM_cert(der) if der else None

    # --- the base class's contracts, over TLS ---

    def recv(self) -> bytes:
        """Up to RECV_SIZE bytes of plaintext; waits at most `timeout` for each read of the
        socket; b"" at end of stream. A TLS error, or a ragged EOF while suppress_ragged_eofs is
        off, raises ClientDisconnected."""
        self._finish_handshake()
        while True:
            plaintext, state = self._decrypt()
            self._flush_nowait()  # reading may produce output (TLS 1.3 key updates)
            if plaintext:
                return plaintext
            if state == _CLOSED:
                return b""
            if state != _OPEN:
                raise ClientDisconnected(_STREAM_ERRORS[state])
            self._receive()

    def write_some(self, data: bytes | bytearray | memoryview) -> int:
        """Encrypt up to SEND_CHUNK bytes of data once earlier output has gone to the socket;
        returns how much plaintext was taken (0 while encrypted output still waits). Never
        waits; raises OSError when the connection is broken."""
        if not self.flush_some():
            return 0
        size = min(len(data), SEND_CHUNK)
        try:
            self._tls.write(data[:size])
        except ssl.SSLError as exc:
            raise ClientDisconnected(f"TLS error: {_reason(exc)}") from None
        self.flush_some()
        return size

    def sendfile_some(self, fd: int, offset: int, count: int) -> int | None:
        """The kernel's sendfile cannot encrypt: read a chunk and write it through TLS."""
        if not self.flush_some():
            return None
        chunk = os.pread(fd, min(SEND_CHUNK, count), offset)
        return self.write_some(chunk) if chunk else 0

    @property
    def flushed(self) -> bool:
        return not self._unsent and self._outgoing.pending == 0

    def flush_some(self) -> bool:
        """Send what encrypted output the socket takes now; True once none is left."""
        data = self._unsent + self._outgoing.read()
        if data:
            try:
                sent = self.sock.send(data)
            except BlockingIOError:
                sent = 0
            self._unsent = data[sent:]
        return not self._unsent

    def feed_ciphertext(self, data: bytes) -> None:
        """Bytes read from the socket before TLS started (after a PROXY protocol header)."""
        if data:
            self._incoming.write(data)

    def send_nowait(self, data: bytes) -> None:
        """Best effort, for a last word such as a 400 or 408 before closing: encrypt data and
        send what the socket takes now. Never waits, never raises."""
        if self.handshaking:
            return
        with contextlib.suppress(ssl.SSLError):
            self._tls.write(data)
        self._flush_nowait()

    def shutdown_write(self) -> bool:
        """close_notify, then FIN; reading goes on (the caller discards what comes)."""
        if not self.handshaking:
            with contextlib.suppress(ssl.SSLError):
                self._tls.unwrap()
        return self._flush_nowait() and super().shutdown_write()

    def close(self) -> None:
        """Send close_notify when a session exists (best effort, never waiting), then close."""
        if not self.handshaking:
            # The peer's close_notify has usually not come, so unwrap() stops with
            # SSLWantReadError, after putting ours in the outgoing BIO.
            with contextlib.suppress(ssl.SSLError):
                self._tls.unwrap()
        self._flush_nowait()
        super().close()

    # --- inside ---

    def _read_size(self) -> int:
        # Never hold more than RECV_SIZE bytes of ciphertext, so that one read's plaintext,
        # which is smaller, keeps recv()'s "up to RECV_SIZE" promise.
        return max(RECV_SIZE - self._incoming.pending, 4096)

    def _feed(self, data: bytes) -> None:
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    def _receive(self) -> None:
        """Wait (up to `timeout`) for the socket to have something, and feed it to TLS."""
        while True:
            try:
                data = self.sock.recv(self._read_size())
            except BlockingIOError:
                self._wait(_READ)
                continue
            self._feed(data)
            return

    def _handshake_step(self) -> bool:
        """One non-blocking step of the handshake; False when it failed (already logged)."""
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            return self._flush_nowait()
        except ssl.SSLError as exc:
            self._flush_nowait()  # the alert that tells the client why
            # A peer that leaves before finishing is routine (port checks); a failed
            # negotiation (no shared version, a refused certificate) is worth seeing.
            level = logging.DEBUG if isinstance(exc, ssl.SSLEOFError) else logging.INFO
            log.log(level, "TLS handshake with %s failed: %s", self.remote_addr, _reason(exc))
            return False
        self.handshaking = False
        return self._flush_nowait()

    def _finish_handshake(self) -> None:
        """For recv/send called before the loop finished the handshake: finish it, waiting."""
        while self.handshaking:
            if not self._handshake_step():
                raise ClientDisconnected("TLS handshake failed")
            if self.handshaking:
                self._flush()
                self._receive()

    def _decrypt(self) -> tuple[bytes, str]:
        """All plaintext the incoming BIO yields now, and how the stream stands after it."""
        parts = []
        state = _OPEN
        while True:
            try:
                part = self._tls.read(RECV_SIZE)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError) as exc:
                ragged = isinstance(exc, ssl.SSLEOFError) and not self.suppress_ragged_eofs
                state = _RAGGED if ragged else _CLOSED
                break
            except ssl.SSLError as exc:
                log.debug("TLS error from %s: %s", self.remote_addr, _reason(exc))
                state = _FAILED
                break
            if not part:  # what read() returns once the peer's close_notify is in
                state = _CLOSED
                break
            parts.append(part)
        return b"".join(parts), state

    def _flush(self) -> None:
        """Send all pending TLS output, waiting (up to `timeout` at a time) for the socket."""
        while not self.flush_some():
            self._wait(_WRITE)

    def _flush_nowait(self) -> bool:
        """Send what TLS output the socket takes now and keep the rest; False when the socket
        has failed (the peer reset the connection)."""
        data = self._unsent + self._outgoing.read()
        if not data:
            return True
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            log.debug("TLS connection from %s lost: %s", self.remote_addr, exc)
            self._unsent = b""
            return False
        self._unsent = data[sent:]
        return True
