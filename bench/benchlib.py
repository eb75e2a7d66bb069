"""Machinery of the benchmark suite: settings, services, load generators, results.

Everything here drives real processes: pyai under gunicorn (both I/O paths), a
private nginx on the same files, ``dd`` for the raw storage speed, ``curl`` for
large transfers, ``wrk`` and ``hey`` for many small requests.  Figures are
collected in ``RESULTS`` and printed as one table by ``conftest.py``.  Starting,
readying and stopping the services, and reading /proc, is ``tests/harness.py``'s.
"""

import http.client
import itertools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

# tests/harness.py: bench/conftest.py puts tests/ on sys.path
from harness import Spawned, cpu_seconds, free_port, gunicorn_command, hwm_kib, reset_hwm, root_status, service_env

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LUA = BENCH / "lua"
RESULTS_DIR = BENCH / "results"
MiB = 1 << 20
GiB = 1 << 30


# --------------------------------------------------------------------------- settings


def _flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def parse_size(text):
    """``1G``, ``64M``, ``512K`` or a byte count."""
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    factor = {"K": 1 << 10, "M": MiB, "G": GiB, "T": 1 << 40}.get(text[-1:], 1)
    return int(float(text.rstrip("KMGT")) * factor)


class Settings:
    def __init__(self):
        self.quick = _flag("BENCH_QUICK")
        q = self.quick
        self.large_size = parse_size(os.environ.get("BENCH_LARGE_SIZE") or ("64M" if q else "1G"))
        self.large_rounds = int(os.environ.get("BENCH_LARGE_ROUNDS") or (1 if q else 3))
        self.small_seconds = int(os.environ.get("BENCH_SMALL_SECONDS") or (2 if q else 5))
        # five: the small rows' spread over consecutive runs (the "±" column) is one of the targets
        self.small_rounds = int(os.environ.get("BENCH_SMALL_ROUNDS") or (1 if q else 5))
        self.mixed_rounds = int(os.environ.get("BENCH_MIXED_ROUNDS") or (1 if q else 3))
        self.range_requests = int(os.environ.get("BENCH_RANGE_REQUESTS") or (10 if q else 30))
        self.small_files = 50 if q else 200  # distinct ids the small GETs cycle through
        self.connections = int(os.environ.get("BENCH_CONNECTIONS") or 8)
        self.workers = int(os.environ.get("BENCH_WORKERS") or os.cpu_count() or 2)
        self.threads = int(os.environ.get("BENCH_THREADS") or 16)
        self.keep = _flag("BENCH_KEEP")

    def as_dict(self):
        return dict(vars(self))


SETTINGS = Settings()


# --------------------------------------------------------------------------- machine


