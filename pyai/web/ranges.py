"""Byte ranges: the original ``?byte_range=S-E`` and the standard ``Range`` header.

Both produce a half-open ``(start, stop)`` pair of offsets into the file.
"""

import re
from typing import Optional, Tuple, cast

from pyai.errors import BadRequest, RangeNotSatisfiable

_BYTE_RANGE = re.compile(r"([0-9]{1,19})-([0-9]{1,19})")
_SPEC = re.compile(r"\s*([0-9]{0,19})\s*-\s*([0-9]{0,19})\s*")


def parse_byte_range(text: str, size: int) -> Tuple[int, int]:
    """``S-E`` selects bytes S..E-1, clamped to the file (the original's semantics)."""
    match = _BYTE_RANGE.fullmatch(text)
    if not match:
        raise BadRequest(f"byte_range must be START-END with integers, got {text[:40]!r}")
    start, end = int(match.group(1)), int(match.group(2))
    if start > end:
        raise BadRequest("byte_range START must not be greater than END")
    return min(start, size), min(end, size)


def parse_range_header(text: str, size: int) -> Optional[Tuple[int, int]]:
    """Return ``(start, stop)`` for a single ``bytes=`` range, or None to send the whole file.

    None for another unit or several ranges (RFC 9110 lets a server ignore
    Range); BadRequest for broken syntax; RangeNotSatisfiable when it selects
    nothing of this file.
    """
    unit, sep, specs = text.partition("=")
    if not sep:
        raise BadRequest("Range must look like bytes=START-END")
    if unit.strip().lower() != "bytes":
        return None
    parts = specs.split(",")
    for part in parts:
        match = _SPEC.fullmatch(part)
        if not match or not (match.group(1) or match.group(2)):
            raise BadRequest("Range must look like bytes=START-END, bytes=START- or bytes=-SUFFIX")
        if match.group(1) and match.group(2) and int(match.group(1)) > int(match.group(2)):
            raise BadRequest("a Range START must not be greater than its END")
    if len(parts) > 1:
        return None
    first, last = cast("re.Match[str]", _SPEC.fullmatch(parts[0])).groups()  # it matched in the loop above
    if not first:  # suffix: the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            raise RangeNotSatisfiable("the range selects no bytes of the file", size=size)
        return max(size - length, 0), size
    start = int(first)
    if start >= size:
        raise RangeNotSatisfiable("the range starts beyond the end of the file", size=size)
    stop = size if not last else min(int(last) + 1, size)
    return start, stop
