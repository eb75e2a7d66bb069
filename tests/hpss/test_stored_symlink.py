"""On HPSS, as on posix, a symlink under an id's path is no stored file: GET, HEAD and POST
answer 404 instead of following it to another file (here, another id's, inside the root)."""

import secrets

import requests


def test_a_symlink_under_an_id_is_not_served(fresh_hpss):
    srv = fresh_hpss.start("links")
    stored, planted = (str(secrets.randbits(40) | (1 << 41)) for _ in range(2))
    assert requests.put(srv.id_url(stored), data=b"another id's bytes", timeout=30).status_code == 201
    link = srv.stored_path(planted)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(srv.stored_path(stored))
    get = requests.get(srv.id_url(planted), timeout=30)
    assert get.status_code == 404 and b"another id's bytes" not in get.content
    head = requests.head(srv.id_url(planted), timeout=30)
    assert head.status_code == 404 and head.headers["X-Pacifica-File"] == "File Not Found"
    assert requests.post(srv.id_url(planted), timeout=30).status_code == 404
    assert requests.get(srv.id_url(stored), timeout=30).content == b"another id's bytes"
