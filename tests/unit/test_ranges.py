"""Range arithmetic: the original byte_range and the standard Range header."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyai.errors import BadRequest, RangeNotSatisfiable
from pyai.web.ranges import parse_byte_range, parse_range_header


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


@pytest.mark.parametrize(
    "text,size", [("bytes=100-", 100), ("bytes=200-300", 100), ("bytes=-0", 100), ("bytes=-5", 0), ("bytes=0-", 0)]
)
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


# --- properties: any header text is a valid range, a documented refusal, or "send all" ---

SIZES = st.one_of(st.integers(0, 2**63 - 1), st.integers(0, 1000))
NUMBERS = st.one_of(st.integers(0, 2000), st.integers(0, 10**25)).map(str)
RANGE_TEXT = st.one_of(
    st.text(max_size=60),
    st.builds(
        "{}={}".format,
        st.sampled_from(["bytes", "BYTES", " bytes ", "items", ""]),
        st.lists(
            st.builds("{}-{}".format, st.one_of(NUMBERS, st.just("")), st.one_of(NUMBERS, st.just(""))), max_size=4
        ).map(",".join),
    ),
    st.text(alphabet="bytes=0123456789-, \t", max_size=40),
)


@given(RANGE_TEXT, SIZES)
def test_any_range_header_is_valid_or_a_documented_refusal(text, size):
    try:
        chosen = parse_range_header(text, size)
    except RangeNotSatisfiable as exc:
        assert exc.size == size
        return
    except BadRequest:
        return
    if chosen is not None:
        start, stop = chosen
        assert 0 <= start < stop <= size


@given(
    st.one_of(
        st.text(max_size=50), st.builds("{}-{}".format, NUMBERS, NUMBERS), st.text(alphabet="0123456789-", max_size=45)
    ),
    SIZES,
)
def test_any_byte_range_is_inside_the_file_or_bad_request(text, size):
    try:
        start, stop = parse_byte_range(text, size)
    except BadRequest:
        return
    # the original's semantics: clamped to the file, possibly empty (e.g. 30-40 of 20 bytes)
    assert 0 <= start <= stop <= size
