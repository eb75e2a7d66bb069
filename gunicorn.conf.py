# gunicorn settings for pyai: `gunicorn -c gunicorn.conf.py wsgi:app`
# The settings and their reasons live in pyai/server/gunicorn_conf.py; set local
# overrides below this import (any gunicorn setting, e.g. `workers = 8`).
from pyai.server.gunicorn_conf import *  # noqa: F401,F403
