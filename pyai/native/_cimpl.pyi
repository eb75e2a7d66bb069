"""Type stub of the C extension pyai.native._cimpl (the pure-Python twin is pyai.native._pyimpl)."""

from collections.abc import Iterable
from typing import Any

from _typeshed import ReadableBuffer, StrOrBytesPath

FADV_NORMAL: int
FADV_SEQUENTIAL: int
FADV_RANDOM: int
FADV_WILLNEED: int
FADV_DONTNEED: int
FADV_NOREUSE: int

def recv_to_file(
    sock_fd: int,
    file_fd: int,
    nbytes: int,
    timeout: float | None,
    hashers: Iterable[Any] = (),
    patience: float | None = None,
    *,
    budget: float | None = None,
    waited: float = 0.0,
    reserve: int = 0,
    writeback: int = 0,
) -> int: ...
def write_all(fd: int, data: ReadableBuffer) -> None: ...
def copy_fd(src_fd: int, dst_fd: int, nbytes: int) -> int: ...
def rename_noreplace(
    src: StrOrBytesPath, dst: StrOrBytesPath, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None
) -> None: ...
def openat2(dir_fd: int, path: StrOrBytesPath, flags: int, resolve: int) -> int: ...
def fsync(fd: int) -> None: ...
def write_behind(fd: int, start: int, end: int, step: int) -> bool: ...
def fsync_dir(path: StrOrBytesPath) -> None: ...
def fadvise(fd: int, offset: int, length: int, advice: int) -> None: ...
def preallocate(fd: int, nbytes: int, offset: int = 0) -> bool: ...
def write_back(fd: int) -> None: ...
def syncfs(fd: int) -> None: ...

class ChunkedDecoder:
    def __init__(self, *, max_line: int = 8190, max_trailer: int = 261120) -> None: ...
    def feed(self, data: ReadableBuffer) -> None: ...
    @property
    def phase(self) -> str: ...
    @property
    def complete(self) -> bool: ...
    @property
    def decoded(self) -> int: ...
    @property
    def leftover(self) -> bytes: ...
    @property
    def trailers(self) -> bytes: ...

def recv_chunked_to_file(
    sock_fd: int,
    file_fd: int,
    decoder: ChunkedDecoder,
    timeout: float | None,
    hashers: Iterable[Any] = (),
    patience: float | None = None,
    *,
    budget: float | None = None,
    waited: float = 0.0,
    reserve: int = 0,
    writeback: int = 0,
    max_size: int = 0,
) -> int: ...

TRANSFER_TEXT_MAX: int
TRANSFER_FORWARDED_MAX: int
TRANSFER_METHOD_MAX: int

def transfer_line(record: Any, status: int | None, sent: int, client: Any, pid: int) -> bytes: ...
