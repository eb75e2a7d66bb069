"""The file and socket primitives of pyai, from C (``pyai.native._cimpl``) or pure Python (``pyai.native._pyimpl``).

``PYAI_IMPL`` is read once, at import:

- ``auto`` (the default, also when empty): C if the extension imports, else Python;
- ``c``: C, or ImportError saying why it cannot be imported;
- ``python``: pure Python.

``__impl__`` is ``"c"`` or ``"python"``.  Both implementations have the same
functions, behaviour and exceptions; see their docstrings.
"""

import os

__all__ = [
    "recv_to_file",
    "ChunkedDecoder",
    "recv_chunked_to_file",
    "write_all",
    "copy_fd",
    "rename_noreplace",
    "openat2",
    "fsync",
    "fsync_dir",
    "write_behind",
    "fadvise",
    "preallocate",
    "write_back",
    "syncfs",
    "FADV_NORMAL",
    "FADV_SEQUENTIAL",
    "FADV_RANDOM",
    "FADV_WILLNEED",
    "FADV_DONTNEED",
    "FADV_NOREUSE",
    "transfer_line",
    "TRANSFER_TEXT_MAX",
    "TRANSFER_FORWARDED_MAX",
    "TRANSFER_METHOD_MAX",
    "plain_parser",
    "plain_limits",
    "plain_request",
    "read_plain",
    "format_answer",
]


def _load(impl):
    if impl == "c":
        try:
            from pyai.native import _cimpl as _io
        except ImportError as exc:
            raise ImportError(f"PYAI_IMPL=c but the C extension pyai.native._cimpl cannot be imported: {exc}") from exc
        return "c", _io
    if impl == "python":
        from pyai.native import _pyimpl as _pyio

        return "python", _pyio
    if impl == "auto":
        try:
            return _load("c")
        except ImportError as exc:
            global _c_unavailable
            _c_unavailable = str(exc)  # for whoever wonders why auto chose Python
            return _load("python")
    raise ImportError(f"PYAI_IMPL={impl!r} is not valid: use 'auto', 'c' or 'python'")


_c_unavailable = None
__impl__, _module = _load(os.environ.get("PYAI_IMPL", "").strip().lower() or "auto")

recv_to_file = _module.recv_to_file
ChunkedDecoder = _module.ChunkedDecoder
recv_chunked_to_file = _module.recv_chunked_to_file
write_all = _module.write_all
copy_fd = _module.copy_fd
rename_noreplace = _module.rename_noreplace
openat2 = _module.openat2
fsync = _module.fsync
fsync_dir = _module.fsync_dir
write_behind = _module.write_behind
fadvise = _module.fadvise
preallocate = _module.preallocate
write_back = _module.write_back
syncfs = _module.syncfs
FADV_NORMAL = _module.FADV_NORMAL
FADV_SEQUENTIAL = _module.FADV_SEQUENTIAL
FADV_RANDOM = _module.FADV_RANDOM
FADV_WILLNEED = _module.FADV_WILLNEED
FADV_DONTNEED = _module.FADV_DONTNEED
FADV_NOREUSE = _module.FADV_NOREUSE
transfer_line = _module.transfer_line
TRANSFER_TEXT_MAX = _module.TRANSFER_TEXT_MAX
TRANSFER_FORWARDED_MAX = _module.TRANSFER_FORWARDED_MAX
TRANSFER_METHOD_MAX = _module.TRANSFER_METHOD_MAX
plain_parser = _module.plain_parser
plain_limits = _module.plain_limits
plain_request = _module.plain_request
read_plain = _module.read_plain
format_answer = _module.format_answer
