"""Lenient Last-Modified parsing: every form clients send means the same instant."""

import pytest
from hypothesis import given, strategies as st

from pyai.dates import http_date, parse_http_date

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


@pytest.mark.parametrize("text", ["", "garbage", "Sun, 32 Nov 1994 08:49:37 GMT", "yesterday", "1994-13-01", "-5"])
def test_unreadable_dates_give_none(text):
    assert parse_http_date(text) is None


def test_http_date_round_trip():
    assert http_date(INSTANT) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert parse_http_date(http_date(INSTANT)) == INSTANT


@given(st.text(max_size=80))
def test_never_raises(text):
    result = parse_http_date(text)
    assert result is None or isinstance(result, float)
