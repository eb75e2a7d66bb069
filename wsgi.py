"""WSGI entry point: `gunicorn -c gunicorn.conf.py wsgi:app` (configured by PAI_* / ARCHIVEINTERFACE_CONFIG)."""

from pyai.web.app import create_app

app = create_app()
