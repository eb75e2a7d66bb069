"""deploy/pyai.service: systemd accepts it, its numbers add up, and its command serves.

systemd is not PID 1 here, so nothing is started by systemd itself: ``systemd-analyze
verify`` (and ``security --offline``) read the unit like systemd would, with the
/opt/pyai paths pointed at this checkout so that its executables exist.  The unit's
ExecStart then runs as written, with its environment, and must tell systemd it is
ready (Type=notify, on a $NOTIFY_SOCKET of ours), serve, reload on ExecReload (its check,
then the HUP) and stop on a TERM to the master alone (KillMode=mixed) within
TimeoutStopSec.  The logrotate example of docs/operating.md is run, with the unit's directories
(LogsDirectory=, RuntimeDirectory=) pointed at private ones, against what the unit runs.  Under strace the
same command must make no system call outside the unit's SystemCallFilter and no
writable-and-executable mapping (MemoryDenyWriteExecute).
"""

import hashlib
import os
import pwd
import re
import runpy
import shlex
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import gunicorn.config
import pytest
import requests
from harness import ROOT, children, free_port
from server import wait_until

from deploy.tools import require_tool
from deploy.unit import UNIT, environment, exec_start, one, parse_unit, render_unit
from pyai.config import SETTINGS

ANALYZE_TIMEOUT = 60
DRAIN_DELAY_DEFAULT = 5.0  # seconds, until [ops] drain_delay is in the settings table
HARDENING = (
    "NoNewPrivileges",
    "ProtectSystem",
    "PrivateTmp",
    "ProtectHome",
    "PrivateDevices",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "RestrictAddressFamilies",
    "RestrictNamespaces",
    "LockPersonality",
    "MemoryDenyWriteExecute",
    "SystemCallFilter",
    "CapabilityBoundingSet",
)


@pytest.fixture(scope="module")
def analyze():
    return require_tool("systemd-analyze", "systemd")


@pytest.fixture(scope="module")
def text():
    return UNIT.read_text()


@pytest.fixture(scope="module")
def entries(text):
    return parse_unit(render_unit(text))


def write_unit(directory, text):
    path = Path(directory) / "pyai.service"
    path.write_text(text)
    return path


def verify_problems(analyze, path):
    """What ``systemd-analyze verify`` objects to in the unit at ``path`` (empty: nothing).

    verify exits 0 on a key it does not know or a value it cannot parse ("..., ignoring"),
    so every line it prints about the unit counts, not only its exit status.
    """
    proc = subprocess.run(
        [analyze, "verify", "--man=no", "--recursive-errors=no", str(path)],
        capture_output=True,
        text=True,
        timeout=ANALYZE_TIMEOUT,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_LOG_LEVEL": "notice"},
    )
    lines = (proc.stdout + proc.stderr).splitlines()
    problems = [line for line in lines if path.name in line or str(path) in line]
    if proc.returncode != 0:
        problems.append(f"exit status {proc.returncode}: {lines}")
    return problems


def test_systemd_accepts_the_unit(analyze, text, tmp_path):
    assert verify_problems(analyze, write_unit(tmp_path, render_unit(text))) == []


@pytest.mark.parametrize(
    "defect, old, new",
    [
        ("a misspelled key", "\nTimeoutStopSec=", "\nTimeoutStopSecs="),
        ("a value systemd cannot parse", "\nKillMode=mixed", "\nKillMode=master"),
        ("an ExecStart that does not exist", "/.venv/bin/gunicorn", "/.venv/bin/gunicorn-missing"),
        (
            "a system call group that does not exist",
            "\nSystemCallFilter=@system-service",
            "\nSystemCallFilter=@system-servic",
        ),
    ],
)
def test_verify_fails_on_a_defect(analyze, text, tmp_path, defect, old, new):
    """The check above can fail: each deliberately broken copy of the unit is refused."""
    rendered = render_unit(text)
    assert rendered.count(old) == 1, f"the unit no longer has {old!r}"
    assert verify_problems(analyze, write_unit(tmp_path, rendered.replace(old, new))), defect


def exposure_ok(analyze, path, threshold):
    proc = subprocess.run(
        [analyze, "security", "--offline=true", f"--threshold={threshold}", "--no-pager", str(path)],
        capture_output=True,
        text=True,
        timeout=ANALYZE_TIMEOUT,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )
    return proc.returncode == 0


def test_hardened(analyze, text, entries, tmp_path):
    """systemd's own exposure score of the unit stays "OK" (below 2.5 of 10); without the
    hardening lines the same unit is "UNSAFE" and the check refuses it."""
    for key in HARDENING:
        one(entries, key)
    assert one(entries, "ProtectSystem") == "strict"
    assert one(entries, "CapabilityBoundingSet") == ""
    assert exposure_ok(analyze, write_unit(tmp_path, render_unit(text)), threshold=25)
    bare = "\n".join(line for line in render_unit(text).splitlines() if line.partition("=")[0] not in HARDENING)
    (tmp_path / "bare").mkdir()
    assert not exposure_ok(analyze, write_unit(tmp_path / "bare", bare), threshold=25)


