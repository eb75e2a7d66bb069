"""The memory of digests that could not be kept: per version of a file, bounded."""

import dataclasses

from pyai.archive.unkept import Unkept
from pyai.backends.base import FileStatus

STATUS = FileStatus("/p/1", 10, 1.0, 2.0, (10,), "disk", '"1-a-1"')


def test_remembered_for_that_version_only():
    unkept = Unkept()
    unkept.remember(STATUS, {"sha512": b"x" * 64})
    unkept.remember(STATUS, {"sha1": b"y" * 20})
    assert unkept.get(STATUS) == {"sha512": b"x" * 64, "sha1": b"y" * 20}
    for change in ({"etag": '"2-a-1"'}, {"ctime": 3.0}, {"path": "/p/2"}):  # replaced, changed, another file
        assert unkept.get(dataclasses.replace(STATUS, **change)) == {}


def test_bounded_least_recently_asked_goes_first():
    unkept = Unkept(limit=2)
    a, b, c = (dataclasses.replace(STATUS, path=f"/p/{n}") for n in "abc")
    unkept.remember(a, {"md5": b"a"})
    unkept.remember(b, {"md5": b"b"})
    assert unkept.get(a) == {"md5": b"a"}  # a is now the most recently asked
    unkept.remember(c, {"md5": b"c"})
    assert unkept.get(b) == {} and unkept.get(a) == {"md5": b"a"} and unkept.get(c) == {"md5": b"c"}
