"""bench/report.py: the performance page's results section and chart come from a run's JSON,
and nothing of the page outside its markers changes."""

import importlib.util
import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_report", ROOT / "bench" / "report.py")
report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report)


def _summary(median):
    return {"summary": {"median": median, "unit": "req/s"}}


RUN = {
    "created": "2026-12-07T06:00:00+0000",
    "git": "abc1234",
    "mode": "full",
    "wall_seconds": 900.0,
    "machine": {"nproc": 2, "cpu_model": "AMD EPYC", "memory_gib": 23.5, "kernel": "6.18", "python": "3.11.7"},
    "table": ["scenario  unit  pyai  ", "small GET 30B  req/s  100  "],
    "notes": ["mode: full"],
    "scenarios": {
        "small GET 30B": {
            "unit": "req/s",
            "targets": {"pyai": _summary(100.0), "nginx": _summary(400.0), "original": _summary(20.0)},
        },
        "small PUT 30B": {"unit": "req/s", "targets": {"pyai": _summary(50.0), "raw": _summary(25.0)}},
        "hpss only": {"unit": "MB/s", "targets": {"pyai": {"summary": None}}},
    },
}


def test_ratios_are_pyai_over_each_reference_of_the_same_run():
    assert report.ratios(RUN["scenarios"]) == [
        ("small GET 30B", [("nginx", 0.25), ("original", 5.0)]),
        ("small PUT 30B", [("raw", 2.0)]),
    ]


def test_the_page_gets_the_run_between_its_markers_and_a_chart(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    page = docs / "performance.md"
    page.write_text(f"# Performance\n\nbefore\n\n{report.BEGIN}\nold results\n{report.END}\n\nafter\n")
    results = tmp_path / "run.json"
    results.write_text(json.dumps(RUN))
    assert report.main([str(results), str(page), str(docs / "img" / "bench.svg")]) == 0
    text = page.read_text()
    assert text.startswith("# Performance\n\nbefore\n\n") and text.endswith(f"{report.END}\n\nafter\n")
    assert "old results" not in text
    assert "commit `abc1234`" in text and "![pyai's rate over each reference's, per scenario](img/bench.svg)" in text
    assert "```\nscenario  unit  pyai\nsmall GET 30B  req/s  100\n```" in text  # as printed, trailing blanks gone
    svg = ElementTree.parse(docs / "img" / "bench.svg").getroot()
    bars = [r for r in svg.iter("{http://www.w3.org/2000/svg}rect") if r.get("class") == "bar"]
    assert len(bars) == 3  # one per ratio
    widths = sorted(float(r.get("width")) for r in bars)
    assert widths[0] * 20 == pytest.approx(widths[2], rel=0.01)  # 0.25 against 5.0: to scale


def test_a_page_without_markers_is_left_alone(tmp_path):
    page = tmp_path / "performance.md"
    page.write_text("# Performance\n")
    results = tmp_path / "run.json"
    results.write_text(json.dumps(RUN))
    with pytest.raises(ValueError, match="markers"):
        report.main([str(results), str(page), str(tmp_path / "bench.svg")])
    assert page.read_text() == "# Performance\n"
    assert not (tmp_path / "bench.svg").exists()
