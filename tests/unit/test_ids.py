"""Id schemes: the original id2filename layout and its inverse, safe names."""

import pytest
from hypothesis import given, strategies as st

from pyai.ids import MAX_ID, InvalidId, filename2id, id2filename, parse_integer, parse_safe_name

LAYOUT = {
    12345: "/39/3039",
    1234: "/d2/4d2",
    32767: "/ff/7fff",
    32768: "/00/8000",
    32769: "/01/8001",
    255: "/file.ff",
    1: "/file.1",
    0: "/file.0",
    256: "/00/100",
    MAX_ID: "/ff/ff/ff/ff/ff/ff/ff/7fffffffffffffff",
}


@pytest.mark.parametrize("fileid,path", sorted(LAYOUT.items()))
def test_id2filename_is_the_original_layout(fileid, path):
    assert id2filename(fileid) == path
    assert filename2id(path) == fileid


@given(st.integers(min_value=0, max_value=MAX_ID))
def test_filename2id_inverts_id2filename(fileid):
    assert filename2id(id2filename(fileid)) == fileid


@pytest.mark.parametrize("path", ["39/3039", "/39/3038", "/file.fff", "/file.", "/3039", "/x/3039", "/39/3039/", "/00/0100"])
def test_filename2id_rejects_paths_it_cannot_produce(path):
    with pytest.raises(InvalidId):
        filename2id(path)


@pytest.mark.parametrize("text", ["0", "123", "9223372036854775807", "007"])
def test_integer_ids(text):
    assert parse_integer(text) == int(text)


@pytest.mark.parametrize("text", ["", "-1", "+1", "1.0", "1e3", " 1", "9223372036854775808", "\u0663", "１", "12a"])
def test_bad_integer_ids(text):
    with pytest.raises(InvalidId):
        parse_integer(text)


@pytest.mark.parametrize("text", ["foo.txt", "123", "a", "A-b_c.d", "x" * 255, "1.."])
def test_safe_names(text):
    assert parse_safe_name(text) == text


@pytest.mark.parametrize("text", ["", ".", "..", ".x", "-x", "_x", "a/b", "a\\b", "a b", "x" * 256, "\u0663", "é", "a\x00", "a\n"])
def test_unsafe_names(text):
    with pytest.raises(InvalidId):
        parse_safe_name(text)


@given(st.text(max_size=300))
def test_a_safe_name_never_leaves_its_directory(text):
    try:
        name = parse_safe_name(text)
    except InvalidId:
        return
    assert "/" not in name and not name.startswith(".") and name.isascii()
