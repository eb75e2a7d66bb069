"""Read ``strace -f -tt -T -y`` output and check the durability order of each PUT in it.

``parse(text)`` gives the system calls as ``Call``s, each with its start (the
``-tt`` time of its first line, taken at entry) and its end (for a call strace
split into ``<unfinished ...>`` and ``<... resumed>``, the later of the resumed
line's time and start + ``-T``; else start + ``-T``).  strace timestamps a call
while the thread is stopped at entry and at exit, so when one call causes
another (same thread, or a lock, or a counter another thread reads) the first's
end is never after the second's start: ``a.end <= b.start`` is the test of
"a ended before b started".

``check(calls, method, path_of)`` finds every PUT answered 201 (the request line
read on a socket, then the first non-1xx status line written on that socket:
requests on a kept-alive connection are answered in order) and checks the rules
of the durability ``method`` (see ``RULES``) against the calls around it.  Every
file and directory is named by the path ``-y`` printed at the time of the call,
never by descriptor number, so reused descriptors cannot mislead it.  It returns
a ``Report``: the PUTs it found and one problem sentence per broken rule or
missing event, naming the id and the events with their times.
"""

import dataclasses
import math
import os
import re
from typing import Callable, Dict, List, Optional, Sequence, Tuple
from urllib.parse import unquote

# "1234 12:34:56.789012 rest" (the pid is there with -f; tolerated without)
_LEADER = re.compile(r"^(?:(\d+)\s+)?(\d{2}):(\d{2}):(\d{2})\.(\d+)\s+(.*)$")
_START = re.compile(r"^([a-z_][a-z0-9_]*)\((.*)$")
_RESUMED = re.compile(r"^<\.\.\. ([a-z_][a-z0-9_]*) resumed>(.*)$")
_UNFINISHED = " <unfinished ...>"
# the end of a finished call: ") = result <duration>" (greedy: the last ") = " of the line)
_FINISH = re.compile(r"^(.*)\)\s+=\s+(.*?)(?:\s+<(\d+\.\d+)>)?$")
_FD = re.compile(r"^(-?\d+|AT_FDCWD)<(.*)>$")
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
_REQUEST = re.compile(r"(?:^|\n)([A-Z]+) (\S+) HTTP/1\.[01]\r\n")
_STATUS = re.compile(r"HTTP/1\.[01] (\d{3})")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "v": "\v", "f": "\f", "\\": "\\", '"': '"', "'": "'"}

READS = frozenset({"read", "readv", "recv", "recvfrom", "recvmsg", "pread64", "preadv", "preadv2"})
SENDS = frozenset({"write", "writev", "send", "sendto", "sendmsg", "pwrite64", "pwritev", "pwritev2"})
# the calls that put bytes into a file, and which argument is the file written to
DATA_WRITES = {
    "write": 0,
    "pwrite64": 0,
    "writev": 0,
    "pwritev": 0,
    "pwritev2": 0,
    "splice": 2,
    "copy_file_range": 2,
    "sendfile": 0,
}
FILE_SYNCS = frozenset({"fsync", "fdatasync"})
SYNCS = FILE_SYNCS | {"sync_file_range", "syncfs"}
# the calls that give a file a name: (source argument, target argument, their directory descriptors or None)
PUBLISHES = {
    "rename": (0, 1, None, None),
    "link": (0, 1, None, None),
    "renameat": (1, 3, 0, 2),
    "renameat2": (1, 3, 0, 2),
    "linkat": (1, 3, 0, 2),
}
# the calls that make a directory: (path argument, its directory descriptor or None)
MKDIRS = {"mkdir": (0, None), "mkdirat": (1, 0)}
DAY = 86400.0


