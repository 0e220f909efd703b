"""Fuzz the logfile reader and verifier with atheris (coverage-guided libFuzzer).

Prints ONE JSON object: engine, executions, seconds, findings (inputs that raised anything other
than ``LogfileError`` inside ``read_logfile``/``verify_logfile``, or crashed the process).

    python benchmarks/fuzz_logfile.py [--quick] [--seconds N]

The seed corpus is the spec example file, a longer signed pull, a generation-1 file and a few
record encodings. If atheris is not installed, a plain random-mutation loop runs instead and the
JSON says ``"engine": "random-mutation"``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _seeds() -> list[bytes]:
    from smartlogger.logfile.gen1 import write_gen1
    from smartlogger.model import Event, EventKind, Generation, LoggerIdentity, SampleBlock
    from smartlogger.testing.logfile_examples import example_file, example_pulls

    g1 = write_gen1(LoggerIdentity("G1-0001", Generation.GEN1, "1.0"),
                    [SampleBlock.of(0, 10_000, [12800, 12790, 12795], [250, 251, 250]),
                     Event(5, EventKind.ENTER_ALARM, value=9900)])
    return [example_file(), example_pulls("SIM-0001", capacity=6)[1], g1]


def _target(data: bytes) -> None:
    from smartlogger.errors import LogfileError
    from smartlogger.logfile.format import read_logfile
    from smartlogger.logfile.verify import verify_logfile

    with contextlib.suppress(LogfileError):
        read_logfile(data)
    report = verify_logfile(data)  # must never raise
    if report.status not in ("verified", "unsigned", "tampered", "unreadable"):
        raise AssertionError(report.status)


def _child(argv: list[str]) -> None:
    import atheris

    with atheris.instrument_imports():
        pass

    atheris.Setup(argv, _target)
    atheris.Fuzz()


def _atheris(seconds: int, workdir: Path) -> dict[str, object]:
    corpus = workdir / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(_seeds()):
        (corpus / f"seed{i}").write_bytes(seed)
    cmd = [sys.executable, __file__, "--child", f"-max_total_time={seconds}", "-rss_limit_mb=1024",
           "-max_len=8192", f"-artifact_prefix={workdir}/", str(corpus)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120, check=False)
    elapsed = time.perf_counter() - t0
    runs = re.findall(r"Done (\d+) runs", proc.stderr)
    execs = int(runs[-1]) if runs else max([int(x) for x in re.findall(r"#(\d+)", proc.stderr)] or [0])
    crashes = sorted(p.name for p in workdir.iterdir() if p.name.startswith(("crash-", "oom-", "timeout-")))
    findings = []
    for name in crashes:
        findings.append({"artifact": name, "size": (workdir / name).stat().st_size})
    lines = proc.stderr.splitlines()
    at = next((i for i, ln in enumerate(lines) if "Uncaught Python exception" in ln), None)
    tail = lines[at:at + 12] if at is not None else []
    keep = Path(os.environ.get("FUZZ_ARTIFACTS", tempfile.gettempdir())) / "fuzz_logfile_artifacts"
    for name in crashes:
        keep.mkdir(parents=True, exist_ok=True)
        (keep / name).write_bytes((workdir / name).read_bytes())
    return {"engine": "atheris", "executions": execs, "seconds": round(elapsed, 1),
            "exit_code": proc.returncode, "findings": len(findings), "finding_artifacts": findings,
            "error_lines": tail, "artifacts_dir": str(keep) if crashes else None,
            "corpus_files": len(list(corpus.iterdir()))}


def _random(seconds: int) -> dict[str, object]:
    rng = random.Random(1)
    seeds = _seeds()
    execs = 0
    findings: list[str] = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 8)):
            op = rng.random()
            pos = rng.randrange(len(data)) if data else 0
            if op < 0.6 and data:
                data[pos] = rng.randrange(256)
            elif op < 0.8:
                del data[pos:pos + rng.randint(1, 64)]
            else:
                data[pos:pos] = os.urandom(rng.randint(1, 16))
        try:
            _target(bytes(data))
        except Exception as err:  # a finding: anything but a clean verdict
            findings.append(f"{type(err).__name__}: {err}"[:200])
        execs += 1
    return {"engine": "random-mutation", "executions": execs,
            "seconds": round(time.perf_counter() - t0, 1), "findings": len(findings),
            "finding_examples": findings[:5]}


def main() -> None:
    if "--child" in sys.argv:
        _child([a for a in sys.argv if a != "--child"])
        return
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="20 s instead of 120 s")
    ap.add_argument("--seconds", type=int)
    ap.add_argument("--engine", choices=("atheris", "random"), default="atheris")
    args = ap.parse_args()
    seconds = args.seconds or (20 if args.quick else 120)
    try:
        import atheris  # noqa: F401
        have_atheris = args.engine == "atheris"
    except ImportError:
        have_atheris = False
    with tempfile.TemporaryDirectory() as tmp:
        result = _atheris(seconds, Path(tmp)) if have_atheris else _random(seconds)
    result["benchmark"] = "fuzz_logfile"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
