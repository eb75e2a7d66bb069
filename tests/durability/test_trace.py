"""The strace parser and the order checker on small traces written by hand: it passes an
upload done in order and fails each way an upload can be out of order, so the
end-to-end tests in test_order.py can fail too."""

# ruff: noqa: E501 - the traces are strace lines, as long as strace writes them

import math

import pytest

from .trace import check, exchanges, parse, split_args, unescape

PREFIX = "/var/tmp/a/prefix"
TMP = f"{PREFIX}/.pyai-tmp-x1"


def path_of(ident):
    return f"{PREFIX}/{ident}"


def run(text, method="fsync", **kwargs):
    return check(parse(text), method, path_of, **kwargs)


# One PUT done right: head read, 100 Continue, data by splice (a split call), the
# file's fsync, the rename, the directory's fsync by another thread (shared), 201.
GOOD = f"""\
100 10:00:00.000100 recvfrom(8<socket:[500]>, "PUT /f1 HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 10\\r\\n\\r\\n", 65536, MSG_DONTWAIT, NULL, NULL) = 60 <0.000010>
101 10:00:00.000200 sendto(8<socket:[500]>, "HTTP/1.1 100 Continue\\r\\n\\r\\n", 25, 0, NULL, 0) = 25 <0.000010>
101 10:00:00.000300 openat(AT_FDCWD</srv>, "{PREFIX}/.pyai-tmp-new-x1", O_WRONLY|O_CREAT|O_EXCL|O_CLOEXEC, 0600) = 9<{PREFIX}/.pyai-tmp-new-x1> <0.000010>
101 10:00:00.000400 rename("{PREFIX}/.pyai-tmp-new-x1", "{TMP}") = 0 <0.000010>
101 10:00:00.000500 splice(13<pipe:[7]>, NULL, 9<{TMP}>, NULL, 10, SPLICE_F_MOVE <unfinished ...>
102 10:00:00.000550 read(11<pipe:[8]>,  <unfinished ...>
101 10:00:00.000700 <... splice resumed>) = 10 <0.000190>
102 10:00:00.000750 <... read resumed>"abc", 1048576) = 3 <0.000200>
101 10:00:00.000900 fsync(9<{TMP}>) = 0 <0.000100>
101 10:00:00.001100 renameat2(AT_FDCWD</srv>, "{TMP}", AT_FDCWD</srv>, "{PREFIX}/f1", RENAME_NOREPLACE) = 0 <0.000050>
103 10:00:00.001200 openat(AT_FDCWD</srv>, "{PREFIX}", O_RDONLY|O_CLOEXEC|O_DIRECTORY) = 12<{PREFIX}> <0.000010>
103 10:00:00.001250 fsync(12<{PREFIX}> <unfinished ...>
101 10:00:00.001260 --- SIGCHLD {{si_signo=SIGCHLD, si_code=CLD_EXITED}} ---
103 10:00:00.001500 <... fsync resumed>) = 0 <0.000240>
101 10:00:00.001600 sendto(8<socket:[500]>, "HTTP/1.1 201 CREATED\\r\\nServer: gunicorn\\r\\n"..., 215, MSG_DONTWAIT, NULL, 0) = 215 <0.000020>
"""


def test_parse_joins_split_calls_and_times_them():
    calls = parse(GOOD)
    splice = next(c for c in calls if c.name == "splice")
    assert splice.start == pytest.approx(36000.0005)
    assert splice.end == pytest.approx(36000.0007)  # the resumed line's time (later than start + -T)
    assert splice.ret == 10 and splice.fd_path(2) == TMP and splice.fd_path(0) == "pipe:[7]"
    fsync_dir = next(c for c in calls if c.name == "fsync" and c.fd_path(0) == PREFIX)
    assert fsync_dir.end == pytest.approx(36000.0015)
    assert [c.start for c in calls] == sorted(c.start for c in calls)
    assert not any(c.name.startswith("---") for c in calls)


def test_parse_unfinished_for_ever_never_ends():
    calls = parse("7 10:00:00.000001 fsync(3</x/y> <unfinished ...>\n7 10:00:01.000000 +++ killed by SIGKILL +++\n")
    assert len(calls) == 1 and math.isinf(calls[0].end)


def test_parse_past_midnight():
    calls = parse("1 23:59:59.999990 fsync(3</a>) = 0 <0.000005>\n1 00:00:00.000010 fsync(3</a>) = 0 <0.000005>\n")
    assert calls[1].start - calls[0].start == pytest.approx(0.00002)