@dataclasses.dataclass
class Call:
    """One system call: who made it, its argument text and result, when it started and ended."""

    pid: int
    name: str
    args: str  # the text between the parentheses (both halves of a split call)
    result: str  # what follows "= " (e.g. "0", "9</path>", "-1 EAGAIN (...)"); "" when it never returned
    start: float  # seconds (since the midnight of the first line)
    end: float  # math.inf when the call never returned in the trace
    line: int  # line number of its first line (1-based)
    _argv: Optional[Tuple[str, List[str]]] = dataclasses.field(default=None, repr=False, compare=False)

    def __str__(self):
        args = self.args if len(self.args) <= 160 else self.args[:157] + "..."
        return f"{self.name}({args}) [{clock(self.start)} .. {clock(self.end)}, line {self.line}]"

    @property
    def ret(self) -> Optional[int]:
        match = re.match(r"-?\d+", self.result)
        return int(match.group()) if match else None

    @property
    def ok(self) -> bool:
        ret = self.ret
        return ret is not None and ret >= 0

    def argv(self) -> List[str]:
        if self._argv is None or self._argv[0] != self.args:
            self._argv = (self.args, split_args(self.args))
        return self._argv[1]

    def fd_path(self, index: int = 0) -> Optional[str]:
        """The path ``-y`` printed for the descriptor in argument ``index`` (None if there is none)."""
        argv = self.argv()
        if index >= len(argv):
            return None
        match = _FD.match(argv[index])
        return match.group(2) if match else None

    def data(self) -> str:
        """The first string argument, unescaped (latin-1 text; possibly cut short by -s)."""
        match = _STRING.search(self.args)
        return unescape(match.group(1)) if match else ""


def clock(seconds: float) -> str:
    """``HH:MM:SS.ffffff`` of a time parse() gave (``never`` for math.inf)."""
    if math.isinf(seconds):
        return "never"
    micros = int(round(seconds * 1e6))
    whole, frac = divmod(micros, 1000000)
    h, rest = divmod(whole % int(DAY), 3600)
    return f"{h:02d}:{rest // 60:02d}:{rest % 60:02d}.{frac:06d}"


def unescape(text: str) -> str:
    """strace's C escapes (``\\n``, ``\\r``, octal, ``\\xNN``) back to characters."""
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\" or i + 1 == len(text):
            out.append(c)
            i += 1
            continue
        n = text[i + 1]
        if n in _ESCAPES:
            out.append(_ESCAPES[n])
            i += 2
        elif n == "x":
            digits = re.match(r"[0-9a-fA-F]{1,2}", text[i + 2 :])
            out.append(chr(int(digits.group(), 16)) if digits else "x")
            i += 2 + (len(digits.group()) if digits else 0)
        elif n in "01234567":
            digits = re.match(r"[0-7]{1,3}", text[i + 1 :]).group()
            out.append(chr(int(digits, 8)))
            i += 1 + len(digits)
        else:
            out.append(n)
            i += 2
    return "".join(out)


def split_args(text: str) -> List[str]:
    """Top-level arguments of an strace argument list (quotes, brackets and ``<path>`` annotations kept whole)."""
    args, depth, current, i = [], 0, [], 0
    closers = {"(": ")", "[": "]", "{": "}"}
    stack = []
    while i < len(text):
        c = text[i]
        if c == '"':
            match = _STRING.match(text, i)
            end = match.end() if match else len(text)
            current.append(text[i:end])
            i = end
            continue
        if c == "<" and current and (current[-1][-1:].isalnum()):
            close = text.find(">", i)  # a -y annotation: "9</path>", "AT_FDCWD</dir>"
            close = len(text) - 1 if close < 0 else close
            current.append(text[i : close + 1])
            i = close + 1
            continue
        if c in closers:
            stack.append(closers[c])
            depth += 1
        elif stack and c == stack[-1]:
            stack.pop()
            depth -= 1
        elif c == "," and depth == 0:
            args.append("".join(current).strip())
            current = []
            i += 1
            continue
        current.append(c)
        i += 1
    tail = "".join(current).strip()
    if tail or args:
        args.append(tail)
    return args


