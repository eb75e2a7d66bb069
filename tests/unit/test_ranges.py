"""Range arithmetic: the original byte_range and the standard Range header."""

import pytest
from hypothesis import given, strategies as st

from pyai.errors import BadRequest, RangeNotSatisfiable
from pyai.ranges import parse_byte_range, parse_range_header


@pytest.mark.parametrize(
    "text,size,expected",
    [("0-10", 20, (0, 10)), ("5-100000", 20, (5, 20)), ("30-40", 20, (20, 20)), ("0-0", 20, (0, 0))],
)
def test_byte_range_is_end_exclusive_and_clamped(text, size, expected):
    assert parse_byte_range(text, size) == expected


@pytest.mark.parametrize("text", ["abc", "5", "7-3", "-1-2", "1-", "-5", "1-2-3", " 1-2", "1-2 "])
def test_bad_byte_range(text):
    with pytest.raises(BadRequest):
        parse_byte_range(text, 100)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("bytes=0-9", (0, 10)),
        ("bytes=10-", (10, 100)),
        ("bytes=-10", (90, 100)),
        ("bytes=-1000", (0, 100)),
        ("bytes=90-1000", (90, 100)),
        ("bytes = 5 - 6", (5, 7)),
        ("BYTES=0-0", (0, 1)),
        ("bytes=0-1,4-5", None),
        ("items=0-5", None),
    ],
)
def test_range_header(text, expected):
    assert parse_range_header(text, 100) == expected


@pytest.mark.parametrize("text", ["bytes=x-y", "bytes=", "bytes=-", "bytes=5-2", "0-5", "bytes=1-2,", "bytes=--1"])
def test_malformed_range_header(text):
    with pytest.raises(BadRequest):
        parse_range_header(text, 100)


@pytest.mark.parametrize("text,size", [("bytes=100-", 100), ("bytes=200-300", 100), ("bytes=-0", 100), ("bytes=-5", 0), ("bytes=0-", 0)])
def test_unsatisfiable_range(text, size):
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_range_header(text, size)
    assert caught.value.size == size


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
def test_a_satisfiable_range_stays_inside_the_file(first, last, size):
    first, last = min(first, last), max(first, last)
    try:
        start, stop = parse_range_header(f"bytes={first}-{last}", size)
    except RangeNotSatisfiable:
        assert first >= size
        return
    assert 0 <= start < stop <= size and stop - start == min(last, size - 1) - first + 1