def test_split_args_keeps_strings_and_paths_whole():
    args = split_args('AT_FDCWD</a, b>, "x, \\"y\\"", [{iov_base="q,r", iov_len=3}], 1')
    assert args == ["AT_FDCWD</a, b>", '"x, \\"y\\""', '[{iov_base="q,r", iov_len=3}]', "1"]
    assert unescape("PUT /a\\r\\n\\327\\0x\\x41") == "PUT /a\r\n\xd7\x00xA"


def test_exchanges_pair_requests_with_answers_in_order():
    text = """\
1 10:00:00.000001 recvfrom(5<socket:[9]>, "PUT /a HTTP/1.1\\r\\n\\r\\n", 65536, 0, NULL, NULL) = 30 <0.000001>
1 10:00:00.000002 sendto(5<socket:[9]>, "HTTP/1.1 100 Continue\\r\\n\\r\\n", 25, 0, NULL, 0) = 25 <0.000001>
1 10:00:00.000003 sendto(5<socket:[9]>, "HTTP/1.1 201 CREATED\\r\\n", 200, 0, NULL, 0) = 200 <0.000001>
1 10:00:00.000004 recvfrom(5<socket:[9]>, "GET /a HTTP/1.1\\r\\n\\r\\n", 65536, 0, NULL, NULL) = 30 <0.000001>
1 10:00:00.000005 recvfrom(6<socket:[10]>, "PUT /b HTTP/1.1\\r\\n\\r\\n", 65536, 0, NULL, NULL) = 30 <0.000001>
1 10:00:00.000006 sendto(5<socket:[9]>, "HTTP/1.1 200 OK\\r\\n", 200, 0, NULL, 0) = 200 <0.000001>
1 10:00:00.000007 sendto(6<socket:[10]>, "HTTP/1.1 409 CONFLICT\\r\\n", 200, 0, NULL, 0) = -1 EAGAIN (Resource temporarily unavailable) <0.000001>
1 10:00:00.000008 sendto(6<socket:[10]>, "HTTP/1.1 409 CONFLICT\\r\\n", 200, 0, NULL, 0) = 200 <0.000001>
"""
    puts = {p.ident: p for p in exchanges(parse(text))}
    assert puts["a"].status == 201 and puts["a"].response.start == pytest.approx(36000.000003)
    assert puts["b"].status == 409 and puts["b"].response.start == pytest.approx(36000.000008)


def test_in_order_trace_passes():
    report = run(GOOD)
    assert report, report.text()
    assert set(report.puts) == {"f1"}


def test_no_put_at_all_fails():
    report = run("1 10:00:00.000001 fsync(3</a>) = 0 <0.000005>\n")
    assert not report and "holds no PUT" in report.text()


def test_a_missing_id_fails():
    report = run(GOOD, ids=["f1", "f2"])
    assert not report and "f2: no PUT" in report.text()


def test_rename_that_starts_before_the_fsync_ends_fails():
    # the fsync is a split call that only ends after the rename began
    text = GOOD.replace(
        f"101 10:00:00.000900 fsync(9<{TMP}>) = 0 <0.000100>\n",
        f"101 10:00:00.000900 fsync(9<{TMP}> <unfinished ...>\n",
    ).replace(
        "103 10:00:00.001200 openat",
        "101 10:00:00.001150 <... fsync resumed>) = 0 <0.000250>\n103 10:00:00.001200 openat",
    )
    report = run(text)
    assert not report
    assert "f1: file fsync" in report.text() and "ended only after the rename started" in report.text()
    assert "10:00:00.001100" in report.text()  # the rename's start is named


def test_fsync_before_the_last_write_ended_fails():
    text = GOOD.replace("101 10:00:00.000900 fsync", "101 10:00:00.000650 fsync")
    report = run(text)
    assert not report and "started before its last data write ended" in report.text()


def test_201_before_the_directory_fsync_ends_fails():
    text = GOOD.replace("101 10:00:00.001600 sendto", "101 10:00:00.001400 sendto")
    report = run(text)
    assert not report and "f1: directory fsync" in report.text() and "201" in report.text()


def test_directory_fsync_started_before_the_rename_ended_does_not_count():
    # the only directory fsync starts while the rename runs (it covers an earlier upload, not this one)
    text = GOOD.replace("103 10:00:00.001250 fsync(", "103 10:00:00.001120 fsync(")
    report = run(text)
    assert not report and "directory fsync" in report.text() and "started before the rename ended" in report.text()


def test_fsync_of_another_file_does_not_count():
    text = GOOD.replace(f"fsync(9<{TMP}>)", f"fsync(9<{PREFIX}/.pyai-tmp-other>)")
    report = run(text)
    assert not report and "f1: file fsync" in report.text() and "none at all" in report.text()


