"""The answer to a client that speaks HTTP/2 with prior knowledge: "HTTP/1.1 required", in HTTP/2.

Such a client (``curl --http2-prior-knowledge``, an h2c gRPC stub) opens the
connection with the client preface (RFC 9113 3.4) instead of a request line.
An HTTP/1.1 400 is unreadable to it (curl reports "Empty reply from server"),
so the server answers in the only language it reads: the server preface (an
empty SETTINGS frame) and a GOAWAY with HTTP_1_1_REQUIRED and last-stream-id
0 (no stream was processed), then closes.  The client then reports a clear
error or retries with HTTP/1.1.
"""

import struct
from typing import Union

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS = 0x4
GOAWAY = 0x7
HTTP_1_1_REQUIRED = 0xD
DEBUG_DATA = b"pyai speaks HTTP/1.1"


def frame(kind: int, payload: bytes, flags: int = 0, stream: int = 0) -> bytes:
    """One frame (RFC 9113 4.1): length (24 bits), type, flags, stream id (31 bits), payload."""
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, flags, stream & 0x7FFFFFFF) + payload


# Sent whole, once per such connection (46 bytes: one non-blocking send takes them).
REFUSAL = frame(SETTINGS, b"") + frame(GOAWAY, struct.pack(">II", 0, HTTP_1_1_REQUIRED) + DEBUG_DATA)


def may_be_preface(head: Union[bytes, bytearray]) -> bool:
    """True while ``head`` (the first bytes of a connection) is the client preface or its beginning."""
    return head[: len(PREFACE)] == PREFACE[: len(head)]
