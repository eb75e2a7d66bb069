"""The OpenAPI description of the service: ``openapi.yaml`` (package data), as JSON.

Read and converted once, when the app is created; ``GET /openapi.json`` then
sends the same bytes every time.  The id ``openapi.json`` is reserved for it, and
``healthz``, ``readyz`` and ``metrics`` for the operator's endpoints.
The Tape REST API's paths (``RESERVED_PREFIXES``) are reserved as well, and no
id could name them anyway: an id is one segment and never starts with a dot.
"""

import json
from importlib import resources

import yaml

from pyai import __version__

RESERVED_ID = "openapi.json"
# The operator's endpoints (pyai.web.ops_api): fixed paths, so these ids are reserved too.
HEALTHZ, READYZ, METRICS = "/healthz", "/readyz", "/metrics"
# The WLCG Tape REST API (pyai.web.tape_api): its discovery document, and everything under its base.
TAPE_DISCOVERY = "/.well-known/wlcg-tape-rest-api"
TAPE_API = "/api/v1"
RESERVED_PREFIXES = (TAPE_DISCOVERY, TAPE_API + "/")


def load_description() -> bytes:
    """The description as JSON bytes, with this release's version in ``info.version``."""
    text = resources.files(__package__).joinpath("openapi.yaml").read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    document["info"]["version"] = __version__
    return json.dumps(document).encode()
