"""The README's "Rehearse it on a virtual site", command by command, as written.

``commands()`` reads the section's shell block from README.md (a trailing ``# comment`` is
dropped, as the shell would); ``walk()`` runs each line in its own process in a working
folder and stops at the first one that does not exit 0. ``tests/test_site_rehearsal.py``
walks it and checks what each step should have done; ``.ci/run`` runs ``python
tests/rehearsal.py``. Not a test module.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SECTION = "## Rehearse it on a virtual site"


def commands(readme: Path = README) -> list[str]:
    """The command lines of the section's ``sh`` block(s), without their trailing comments."""
    text = readme.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start:end if end >= 0 else len(text)]
    out: list[str] = []
    inside = False
    for line in section.splitlines():
        if line.strip().startswith("```"):
            inside = line.strip() == "```sh" if not inside else False
            continue
        if inside and line.strip():
            out.append(" ".join(shlex.split(line, comments=True)))
    return out


Hook = Callable[[int, str, "subprocess.CompletedProcess[str]"], None]


def walk(cwd: Path, *, after: Hook | None = None, timeout_s: float = 600.0,
         echo: bool = False) -> list[subprocess.CompletedProcess[str]]:
    """Run every command in ``cwd``; ``after(index, command, result)`` checks each one."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    results = []
    for i, command in enumerate(commands()):
        t0 = time.perf_counter()
        proc = subprocess.run(shlex.split(command), cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=timeout_s)
        if echo:
            print(f"$ {command}   [{time.perf_counter() - t0:.1f} s, exit {proc.returncode}]", flush=True)
        if proc.returncode != 0:
            raise AssertionError(f"README command {i + 1} exited {proc.returncode}: {command}\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        results.append(proc)
        if after is not None:
            after(i, command, proc)
    return results


def stop_sites(cwd: Path) -> None:
    """Leave no site process behind: stop every site under ``cwd`` (kill one that hangs)."""
    for run in cwd.glob("*/run.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            pid = int(json.loads(run.read_text())["pid"])
            subprocess.run([str(Path(sys.executable).parent / "smartlogger"), "sim", "site", "stop",
                            str(run.parent), "--timeout", "20"], capture_output=True, timeout=60)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="rehearsal-") as tmp:
        cwd = Path(tmp)
        t0 = time.perf_counter()
        try:
            walk(cwd, echo=True)
        finally:
            stop_sites(cwd)
        print(f"rehearsal: {len(commands())} commands in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