def seconds(span):
    """A systemd time span of plain seconds ("70", "70s") as a number."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*s?", span)
    assert match, f"write the time span as seconds: {span!r}"
    return float(match.group(1))


def gunicorn_settings(entries):
    """The settings of the gunicorn.conf.py the unit's ExecStart names (run as gunicorn runs it)."""
    argv = exec_start(entries)
    config = argv[argv.index("--config") + 1] if "--config" in argv else argv[argv.index("-c") + 1]
    return runpy.run_path(config)


def drain_delay_default():
    setting = next((s for s in SETTINGS if s.name == "drain_delay"), None)
    return float(setting.parse(setting.default)) if setting else DRAIN_DELAY_DEFAULT


def test_stop_budget_and_limits(entries):
    """TimeoutStopSec covers the drain delay plus gunicorn's graceful_timeout, with room to
    exit; the descriptor limit covers a worker's connections and their files; the prefix
    the unit sets is the path it may write."""
    settings = gunicorn_settings(entries)
    graceful = settings.get("graceful_timeout", gunicorn.config.Config().graceful_timeout)
    assert seconds(one(entries, "TimeoutStopSec")) > graceful + drain_delay_default()
    assert one(entries, "KillMode") == "mixed"
    assert one(entries, "Type") == "notify"
    connections = settings.get("worker_connections", gunicorn.config.Config().worker_connections)
    # every connection may hold a socket and a file (an upload's, a download's), plus the rest
    assert int(one(entries, "LimitNOFILE")) >= 2 * connections + 1024
    writable = one(entries, "ReadWritePaths").split()
    assert environment(entries)["PAI_PREFIX"] in writable


def launch(pool, entries, name, wrapper=(), **extra):
    """The unit's ExecStart, run as written with the unit's environment, on a free port and a
    private prefix (the only changes: in production they come from /etc/pyai/pyai.env)."""
    env = environment(entries)
    env.pop("PAI_PREFIX")  # the pool gives each server a fresh prefix
    env.pop("PAI_TRANSFER_LOG")  # /var/log/pyai is systemd's to make (LogsDirectory=): the server's log here
    port = free_port()
    env.update({"PAI_BIND": f"127.0.0.1:{port}", "PAI_WORKERS": "2", **extra})
    assert Path(one(entries, "WorkingDirectory")) == ROOT  # the pool runs it there
    return pool.start(name, command=exec_start(entries), port=port, wrapper=wrapper, **env)


def exercise(srv):
    """A little of everything: upload (large enough for the teed digests), download, ranges, chunked."""
    body = os.urandom(3 * 1024 * 1024 + 17)
    put = requests.put(srv.id_url("kit-file"), data=body, timeout=60)
    assert put.status_code == 201, put.text
    got = requests.get(srv.id_url("kit-file"), timeout=60)
    assert got.status_code == 200 and hashlib.sha256(got.content).digest() == hashlib.sha256(body).digest()
    part = requests.get(srv.id_url("kit-file"), headers={"Range": "bytes=10-19"}, timeout=60)
    assert part.status_code == 206 and part.content == body[10:20]
    chunked = requests.put(srv.id_url("kit-chunked"), data=iter([body[:70000], body[70000:140000]]), timeout=60)
    assert chunked.status_code == 201, chunked.text
    assert requests.get(srv.id_url("kit-chunked"), timeout=60).content == body[:140000]
    assert requests.get(srv.id_url("kit-missing"), timeout=60).status_code == 404