def fs_type(path):
    """The file system type of the mount holding ``path`` (longest mount point match)."""
    real = os.path.realpath(path)
    best, kind = "", "unknown"
    with open("/proc/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) < 3:
                continue
            mnt = fields[1].replace("\\040", " ")
            if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, kind = mnt, fields[2]
    return kind


MEMORY_FS = ("tmpfs", "ramfs")


def pick_disk_dir():
    """A directory on a real disk (never tmpfs): $BENCH_DISK_DIR, /var/tmp, else bench/.work."""
    wanted = os.environ.get("BENCH_DISK_DIR")
    candidates = [wanted] if wanted else ["/var/tmp", str(BENCH / ".work")]
    for cand in candidates:
        try:
            os.makedirs(cand, exist_ok=True)
        except OSError:
            continue
        if os.access(cand, os.W_OK) and fs_type(cand) not in MEMORY_FS:
            return tempfile.mkdtemp(prefix="pyai-bench-", dir=cand)
    raise RuntimeError(f"no disk-backed directory among {candidates} (all tmpfs or not writable)")


def pick_tmpfs_dir():
    wanted = os.environ.get("BENCH_TMPFS_DIR", "/dev/shm")
    if os.path.isdir(wanted) and os.access(wanted, os.W_OK) and fs_type(wanted) in MEMORY_FS:
        return tempfile.mkdtemp(prefix="pyai-bench-", dir=wanted)
    return None


def drop_caches():
    """Write back and drop the page cache; True if it was dropped (needs root)."""
    subprocess.run(["sync"], check=False)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def which(tool):
    found = shutil.which(tool)
    if not found:
        for d in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
            if os.access(os.path.join(d, tool), os.X_OK):
                return os.path.join(d, tool)
    return found


def _first_line(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (r.stdout + r.stderr).strip()
    return text.splitlines()[0] if text else None


def machine_info():
    mem = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import gunicorn

    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "memory_bytes": mem,
        "memory_gib": round(mem / GiB, 1) if mem else None,
        "kernel": platform.release(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "gunicorn": gunicorn.__version__,
        "tools": {
            "nginx": _first_line([which("nginx") or "nginx", "-v"]),
            "wrk": _first_line(["wrk", "-v"]),
            "curl": _first_line(["curl", "--version"]),
            "hey": which("hey"),
        },
    }


# --------------------------------------------------------------------------- processes


def _cpu_or_zero(pid):
    """utime+stime of ``pid`` plus those of its reaped children; 0 once it is gone."""
    try:
        return cpu_seconds(pid, with_reaped_children=True)
    except OSError:
        return 0.0


def _hwm_or_zero(pid):
    try:
        return hwm_kib(pid)
    except (OSError, LookupError):
        return 0


class Service(Spawned):
    """A server process group we started: pyai under gunicorn, or nginx."""

    kind = "?"
    grace = 10.0

    def __init__(self, name, workdir, prefix):
        self.name = name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.prefix = Path(prefix)
        super().__init__(self.workdir / f"{name}.log", free_port())

    def _serving(self):
        status = root_status(self.port)
        if status < 500 and self._workers_ready():
            return True
        return f"GET / -> {status}"

    def _workers_ready(self):
        return len(self.worker_pids()) >= SETTINGS.workers

    def cpu(self):
        return sum(_cpu_or_zero(p) for p in self.pids())

    def reset_peak(self):
        for pid in self.worker_pids():
            reset_hwm(pid)

    def peak_rss_mib(self):
        """The largest VmHWM among the workers, in MiB."""
        return max((_hwm_or_zero(p) for p in self.worker_pids()), default=0) / 1024


class PyaiService(Service):
    kind = "pyai"

    def __init__(self, name, workdir, prefix, impl, **settings):
        super().__init__(name, workdir, prefix)
        self.impl = impl
        self.settings = {
            "PAI_BACKEND_TYPE": "posix",
            "PAI_PREFIX": str(prefix),
            "PAI_BIND": f"127.0.0.1:{self.port}",
            "PAI_WORKERS": str(SETTINGS.workers),
            "PAI_THREADS": str(SETTINGS.threads),
            "PAI_SWEEP_ON_START": "false",  # several servers share one prefix
            "PAI_LOG_LEVEL": "warning",
            "PYAI_IMPL": impl,
            **settings,
        }

    def start(self):
        home = self.workdir / f"home-{self.name}"
        home.mkdir(exist_ok=True)
        # bound by PAI_BIND, as a deployment is
        self.spawn(gunicorn_command(), env=service_env(home, **self.settings), cwd=ROOT)
        self.wait_ready(self._serving, 30.0)
        return self


NGINX_CONF = """\
{user}
daemon off;
master_process on;
worker_processes {workers};
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    client_body_temp_path {body_tmp};
    proxy_temp_path {work}/proxy-tmp;
    fastcgi_temp_path {work}/fastcgi-tmp;
    uwsgi_temp_path {work}/uwsgi-tmp;
    scgi_temp_path {work}/scgi-tmp;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{
            dav_methods PUT;
            create_full_put_path on;
            client_max_body_size 0;
        }}
    }}
}}
"""


class NginxService(Service):
    """nginx serving (GET, sendfile) and storing (DAV PUT) the same directory as pyai."""

    kind = "nginx"

    def __init__(self, name, workdir, prefix, body_tmp):
        super().__init__(name, workdir, prefix)
        self.body_tmp = Path(body_tmp)  # on the same file system as the prefix

    def start(self):
        binary = which("nginx")
        if not binary:
            raise RuntimeError("nginx is not installed (apt-get install nginx-light)")
        work = self.workdir / f"nginx-{self.name}"
        work.mkdir(exist_ok=True)
        self.body_tmp.mkdir(parents=True, exist_ok=True)
        conf = work / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                user="user root;" if os.geteuid() == 0 else "",
                workers=SETTINGS.workers,
                work=work,
                body_tmp=self.body_tmp,
                port=self.port,
                root=self.prefix,
            )
        )
        self.spawn([binary, "-p", str(work), "-e", str(work / "nginx-error.log"), "-c", str(conf)])
        self.wait_ready(self._serving, 30.0)
        return self


