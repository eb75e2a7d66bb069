"""Id schemes: the original id2filename layout and its inverse, safe names."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyai.archive.ids import MAX_ID, InvalidId, filename2id, id2filename, parse_integer, parse_path, parse_safe_name

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


@pytest.mark.parametrize(
    "path", ["39/3039", "/39/3038", "/file.fff", "/file.", "/3039", "/x/3039", "/39/3039/", "/00/0100"]
)
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


@pytest.mark.parametrize(
    "text", ["", ".", "..", ".x", "-x", "_x", "a/b", "a\\b", "a b", "x" * 256, "\u0663", "é", "a\x00", "a\n"]
)
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


# --- properties: the grammar, written out independently of the regular expressions ---

SAFE_FIRST = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
SAFE_REST = SAFE_FIRST | set("._-")
# text that is often almost a valid id: safe characters mixed with the dangerous ones
NEAR_IDS = st.text(
    alphabet=st.sampled_from(sorted(SAFE_REST) + ["/", "\\", "\x00", "%", " ", "\n", "\u0663", "\uff0e", "é"]),
    max_size=300,
)


def follows_safe_grammar(text):
    return 1 <= len(text) <= 255 and text[0] in SAFE_FIRST and all(c in SAFE_REST for c in text[1:])


@given(st.one_of(NEAR_IDS, st.text(max_size=300), st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}", fullmatch=True)))
def test_a_safe_name_is_accepted_exactly_when_it_follows_the_grammar(text):
    try:
        name = parse_safe_name(text)
    except InvalidId:
        assert not follows_safe_grammar(text)
        return
    assert follows_safe_grammar(text) and name == text
    assert not name.startswith(".") and "/" not in name and "\x00" not in name and name not in (".", "..")


def follows_integer_grammar(text):
    return 1 <= len(text) <= 19 and all(c in "0123456789" for c in text) and int(text) <= MAX_ID


@given(
    st.one_of(
        st.text(alphabet=st.sampled_from("0123456789+-_ .e\u0663\uff11x"), max_size=25),
        st.integers(-(2**70), 2**70).map(str),
        st.integers(0, MAX_ID).map(lambda n: str(n).zfill(19)),
    )
)
def test_an_integer_id_is_accepted_exactly_when_it_follows_the_grammar(text):
    try:
        value = parse_integer(text)
    except InvalidId:
        assert not follows_integer_grammar(text)
        return
    assert follows_integer_grammar(text) and value == int(text) and 0 <= value <= MAX_ID


# ids around every change in the number of hex digits, where the layout gains a level
HEX_EDGES = st.integers(1, 16).flatmap(
    lambda digits: st.sampled_from([16 ** (digits - 1) - 1, 16 ** (digits - 1), 16**digits - 1])
)


@given(st.one_of(st.integers(0, MAX_ID), HEX_EDGES.filter(lambda n: 0 <= n <= MAX_ID)))
def test_id2filename_paths_are_plain_and_invert(fileid):
    path = id2filename(fileid)
    parts = path.split("/")
    assert parts[0] == "" and all(parts[1:]), path
    assert not any(p in (".", "..") for p in parts) and not any(p.startswith(".") for p in parts), path
    assert all(len(p) == 2 for p in parts[1:-1]), path
    assert filename2id(path) == fileid


@given(st.one_of(st.text(max_size=60), st.text(alphabet="/0123456789abcdef.filex", max_size=60)))
def test_filename2id_accepts_only_the_paths_id2filename_makes(path):
    try:
        fileid = filename2id(path)
    except InvalidId:
        return
    assert 0 <= fileid <= MAX_ID and id2filename(fileid) == path


@pytest.mark.parametrize("path", ["a", "scope/ab/cd/file.root", "a/b.c_d-e/" + "x" * 255, "/".join("d" * 32)])
def test_parse_path_takes_paths_of_safe_names(path):
    assert parse_path(path) == path


@pytest.mark.parametrize(
    "path",
    ["", "a/", "/a", "a//b", "a/../b", "a/./b", "a/.hidden", "a/b c", "a/" + "x" * 256, "/".join("d" * 33),
     "/".join(["x" * 200] * 11), "a/b\\c", "a/é"],
)  # fmt: skip
def test_parse_path_refuses_anything_else(path):
    with pytest.raises(InvalidId):
        parse_path(path)
