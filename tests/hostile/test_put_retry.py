"""Defect 8: a client may retry a PUT whose answer it did not get (or got as a 500
after the file was stored): the same bytes again are 201, different bytes 409.

API.md: "A PUT whose bytes equal what is stored may answer 201 (a safe retry)."
"""

import os

import requests
from server import assert_error


def test_identical_put_is_201_different_is_409(server, uid):
    url = server.id_url(uid)
    data = os.urandom(100_000)
    first = requests.put(url, data=data, timeout=30)
    assert first.status_code == 201, first.text
    again = requests.put(url, data=data, timeout=30)
    assert again.status_code == 201, again.text
    assert again.json()["total_bytes"] == len(data)
    chunked = requests.put(url, data=iter([data[:5000], data[5000:]]), timeout=30)
    assert chunked.status_code in (201, 409), chunked.text  # chunked: the size is not known up front
    ino = server.stored_path(uid).stat().st_ino
    same_size = bytearray(data)
    same_size[-1] ^= 1
    assert_error(requests.put(url, data=bytes(same_size), timeout=30), 409, server.prefix)
    assert_error(requests.put(url, data=data + b"!", timeout=30), 409, server.prefix)
    assert server.stored_path(uid).read_bytes() == data
    assert server.stored_path(uid).stat().st_ino == ino, "the stored file was replaced"
    assert requests.get(url, timeout=30).content == data
    assert server.temp_files() == []


def test_identical_put_of_an_empty_file(server, uid):
    url = server.id_url(uid)
    assert requests.put(url, data=b"", timeout=30).status_code == 201
    assert requests.put(url, data=b"", timeout=30).status_code == 201
    assert_error(requests.put(url, data=b"x", timeout=30), 409, server.prefix)
