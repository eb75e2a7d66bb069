"""The operator's tools on hsmsideband: ``ls``, ``du`` and ``stat`` say what HEAD says (media from
the sideband database), ``verify --add-missing`` backfills, and ``/metrics`` shows the prefix's
free space and the build."""

import json
import os
import sys

import requests
from prometheus_client.parser import text_string_to_metric_families

from pyai import __version__

from .test_digests import run_cli
from .test_http import new_id, put

CMD = [sys.executable, "-c", "import sys; from pyai.admin.cli import cmd_main; sys.exit(cmd_main())"]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli(srv, *args):
    """(exit status, stdout, stderr) of a command of this checkout against ``srv``'s archive."""
    return run_cli([*CMD, *args, "--prefix", str(srv.prefix)], {**srv.env, "PYTHONPATH": ROOT})


def test_ls_du_stat_and_add_missing_on_hsmsideband(sideband_pool, samdb):
    srv = sideband_pool.start("tools")
    online, on_tape, placed = new_id(), new_id(), new_id()
    samdb.record(put(srv, online, b"online bytes"), online=True)
    samdb.record(put(srv, on_tape, os.urandom(30_000)), online=False)
    path = srv.stored_path(placed)  # an original deployment's file, which the HSM has not recorded yet
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"placed behind the service")
    os.chmod(path, 0o444)
    sizes = {online: 12, on_tape: 30_000, placed: 25}

    rc, out, err = cli(srv, "ls")
    assert rc == 0 and sorted(out.split()) == sorted(sizes), (out, err)
    rc, out, err = cli(srv, "ls", "--long", "--json")
    assert rc == 0, err
    records = {record["id"]: record for record in map(json.loads, out.splitlines())}
    assert {ident: record["media"] for ident, record in records.items()} == {
        online: "disk",
        on_tape: "tape",
        placed: "disk",
    }
    assert records[on_tape]["bytes_per_level"] == [0, 30_000] and records[on_tape]["locality"] == "TAPE"
    assert records[placed]["checksums"] == {} and "sha256" in records[online]["checksums"]

    rc, out, err = cli(srv, "du", "--media", "--json")
    assert rc == 0, err
    assert json.loads(out) == {
        "files": 3,
        "bytes": sum(sizes.values()),
        "media": {"disk": {"files": 2, "bytes": 37}, "tape": {"files": 1, "bytes": 30_000}},
        "bytes_per_level": [37, 30_000],
    }

    rc, out, err = cli(srv, "stat", on_tape, "--json")
    assert rc == 0, err
    head = requests.head(srv.id_url(on_tape), timeout=10).headers
    record = json.loads(out)
    assert record["media"] == head["X-Pacifica-File-Storage-Media"] == "tape"
    assert repr(tuple(record["bytes_per_level"])) == head["X-Pacifica-Bytes-Per-Level"]
    rc, out, err = cli(srv, "stat", new_id())
    assert rc == 1 and "no file is stored" in err

    rc, out, err = cli(srv, "verify", "--all", "--add-missing")
    assert rc == 0 and f"ADDED {path}:" in out, (out, err)
    rc, out, err = cli(srv, "verify", "--all")
    assert rc == 0 and "NO CHECKSUM" not in out and "3 ok" in out, (out, err)


def test_metrics_show_the_build_and_the_prefixs_free_space(sideband):
    text = requests.get(sideband.url + "/metrics", timeout=10).text
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    st = os.statvfs(sideband.prefix)
    build = (("backend", "hsmsideband"), ("implementation", "c"), ("version", __version__))
    assert samples[("pyai_build_info", build)] == 1
    assert samples[("pyai_prefix_size_bytes", ())] == st.f_blocks * st.f_frsize
    assert samples[("pyai_prefix_free_bytes", ())] > 0 and samples[("pyai_prefix_free_inodes", ())] > 0