def test_fsync_of_another_directory_does_not_count():
    text = GOOD.replace(f"fsync(12<{PREFIX}>", "fsync(12</var/tmp/a>")
    report = run(text)
    assert not report and "directory fsync" in report.text()


def test_201_without_a_rename_fails():
    text = "".join(line + "\n" for line in GOOD.splitlines() if "renameat2" not in line)
    report = run(text)
    assert not report and "no rename or link" in report.text()


def test_writes_under_the_first_temporary_name_count():
    # a write before the file was renamed to its second temporary name, after the fsync: out of order
    text = GOOD.replace(
        "101 10:00:00.001100 renameat2",
        f'101 10:00:00.001000 write(9<{PREFIX}/.pyai-tmp-new-x1>, "z", 1) = 1 <0.000010>\n101 10:00:00.001100 renameat2',
    )
    assert run(GOOD)
    report = run(text)
    assert not report and "its last data write" in report.text()


def test_python_path_publishes_with_link():
    text = GOOD.replace(
        f'renameat2(AT_FDCWD</srv>, "{TMP}", AT_FDCWD</srv>, "{PREFIX}/f1", RENAME_NOREPLACE)',
        f'linkat(AT_FDCWD</srv>, "{TMP}", 5<{PREFIX}>, "f1", 0)',  # a relative name below a directory fd
    )
    assert "linkat" in text
    assert run(text), run(text).text()


# journal: sync_file_range of the whole file with WAIT_AFTER instead of the file's fsync
JOURNAL = GOOD.replace(
    f"fsync(9<{TMP}>) = 0",
    f"sync_file_range(9<{TMP}>, 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE|SYNC_FILE_RANGE_WRITE|SYNC_FILE_RANGE_WAIT_AFTER) = 0",
)


def test_journal_in_order_passes():
    assert run(JOURNAL, "journal"), run(JOURNAL, "journal").text()
    assert not run(JOURNAL, "fsync")  # it is no fsync


def test_journal_needs_wait_after_over_the_whole_file():
    no_wait = JOURNAL.replace("|SYNC_FILE_RANGE_WAIT_AFTER", "")
    assert not run(no_wait, "journal")
    part = JOURNAL.replace(f"sync_file_range(9<{TMP}>, 0, 0,", f"sync_file_range(9<{TMP}>, 0, 4,")
    assert not run(part, "journal")
    whole = JOURNAL.replace(f"sync_file_range(9<{TMP}>, 0, 0,", f"sync_file_range(9<{TMP}>, 0, 10,")
    assert run(whole, "journal")


SYNCFS = (
    GOOD.replace(f"fsync(9<{TMP}>) = 0", f"syncfs(9<{TMP}>) = 0")
    .replace(f"fsync(12<{PREFIX}>", f"syncfs(12<{PREFIX}>")
    .replace("<... fsync resumed>", "<... syncfs resumed>")
)


def test_syncfs_in_order_passes_and_needs_the_same_file_system():
    assert run(SYNCFS, "syncfs"), run(SYNCFS, "syncfs").text()
    assert not run(SYNCFS, "fsync")
    assert not run(SYNCFS, "syncfs", same_fs=lambda path: path.startswith("/elsewhere/"))


def test_unknown_method_is_refused():
    with pytest.raises(ValueError):
        run(GOOD, "sometimes")


def _nested(parent_fsync_at):
    """GOOD with the id one directory down (PREFIX/ab), made by this upload, and its parent's fsync."""
    text = GOOD.replace(PREFIX, f"{PREFIX}/ab")
    made = f'101 10:00:00.000250 mkdirat(AT_FDCWD</srv>, "{PREFIX}/ab", 0777) = 0 <0.000010>\n'
    if parent_fsync_at:
        made += f"101 {parent_fsync_at} fsync(10<{PREFIX}>) = 0 <0.000010>\n"
    return text.replace("101 10:00:00.000300 openat", made + "101 10:00:00.000300 openat")


def test_a_new_directory_must_be_durable_in_its_parent():
    def nested_path(ident):
        return f"{PREFIX}/ab/{ident}"

    good = check(parse(_nested("10:00:00.000270")), "fsync", nested_path)
    assert good, good.text()
    for text in (_nested(None), _nested("10:00:00.000255")):  # none, or one that began before the mkdir ended
        report = check(parse(text), "fsync", nested_path)
        assert not report and f"fsync of {PREFIX} (its new directory {PREFIX}/ab" in report.text()
