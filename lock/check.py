"""Is the running environment exactly the committed lock?

    python lock/check.py            # exit 1, naming each package, when the environment drifted from the lock
    python lock/check.py --extras   # names of installed packages that the lock does not list (for uninstalling)
    python lock/check.py --report   # what differs, exit 0 (`make test-latest`: what the newest resolution moved)

Checked: every locked package is installed at its locked version and nothing else is installed (our own
package aside); `pip check` finds no broken requirement, except those declared by the packages installed
with --no-deps (lock/nodeps.lock: only their files are used); and every requirement in pyproject.toml is
satisfied by the lock, so a dependency added without `make lock` is caught too.

Standard library only (and `packaging`, which pip vendors), because it must run in a broken environment.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.version import Version
except ImportError:  # packaging itself drifted away: pip always carries a copy
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "lock" / "requirements.lock"
NODEPS_LOCK = ROOT / "lock" / "nodeps.lock"
PYPROJECT = ROOT / "pyproject.toml"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")
# `pip check` lines that are known to be false: decord 0.6.0's wheel is named py3-none-manylinux2010_x86_64, but
# its WHEEL metadata claims cp36-cp36m, so pip calls it unsupported; it imports and runs on CPython 3.11.
KNOWN_FALSE = {"decord 0.6.0 is not supported on this platform"}
FIX = "make sync  (reinstalls exactly the lock; after editing pyproject.toml: make lock, then make sync)"


def canonical(name: str) -> str:
    """PEP 503 name: the lock, pip and importlib.metadata may spell one package differently."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    """`name==version` lines of a pip requirements lock (hash and comment lines skipped)."""
    pins: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line or line[0] in " #\t-":
            continue
        match = PIN.match(line)
        if match is None:
            raise SystemExit(f"{path}:{number}: not a `name==version` pin: {line.strip()!r}")
        pins[canonical(match.group(1))] = match.group(2)
    return pins


def installed() -> dict[str, str]:
    """Every distribution visible to this interpreter, by canonical name."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonical(name), dist.version)
    return found


@dataclass(frozen=True)
class Drift:
    package: str
    problem: str

    def __str__(self) -> str:
        return f"{self.package}: {self.problem}"


def same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except ValueError:  # not PEP 440 (InvalidVersion is a ValueError): compare as written
        return a == b


def compare(locked: dict[str, str], present: dict[str, str], own: str = "dfa-bench") -> list[Drift]:
    """Locked packages missing or at another version, and installed packages the lock does not list."""
    drift = []
    for name, version in sorted(locked.items()):
        if name not in present:
            drift.append(Drift(name, f"locked {version}, not installed"))
        elif not same_version(present[name], version):
            drift.append(Drift(name, f"locked {version}, installed {present[name]}"))
    for name in sorted(set(present) - set(locked) - {canonical(own)}):
        drift.append(Drift(name, f"installed {present[name]}, not in the lock"))
    return drift


def pip_check(ignore: set[str]) -> list[Drift]:
    """`pip check`'s broken requirements, except those declared by packages in `ignore`."""
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    drift = []
    for line in result.stdout.splitlines():
        words = line.split()
        if not words or line.startswith("No broken requirements") or line.strip() in KNOWN_FALSE:
            continue
        if canonical(words[0]) not in ignore:
            drift.append(Drift(canonical(words[0]), f"pip check: {line.strip()}"))
    if result.returncode != 0 and not result.stdout.strip():
        drift.append(Drift("pip", f"pip check failed: {result.stderr.strip()[-300:]}"))
    return drift


def project_requirements(pyproject: Path, extra: str = "dev") -> list[Requirement]:
    """pyproject.toml's dependencies plus `extra`, following self-references such as dfa-bench[eval,data]."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    own, optional = canonical(project["name"]), project.get("optional-dependencies", {})
    wanted, seen, requirements = [extra], set(), [Requirement(r) for r in project.get("dependencies", [])]
    while wanted:
        name = wanted.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in optional.get(name, []):
            requirement = Requirement(text)
            if canonical(requirement.name) == own:
                wanted.extend(requirement.extras)
            else:
                requirements.append(requirement)
    return requirements


def stale_lock(requirements: list[Requirement], locked: dict[str, str]) -> list[Drift]:
    """Requirements of pyproject.toml that the lock lacks or pins outside their range."""
    drift = []
    for requirement in requirements:
        name = canonical(requirement.name)
        if name not in locked:
            drift.append(Drift(name, f"pyproject.toml asks for {requirement}, the lock lacks it: run make lock"))
        elif not requirement.specifier.contains(locked[name], prereleases=True):
            drift.append(
                Drift(name, f"pyproject.toml asks for {requirement}, the lock pins {locked[name]}: run make lock")
            )
    return drift


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--extras", action="store_true", help="print installed packages the lock does not list")
    mode.add_argument("--report", action="store_true", help="print what differs from the lock and exit 0")
    parser.add_argument("--lock", type=Path, default=LOCK)
    parser.add_argument("--nodeps-lock", type=Path, default=NODEPS_LOCK)
    parser.add_argument("--pyproject", type=Path, default=PYPROJECT)
    args = parser.parse_args(argv)

    main_lock, nodeps = read_lock(args.lock), read_lock(args.nodeps_lock)
    locked = {**main_lock, **nodeps}
    present = installed()
    if args.extras:
        print("\n".join(d.package for d in compare(locked, present) if d.problem.endswith("not in the lock")))
        return 0
    drift = compare(locked, present) + pip_check(ignore=set(nodeps))
    drift += stale_lock(project_requirements(args.pyproject), main_lock)
    if args.report:
        print(f"{len(drift)} difference(s) from {args.lock.name}:")
        print("\n".join(f"  {d}" for d in drift))
        return 0
    if drift:
        print(f"The environment of {sys.executable} differs from the lock ({args.lock}):", file=sys.stderr)
        print("\n".join(f"  {d}" for d in drift), file=sys.stderr)
        print(f"To go back to the lock: {FIX}", file=sys.stderr)
        return 1
    print(f"environment matches the lock: {len(locked)} packages, pip check clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
