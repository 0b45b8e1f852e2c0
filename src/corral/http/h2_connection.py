"""h2's server connection with the few changes corral needs, and the RFC's error codes where
h2 sends another.

- The concurrency check: h2 answers a stream over the advertised limit with a connection
  error; `ServerConnection` leaves it to the session, which refuses the one stream.
- The pending header block: how many encoded bytes wait for CONTINUATION frames, so the
  session can bound them (h2 bounds only their number).
- DATA still in flight after our RST_STREAM is discarded without an answer (RFC 9113 §5.1).
- A bound on the closed streams h2 remembers (it keeps 65,536 by default).
- `rfc_error_code`: the code RFC 9113 asks for where h2's GOAWAY carries PROTOCOL_ERROR.

What this module must never do: do I/O, or change what h2 accepts on the wire.
"""

from __future__ import annotations

from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import Event
from h2.exceptions import StreamClosedError
from h2.utilities import SizeLimitDict
from hpack.exceptions import HPACKError, OversizedHeaderListError
from hyperframe.exceptions import InvalidDataError
from hyperframe.frame import DataFrame, Frame, RstStreamFrame

# Streams we reset ourselves, remembered to discard the DATA the peer had in flight.
_RESETS_KEPT = 1024


class ServerConnection(H2Connection):
    """h2's connection, with the concurrency check left to the session.

    h2 answers a stream over its advertised limit with a connection error, which would end
    every other stream of the connection too; RFC 9113 §5.1.2 asks for a stream error, which
    `H2Session.on_request` sends (REFUSED_STREAM) from the count below.
    """

    # How many closed streams h2 remembers (to answer a late frame on one with RST_STREAM
    # rather than a connection error). h2 keeps 65,536, about 5 MB on a long-lived
    # connection; frames still in flight after a stream closed arrive long before a
    # thousand further streams have come and gone.
    MAX_CLOSED_STREAMS = 1024

    @property
    def open_inbound_streams(self) -> int:
        super().open_inbound_streams  # noqa: B018 (counting also forgets closed streams)
        return 0

    def inbound_streams(self, upto: int) -> int:
        """The client's streams up to `upto` that the protocol still considers open (the
        later ones of the same read are counted when their turn comes)."""
        super().open_inbound_streams  # noqa: B018 (forgets closed streams)
        return sum(
            1 for sid, stream in self.streams.items() if sid & 1 and sid <= upto and stream.open
        )

    def _handle_data_on_closed_stream(
        self, events: list[Event], exc: StreamClosedError, frame: DataFrame
    ) -> tuple[list[Frame], list[Event]]:
        """DATA on a closed stream: h2 credits the connection window and answers RST_STREAM.
        After our own RST_STREAM, RFC 9113 §5.1 asks for the frames the peer sent before it
        saw the reset to be discarded without an answer (a client uploading a large body
        that we answered early would otherwise get a reset per frame still in flight)."""
        frames, events = super()._handle_data_on_closed_stream(events, exc, frame)
        if frame.stream_id in self.reset_by_us:
            frames = [f for f in frames if not isinstance(f, RstStreamFrame)]
        return frames, events

    def reset_stream(self, stream_id: int, error_code: ErrorCodes | int = 0) -> None:
        """Reset a stream, remembering that it was our choice (not the answer to a frame
        that broke the stream's state, which h2 also records as a reset we sent)."""
        super().reset_stream(stream_id, error_code)
        self.reset_by_us[stream_id] = None

    @property
    def reset_by_us(self) -> dict[int, None]:
        resets: dict[int, None] | None = self.__dict__.get("_reset_by_us")
        if resets is None:
            resets = self.__dict__["_reset_by_us"] = SizeLimitDict(size_limit=_RESETS_KEPT)
        return resets

    def header_block_size(self) -> int:
        """Encoded bytes of a header block still waiting for its CONTINUATION frames."""
        pending = getattr(self.incoming_buffer, "_headers_buffer", ())
        return sum(len(frame.data) for frame in pending)


def rfc_error_code(exc: BaseException) -> int | None:
    """The RFC's code where h2 sends PROTOCOL_ERROR for another error: a field block that
    does not decode (RFC 9113 §4.3: COMPRESSION_ERROR; a header list over the limit keeps
    h2's ENHANCE_YOUR_CALM) and a SETTINGS acknowledgement with a payload (§6.5:
    FRAME_SIZE_ERROR)."""
    cause = exc.__cause__
    decoding = isinstance(cause, (HPACKError, IndexError))  # what h2 catches around hpack
    if decoding and not isinstance(cause, OversizedHeaderListError):
        return ErrorCodes.COMPRESSION_ERROR
    if isinstance(cause, InvalidDataError) and "SETTINGS" in str(cause):
        return ErrorCodes.FRAME_SIZE_ERROR
    return None
