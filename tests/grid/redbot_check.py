"""Run REDbot on one request and print its notes as JSON: ``redbot_check.py URL [METHOD]``.

A separate process: REDbot runs its own event loop (thor), which the test's
process must not share.  Each note is ``{"id", "level", "category", "summary"}``,
subnotes flattened after their note; a failed fetch prints ``{"error": ...}``.
"""

import json
import sys
from configparser import ConfigParser

import thor
from redbot.resource import HttpResource


def notes_of(note):
    yield {
        "id": note.__class__.__name__,
        "level": note.level.name,
        "category": note.category.name,
        "summary": note.summary,
    }
    for subnote in note.subnotes or ():
        yield from notes_of(subnote)


def main():
    url = sys.argv[1]
    method = sys.argv[2] if len(sys.argv) > 2 else "GET"
    parser = ConfigParser()
    parser.read_dict({"redbot": {"enable_local_access": "True"}})  # the service is on loopback
    resource = HttpResource(parser["redbot"])
    resource.set_request(url, method=method)

    @thor.events.on(resource)
    def check_done():
        thor.stop()

    resource.check()
    thor.run()
    if resource.fetch_error is not None:
        print(json.dumps({"error": str(resource.fetch_error.desc)}))
        return 1
    notes = [n for note in resource.response.notes for n in notes_of(note)]
    print(json.dumps({"status": resource.response.status_code, "notes": notes}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
