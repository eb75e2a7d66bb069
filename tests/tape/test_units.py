"""The Tape API's pure parts: ISO 8601 durations, localities from storage levels, paths as ids."""

import pytest

from pyai.archive.ids import InvalidId, parse_safe_name
from pyai.backends.base import FileStatus
from pyai.errors import BadRequest
from pyai.tape import bodies
from pyai.tape.durations import parse_duration
from pyai.tape.service import locality


@pytest.mark.parametrize(
    "text,seconds",
    [("PT1H", 3600), ("P1D", 86400), ("PT90M", 5400), ("P1DT12H", 129600), ("PT0.5S", 0.5), ("P2W", 1209600)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "P", "PT", "1H", "PT1H ", "P1H", "-PT1H", "PT1HT", 3600, None, "P" + "9" * 80 + "D"]
)
def test_bad_durations(text):
    with pytest.raises(BadRequest):
        parse_duration(text)


def status(size, levels):
    return FileStatus("/p", size, 0.0, 0.0, levels, "disk")


@pytest.mark.parametrize(
    "size,levels,expected",
    [
        (10, (10,), "DISK"),
        (10, (10, 10, 0, 0, 0), "DISK_AND_TAPE"),
        (10, (0, 10, 0, 0, 0), "TAPE"),
        (10, (0, 0, 10, 0, 0), "TAPE"),
        (10, (4, 0, 0, 0, 0), "LOST"),
        (0, (0,), "NONE"),
    ],
)
def test_locality(size, levels, expected):
    assert locality(status(size, levels)) == expected


def test_paths_are_read_as_the_data_plane_reads_targets():
    assert bodies.ident_of(bodies.sanitise("//1234")) == "1234"
    assert bodies.ident_of("/a%2Eb") == "a.b"
    for bad in ("1234", "/a/b", "/x#y"):
        with pytest.raises(ValueError):
            bodies.ident_of(bodies.sanitise(bad))
    # an encoded slash stays inside the one segment, where the id scheme refuses it
    assert bodies.ident_of("/a%2Fb") == "a/b"
    with pytest.raises(InvalidId):
        parse_safe_name("a/b")
