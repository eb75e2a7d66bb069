"""A real nginx running deploy/nginx/pyai.conf in front of a real pyai, on loopback ports.

The shipped file is included as it is, except for the lines that name this machine:
the listen port, the upstream's address and the log paths.  Each of those must be
found exactly once, so a reshaped file fails here instead of being tested half.
A subclass runs another shipped file (``conf``) with its own such lines (``machine_lines``)
and its own test of being up (``ready``): tests/deploy/x509.py's, over TLS.
"""

import os
from pathlib import Path

from harness import Spawned, free_port, root_status

from deploy.tools import require_tool
from deploy.unit import NGINX_CONF

START_TIMEOUT = 30.0

# The shipped file's machine-specific lines -> their rendering here.
LISTEN = "    listen 80;\n"
UPSTREAM = "    server 127.0.0.1:8080;"
ACCESS_LOG = "    access_log /var/log/nginx/pyai.access.log;\n"
ERROR_LOG = "    error_log /var/log/nginx/pyai.error.log warn;\n"

# The nginx main configuration around it: private paths, nothing else.
MAIN_CONF = """\
{user}
daemon off;
master_process on;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-main-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {work}/client-body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    include {work}/pyai.conf;
}}
"""


def render(text, lines, name):
    """The shipped file ``text`` (``name``) with each of its machine-specific ``lines`` (line: rendering)
    rendered for this machine."""
    for line, rendered in lines.items():
        assert text.count(line) == 1, f"{name} no longer has exactly one {line.strip()!r}"
        text = text.replace(line, rendered)
    return text


class Nginx(Spawned):
    """nginx in the foreground (its own process group), configured under ``work``."""

    name = "nginx"
    conf = NGINX_CONF  # the shipped file run

    def __init__(self, work, upstream_port, edit=None):
        self.work = Path(work)
        self.edit = edit  # a change to the rendered file: the tests' control experiments only
        self.work.mkdir(parents=True, exist_ok=True)
        super().__init__(self.work / "nginx.out", free_port())
        self.upstream_port = upstream_port

    def machine_lines(self):
        """The shipped file's lines that name a machine -> their rendering here: listening on
        127.0.0.1:``port``, proxying to ``upstream_port``, logging under ``work``."""
        return {
            LISTEN: f"    listen 127.0.0.1:{self.port};\n",
            UPSTREAM: f"    server 127.0.0.1:{self.upstream_port};",
            ACCESS_LOG: f"    access_log {self.work}/access.log;\n",
            ERROR_LOG: f"    error_log {self.work}/error.log info;\n",
        }

    def ready(self):
        """True once nginx answers (pyai's health check through it), else what it saw."""
        return root_status(self.port) == 200 or "GET / not yet 200"

    def start(self):
        binary = require_tool("nginx", "nginx-light")
        text = render(self.conf.read_text(), self.machine_lines(), f"deploy/nginx/{self.conf.name}")
        (self.work / "pyai.conf").write_text(self.edit(text) if self.edit else text)
        conf = self.work / "nginx.conf"
        # as root, nginx's workers would become nobody and could not read the private work directory
        conf.write_text(MAIN_CONF.format(user="user root;" if os.geteuid() == 0 else "", work=self.work))
        self.spawn([binary, "-p", str(self.work), "-e", str(self.work / "nginx-main-error.log"), "-c", str(conf)])
        self.wait_ready(self.ready, START_TIMEOUT)
        return self

    def error_log(self):
        path = self.work / "error.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def buffered(self):
        """Bytes nginx holds in its own temporary files of request bodies (open, already unlinked)."""
        where = str(self.work / "client-body")
        total = 0
        for pid in self.worker_pids():
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(where):
                        total += os.stat(f"/proc/{pid}/fd/{fd}").st_size
                except FileNotFoundError:
                    pass  # closed meanwhile
        return total
