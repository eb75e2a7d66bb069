"""User-defined attributes in the emulator: the vendor C API's semantics (hpss_UserAttrSetAttrs,
hpss_UserAttrGetAttrs, hpss_ChompXMLHeader) called directly, and the binding over them."""

import errno
import os
from pathlib import Path

import pytest
from cffi import FFI

from .test_emulator import put

C_API = """
typedef struct { char *Key; char *Value; } hpss_userattr_t;
typedef struct { int len; hpss_userattr_t *Pair; } hpss_userattr_list_t;
int hpss_UserAttrSetAttrs(const char *Path, const hpss_userattr_list_t *Attr, const char *Schema);
int hpss_UserAttrGetAttrs(const char *Path, hpss_userattr_list_t *Attr, int XMLFlag, int XMLSize);
char *hpss_ChompXMLHeader(const char *XML, ...);
void free(void *);
"""
XML_SIZE = 512  # HPSS_XML_SIZE of the emulator's hpss_api.h
UDA_API_VALUE, UDA_API_XML = 1, 2


@pytest.fixture
def capi(emu):
    """The emulator library itself (the one the binding loaded: same login), by its C prototypes."""
    hpss, root = emu
    if not hpss.EMULATOR:
        pytest.skip("built against a real HPSS")
    ffi = FFI()
    ffi.cdef(C_API)
    lib = ffi.dlopen(str(Path(hpss.__file__).parent / "libhpss_emu.so"))
    libc = ffi.dlopen(None)
    return ffi, lib, libc, hpss, root


def attr_list(ffi, pairs):
    """A list of (key, value) pairs; None values get a caller-owned HPSS_XML_SIZE buffer (as Get wants)."""
    keep = []
    array = ffi.new("hpss_userattr_t[]", max(len(pairs), 1))
    for i, (key, value) in enumerate(pairs):
        k = ffi.new("char[]", key.encode())
        v = ffi.new("char[]", XML_SIZE) if value is None else ffi.new("char[]", value.encode())
        keep += [k, v]
        array[i].Key, array[i].Value = k, v
    lst = ffi.new("hpss_userattr_list_t *")
    lst.len, lst.Pair = len(pairs), array
    return lst, keep + [array]


def set_attrs(capi, path, pairs):
    ffi, lib, *_ = capi
    lst, keep = attr_list(ffi, list(pairs.items()))
    return lib.hpss_UserAttrSetAttrs(str(path).encode(), lst, ffi.NULL)


def get_raw(capi, path, keys, flag=UDA_API_VALUE, size=XML_SIZE - 1):
    ffi, lib, *_ = capi
    lst, keep = attr_list(ffi, [(key, None) for key in keys])
    rc = lib.hpss_UserAttrGetAttrs(str(path).encode(), lst, flag, size)
    return rc, [ffi.string(lst.Pair[i].Value).decode() for i in range(len(keys))]


def chomp(capi, text):
    ffi, lib, libc, *_ = capi
    plain = lib.hpss_ChompXMLHeader(ffi.new("char[]", text.encode()), ffi.cast("char *", ffi.NULL))
    try:
        return ffi.string(plain).decode()
    finally:
        libc.free(plain)  # a malloc'd copy the caller frees


def test_values_come_back_in_xml_that_chomp_strips(capi):
    ffi, lib, libc, hpss, root = capi
    put(hpss, root / "f", b"data")
    assert set_attrs(capi, root / "f", {"/hpss/user/cksum/algorithm": "md5", "/hpss/user/cksum/state": "Valid"}) == 0
    rc, values = get_raw(capi, root / "f", ["/hpss/user/cksum/state", "/hpss/user/cksum/algorithm"])
    assert rc == 0 and values[0] != "Valid" and values[0].startswith("<?xml")
    assert [chomp(capi, v) for v in values] == ["Valid", "md5"]
    rc, xml = get_raw(capi, root / "f", ["/hpss/user/cksum/algorithm"], flag=UDA_API_XML)
    assert rc == 0 and "<cksum><algorithm>md5</algorithm></cksum>" in xml[0]


def test_a_missing_key_fails_the_whole_get_with_enoent(capi):
    ffi, lib, libc, hpss, root = capi
    put(hpss, root / "f", b"data")
    assert get_raw(capi, root / "f", ["/hpss/user/cksum/state"])[0] == -errno.ENOENT  # nothing set yet
    assert set_attrs(capi, root / "f", {"/hpss/user/a": "1"}) == 0
    rc, values = get_raw(capi, root / "f", ["/hpss/user/a", "/hpss/user/b"])
    assert rc == -errno.ENOENT and values == ["", ""]  # no Value written
    assert get_raw(capi, root / "missing", ["/hpss/user/a"])[0] == -errno.ENOENT


