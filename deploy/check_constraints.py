"""Check that deploy/constraints.txt still fits the dependencies the projects declare.

The image installs exactly the versions in deploy/constraints.txt. A pin that no longer
satisfies a declared requirement breaks the image build, so it fails here, offline and at
once. A declared dependency with no pin still builds, at whatever version is newest that
day, so it is only reported. Either way the fix is deploy/lock-constraints.sh.

Usage: check_constraints.py CONSTRAINTS PYPROJECT...
"""

from __future__ import annotations

import sys
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

# The image's interpreter and platform (deploy/Dockerfile), for environment markers.
IMAGE_ENVIRONMENT = {
    "python_version": "3.11",
    "python_full_version": "3.11.14",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}


def read_pins(path: str) -> dict[str, Version]:
    pins: dict[str, Version] = {}
    with open(path, encoding="utf-8") as handle:
        for raw in handle:
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            name, sep, version = line.partition("==")
            if not sep:
                raise SystemExit(f"{path}: not an exact pin: {line!r}")
            pins[canonicalize_name(name)] = Version(version.strip())
    return pins


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    constraints, pyprojects = argv[0], argv[1:]
    pins = read_pins(constraints)
    local: set[str] = set()
    declared: list[tuple[str, Requirement]] = []
    for path in pyprojects:
        with open(path, "rb") as handle:
            project = tomllib.load(handle)["project"]
        local.add(canonicalize_name(project["name"]))
        declared += [(path, Requirement(r)) for r in project.get("dependencies", [])]

    errors = 0
    for path, req in declared:
        name = canonicalize_name(req.name)
        if name in local:
            continue
        if req.marker is not None and not req.marker.evaluate(IMAGE_ENVIRONMENT):
            continue
        pin = pins.get(name)
        if pin is None:
            print(f"  WARN {path}: {req} has no pin in {constraints}")
        elif not req.specifier.contains(pin, prereleases=True):
            print(f"  FAIL {path}: {req} conflicts with the pin {name}=={pin} in {constraints}")
            errors += 1
    if errors:
        print("  run deploy/lock-constraints.sh and commit deploy/constraints.txt")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
