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


def test_free_slots_are_shared_out_between_owners_then_requests():
    from pyai.tape.fairness import share_out

    waiting = [("a1", "A", 1000), ("a2", "A", 1000), ("b1", "B", 1), ("c1", "C", 5)]
    # turns: A's a1, B, C, A's a2, C, A's a1 (B has nothing left)
    assert share_out(waiting, 6) == {"a1": 2, "b1": 1, "c1": 2, "a2": 1}
    assert share_out(waiting, 64) == {"a1": 29, "a2": 29, "b1": 1, "c1": 5}
    assert share_out(waiting, 2) == {"a1": 1, "b1": 1}  # the third owner's turn comes at the next claim
    assert share_out([], 5) == {} and share_out(waiting, 0) == {}
