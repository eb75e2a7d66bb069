"""The root of the suite: tests/ on sys.path (the shared modules: server, harness, emulator...)
and the fixture plugins every folder uses, one job each:

- ``fixtures.flavors``: the backend and I/O path a test runs on (``flavor``, ``impl``, ``backend``);
- ``fixtures.ids``: fresh ids (``uid``, ``int_id``);
- ``fixtures.servers``: real servers (``server_pool``, ``server``, ``make_server``, ``fresh_server``,
  ``pool``, ``fresh_hpss``, ``tape``);
- ``fixtures.mariadb``: the run's MariaDB (``mariadb``);
- ``fixtures.issuer``: a WLCG token issuer over https (``issuer``, ``make_issuer``, ``module_issuer``).

A folder's own fixtures are in its conftest.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

pytest_plugins = [
    "fixtures.flavors",
    "fixtures.ids",
    "fixtures.servers",
    "fixtures.mariadb",
    "fixtures.issuer",
    "fixtures.gfal",
]
