"""`make test-quick` runs one representative end-to-end case of every feature area: a folder
of the suite with none marked ``quick`` would go untried by the fast loop."""

import subprocess
import sys

from server import ROOT

AREAS = ("integration", "hostile", "faults", "sideband", "hpss", "tape", "grid", "ops", "deploy", "paths", "tpc")


def test_every_area_has_a_quick_case():
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q", "-m", "quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    collected = [line for line in proc.stdout.splitlines() if "::" in line]
    areas = {line.split("/")[1] for line in collected if line.startswith("tests/")}
    assert set(AREAS) <= areas, f"no quick case in {sorted(set(AREAS) - areas)}"
    assert len(collected) < 400  # a few minutes (each case one or a few requests), not the suite
