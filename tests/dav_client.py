"""Small WebDAV client steps the tests of ``namespace = paths`` share: any method on a URL, a PUT
that must be stored (201)."""

import requests


def dav(method, url, **kwargs):
    """``method`` on ``url`` with requests (a 30 s timeout unless given)."""
    kwargs.setdefault("timeout", 30)
    return requests.request(method, url, **kwargs)


def put(srv, path, data):
    """PUT ``data`` at ``path`` of ``srv``, which must answer 201."""
    resp = requests.put(srv.url + path, data=data, timeout=30)
    assert resp.status_code == 201, resp.text
    return resp
