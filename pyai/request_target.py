"""The request target: the decoded path, and the id it names.

Every path of the data plane is ``/<id>``, read from the raw request URI so an
encoded ``/`` can never split or escape an id.  The Tape API reads the paths of
its bodies the same way (``pyai.tape.bodies``), so this sits below both
``pyai.web`` and ``pyai.tape``.
"""

from urllib.parse import unquote

from pyai.errors import BadRequest, NotFound


def request_path(environ):
    """The decoded path, as Flask's ``request.path`` gives it (WSGI hands it over as latin-1)."""
    return environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8", "replace")


def id_from_uri(environ, nested=False):
    """The id: the one path segment of the raw URI, percent-decoded after splitting.

    Splitting the raw URI keeps an encoded ``/`` inside the id (where it is
    refused) instead of letting it make a second segment.  The result must
    still name the path that routing and authentication saw (PATH_INFO): a
    target they read differently (a fragment, an odd absolute form) is 400.

    ``nested`` (``namespace = paths``): the id is every segment, each decoded
    alone and joined with ``/`` (an encoded ``/`` in one is 400); a trailing
    ``/`` (a collection's URL) is kept, for the caller to see.
    """
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw is None:  # a server that only gives the decoded path: '/' splits already
        segment = environ.get("PATH_INFO", "")[1:]
    else:
        if "#" in raw:
            raise BadRequest("a request target cannot hold a fragment ('#')", detail="fragment in request target")
        path = raw.split("?", 1)[0]
        if "://" in path:  # absolute-form request target
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        segment = path[1:]
    if "/" in segment and not nested:
        raise NotFound("the archive has no nested paths: a URL is /<id>", detail="path has extra segments")
    # undecodable bytes become U+FFFD, which no id contains: a 400, not a 500
    if "%" not in segment:
        ident = segment
    elif nested:
        ident = path_id(segment)
    else:
        ident = unquote(segment, errors="replace")
    if raw is not None and "/" + ident != request_path(environ):
        raise BadRequest("the request target is ambiguous", detail="target does not match its path")
    return ident


def path_id(raw):
    """The id of a raw path without its leading ``/`` (``namespace = paths``): each segment
    percent-decoded alone, joined with ``/``; 400 for an encoded ``/`` inside a segment."""
    parts = [unquote(part, errors="replace") for part in raw.split("/")]
    if any("/" in part for part in parts):
        raise BadRequest("a path segment cannot hold an encoded '/'", detail="encoded slash in path")
    return "/".join(parts)