def test_set_merges_and_replaces_and_checks_its_input(capi):
    ffi, lib, libc, hpss, root = capi
    put(hpss, root / "f", b"data")
    assert set_attrs(capi, root / "f", {"/hpss/user/a": "1", "/hpss/user/b": "2"}) == 0
    assert set_attrs(capi, root / "f", {"/hpss/user/b": "3", "/hpss/user/c": ""}) == 0
    rc, values = get_raw(capi, root / "f", ["/hpss/user/a", "/hpss/user/b", "/hpss/user/c"])
    assert rc == 0 and [chomp(capi, v) for v in values] == ["1", "3", ""]
    for bad in ({"hpss/user/a": "1"}, {"/hpss/user/a\t": "1"}, {"/hpss/user/a": "x\ny"}, {"/hpss/a": "<b>"}):
        assert set_attrs(capi, root / "f", bad) == -errno.EINVAL
    assert set_attrs(capi, root / "f", {"/hpss/user/a": "x" * XML_SIZE}) == -errno.EINVAL  # over HPSS_XML_SIZE
    assert set_attrs(capi, root / "missing", {"/hpss/user/a": "1"}) == -errno.ENOENT


def test_a_value_larger_than_xmlsize_is_not_cut(capi):
    ffi, lib, libc, hpss, root = capi
    put(hpss, root / "f", b"data")
    assert set_attrs(capi, root / "f", {"/hpss/user/a": "x" * 100}) == 0
    assert get_raw(capi, root / "f", ["/hpss/user/a"], size=50)[0] == -errno.ERANGE
    assert get_raw(capi, root / "f", ["/hpss/user/a"], size=XML_SIZE - 1)[0] == 0


def test_attributes_follow_rename_and_link_and_go_with_the_last_name(capi):
    ffi, lib, libc, hpss, root = capi
    put(hpss, root / "f", b"data")
    hpss.set_user_attrs(str(root / "f"), {"/hpss/user/pyai/md5": "ab"})
    hpss.rename(str(root / "f"), str(root / "g"))
    hpss.link(str(root / "g"), str(root / "h"))
    assert hpss.get_user_attrs(str(root / "h"), ["/hpss/user/pyai/md5"]) == {"/hpss/user/pyai/md5": "ab"}
    hpss.unlink(str(root / "g"))
    assert hpss.get_user_attrs(str(root / "h"), ["/hpss/user/pyai/md5"]) == {"/hpss/user/pyai/md5": "ab"}
    records = root / ".hpss-emu" / "uda"
    assert len(os.listdir(records)) == 1
    hpss.unlink(str(root / "h"))
    assert os.listdir(records) == []
    put(hpss, root / "h", b"new")  # a new file under the old name has none
    assert hpss.get_user_attrs(str(root / "h"), ["/hpss/user/pyai/md5"]) == {}


def test_a_replacing_rename_drops_the_replaced_files_attributes(capi):
    ffi, lib, libc, hpss, root = capi
    put(hpss, root / "old", b"1")
    put(hpss, root / "new", b"2")
    hpss.set_user_attrs(str(root / "old"), {"/hpss/user/x": "old"})
    hpss.rename(str(root / "new"), str(root / "old"))
    assert hpss.get_user_attrs(str(root / "old"), ["/hpss/user/x"]) == {}
    assert os.listdir(root / ".hpss-emu" / "uda") == []


def test_binding_gets_what_is_set_even_when_some_keys_are_missing(capi):
    ffi, lib, libc, hpss, root = capi
    put(hpss, root / "f", b"data")
    path = str(root / "f")
    assert hpss.get_user_attrs(path, ["/hpss/user/a", "/hpss/user/b"]) == {}
    hpss.set_user_attrs(path, {"/hpss/user/a": "1", "/hpss/user/c": 3})
    assert hpss.get_user_attrs(path, ["/hpss/user/a", "/hpss/user/b", "/hpss/user/c"]) == {
        "/hpss/user/a": "1",
        "/hpss/user/c": "3",
    }
    with pytest.raises(OSError) as caught:
        hpss.set_user_attrs(path, {"not a key": "1"})
    assert caught.value.errno == errno.EINVAL
