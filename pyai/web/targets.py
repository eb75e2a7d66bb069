"""The request target as the data plane reads it: the path, the id (``pyai.request_target``,
shared with the Tape API) and the query."""

from urllib.parse import parse_qsl

from pyai.request_target import id_from_uri, request_path

__all__ = ["id_from_uri", "query_value", "request_path"]


def query_value(environ, name):
    """The first value of a query parameter, or None (no query string: no parsing)."""
    query = environ.get("QUERY_STRING")
    if not query:
        return None
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == name:
            return value
    return None
