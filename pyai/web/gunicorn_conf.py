"""Kept for gunicorn.conf.py files written before pyai 0.25 (``from pyai.web.gunicorn_conf import *``):
the settings live in ``pyai.server.gunicorn_conf``."""

from pyai.server.gunicorn_conf import *  # noqa: F401,F403