# The original (pacifica-archiveinterface 0.4.2, CherryPy) under uWSGI: the reference column "orig".
ORIGINAL_VERSION = "0.4.2"
ORIGINAL_VENV = Path(os.environ.get("BENCH_ORIGINAL_VENV") or BENCH / ".original-venv")
_ORIGINAL_STAMP = ORIGINAL_VENV / f".installed-{ORIGINAL_VERSION}"
# the original's WSGI module reads this CherryPy config; MethodDispatcher maps the HTTP methods to
# ArchiveInterfaceGenerator.GET/PUT/HEAD, as the original's own server.conf does; no access log (nginx: off)
ORIGINAL_CPCONFIG = """\
[/]
request.dispatch: cherrypy.dispatch.MethodDispatcher()
log.screen: False
log.access_file: ''
log.error_file: ''
"""


def original_available(install):
    """(True, note) when the original is installed in ORIGINAL_VENV, else (False, why not).

    With ``install`` it is installed first (a venv, then pip install of the release and uwsgi,
    which pip compiles: ~2 minutes here); a failed install leaves no venv behind.
    """
    uwsgi = ORIGINAL_VENV / "bin" / "uwsgi"
    dist = f"pacifica_archiveinterface-{ORIGINAL_VERSION}.dist-info"
    if uwsgi.is_file() and any(ORIGINAL_VENV.glob(f"lib/python3*/site-packages/{dist}")):
        how = _ORIGINAL_STAMP.read_text().strip() if _ORIGINAL_STAMP.is_file() else "installed by hand"
        return True, f"in {ORIGINAL_VENV} ({how})"
    if not install:
        return False, f"not installed (QUICK mode does not install it; a full `make bench` does, in {ORIGINAL_VENV})"
    started = time.monotonic()
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(ORIGINAL_VENV)], check=True,
                       capture_output=True, text=True, timeout=300)  # fmt: skip
        r = subprocess.run(
            [str(ORIGINAL_VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
             f"pacifica-archiveinterface=={ORIGINAL_VERSION}", "uwsgi"],
            capture_output=True, text=True, timeout=1200,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        shutil.rmtree(ORIGINAL_VENV, ignore_errors=True)
        return False, f"installing it failed: {exc}"
    if r.returncode != 0 or not uwsgi.is_file():
        shutil.rmtree(ORIGINAL_VENV, ignore_errors=True)
        tail = (r.stderr.strip().splitlines() or ["?"])[-1][:200]
        return False, f"pip install pacifica-archiveinterface=={ORIGINAL_VERSION} uwsgi failed (no network?): {tail}"
    took = time.monotonic() - started
    _ORIGINAL_STAMP.write_text(f"installed in {took:.0f} s on {time.strftime('%Y-%m-%d')}\n")
    return True, f"installed now in {ORIGINAL_VENV} ({took:.0f} s)"


class OriginalService(Service):
    """pacifica-archiveinterface 0.4.2's WSGI app (posix backend on ``prefix``) under uWSGI.

    uWSGI's own HTTP parser in the workers (``--http-socket``, like gunicorn's; no router
    process in front).  Processes, not threads: the original's posix backend keeps the
    one open file of a request in the backend object every thread of a process shares.
    uWSGI 2.0's http-socket does not keep connections alive, so every answer says
    ``Connection: close`` and the load generators reconnect for each request.
    """

    kind = "original"

    def __init__(self, name, workdir, prefix, processes):
        super().__init__(name, workdir, prefix)
        self.processes = processes
        self.settings = {"PAI_BACKEND_TYPE": "posix", "PAI_PREFIX": str(prefix)}

    def _workers_ready(self):
        return len(self.worker_pids()) >= self.processes

    def start(self):
        home = self.workdir / f"home-{self.name}"
        home.mkdir(exist_ok=True)
        cpconfig = home / "cpconfig.ini"
        cpconfig.write_text(ORIGINAL_CPCONFIG)
        env = service_env(
            home, ARCHIVEINTERFACE_CPCONFIG=cpconfig, ARCHIVEINTERFACE_CONFIG=home / "none.ini", **self.settings
        )
        cmd = [
            str(ORIGINAL_VENV / "bin" / "uwsgi"), "--master", "--http-socket", f"127.0.0.1:{self.port}",
            "--processes", str(self.processes), "--threads", "1", "--virtualenv", str(ORIGINAL_VENV),
            "--module", "pacifica.archiveinterface.wsgi:application", "--need-app", "--die-on-term",
            "--disable-logging", "--add-header", "Connection: close",
        ]  # fmt: skip
        self.spawn(cmd, env=env, cwd=self.workdir)
        self.wait_ready(self._serving, 60.0)
        return self


@contextmanager
def measure(service):
    """Server CPU seconds and worker peak RSS around a block: yields a dict filled at exit."""
    out = {"cpu_s": None, "rss_mib": None}
    if service is None:
        yield out
        return
    service.reset_peak()
    before = service.cpu()
    try:
        yield out
    finally:
        out["cpu_s"] = service.cpu() - before
        out["rss_mib"] = service.peak_rss_mib()


# --------------------------------------------------------------------------- clients

CURL_FORMAT = "%{http_code} %{size_upload} %{size_download} %{time_total}\\n"


def _curl(args, timeout):
    cmd = ["curl", "-sS", "-H", "Expect:", "-w", CURL_FORMAT.replace("\\n", "\n"), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    rows = []
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0].isdigit():
            rows.append(
                {"status": int(parts[0]), "up": float(parts[1]), "down": float(parts[2]), "seconds": float(parts[3])}
            )
    if not rows:
        rows.append({"status": 0, "up": 0.0, "down": 0.0, "seconds": 0.0, "error": r.stderr.strip()[:300]})
    return rows


def curl_put(url, path, timeout=900, extra=()):
    return _curl([*extra, "-T", str(path), "-o", "/dev/null", url], timeout)[0]


# curl -T with this header sends the file as a chunked body (no Content-Length)
CHUNKED = ("-H", "Transfer-Encoding: chunked")


def curl_get(url, timeout=900, extra=()):
    return _curl([*extra, "-o", "/dev/null", url], timeout)[0]


def curl_get_many(url, count, byte_range, timeout=300):
    """``count`` GETs of one range over one keep-alive connection (one curl process)."""
    args = ["-r", byte_range]
    for _ in range(count):
        args += ["-o", "/dev/null", url]
    return _curl(args, timeout)


def dd(args, timeout=900):
    """Run dd; return (bytes, seconds) from its own report."""
    r = subprocess.run(
        ["dd", *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, "LC_ALL": "C"}
    )
    if r.returncode != 0:
        raise RuntimeError(f"dd {' '.join(args)}: {r.stderr.strip()}")
    m = re.search(r"^(\d+) bytes.*copied, ([0-9.e+-]+) s", r.stderr, re.M)
    return int(m.group(1)), float(m.group(2))


def wrk(url, script, args, seconds, connections=None):
    """Run wrk with one of bench/lua/*.lua; return its done() report (dict)."""
    connections = connections or SETTINGS.connections
    threads = max(1, min(os.cpu_count() or 2, connections))
    cmd = [
        "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{int(seconds)}s",
        "--timeout", "10s", "-s", str(LUA / script), url, "--", *[str(a) for a in args],
    ]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    for line in r.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            rep = json.loads(line[len("BENCHJSON ") :])
            rep["rps"] = rep["requests"] / (rep["duration_us"] / 1e6) if rep["duration_us"] else 0.0
            rep["errors"] = sum(rep[k] for k in ("connect", "read", "write", "status", "timeout"))
            return rep
    raise RuntimeError(f"wrk gave no report (rc {r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")


def hey(url, method, seconds, connections=None):
    """Run hey for ``seconds``; return requests/s, status counts and errors."""
    connections = connections or SETTINGS.connections
    cmd = ["hey", "-z", f"{int(seconds)}s", "-c", str(connections), "-m", method, url]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    out = r.stdout
    m = re.search(r"Requests/sec:\s*([0-9.]+)", out)
    statuses = {int(c): int(n) for c, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)}
    err_block = out.split("Error distribution:", 1)[1] if "Error distribution:" in out else ""
    errors = sum(int(n) for n in re.findall(r"^\s*\[(\d+)\]", err_block, re.M))
    non2xx = sum(n for c, n in statuses.items() if not 200 <= c < 300)
    requests = sum(statuses.values())
    return {
        "rps": float(m.group(1)) if m else 0.0,
        "requests": requests,
        "statuses": statuses,
        "transport_errors": errors,
        "non2xx": non2xx,
        "errors": errors + non2xx,
        "error_text": err_block.strip()[:500],
    }


def durable_creates(directory, size, seconds, threads):
    """Small files/s the file system stores durably, the way pyai does, with no HTTP.

    Each thread repeats what a pyai PUT asks of the storage: create a temporary
    file, write ``size`` bytes, fsync, rename it into place, fsync the directory.
    The raw reference for small PUTs (dd says nothing about per-file costs).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    body = b"r" * size
    deadline = time.monotonic() + seconds
    counts = [0] * threads

    def loop(tid):
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            while time.monotonic() < deadline:
                n = counts[tid]
                temp, final = directory / f".tmp-{tid}-{n}", directory / f"raw-{tid}-{n}"
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                os.write(fd, body)
                os.fsync(fd)
                os.close(fd)
                os.rename(temp, final)
                os.fsync(dir_fd)
                counts[tid] = n + 1
        finally:
            os.close(dir_fd)

    started = time.monotonic()
    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.monotonic() - started
    shutil.rmtree(directory, ignore_errors=True)
    return sum(counts) / elapsed


def put_files(service, names, body):
    """PUT ``body`` under each name over one keep-alive connection; return the statuses."""
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    statuses = []
    for name in names:
        conn.request("PUT", f"/{name}", body=body, headers={"Content-Length": str(len(body))})
        resp = conn.getresponse()
        resp.read()
        statuses.append(resp.status)
    conn.close()
    return statuses


def make_source(path, size):
    """A file of ``size`` incompressible-looking bytes (a random 1 MiB block repeated)."""
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n
    return Path(path)


def unlink_quiet(path):
    try:
        os.unlink(path)
    except OSError:
        pass


_ids = itertools.count()


def new_token(tag):
    """A fresh id prefix: every PUT must use a new id (the archive is write-once)."""
    return f"{tag}{os.getpid()}x{next(_ids)}"


class LargeLoad:
    """Keeps one large GET and one large PUT running against a service until stopped."""

    def __init__(self, service, get_url, source, put_dir):
        self.service = service
        self.get_url = get_url
        self.source = source
        self.put_dir = Path(put_dir)
        self.stop_event = threading.Event()
        self.procs = {}
        self.lock = threading.Lock()
        self.done = {"GET": [], "PUT": []}
        self.threads = [threading.Thread(target=self._loop, args=(m,), daemon=True) for m in ("GET", "PUT")]

    def _loop(self, method):
        while not self.stop_event.is_set():
            ident = new_token("mixput")
            if method == "GET":
                cmd = ["curl", "-sS", "-o", "/dev/null", "-w", CURL_FORMAT.replace("\\n", "\n"), self.get_url]
            else:
                cmd = ["curl", "-sS", "-H", "Expect:", "-T", str(self.source), "-o", "/dev/null",
                       "-w", CURL_FORMAT.replace("\\n", "\n"), f"{self.service.url}/{ident}"]  # fmt: skip
            with self.lock:
                if self.stop_event.is_set():
                    return
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                self.procs[method] = proc
            out, _ = proc.communicate()
            stopped = self.stop_event.is_set()
            if method == "PUT":
                unlink_quiet(self.put_dir / ident)
            parts = out.split()
            if len(parts) == 4 and not stopped:
                self.done[method].append(
                    {
                        "status": int(parts[0]),
                        "seconds": float(parts[3]),
                        "bytes": float(parts[1] if method == "PUT" else parts[2]),
                    }  # fmt: skip
                )

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        with self.lock:
            self.stop_event.set()
            for proc in self.procs.values():
                if proc.poll() is None:
                    proc.terminate()
        for t in self.threads:
            t.join(60)

    def summary(self):
        out = {}
        for method, rows in self.done.items():
            ok = [r for r in rows if 200 <= r["status"] < 300]
            out[method] = {
                "completed": len(rows),
                "failed": len(rows) - len(ok),
                "median_MBps": statistics.median(r["bytes"] / r["seconds"] / 1e6 for r in ok if r["seconds"])
                if ok
                else None,
            }
        return out


# --------------------------------------------------------------------------- results

SCENARIOS = [
    "large PUT disk",
    "large GET disk",
    "large PUT tmpfs",
    "large PUT disk, no checksum",
    "large PUT tmpfs, no checksum",
    "large PUT chunked disk",
    "large PUT chunked tmpfs",
    "large PUT ext4j",
    "digest limit",
    "large GET tmpfs",
    "range GET 1MiB",
    "small PUT 30B",
    "small PUT 64KiB",
    "small PUT 30B tmpfs",
    "small PUT 30B ext4j",
    "small GET 30B",
    "small GET 64KiB",
    "HEAD",
    "mixed small alone",
    "mixed small during large",
]
TARGETS = ["pyai", "nginx", "pyai-python", "raw", "original"]


class Results:
    def __init__(self):
        self.samples = {}  # scenario -> target -> [sample]
        self.meta = {}  # scenario -> {"unit":..., "cache":..., "cpu_unit":...}
        self.notes = {}  # key -> a line the table's notes add (why a column or row is missing)

    def note(self, key, text):
        self.notes[key] = text

    def add(self, scenario, target, value, unit, *, errors=0, cpu_s=None, moved=None, requests=None,
            rss_mib=None, cache=None, **extra):  # fmt: skip
        sample = {"value": value, "errors": errors, "cpu_s": cpu_s, "moved_bytes": moved,
                  "requests": requests, "rss_mib": rss_mib, "cache": cache, **extra}  # fmt: skip
        if cpu_s is not None:
            if unit == "MB/s" and moved:
                sample["cpu_per"] = cpu_s / (moved / GiB)
                sample["cpu_unit"] = "s/GiB"
            elif requests:
                sample["cpu_per"] = cpu_s / requests * 1e6
                sample["cpu_unit"] = "us/req"
        self.samples.setdefault(scenario, {}).setdefault(target, []).append(sample)
        self.meta.setdefault(scenario, {})["unit"] = unit
        return sample

    def set_columns(self, scenario, **columns):
        """Show other targets in the table's columns for ``scenario``, e.g. ``pyai="hpss", nginx="posix"``."""
        self.meta.setdefault(scenario, {})["columns"] = dict(columns)

    def summary(self, scenario, target):
        rows = self.samples.get(scenario, {}).get(target)
        if not rows:
            return None
        cpus = [r["cpu_per"] for r in rows if r.get("cpu_per") is not None]
        rss = [r["rss_mib"] for r in rows if r.get("rss_mib")]
        caches = sorted({str(r["cache"]) for r in rows if r.get("cache") is not None})
        median = statistics.median(r["value"] for r in rows)
        return {
            "median": median,
            # the farthest round from the median, in percent of it: a second mode shows here
            "spread": max(abs(r["value"] - median) for r in rows) / median * 100 if median else None,
            "min": min(r["value"] for r in rows),
            "max": max(r["value"] for r in rows),
            "n": len(rows),
            "unit": self.meta[scenario]["unit"],
            "errors": sum(r["errors"] for r in rows),
            "cpu_per": statistics.median(cpus) if cpus else None,
            "cpu_unit": next((r["cpu_unit"] for r in rows if r.get("cpu_unit")), None),
            "peak_rss_mib": max(rss) if rss else None,
            "cache": "/".join(caches) if caches else None,
        }

    def to_json(self):
        out = {}
        for scenario in self.ordered():
            out[scenario] = {
                "unit": self.meta[scenario]["unit"],
                **({"columns": self.meta[scenario]["columns"]} if "columns" in self.meta[scenario] else {}),
                "targets": {
                    t: {"summary": self.summary(scenario, t), "samples": self.samples[scenario][t]}
                    for t in self.samples[scenario]
                },  # fmt: skip
            }
        return out

    def ordered(self):
        known = [s for s in SCENARIOS if s in self.samples]
        return known + [s for s in self.samples if s not in SCENARIOS]


RESULTS = Results()


def finish(benchmark, scenario, target):
    """Copy a scenario's summary into pytest-benchmark's record of the test."""
    benchmark.extra_info.update({"scenario": scenario, "target": target, **(RESULTS.summary(scenario, target) or {})})


def record_put(scenario, target, svc, url, source, stored=None, chunked=False, **extra):
    """One large PUT with curl, measured on ``svc``, added to RESULTS (an error unless
    201 with every byte, and ``stored`` -- the file's path, when given -- exists).

    ``chunked``: the body goes as ``Transfer-Encoding: chunked``; curl's upload count then
    includes the chunk framing, so the bytes moved are the stored file's (``stored`` needed).
    """
    with measure(svc) as m:
        row = curl_put(url, source, extra=CHUNKED if chunked else ())
    if chunked:
        size = stored.stat().st_size if stored is not None and stored.is_file() else 0
        ok = row["status"] == 201 and size == SETTINGS.large_size
        moved = size
    else:
        ok = row["status"] == 201 and row["up"] == SETTINGS.large_size and (stored is None or stored.is_file())
        moved = row["up"]
    RESULTS.add(
        scenario, target, moved / row["seconds"] / 1e6 if row["seconds"] else 0.0, "MB/s",
        errors=0 if ok else 1, moved=moved, **m, curl=row, **extra,
    )  # fmt: skip


def record_get(scenario, target, svc, url, **extra):
    """One large GET with curl, measured on ``svc``, added to RESULTS."""
    with measure(svc) as m:
        row = curl_get(url)
    ok = row["status"] == 200 and row["down"] == SETTINGS.large_size
    RESULTS.add(
        scenario, target, row["down"] / row["seconds"] / 1e6 if row["seconds"] else 0.0, "MB/s",
        errors=0 if ok else 1, moved=row["down"], **m, curl=row, **extra,
    )  # fmt: skip


# --------------------------------------------------------------------------- scenario bodies shared by the modules


def large_put_rounds(benchmark, scenario, target, svc, prefix, source, chunked=False):
    """SETTINGS.large_rounds PUTs of ``source`` to a new id in ``prefix`` (dd when ``svc`` is None)."""
    stored = []

    def setup():
        for path in stored:  # keep the file system as it was: one large file at a time
            unlink_quiet(path)
        stored.clear()
        os.sync()  # no earlier dirty pages written back during this round
        ident = new_token("lput")
        stored.append(prefix / ident)
        return (ident,), {}

    def run(ident):
        if svc is None:
            nbytes, seconds = dd([f"if={source}", f"of={prefix / ident}", "bs=4M", "conv=fdatasync"])
            RESULTS.add(scenario, target, nbytes / seconds / 1e6, "MB/s", moved=nbytes)
            return
        record_put(scenario, target, svc, f"{svc.url}/{ident}", source, stored=prefix / ident if chunked else None,
                   chunked=chunked)  # fmt: skip

    benchmark.pedantic(run, setup=setup, rounds=SETTINGS.large_rounds, iterations=1)
    for path in stored:
        unlink_quiet(path)
    finish(benchmark, scenario, target)


def digest_rates(source, names):
    """``{name: MB/s}``: how fast one core computes each digest (pyai's own hashers) over
    the file ``source``, read in 1 MiB pieces; only the hashing is timed, in this
    thread's CPU time (what other processes take from the core does not count)."""
    from pyai.archive import checksums

    hashers = {name: checksums.new(name) for name in names}
    spent = dict.fromkeys(names, 0.0)
    buf = bytearray(MiB)
    view = memoryview(buf)
    size = 0
    with open(source, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            size += n
            for name, hasher in hashers.items():
                started = time.thread_time()
                hasher.update(view[:n])
                spent[name] += time.thread_time() - started
    return {name: size / seconds / 1e6 for name, seconds in spent.items() if seconds}


# the large PUT rows that keep pyai's default digests: their ratio to the digest limit is noted
DIGEST_LIMITED = ("large PUT disk", "large PUT tmpfs", "large PUT chunked disk", "large PUT chunked tmpfs",
                  "large PUT ext4j")  # fmt: skip


def digest_limit_rounds(benchmark, scenario, source):
    """The ``digest limit`` reference (raw column): one core computing the slowest of the
    default digests over the large PUTs' source; a PUT keeping them can go no faster.
    Notes each default-digest large PUT's ratio to it (pyai's medians of this run)."""
    from pyai.archive import checksums

    names = checksums.parse_config_algorithms(checksums.DEFAULT_CONFIG)

    def run():
        rates = digest_rates(source, names)
        slowest = min(rates, key=rates.get)
        RESULTS.add(scenario, "raw", rates[slowest], "MB/s", algorithm=slowest, rates=rates)

    benchmark.pedantic(run, rounds=SETTINGS.large_rounds, iterations=1)
    finish(benchmark, scenario, "raw")
    limit = RESULTS.summary(scenario, "raw")["median"]
    slowest = RESULTS.samples[scenario]["raw"][-1]["algorithm"]
    ratios = []
    for put in DIGEST_LIMITED:
        summary = RESULTS.summary(put, "pyai")
        if summary is not None:
            ratios.append(f"{put.removeprefix('large PUT ')} {summary['median'] / limit:.2f}")
    RESULTS.note(
        "digest limit",
        f"digest limit (raw column) = one core computing {slowest}, the slowest of pyai's default digests"
        f" ({', '.join(names)}), over the large PUTs' source, hashing time only: {limit:.0f} MB/s"
        + (f"; pyai large PUT / digest limit: {', '.join(ratios)}." if ratios else "."),
    )


def small_rounds(benchmark, scenario, target, svc, method, size, close_ends_body=False):
    """wrk for SETTINGS.small_seconds x SETTINGS.small_rounds: PUTs of new ids, or GETs of the small files.

    ``close_ends_body``: the server ends GET bodies by closing the connection (the original
    streams them without a length), which wrk counts as a read error on every answer that is
    complete; those are left out of the errors (status, connect, write and timeout errors stay).
    """

    def run():
        with measure(svc) as m:
            if method == "PUT":
                rep = wrk(svc.url, "put.lua", [new_token("sput"), size], SETTINGS.small_seconds)
            else:
                name = "s30" if size == 30 else "s64k"
                rep = wrk(svc.url, "get.lua", [name, SETTINGS.small_files], SETTINGS.small_seconds)
        if close_ends_body and method == "GET" and rep["bytes"] >= rep["requests"] * size:
            rep["errors"] -= min(rep["read"], rep["requests"])  # one close per complete answer, no more
        RESULTS.add(
            scenario, target, rep["rps"], "req/s", errors=rep["errors"], requests=rep["requests"],
            moved=rep["requests"] * size, cache="cached" if method == "GET" else None, **m, wrk=rep,
        )  # fmt: skip

    benchmark.pedantic(run, rounds=SETTINGS.small_rounds, iterations=1)
    benchmark.extra_info.update(RESULTS.summary(scenario, target) or {})


def raw_creates_rounds(benchmark, scenario, target, directory, size):
    """The raw reference of small PUTs: ``durable_creates`` from as many threads as wrk has connections."""

    def run_raw():
        rate = durable_creates(directory, size, SETTINGS.small_seconds, SETTINGS.connections)
        RESULTS.add(scenario, target, rate, "req/s")

    benchmark.pedantic(run_raw, rounds=SETTINGS.small_rounds, iterations=1)


def _num(v):
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def _ratio(a, b):
    if a is None or not b:
        return "-"
    return f"{a / b:.2f}"


def _spread(summary):
    if not summary or summary.get("spread") is None or summary["n"] < 2:
        return "-"
    return f"{summary['spread']:.0f}"


def render_table(results):
    head = ["scenario", "unit", "pyai", "±%", "nginx", "ratio", "pyai-py", "ratio", "raw", "ratio", "orig", "ratio",
            "errors p/n/py/o", "CPU pyai (nginx)", "RSS MiB", "cache"]  # fmt: skip
    rows = []
    for scenario in results.ordered():
        # a scenario may show other targets in the columns (see Results.set_columns)
        columns = results.meta[scenario].get("columns", {})
        s = {t: results.summary(scenario, columns.get(t, t)) for t in TARGETS}
        med = {t: (s[t]["median"] if s[t] else None) for t in TARGETS}
        pyai = med["pyai"]
        errs = "/".join(str(s[t]["errors"]) if s[t] else "-" for t in ("pyai", "nginx", "pyai-python", "original"))
        cpu = "-"
        if s["pyai"] and s["pyai"]["cpu_per"] is not None:
            cpu = _num(s["pyai"]["cpu_per"])
            if s["nginx"] and s["nginx"]["cpu_per"] is not None:
                cpu += f" ({_num(s['nginx']['cpu_per'])})"
            cpu += " " + s["pyai"]["cpu_unit"].replace("us/", "µs/")
        rss = _num(s["pyai"]["peak_rss_mib"]) if s["pyai"] and s["pyai"]["peak_rss_mib"] else "-"
        cache = next((s[t]["cache"] for t in TARGETS if s[t] and s[t]["cache"]), "-")
        rows.append([
            scenario, results.meta[scenario]["unit"], _num(pyai), _spread(s["pyai"]), _num(med["nginx"]),
            _ratio(pyai, med["nginx"]),
            _num(med["pyai-python"]), _ratio(pyai, med["pyai-python"]), _num(med["raw"]), _ratio(pyai, med["raw"]),
            _num(med["original"]), _ratio(pyai, med["original"]), errs, cpu, rss, cache,
        ])  # fmt: skip
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    left = {0, 1, len(head) - 1}

    def fmt(r):
        return "  ".join(str(c).ljust(w) if i in left else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    lines = [fmt(head), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in rows]
    return "\n".join(lines)