def parse(text: str) -> List[Call]:
    """The system calls of an ``strace -f -tt -T -y`` output, sorted by start (signal lines skipped)."""
    calls: List[Call] = []
    pending: Dict[int, Tuple[Call, float]] = {}  # pid -> its unfinished call
    day, last = 0.0, None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\n")
        match = _LEADER.match(line)
        if not match:
            continue
        pid = int(match.group(1) or 0)
        t = int(match.group(2)) * 3600 + int(match.group(3)) * 60 + int(match.group(4))
        t += int(match.group(5)) / 10 ** len(match.group(5))
        if last is not None and t + day < last - DAY / 2:
            day += DAY  # the trace went past midnight
        t += day
        last = t if last is None else max(last, t)
        rest = match.group(6)
        resumed = _RESUMED.match(rest)
        if resumed:
            entry = pending.pop(pid, None)
            if entry is None or entry[0].name != resumed.group(1):
                continue  # its first half was before the trace began
            call = entry[0]
            finish = _FINISH.match(resumed.group(2))
            if finish:
                call.args += finish.group(1)
                call.result = finish.group(2)
                duration = float(finish.group(3)) if finish.group(3) else 0.0
                call.end = max(t, call.start + duration)
            else:  # "<... exit resumed>) = ?" without a duration, or a cut line
                call.end = t
            continue
        start = _START.match(rest)
        if not start:
            continue  # "--- SIGCHLD ...", "+++ exited ...", "???"
        body = start.group(2)
        call = Call(pid, start.group(1), "", "", t, math.inf, number)
        if body.endswith(_UNFINISHED):
            call.args = body[: -len(_UNFINISHED)]
            pending[pid] = (call, t)
        else:
            finish = _FINISH.match(body)
            if not finish:
                continue
            call.args, call.result = finish.group(1), finish.group(2)
            call.end = t + (float(finish.group(3)) if finish.group(3) else 0.0)
        calls.append(call)
    calls.sort(key=lambda c: (c.start, c.line))
    return calls


# --------------------------------------------------------------------------- PUTs


@dataclasses.dataclass
class Put:
    """One PUT of the trace and its answer: the request line read on a socket, the status written there."""

    ident: str
    socket: str
    request: Call
    response: Optional[Call]
    status: Optional[int]


def exchanges(calls: Sequence[Call]) -> List[Put]:
    """Every PUT in the trace with its answer (requests on one connection answered in order)."""
    waiting: Dict[str, List[Tuple[str, str, Call]]] = {}  # socket -> requests not answered yet
    puts = []
    for call in calls:
        if call.name not in READS and call.name not in SENDS:
            continue
        sock = call.fd_path(0)
        if not sock or not sock.startswith(("socket:", "TCP", "UNIX")) or not call.ok or not call.ret:
            continue
        data = call.data()
        if call.name in READS:
            for match in _REQUEST.finditer(data):
                waiting.setdefault(sock, []).append((match.group(1), match.group(2), call))
            continue
        for match in _STATUS.finditer(data):
            status = int(match.group(1))
            if status < 200 or not waiting.get(sock):
                continue  # 100 Continue: the answer is still to come
            method, target, request = waiting[sock].pop(0)
            if method == "PUT":
                puts.append(Put(_ident(target), sock, request, call, status))
    for sock, left in waiting.items():
        puts.extend(Put(_ident(target), sock, req, None, None) for method, target, req in left if method == "PUT")
    return puts


def _ident(target: str) -> str:
    return unquote(target.split("?", 1)[0].lstrip("/"))


# --------------------------------------------------------------------------- the rules

# What each method must show, per PUT answered 201:
#   data: a call that makes the temporary file's bytes durable, started after its
#         last data write ended and ended before the rename (or link) started;
#   name: a call that makes the new name durable, started after the rename
#         ended and ended before the 201 started.
# A stronger call is accepted where it makes the same thing durable (an fsync of
# the file for the data, an fsync of the id's directory for the name).  And with
# every method: a directory of the id made during the trace (mkdir) must have
# been made durable in its parent (the parent's fsync, or a syncfs for syncfs)
# after the mkdir ended and before the 201 started.
RULES = {
    "fsync": ("file fsync", "directory fsync"),
    "journal": ("sync_file_range WAIT_AFTER (or fsync) of the file", "directory fsync"),
    "syncfs": ("syncfs (or fsync of the file)", "syncfs (or directory fsync)"),
}


