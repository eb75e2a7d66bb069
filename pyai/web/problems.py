"""RFC 7807 problem documents: the error answers of the Tape REST API's routes.

The failure is classified exactly as for the Pacifica routes (``error_answer``:
the same statuses, messages and headers, never a traceback or a server path);
only the document differs: ``{"type", "title", "status", "detail"}`` as
``application/problem+json``.
"""

import json

from werkzeug.exceptions import HTTPException

from pyai.web.answers import REASONS, error_answer

CONTENT_TYPE = "application/problem+json"


def problem_answer(exc, method, path, storage=None):
    """The answer to a Tape API request that failed with ``exc``."""
    if isinstance(exc, HTTPException) and exc.code is not None:  # Flask's own 404 and 405
        headers = {name: value for name, value in exc.get_headers() if name.lower() == "allow"}
        return problem(exc.code, exc.description or exc.name, headers)
    status, headers, body = error_answer(exc, method, path, storage)
    message = json.loads(b"".join(body))["message"]
    headers = {name: value for name, value in headers.items() if name not in ("Content-Type", "Content-Length")}
    return problem(status, message, headers)


def problem(status, detail, headers=None):
    """``(status, headers, body)`` of one problem document."""
    document = {"type": "about:blank", "title": REASONS.get(status, "Error"), "status": status, "detail": detail}
    body = json.dumps(document).encode()
    headers = dict(headers or {})
    headers["Content-Type"] = CONTENT_TYPE
    headers["Content-Length"] = str(len(body))
    return status, headers, [body]
