"""The processes the tests and the benchmarks start, and what /proc says about them.

One place for the plumbing both suites need: a free loopback port, a command
started in its own process group that dies with us, "ready" once it answers
(and, for gunicorn, once it has logged that it listens on our port), a stop
that takes the whole group down, and readers of /proc (child pids, CPU
seconds, memory, descriptors).  ``tests/server.py`` and ``bench/benchlib.py``
build their services on ``Spawned``; ``tests/faults/procs.py`` adds the
connection-level questions the fault tests ask.
"""

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
# environment variables of the service that must never leak in from the caller
_SCRUB_PREFIXES = ("PAI_", "PYAI_")
_SCRUB_NAMES = ("ARCHIVEINTERFACE_CONFIG",)


# --------------------------------------------------------------------------- starting


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def die_with_parent():
    """In the child: get SIGTERM when the starting process dies, so no service outlives a killed run."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def service_env(home, **settings):
    """os.environ without any PAI_*/PYAI_* setting, plus ``settings`` (None = unset)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES) and k not in _SCRUB_NAMES}
    env["HOME"] = str(home)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    # No load balancer watches a test's instance: stop at once (the drain's own tests set it).
    env["PAI_DRAIN_DELAY"] = "0"
    for key, value in settings.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


def gunicorn_command(port=None, host="127.0.0.1"):
    """pyai under gunicorn with the repository's gunicorn.conf.py; bound to ``host:port`` if given (else PAI_BIND)."""
    bind = ["--bind", f"{host}:{port}"] if port is not None else []
    return [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), *bind, "wsgi:app"]


def gunicorn_listening(log, port):
    """Whether gunicorn's log says it listens on ``port`` (on loopback or on every address)."""
    return any(f"Listening at: http://{host}:{port} " in log for host in ("127.0.0.1", "0.0.0.0", "[::]"))


def root_status(port, timeout=2.0):
    """The status of GET / on 127.0.0.1:``port`` (OSError when nothing answers)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


class Spawned:
    """A command run in its own session (process group), its output in ``log_path``.

    ``proc`` is the ``subprocess.Popen``: callers signal it, wait for it and read
    its pid directly.  ``stop()`` ends the whole group, workers included.
    """

    name = "service"
    grace = 5.0  # seconds stop() gives the group to exit after SIGTERM

    def __init__(self, log_path, port):
        self.log_path = Path(log_path)
        self.port = port
        self.proc = None
        self._log = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def spawn(self, command, env=None, cwd=None):
        exe = command[0]
        if os.sep in exe and not os.path.exists(exe):
            raise RuntimeError(f"{exe} does not exist (is the package installed: pip install -e .?)")
        self._log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
            )
        except BaseException:
            self._log.close()
            self._log = None
            raise

    def wait_ready(self, ready, timeout):
        """Poll ``ready()`` -- True, or a note of what it saw -- until it is True.

        Stops the group and raises RuntimeError when the process exits first, when
        its log says another process holds the port, or when ``timeout`` passes.
        """
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} during start-up:\n{self.log()}")
            log = self.log()
            if "Connection in use" in log:
                # another process (another run on this machine) has the port: whoever answers there is not us
                self.stop()
                raise RuntimeError(f"port {self.port} in use by another process:\n{log}")
            try:
                answer = ready()
            except OSError as exc:  # refused, reset, timed out (requests' errors are OSErrors too)
                answer = repr(exc)
            if answer is True:
                return
            last = answer
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {timeout}s ({last}):\n{self.log()}")

    def stop(self, grace=None):
        """SIGTERM the process group, SIGKILL it if it lingers past ``grace``; return the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(self.grace if grace is None else grace)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def log(self, tail=None):
        """The output so far (the last ``tail`` characters of it): the whole of it by default, since a
        service logs a JSON line per request (the transfer log) besides what the tests look for."""
        try:
            text = self.log_path.read_text(errors="replace")
            return text[-tail:] if tail else text
        except OSError:
            return "<no log>"

    def worker_pids(self):
        """The children of the process (gunicorn's or nginx's workers), sorted."""
        return children(self.proc.pid) if self.proc else []

    def pids(self):
        """The process and its children; none once it has exited."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        return [self.proc.pid, *children(self.proc.pid)]


def _signal_group(pgid, signum):
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


# --------------------------------------------------------------------------- /proc


def _stat_fields(pid):
    """/proc/<pid>/stat from field 3 (state) on: the command name before it may hold spaces and parentheses."""
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rpartition(")")[2].split()


def children(pid):
    """The pids whose parent is ``pid``, sorted."""
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if int(_stat_fields(entry)[1]) == pid:
                kids.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue  # it exited while we looked
    return sorted(kids)


def cpu_seconds(pid, with_reaped_children=False):
    """Seconds of CPU (user + system) the process has used so far; with those of its reaped children if asked."""
    fields = _stat_fields(pid)
    last = 15 if with_reaped_children else 13  # utime, stime (fields 14, 15), cutime, cstime (16, 17)
    return sum(int(x) for x in fields[11:last]) / CLK_TCK


def status_value(pid, field):
    """The number of ``field`` in /proc/<pid>/status (``VmRSS`` in KiB, ``Threads``...)."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(f"no {field} for {pid}")


def rss_kib(pid):
    return status_value(pid, "VmRSS")


def hwm_kib(pid):
    """The peak resident set size (VmHWM) of ``pid`` in KiB."""
    return status_value(pid, "VmHWM")


def reset_hwm(pid):
    """Reset the peak RSS (VmHWM) of ``pid`` to its current RSS; False if the kernel would not."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as handle:
            handle.write("5\n")
        return True
    except OSError:
        return False


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_targets(pids):
    """(pid, what the descriptor links to) for every descriptor of ``pids``: a path, ``socket:[inode]``...
    A process or descriptor that goes while it is read is passed over."""
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except FileNotFoundError:
            continue
        for fd in fds:
            try:
                yield pid, os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
