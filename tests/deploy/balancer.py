"""Three pyai instances of one archive behind the real HAProxy, on loopback ports.

``HAProxy`` runs the shipped ``deploy/haproxy/haproxy.cfg`` with only its addresses,
ports and paths changed, and reads its runtime API (``show stat``) so a test sees
what HAProxy thinks of each instance.  ``Cluster`` is the deployment the config is
written for: real gunicorn instances on ONE prefix, one MariaDB stage store
(``[tape] store``) shared by all, HAProxy in front.  ``StageStores`` gives each cluster
a fresh schema on the run's private MariaDB.
"""

import csv
import io
import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from harness import ROOT, Spawned, children, fd_targets, free_port
from server import wait_until

CONFIG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
BACKEND = "pyai"
NAMES = ("pyai1", "pyai2", "pyai3")
SHIPPED_PORTS = (8081, 8082, 8083)  # the server lines of the shipped file
START_TIMEOUT = 30.0
INSTALL_HINT = "the deploy tests need haproxy: apt-get install haproxy (`make test` does it as root)"


def render(port, server_ports, socket_path):
    """The shipped configuration with our frontend port, instance ports and stats socket."""
    text = CONFIG.read_text()
    swaps = {"bind *:8000": f"bind 127.0.0.1:{port}"}
    swaps["stats socket /run/haproxy/pyai-admin.sock"] = f"stats socket {socket_path}"
    for name, shipped, ours in zip(NAMES, SHIPPED_PORTS, server_ports):
        swaps[f"server {name} 127.0.0.1:{shipped}"] = f"server {name} 127.0.0.1:{ours}"
    for old, new in swaps.items():
        assert text.count(old) == 1, f"{CONFIG} has not exactly one {old!r}: the test renders it by that line"
        text = text.replace(old, new)
    if os.geteuid() != 0:  # only root may switch to the haproxy user
        text = re.sub(r"(?m)^\s*(user|group) haproxy\s*$\n", "", text)
    return text


def haproxy_program():
    return shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy",) if os.access(p, os.X_OK)), None)


class HAProxy(Spawned):
    """haproxy -db (in the foreground) over the rendered configuration."""

    name = "haproxy"

    def __init__(self, workdir, server_ports):
        self.program = haproxy_program()
        if self.program is None:
            raise RuntimeError(INSTALL_HINT)
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir / "haproxy.log", free_port())
        self.socket_path = workdir / "admin.sock"
        self.config_path = workdir / "haproxy.cfg"
        self.config_path.write_text(render(self.port, server_ports, self.socket_path))

    def start(self):
        check = subprocess.run(
            [self.program, "-c", "-f", str(self.config_path)], capture_output=True, text=True, timeout=30
        )
        assert check.returncode == 0, f"haproxy -c rejects the rendered {CONFIG}:\n{check.stdout}{check.stderr}"
        self.spawn([self.program, "-db", "-f", str(self.config_path)])
        self.wait_ready(self._all_up, START_TIMEOUT)
        return self

    def _all_up(self):
        states = self.states()
        return True if all(states.get(name) == "UP" for name in NAMES) else f"servers {states}"

    def command(self, line):
        """One command of the runtime API; its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while True:
                data = sock.recv(65536)
                if not data:
                    return b"".join(chunks).decode()
                chunks.append(data)

    def stats(self):
        """``show stat`` of the backend's servers: {name: row}."""
        text = self.command("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {row["svname"]: row for row in rows if row["pxname"] == BACKEND and row["svname"] in NAMES}

    def states(self):
        """{name: status}: "UP", "DOWN", "MAINT", "UP 1/2" (failing), "DOWN 1/2" (recovering)..."""
        return {name: row["status"] for name, row in self.stats().items()}

    def wait_state(self, name, wanted, timeout=15.0):
        seen = wait_until(lambda: self.states().get(name) == wanted, timeout=timeout, interval=0.05)
        assert seen, f"HAProxy has {name} {self.states().get(name)}, not {wanted}, after {timeout}s:\n{self.log()}"

    def set_state(self, name, state):
        """``ready``, ``drain`` or ``maint``, as an operator would."""
        answer = self.command(f"set server {BACKEND}/{name} state {state}")
        assert answer.strip() == "", answer


class StageStores:
    """Fresh schemas on one private MariaDB, each a `[tape] store` URL."""

    def __init__(self, db):
        self.db = db
        self.count = 0

    def new(self):
        self.count += 1
        return self.db.tape_store(f"stage{self.count}")


class Cluster:
    """Three instances on ``prefix`` with one stage store, HAProxy in front (``url``)."""

    def __init__(self, pool, workdir, prefix, store_url, **settings):
        self.pool = pool
        self.prefix = str(prefix)
        # Every instance runs with the same settings, as the deployment prescribes; the
        # access log (gunicorn's, to the server log) says which instance served what.
        self.settings = {
            "PAI_PREFIX": self.prefix,
            "PAI_TAPE_STORE": store_url,
            "PAI_WORKERS": "2",
            "PAI_ACCESS_LOG": "-",
            **settings,
        }
        self.instances = [pool.start(name, prefix=self.prefix, **self.settings) for name in NAMES]
        self.haproxy = HAProxy(Path(workdir) / "haproxy", [srv.port for srv in self.instances])
        self.haproxy.start()

    @property
    def url(self):
        return self.haproxy.url

    def id_url(self, ident):
        return f"{self.url}/{ident}"

    def kill(self, index):
        """SIGKILL the instance's whole process group (master and workers), as a crash."""
        srv = self.instances[index]
        os.killpg(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait(10)
        srv.stop()

    def restart(self, index):
        """Start the instance again on its port with the same settings (after it has exited)."""
        old = self.instances[index]
        assert old.proc.poll() is not None, "restart() of a running instance"
        old.stop()
        self.instances[index] = self.pool.start(NAMES[index], port=old.port, prefix=self.prefix, **self.settings)
        return self.instances[index]

    def stop(self):
        self.haproxy.stop()


def open_files(srv, part):
    """The files whose path has ``part`` that the instance's processes hold open."""
    return [target for _, target in fd_targets([srv.proc.pid, *children(srv.proc.pid)]) if part in target]


def open_temp_files(srv):
    """The temporary upload files the instance holds open: its uploads in flight."""
    return set(open_files(srv, "/.pyai-tmp-"))
