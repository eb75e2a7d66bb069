"""``python -m pyai``: the same as ``pacifica-archiveinterface``."""

import sys

from pyai.admin.cli import serve_main

sys.exit(serve_main())
