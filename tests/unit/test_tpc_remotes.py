"""The ``[tpc] remotes`` allow-list: what each kind of entry admits, and what is never reached
unless listed as such (this host, its link, no one)."""

import socket

import pytest

from pyai.config import ConfigError, load
from pyai.web.tpc.client import RemoteFailed, Url, parse_url, redirected
from pyai.web.tpc.remotes import RemoteRefused, Remotes


def fake_dns(monkeypatch, table):
    """getaddrinfo answering from ``table`` (name -> addresses): the resolver is not under test."""

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, 1, 6, "", (a, port)) for a in table[host]]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize(
    "entries, host, allowed",
    [
        (["192.0.2.0/24"], "192.0.2.7", True),
        (["192.0.2.0/24"], "198.51.100.7", False),
        (["192.0.2.7"], "192.0.2.7", True),
        (["2001:db8::/32"], "2001:db8::1", True),
        (["0.0.0.0/0"], "127.0.0.1", False),  # a network of everything is not a listing of loopback
        (["0.0.0.0/0"], "169.254.169.254", False),  # nor of the link's metadata service
        (["::/0"], "::1", False),
        (["0.0.0.0/0"], "::ffff:127.0.0.1", False),  # IPv4-mapped: read as the IPv4 address it is
        (["0.0.0.0/0"], "0.0.0.0", False),
        (["127.0.0.1"], "127.0.0.1", True),
        (["127.0.0.0/8"], "127.0.0.2", True),
        (["169.254.0.0/16"], "169.254.169.254", True),
        (["data.example.org"], "192.0.2.7", False),
    ],
)
def test_addresses(entries, host, allowed):
    remotes = Remotes(entries)
    if allowed:
        assert remotes.addresses(host, 80) == [(str(host), 80)]
    else:
        with pytest.raises(RemoteRefused):
            remotes.addresses(host, 80)


def test_a_listed_name_or_domain_reaches_what_it_resolves_to(monkeypatch):
    fake_dns(monkeypatch, {"se.example.org": ["192.0.2.1"], "a.b.example.net": ["198.51.100.9", "2001:db8::9"]})
    assert Remotes(["se.example.org"]).addresses("SE.example.org.", 443) == [("192.0.2.1", 443)]
    assert Remotes([".example.net"]).addresses("a.b.example.net", 1094) == [
        ("198.51.100.9", 1094),
        ("2001:db8::9", 1094),
    ]
    with pytest.raises(RemoteRefused):
        Remotes([".example.net"]).addresses("example.org", 80)
    with pytest.raises(RemoteRefused):
        Remotes([".le.net"]).addresses("a.b.example.net", 80)  # a suffix of labels, not of characters


def test_a_listed_name_that_resolves_to_this_host_is_refused(monkeypatch):
    """DNS answers for the name: a listed name pointing at 127.0.0.1 reaches nothing there."""
    fake_dns(monkeypatch, {"evil.example.org": ["127.0.0.1"], "mixed.example.org": ["192.0.2.1", "169.254.1.1"]})
    with pytest.raises(RemoteRefused):
        Remotes([".example.org"]).addresses("evil.example.org", 80)
    assert Remotes([".example.org"]).addresses("mixed.example.org", 80) == [("192.0.2.1", 80)]


def test_an_unlisted_name_needs_every_address_in_a_listed_network(monkeypatch):
    fake_dns(monkeypatch, {"in.example.org": ["192.0.2.1"], "half.example.org": ["192.0.2.2", "198.51.100.2"]})
    assert Remotes(["192.0.2.0/24"]).addresses("in.example.org", 80) == [("192.0.2.1", 80)]
    with pytest.raises(RemoteRefused):
        Remotes(["192.0.2.0/24"]).addresses("half.example.org", 80)
    with pytest.raises(RemoteRefused, match="does not resolve"):
        Remotes(["192.0.2.0/24"]).addresses("nowhere.example.org", 80)


def test_empty_list_is_off():
    assert not Remotes([])
    assert Remotes(["192.0.2.1"])


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "192.0.2.0/24, se.Example.org, .cern.ch, [2001:db8::1]",
            ("192.0.2.0/24", "se.example.org", ".cern.ch", "2001:db8::1"),
        ),
        ("", ()),
    ],
)
def test_the_setting_parses(text, expected, tmp_path):
    config = load(environ={"PAI_TPC_REMOTES": text, "PAI_PREFIX": str(tmp_path)}, prepare=False)
    assert config.tpc_remotes == expected


@pytest.mark.parametrize("text", ["http://se.example.org", "se example.org", "192.0.2.0/33", "-bad-.org"])
def test_a_bad_entry_is_named(text, tmp_path):
    with pytest.raises(ConfigError, match="PAI_TPC_REMOTES"):
        load(environ={"PAI_TPC_REMOTES": text, "PAI_PREFIX": str(tmp_path)}, prepare=False)


@pytest.mark.parametrize(
    "text, url",
    [
        ("http://h:8080/a/b?x=1", Url("http", "h", 8080, "/a/b?x=1")),
        ("HTTPS://H", Url("https", "h", 443, "/")),
        ("http://[2001:db8::1]/f", Url("http", "2001:db8::1", 80, "/f")),
    ],
)
def test_urls(text, url):
    assert parse_url(text) == url


@pytest.mark.parametrize("text", ["ftp://h/f", "http:///f", "http://u:p@h/f", "http://h:0x/f", "http://h/a b"])
def test_bad_urls(text):
    with pytest.raises(ValueError):
        parse_url(text)


def test_a_redirect_to_another_origin_drops_credentials():
    headers = {"Authorization": "Bearer t", "Cookie": "c", "X-Other": "kept"}
    here = parse_url("https://se.example.org/f")
    same, kept = redirected(here, "/g", headers)
    assert same == parse_url("https://se.example.org/g") and kept == headers
    for location in ("https://pool.example.org/f", "http://se.example.org/f", "https://se.example.org:8443/f"):
        _, dropped = redirected(here, location, headers)
        assert dropped == {"X-Other": "kept"}, location
    with pytest.raises(RemoteFailed):
        redirected(here, "ftp://se.example.org/f", headers)