@dataclasses.dataclass
class Report:
    puts: Dict[str, Put]  # id -> its (last) PUT answered 201
    problems: List[str]
    writes: Dict[str, List[Call]] = dataclasses.field(default_factory=dict)  # id -> data writes into its file

    def __bool__(self):
        return not self.problems

    def text(self) -> str:
        return "\n".join(self.problems)


def check(
    calls: Sequence[Call],
    method: str,
    path_of: Callable[[str], str],
    *,
    same_fs: Optional[Callable[[str], bool]] = None,
    ids: Optional[Sequence[str]] = None,
) -> Report:
    """Check every PUT answered 201 (or those of ``ids``, each of which must be there) against ``method``.

    ``path_of(id)`` is the id's stored path; ``same_fs(path)`` says whether a
    path is on the archive's file system (for syncfs; default: below the id's
    directory).
    """
    if method not in RULES:
        raise ValueError(f"unknown durability method {method!r}")
    puts = {}
    for put in exchanges(calls):
        if put.status == 201:
            puts[put.ident] = put
    # only the calls the rules look at, once (a trace holds tens of thousands of reads)
    relevant = [c for c in calls if c.name in PUBLISHES or c.name in DATA_WRITES or c.name in SYNCS or c.name in MKDIRS]
    problems, writes = [], {}
    wanted = list(ids) if ids is not None else sorted(puts)
    if not wanted:
        problems.append("the trace holds no PUT answered 201: nothing was checked")
    for ident in wanted:
        put = puts.get(ident)
        if put is None:
            problems.append(f"{ident}: no PUT of it answered 201 in the trace")
            continue
        found, writes[ident] = _check_put(relevant, method, put, os.path.normpath(path_of(ident)), same_fs)
        problems.extend(found)
    return Report(puts, problems, writes)


def _names_before(calls, publish, path):
    """``path`` and every name the file had before it got that name (renames into it, followed back)."""
    names, queue = {path}, [path]
    while queue:
        target = queue.pop()
        for call in calls:
            if call.start >= publish.start or call.name not in PUBLISHES or not call.ok:
                continue
            src, dst = _publish_paths(call)
            if dst == target and src and src not in names:
                names.add(src)
                queue.append(src)
    return names


def _publish_paths(call):
    src_i, dst_i, src_dir, dst_dir = PUBLISHES[call.name]
    argv = call.argv()
    if len(argv) <= max(src_i, dst_i):
        return None, None
    return _at_path(argv, src_i, src_dir), _at_path(argv, dst_i, dst_dir)


def _at_path(argv, index, dir_index):
    match = _STRING.fullmatch(argv[index])
    if not match:
        return None
    path = unescape(match.group(1))
    if not path.startswith("/") and dir_index is not None:
        base = _FD.match(argv[dir_index])
        if not base:
            return None
        path = os.path.join(base.group(2), path)
    return os.path.normpath(path)


def _covers(call, size):
    """A sync_file_range that waits for the writeback of the whole file (offset 0 and 0 = to the end, or past size)."""
    argv = call.argv()
    if len(argv) < 4 or "SYNC_FILE_RANGE_WAIT_AFTER" not in argv[3]:
        return False
    try:
        offset, nbytes = int(argv[1]), int(argv[2])
    except ValueError:
        return False
    return offset == 0 and (nbytes == 0 or nbytes >= size)


