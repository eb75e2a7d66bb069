"""Lenient Last-Modified parsing: every form clients send means the same instant."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyai.web.dates import http_date, parse_http_date

INSTANT = 784111777.0


@pytest.mark.parametrize(
    "text",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # RFC 1123
        "Sunday, 06-Nov-94 08:49:37 GMT",  # RFC 850
        "Sun Nov  6 08:49:37 1994",  # asctime (ingest), UTC
        "1994-11-06T08:49:37Z",
        "1994-11-06T08:49:37+00:00",
        "1994-11-06T09:49:37+01:00",
        "1994-11-06 08:49:37",
        "784111777",
        "784111777.0",
        "  Sun, 06 Nov 1994 08:49:37 GMT  ",
    ],
)
def test_all_forms_mean_the_same_instant(text):
    assert parse_http_date(text) == INSTANT


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "Sun, 32 Nov 1994 08:49:37 GMT",
        "yesterday",
        "1994-13-01",
        "-5",
        "999999999999",
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00+14:00",
    ],  # no HTTP date can say these
)
def test_unreadable_dates_give_none(text):
    assert parse_http_date(text) is None


def test_http_date_round_trip():
    assert http_date(INSTANT) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert parse_http_date(http_date(INSTANT)) == INSTANT


@given(st.text(max_size=80))
def test_never_raises(text):
    result = parse_http_date(text)
    assert result is None or isinstance(result, float)


# --- properties: any text gives a time the service can store and write back, or None ---

DATE_LIKE = st.one_of(
    st.text(max_size=80),
    st.datetimes().map(lambda d: d.isoformat()),
    st.builds(
        "{}-{:02d}-{:02d}T{:02d}:00:00{}".format,
        st.integers(1, 9999),
        st.integers(1, 12),
        st.integers(1, 28),
        st.integers(0, 23),
        st.sampled_from(["Z", "+14:00", "-14:00", "+00:00", ""]),
    ),
    st.integers(0, 10**12).map(str),
)


@given(DATE_LIKE)
def test_any_last_modified_is_a_writable_time_or_none(text):
    result = parse_http_date(text)
    assert result is None or isinstance(result, float)
    if result is not None:
        http_date(result)  # GET writes the stored time back as an HTTP date: it must be one


@given(st.integers(-62135596800, 253402300799))  # 0001-01-01 .. 9999-12-31, every second http_date can write
def test_http_date_round_trips(stamp):
    assert parse_http_date(http_date(stamp)) == stamp


@given(st.floats(0, 253402300799, allow_nan=False))
def test_http_date_round_trips_whole_seconds(stamp):
    assert parse_http_date(http_date(stamp)) == float(int(stamp))
