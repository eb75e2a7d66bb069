"""Raw-socket clients that misbehave on purpose: half-sent uploads, answers read while still sending."""

import json
import socket
import struct
import threading

from requests.structures import CaseInsensitiveDict
from server import parse_response, recv_all

BLOCK = 64 * 1024


def put_head(ident, length=None, extra=()):
    """The request head of a PUT, with a Content-Length or (None) chunked."""
    lines = [f"PUT /{ident} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
    lines.extend(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


def abort(sock):
    """Hang up hard (RST), as a crashed client or a dropped network does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def put_while_reading(port, ident, body, *, chunked=False, timeout=60.0):
    """PUT ``body`` from a thread while reading the answer here.

    A server may answer (507, 413) before the body is all sent and close; a
    client that only reads after sending would see a broken pipe instead.
    Returns the answer (see ``Answer``), or None when the server closed without one.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:

        def send():
            try:
                sock.sendall(put_head(ident, None if chunked else len(body)))
                view = memoryview(body)
                for start in range(0, len(body), BLOCK):
                    piece = view[start : start + BLOCK]
                    sock.sendall(chunk(piece) if chunked else piece)
                if chunked:
                    sock.sendall(LAST_CHUNK)
            except OSError:
                pass  # the server answered and hung up: the answer tells

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        data = recv_all(sock)
        sender.join(timeout)
    return Answer(parse_response(data)) if data else None


class Answer:
    """A raw answer with the face of a requests response, for ``server.assert_error``."""

    def __init__(self, raw):
        self.status_code = raw.status
        self.headers = CaseInsensitiveDict(raw.headers)
        self.content = raw.body
        self.text = raw.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.content)
