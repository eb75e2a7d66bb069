"""The request target as the data plane reads it: the path, the id (``pyai.request_target``,
shared with the Tape API) and the query."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional
from urllib.parse import parse_qsl

from pyai.request_target import id_from_uri, path_id, request_path

if TYPE_CHECKING:
    from wsgiref.types import WSGIEnvironment

__all__ = ["id_from_uri", "path_id", "query_value", "request_path"]


def query_value(environ: WSGIEnvironment, name: str) -> Optional[str]:
    """The first value of a query parameter, or None (no query string: no parsing)."""
    query = environ.get("QUERY_STRING")
    if not query:
        return None
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == name:
            return value
    return None