def _check_put(calls, method, put, final, same_fs):
    ident, request, response = put.ident, put.request, put.response
    directory = os.path.dirname(final)
    on_fs = same_fs or (lambda path: path == directory or path.startswith(directory.rstrip("/") + "/"))
    publishes = [
        c
        for c in calls
        if c.name in PUBLISHES and c.ok and request.start <= c.start and c.start < response.start
        if _publish_paths(c)[1] == final
    ]
    if not publishes:
        return [
            f"{ident}: answered 201 ({response}) with no rename or link to {final} after its request ({request})"
        ], []
    publish = publishes[-1]
    temp = _publish_paths(publish)[0]
    names = _names_before(calls, publish, temp)
    writes = [
        c
        for c in calls
        if c.name in DATA_WRITES
        and request.start <= c.start < publish.start
        and c.fd_path(DATA_WRITES[c.name]) in names
    ]
    problems = []
    if not writes:
        return [f"{ident}: no data write to its temporary file {temp} between {request} and {publish}"], []
    last_write = max(writes, key=lambda c: c.end)
    size = sum(c.ret for c in writes if c.ok)

    def syncs_file(c):
        return c.name in FILE_SYNCS and c.fd_path(0) in names

    def syncs_dir(c):
        return c.name in FILE_SYNCS and c.fd_path(0) == directory

    def syncs_fs(c):
        path = c.fd_path(0)
        return c.name == "syncfs" and path is not None and path.startswith("/") and on_fs(path)

    def waits_for_file(c):
        return c.name == "sync_file_range" and c.fd_path(0) in names and _covers(c, size)

    def data_ok(c):
        if method == "journal":
            return syncs_file(c) or waits_for_file(c)
        if method == "syncfs":
            return syncs_file(c) or syncs_fs(c)
        return syncs_file(c)

    def name_ok(c):
        return syncs_dir(c) or (method == "syncfs" and syncs_fs(c))

    data_rule, name_rule = RULES[method]
    problems += _between(
        calls, data_ok, last_write, publish, f"{ident}: {data_rule}", "its last data write", "the rename"
    )
    problems += _between(calls, name_ok, publish, response, f"{ident}: {name_rule} of {directory}", "the rename", "201")
    for made in _made_dirs(calls, directory, response):
        parent = os.path.dirname(made.path)

        def parent_ok(c, parent=parent):
            return (c.name in FILE_SYNCS and c.fd_path(0) == parent) or (method == "syncfs" and syncs_fs(c))

        what = f"{ident}: fsync of {parent} (its new directory {made.path} made durable)"
        problems += _between(calls, parent_ok, made.call, response, what, "the mkdir", "201")
    return problems, writes


@dataclasses.dataclass
class _Made:
    path: str
    call: Call


def _made_dirs(calls, directory, response):
    """The successful mkdirs, before ``response``, of ``directory`` and of its ancestors."""
    levels = set()
    level = directory
    while os.path.dirname(level) != level:
        levels.add(level)
        level = os.path.dirname(level)
    made = []
    for c in calls:
        if c.name in MKDIRS and c.ok and c.start < response.start:
            index, dir_index = MKDIRS[c.name]
            argv = c.argv()
            path = _at_path(argv, index, dir_index) if len(argv) > index else None
            if path in levels:
                made.append(_Made(path, c))
    return made


def _between(calls, accepts, before, after, what, before_name, after_name):
    """[] if a successful call ``accepts`` takes started after ``before`` ended and ended before ``after``
    started; else one sentence naming the closest candidates and the two events."""
    candidates = [c for c in calls if accepts(c) and c.ok]
    if any(before.end <= c.start and c.end <= after.start for c in candidates):
        return []
    head = f"{what} must start after {before_name} ended ({before}) and end before {after_name} started ({after})"
    late_start = [c for c in candidates if c.start < before.end]
    late_end = [c for c in candidates if c.start >= before.end and c.end > after.start]
    if late_end:
        return [f"{head}; the first one after it ended only after {after_name} started: {late_end[0]}"]
    if late_start:
        return [f"{head}; the last one started before {before_name} ended: {late_start[-1]}"]
    return [f"{head}; there is none at all"]
