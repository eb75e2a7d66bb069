"""The dependency declarations agree: pyproject.toml's ranges, requirements.txt's pins
(the newest, what ``make test`` runs) and constraints/floors.txt's (the oldest, what
``make test-floors`` runs).  A range whose floor nobody tests would be a claim, not a fact.
"""

import re

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from server import ROOT

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11; the declarations are the same on any


def declared():
    """name -> Requirement, for the build, runtime and test dependencies of pyproject.toml."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)
    lines = (
        project["build-system"]["requires"]
        + project["project"]["dependencies"]
        + project["project"]["optional-dependencies"]["test"]
    )
    requirements = [Requirement(line) for line in lines]
    return {canonicalize_name(r.name): r for r in requirements}


def pins(path):
    """name -> pinned Version, from the ``name==version`` lines of a requirements file."""
    found = {}
    for line in (ROOT / path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            match = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)", line)
            assert match, f"{path}: not a pin: {line!r}"
            found[canonicalize_name(match[1])] = Version(match[2])
    return found


def floor(requirement):
    (lower,) = [s for s in requirement.specifier if s.operator == ">="]
    return Version(lower.version)


def test_every_dependency_has_a_floor_and_a_ceiling():
    for name, requirement in declared().items():
        operators = sorted(s.operator for s in requirement.specifier)
        assert operators == ["<", ">="], f"{name}: {requirement.specifier} (want >=floor,<ceiling)"


@pytest.mark.parametrize("path", ["requirements.txt", "constraints/floors.txt"])
def test_pins_are_admitted(path):
    wanted = declared()
    pinned = pins(path)
    assert set(wanted) <= set(pinned), f"{path} does not pin {sorted(set(wanted) - set(pinned))}"
    for name, requirement in wanted.items():
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{path}: {name}=={pinned[name]} is outside {requirement.specifier}"
        )


def test_floors_are_the_declared_floors():
    """floors.txt pins each dependency exactly at its declared floor (the test tools excepted:
    they are pinned where they install beside the floors)."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        test_tools = {
            canonicalize_name(Requirement(r).name) for r in tomllib.load(f)["project"]["optional-dependencies"]["test"]
        }
    pinned = pins("constraints/floors.txt")
    for name, requirement in declared().items():
        if name not in test_tools:
            assert pinned[name] == floor(requirement), (
                f"{name}: floors.txt {pinned[name]}, pyproject {requirement.specifier}"
            )
