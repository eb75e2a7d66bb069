"""The server around the app: the only package that knows gunicorn.

gunicorn manages the processes (arbiter, signals, configuration,
``gunicorn.conf.py``); this package gives it pyai's worker (``worker``), the
connections and request heads it serves (``connection``), the settings and
hooks (``gunicorn_conf``), the master's drain and sweeps (``lifecycle``) and
pyai's own command line's application (``serve``).  The app in ``pyai.web``
sees none of it: what the two agree on is ``pyai.serving``.
"""
