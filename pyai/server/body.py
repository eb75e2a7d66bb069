"""``wsgi.input``: a request body read from its ``pyai.serving.BodySource``, for apps that read it themselves.

The portable receive path (a writer without a descriptor: HPSS) and Flask
routes read the body here; the data plane's own receive reads the same
``BodySource`` straight into files.  The bytes read with the head go first;
a body with a Content-Length is counted as it is read, and ends short if the
client closes early (the reader sees fewer bytes than announced).  A chunked
body is decoded by pyai's decoder (its pure-Python twin: this path moves the
bytes through Python anyway), with the same refusals as the native receive:
a bad framing is ``BadFraming``, a connection closed inside the body
``BodyEnded``, and what was read past its end goes back to the connection.
Reads block, each bounded by the socket's receive timeout
(``pyai.server.serve.limit_request_reads``).
"""

from typing import List, Optional

from pyai import serving
from pyai.errors import BadFraming, BodyEnded
from pyai.native._pyimpl import ChunkedDecoder

RECV_SIZE = 64 * 1024


class BodyStream:
    """The file-like ``wsgi.input`` of one request: ``read``, ``readline``, ``readlines``, iteration."""

    def __init__(self, source: serving.BodySource) -> None:
        self.source = source
        self.buffer = bytearray()  # received and decoded, not read by the app yet
        self.decoder: Optional[ChunkedDecoder] = None  # a chunked body's, once opened
        self.opened = False
        self.ended = False  # the whole body is in the buffer (or was read)
        self.failed = False  # set by an app that leaves the body (pyai.web.receive.abandon_body)

    def _open(self) -> None:
        source = self.source
        if source.reader not in (None, "stream"):
            raise RuntimeError("the request body is being received by the app")
        source.reader = "stream"
        self.opened = True
        if source.chunked:
            decoder = self.decoder = ChunkedDecoder(max_line=source.max_line, max_trailer=source.max_trailer)
            ahead = source.take_ahead()
            if ahead:
                self._decode(decoder, ahead)
        else:
            self.buffer += source.take_ahead()  # counted as consumed
            self.ended = source.complete

    def _more(self) -> bool:
        """Receive more of the body into the buffer: False once all of it is there (or the client closed
        inside a body with a Content-Length, which then reads short)."""
        if not self.opened:
            self._open()
            return True
        if self.ended:
            return False
        source = self.source
        data = source.sock.recv(RECV_SIZE if source.chunked else min(RECV_SIZE, source.length))
        decoder = self.decoder
        if decoder is not None:  # chunked (_open made the decoder)
            if not data:
                if decoder.phase in ("crlf", "trailer"):
                    raise BadFraming("a chunk or the trailer section is not terminated")
                raise BodyEnded("the connection closed inside the chunked body")
            self._decode(decoder, data)
        elif not data:
            self.ended = True  # short: the body stays incomplete, and the connection closes after
        else:
            source.consumed(len(data))
            self.buffer += data
            self.ended = source.complete
        return True

    def _decode(self, decoder: ChunkedDecoder, data: bytes) -> None:
        runs: List[memoryview] = []
        try:
            decoder._decode(memoryview(data), runs, 0)
        except OSError:
            raise BadFraming("invalid chunked framing") from None
        for run in runs:
            self.buffer += run
        if decoder.complete:
            serving.check_trailers(decoder.trailers)
            if decoder.leftover:
                self.source.give_back(decoder.leftover)  # the next request's first bytes
            self.source.complete = True
            self.ended = True

    def _take(self, count: int) -> bytes:
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    def read(self, size: Optional[int] = None) -> bytes:
        if size is None or size < 0:
            while self._more():
                pass
            return self._take(len(self.buffer))
        while len(self.buffer) < size and self._more():
            pass
        return self._take(size)

    def readline(self, size: Optional[int] = None) -> bytes:
        limit = None if size is None or size < 0 else size
        searched = 0
        while True:
            end = self.buffer.find(b"\n", searched)
            if end >= 0:
                count = end + 1
                break
            searched = len(self.buffer)
            if (limit is not None and searched >= limit) or not self._more():
                count = searched
                break
        return self._take(count if limit is None else min(count, limit))

    def readlines(self, hint: Optional[int] = None) -> List[bytes]:
        lines: List[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> "BodyStream":
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line
