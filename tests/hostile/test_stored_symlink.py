"""A symlink under an id's path is not a stored file: GET and HEAD answer 404.

Someone who can write the prefix (or a PATCH that once let one in) plants
``<prefix>/<id>`` as a symlink to a file outside; the service must not follow
it and serve that file.
"""

import os
import secrets

import requests
from server import assert_error

from .corpus import LEGIT


def test_symlink_under_an_id_is_not_served(arena):
    ident = f"planted-{secrets.token_hex(4)}"
    link = arena.prefix / ident
    link.symlink_to(arena.canary)
    arena.touched()  # forget what earlier tests did
    try:
        get = requests.get(arena.server.id_url(ident), timeout=10)
        assert_error(get, 404, arena.prefix)
        assert arena.canary_bytes not in get.content
        head = requests.head(arena.server.id_url(ident), timeout=10)
        assert head.status_code == 404
        assert head.headers["X-Pacifica-File"] == "File Not Found"
        post = requests.post(arena.server.id_url(ident), timeout=10)
        assert post.status_code == 404, post.text
    finally:
        link.unlink()
    assert arena.touched() == [], "the canary was opened through the link"
    assert arena.healthy()


def test_symlink_to_a_file_in_the_prefix_is_not_served(arena):
    """Even a symlink that stays in the prefix is not a stored file (no link is ever one)."""
    ident = f"alias-{secrets.token_hex(4)}"
    link = arena.prefix / ident
    link.symlink_to(arena.prefix / LEGIT)
    try:
        assert requests.get(arena.server.id_url(ident), timeout=10).status_code == 404
        assert requests.head(arena.server.id_url(ident), timeout=10).status_code == 404
    finally:
        link.unlink()
    assert os.path.isfile(arena.prefix / LEGIT)
