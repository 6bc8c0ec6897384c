"""A request body read from gunicorn's socket in one go, straight into one buffer.

gunicorn 27 hands a body of known length up through two layers of buffers (its
socket reader's and its Body's), copying it five or six times on the way: measured
here, 550 µs of CPU for a 600 KB image tensor (more when the application reads it in
pieces, as werkzeug does), against 60 µs for ``recv_into`` one buffer. For a large
binary tensor that is a tenth of the whole request's cost. :class:`WholeBody` wraps
gunicorn's Body (api.worker_sockets.SlotThreadWorker wraps every request's): the
first read takes the whole body that way, and every read is served from memory after.
A body gunicorn reads otherwise (chunked) is left to gunicorn's Body.
"""

from __future__ import annotations

import io

from gunicorn.http.body import Body, LengthReader


class WholeBody:
    """A WSGI input stream over gunicorn's ``Body``, reading a body of known length whole."""

    def __init__(self, body: Body):
        self._body = body
        self._stream: io.BytesIO | Body | None = None

    @property
    def failed(self) -> bool:
        """Whether reading the body failed: gunicorn then closes the connection
        (where the next request starts is unknown)."""
        return self._body.failed

    def _source(self) -> io.BytesIO | Body:
        if self._stream is None:
            whole = read_whole(self._body)
            self._stream = self._body if whole is None else io.BytesIO(whole)
        return self._stream

    def read(self, size: int | None = None) -> bytes:
        """Up to ``size`` bytes of the body (all of what is left without one)."""
        return self._source().read(size)

    def readinto(self, buffer) -> int:
        """Fill ``buffer`` from the body; the number of bytes it got (werkzeug reads this way)."""
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def readline(self, size: int | None = None) -> bytes:
        """The next line of the body, of at most ``size`` bytes."""
        return self._source().readline(size)

    def readlines(self, hint: int | None = None) -> list[bytes]:
        """The body's remaining lines."""
        return self._source().readlines(hint)

    def __iter__(self):
        return iter(self._source())


def read_whole(body: Body) -> bytes | None:
    """The whole of ``body`` read from its socket into one buffer, or None when it is not a
    body of known length that nothing has read yet (it is then left to gunicorn).

    Bytes gunicorn already holds (received with the headers) come first; bytes it holds
    past the body (a pipelined request) go back to it. A client that leaves early gives
    a short body, as gunicorn's own reader does, and the connection is not reused.
    """
    reader = body.reader
    sock = getattr(getattr(reader, "unreader", None), "sock", None)
    if type(reader) is not LengthReader or sock is None or body.buf.tell():
        return None
    length = reader.length
    held = reader.unreader.take_buffered()
    if len(held) > length:
        reader.unreader.unread(held[length:])
        held = held[:length]
    buffer = bytearray(length)
    buffer[:len(held)] = held
    view = memoryview(buffer)
    received = len(held)
    try:
        while received < length:
            count = sock.recv_into(view[received:])
            if not count:
                body.failed = True
                break
            received += count
    except BaseException:
        body.failed = True
        raise
    finally:
        reader.length = length - received
    return bytes(view[:received])
