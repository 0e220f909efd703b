#!/usr/bin/env python3
"""Refresh constraints.txt: the exact versions of every dependency the tests pass with.

What it does (docs/DEPENDENCIES.md):

1. makes a throwaway virtual environment (no system packages) and installs
   ``pip install --upgrade -e '.[dev]'`` into it: the newest releases pyproject.toml allows;
2. runs the checks in it: ``ruff check smartlogger tests benchmarks scripts``, ``mypy smartlogger`` and
   the whole test suite (``SMARTLOGGER_TEST_DATABASE_URL`` is passed on, so PostgreSQL is
   tested when it is set);
3. only if everything passed, rewrites constraints.txt with the exact versions installed,
   restricted to what smartlogger[dev] needs transitively (read from the installed packages'
   metadata, markers evaluated for this platform), and checks the new file against the
   environment (``tests/test_dependencies.py``; the one test left out of step 2, as the
   environment differs from the old pins on purpose); otherwise constraints.txt is left as it
   was and the failing step is named (exit 1).

A release that breaks us is then fixed or excluded with an upper bound in pyproject.toml (and,
for a dependency with an adapter in smartlogger/compat/, in its ``require`` range) before the
refresh is run again.

Usage::

    python scripts/refresh_constraints.py                # upgrade, test, rewrite
    python scripts/refresh_constraints.py --keep DIR     # keep the environment in DIR
    python scripts/refresh_constraints.py --print-closure  # the pins of the running environment
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints.txt"
PROJECT = "smartlogger"
EXTRAS = ("dev",)
PINNED_TEST = "tests/test_dependencies.py::test_the_installed_environment_is_the_pinned_one"
HEADER = """\
# Exact versions of every dependency of smartlogger[dev] (transitively) that the checks and the
# whole test suite pass with. Install with:  pip install -c constraints.txt -e '.[dev]'
# Written by scripts/refresh_constraints.py (docs/DEPENDENCIES.md); do not edit by hand.
"""


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(project: str = PROJECT, extras: tuple[str, ...] = EXTRAS) -> dict[str, str]:
    """``{name: version}`` of every installed distribution ``project[extras]`` needs, transitively,
    with environment markers evaluated for the running interpreter (the project itself excluded)."""
    from importlib import metadata

    try:
        from packaging.requirements import Requirement
    except ImportError:  # a bare venv: pip carries its own copy
        from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]

    found: dict[str, str] = {}
    todo: list[tuple[str, tuple[str, ...]]] = [(project, extras)]
    seen: set[tuple[str, tuple[str, ...]]] = set()
    while todo:
        name, want = todo.pop()
        key = (canonical(name), tuple(sorted(want)))
        if key in seen:
            continue
        seen.add(key)
        dist = metadata.distribution(name)
        if canonical(name) != canonical(project):
            found[canonical(dist.metadata["Name"])] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            envs = [{"extra": e} for e in ("", *want)]
            if req.marker is not None and not any(req.marker.evaluate(env) for env in envs):
                continue
            todo.append((req.name, tuple(sorted(req.extras))))
    return dict(sorted(found.items()))


def render(pins: dict[str, str]) -> str:
    return HEADER + "".join(f"{name}=={version}\n" for name, version in pins.items())


def read_pins(path: Path = CONSTRAINTS) -> dict[str, str]:
    """``{canonical name: version}`` of a constraints file."""
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            if not sep:
                raise ValueError(f"{path}: {line!r} is not an exact pin (name==version)")
            pins[canonical(name)] = version.strip()
    return pins


def _run(step: str, argv: list[str], env: dict[str, str]) -> None:
    print(f"== {step}: {' '.join(argv)}", flush=True)
    if subprocess.run(argv, cwd=ROOT, env=env).returncode != 0:
        raise SystemExit(f"refresh_constraints: {step} failed; constraints.txt left unchanged")


def refresh(venv: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    _run("make a fresh environment", [sys.executable, "-m", "venv", str(venv)], env)
    bin_dir = venv / "bin"
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    python = str(bin_dir / "python")
    _run("install the newest allowed releases",
         [python, "-m", "pip", "install", "-q", "--upgrade", "-e", f".[{','.join(EXTRAS)}]"], env)
    _run("lint", [python, "-m", "ruff", "check", "smartlogger", "tests", "benchmarks", "scripts"], env)
    _run("types", [python, "-m", "mypy", "smartlogger"], env)
    # Every test but the one that compares the environment with constraints.txt: the environment
    # is the new one on purpose; that test runs once the new file is written.
    _run("tests", [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--deselect", PINNED_TEST], env)
    out = subprocess.run([python, str(Path(__file__).resolve()), "--print-closure"], cwd=ROOT, env=env,
                         check=True, capture_output=True, text=True).stdout
    before = CONSTRAINTS.read_text(encoding="utf-8") if CONSTRAINTS.exists() else None
    old = read_pins() if before is not None else {}
    CONSTRAINTS.write_text(out, encoding="utf-8")
    try:
        _run("the new pins are the environment", [python, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                                   PINNED_TEST], env)
    except SystemExit:
        if before is not None:
            CONSTRAINTS.write_text(before, encoding="utf-8")
        raise
    new = read_pins()
    changed = [f"  {n}: {old.get(n, '-')} -> {v}" for n, v in new.items() if old.get(n) != v]
    gone = [f"  {n}: {v} -> -" for n, v in old.items() if n not in new]
    print(f"wrote {CONSTRAINTS} ({len(new)} pins; {len(changed) + len(gone)} changed)")
    print("\n".join(changed + gone))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", metavar="DIR", help="make the environment in DIR and keep it")
    ap.add_argument("--print-closure", action="store_true",
                    help="print the constraints of the running environment and exit")
    args = ap.parse_args()
    if args.print_closure:
        sys.stdout.write(render(closure()))
        return
    if args.keep:
        refresh(Path(args.keep).resolve())
        return
    tmp = Path(tempfile.mkdtemp(prefix="smartlogger-constraints-"))
    try:
        refresh(tmp / "venv")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