def reload_with_exec_reload(srv, entries):
    """Every ExecReload= in order, as written, with the service's environment and $MAINPID being
    the master (systemd stops at the first that fails): new workers, still serving."""
    before = set(srv.worker_pids())
    assert before
    commands = entries[("Service", "ExecReload")]
    assert "check-config" in commands[0] and "kill -HUP" in commands[-1], commands  # the check comes first
    for line in commands:
        command = [part.replace("$MAINPID", str(master_pid(srv))) for part in shlex.split(line)]
        done = subprocess.run(command, cwd=ROOT, env=srv.env, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, (line, done.stdout, done.stderr)

    def renewed():
        now = set(srv.worker_pids())
        return len(now) == len(before) and not now & before and requests.get(srv.url, timeout=5).status_code == 200

    assert wait_until(renewed, timeout=30), (before, srv.worker_pids(), srv.log())


def master_pid(srv):
    return srv.proc.pid


def stop_like_systemd(srv, entries, process):
    """KillMode=mixed: TERM to the main process only; it must be gone, workers and all, in TimeoutStopSec."""
    group = srv.proc.pid
    os.kill(process, signal.SIGTERM)
    srv.proc.wait(timeout=seconds(one(entries, "TimeoutStopSec")))
    assert wait_until(lambda: not _group_alive(group), timeout=5), "processes outlived the master"
    return srv.proc.returncode


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_exec_start_serves_reloads_and_stops(pool, entries):
    """The shipped command line: READY=1 on $NOTIFY_SOCKET, serves, ExecReload, clean stop."""
    with tempfile.TemporaryDirectory(prefix="pyai-notify-") as directory:  # short: sun_path has 108 bytes
        address = os.path.join(directory, "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind(address)
            notify.settimeout(20)
            srv = launch(pool, entries, "unit", NOTIFY_SOCKET=address)
            assert b"READY=1" in notify.recv(4096).split(b"\n")
            assert requests.get(srv.url, timeout=10).status_code == 200
            exercise(srv)
            reload_with_exec_reload(srv, entries)
            assert requests.get(srv.id_url("kit-file"), timeout=60).status_code == 200
            assert stop_like_systemd(srv, entries, master_pid(srv)) == 0


def test_exec_reload_reads_the_tokens_again(pool, entries, tmp_path):
    """What `systemctl reload pyai` promises: after ExecReload the workers know the new tokens."""
    tokens = tmp_path / "tokens"
    old, new = "a" * 32, "b" * 32
    tokens.write_text(f"rw {old}\n")
    tokens.chmod(0o600)
    srv = launch(pool, entries, "tokens", PAI_AUTH_TOKENS_FILE=str(tokens))

    def put(ident, token):
        headers = {"Authorization": f"Bearer {token}"}
        return requests.put(srv.id_url(ident), data=b"kit", headers=headers, timeout=60).status_code

    assert (put("kit-old", old), put("kit-new", new)) == (201, 401)
    tokens.write_text(f"rw {new}\n")
    reload_with_exec_reload(srv, entries)
    assert (put("kit-old-2", old), put("kit-new-2", new)) == (401, 201)


def logrotate_example():
    """The logrotate configuration docs/operating.md gives (section "Transfer log")."""
    readme = (ROOT / "docs" / "operating.md").read_text()
    match = re.search(r"With logrotate:\n\n```\n(.*?)```", readme, re.S)
    assert match, "docs/operating.md no longer has its logrotate example"
    return match.group(1)


def test_the_logrotate_example_uses_the_units_directories(entries):
    """The example rotates the transfer log the unit writes, in the directory the unit makes
    writable (LogsDirectory=; ProtectSystem=strict makes every other one read-only), and reads
    the pidfile gunicorn writes in the unit's RuntimeDirectory=."""
    example = logrotate_example()
    rotated = example.split("{", 1)[0].strip()
    assert rotated == environment(entries)["PAI_TRANSFER_LOG"]
    assert os.path.dirname(rotated) == "/var/log/" + one(entries, "LogsDirectory")
    pidfile = re.search(r"cat (\S+)\)", example).group(1)
    assert pidfile == f"/run/{one(entries, 'RuntimeDirectory')}/gunicorn.pid"
    user = one(entries, "User")
    assert f"create 0640 {user} {one(entries, 'Group')}" in example


def test_the_logrotate_example_rotates_what_the_unit_writes(pool, entries, tmp_path):
    """The example, run by logrotate against the unit's ExecStart with its directories private
    (systemd sets $RUNTIME_DIRECTORY): the master's pidfile is where the example reads it, the
    log is rotated, and the next requests' lines go to a new file (USR1 reached the workers)."""
    logrotate = require_tool("logrotate", "logrotate")
    logs, run = tmp_path / "log", tmp_path / "run"
    logs.mkdir()
    run.mkdir()
    log = logs / "transfer.log"
    srv = launch(pool, entries, "rotate", RUNTIME_DIRECTORY=str(run), PAI_TRANSFER_LOG=str(log))
    assert (run / "gunicorn.pid").read_text().strip() == str(master_pid(srv))
    assert requests.put(srv.id_url("kit-before"), data=b"kit", timeout=30).status_code == 201
    assert wait_until(lambda: "kit-before" in log.read_text(), timeout=10)

    me = pwd.getpwuid(os.getuid())
    config = logrotate_example().replace("/var/log/pyai", str(logs)).replace("/run/pyai", str(run))
    config = re.sub(r"create 0640 \S+ \S+", f"create 0640 {me.pw_name} {me.pw_gid}", config)
    (tmp_path / "pyai.logrotate").write_text(config)
    done = subprocess.run(
        [logrotate, "--force", "--state", str(tmp_path / "state"), str(tmp_path / "pyai.logrotate")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "kit-before" in (logs / "transfer.log.1").read_text()  # delaycompress: the newest stays plain

    def in_the_new_file():
        requests.get(srv.id_url("kit-before"), headers={"Connection": "close"}, timeout=30)
        return log.exists() and "kit-before" in log.read_text()

    assert wait_until(in_the_new_file, timeout=20), srv.log(3000)


def test_bad_configuration_is_a_failed_start_not_a_restart_loop(pool, entries, tmp_path):
    """A configuration pyai refuses ends the master with status 2 before READY=1; the unit
    does not restart on that status (RestartPreventExitStatus)."""
    env = {k: v for k, v in environment(entries).items() if k != "PAI_PREFIX"}
    command = exec_start(entries)
    proc = subprocess.run(
        command,
        cwd=one(entries, "WorkingDirectory"),
        env={**os.environ, **env, "PAI_PREFIX": str(tmp_path / "p"), "PAI_BACKEND_TYPE": "tape-drive"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "pyai: error:" in proc.stderr and "Traceback" not in proc.stderr
    assert "2" in one(entries, "RestartPreventExitStatus").split()


# --------------------------------------------------------------------------- under strace


def syscall_groups(analyze):
    """{"@group": [members: names and "@groups"]} as this systemd defines them."""
    out = subprocess.run(
        [analyze, "syscall-filter", "--no-pager"], capture_output=True, text=True, check=True, timeout=ANALYZE_TIMEOUT
    ).stdout
    groups, current = {}, None
    for line in out.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.strip() and not line.strip().startswith("#") and current is not None:
            current.append(line.strip())
    return groups


def expand(groups, items):
    names = set()
    for item in items:
        if item.startswith("@"):
            assert item in groups, f"unknown system call group {item}"
            names |= expand(groups, groups[item])
        else:
            names.add(item)
    return names


def allowed_syscalls(analyze, entries):
    """What SystemCallFilter= lets through: the union of the allow lines minus the ~deny lines."""
    groups = syscall_groups(analyze)
    allow, deny = set(), set()
    for line in entries[("Service", "SystemCallFilter")]:
        target = deny if line.startswith("~") else allow
        target |= expand(groups, line.lstrip("~").split())
    return allow - deny


SYSCALL = re.compile(r"^\d+\s+([a-z_0-9]+)\((.*)")


def traced_calls(trace):
    """(name, arguments) of every system call in an ``strace -f`` log."""
    calls = []
    for line in trace.splitlines():
        match = SYSCALL.match(line)
        if match:
            calls.append((match.group(1), match.group(2)))
    return calls


def test_no_system_call_outside_the_filter(analyze, pool, entries, tmp_path):
    """Everything the server does, under strace: start, requests of each kind, reload, stop.
    A call outside SystemCallFilter would be EPERM under systemd; a writable and executable
    mapping (or making memory executable later) would be refused by MemoryDenyWriteExecute;
    a socket of another family by RestrictAddressFamilies."""
    strace = require_tool("strace", "strace")
    trace = tmp_path / "trace.txt"
    srv = launch(pool, entries, "traced", wrapper=(strace, "-f", "-qq", "-o", str(trace), "--"))
    exercise(srv)
    pids = children(srv.proc.pid)
    assert len(pids) == 1, pids  # strace's one child: the gunicorn master
    master = pids[0]
    before = set(children(master))
    subprocess.run(["/bin/kill", "-HUP", str(master)], check=True, timeout=10)
    assert wait_until(lambda: set(children(master)) and not set(children(master)) & before, timeout=30)
    exercise_after = requests.get(srv.id_url("kit-file"), timeout=60)
    assert exercise_after.status_code == 200
    assert stop_like_systemd(srv, entries, master) == 0
    calls = traced_calls(trace.read_text())
    names = {name for name, _ in calls}
    assert {"splice", "sendfile", "renameat2", "execve"} <= names, sorted(names)  # it saw the real work

    outside = names - allowed_syscalls(analyze, entries)
    assert not outside, f"system calls SystemCallFilter= would refuse: {sorted(outside)}"

    assert one(entries, "MemoryDenyWriteExecute") == "yes"
    write_exec = [
        (name, args[:120])
        for name, args in calls
        if (name in ("mmap", "mmap2") and "PROT_WRITE" in args and "PROT_EXEC" in args)
        or (name in ("mprotect", "pkey_mprotect") and "PROT_EXEC" in args)
    ]
    assert not write_exec, f"MemoryDenyWriteExecute would refuse: {write_exec[:5]}"

    families = set(one(entries, "RestrictAddressFamilies").split())
    opened = {args.split(",")[0] for name, args in calls if name == "socket"}
    assert opened, "no socket() in the trace"
    assert opened <= families, f"socket families RestrictAddressFamilies= refuses: {sorted(opened - families)}"
