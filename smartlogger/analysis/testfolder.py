"""A test folder as the analysis sees it: ``test.json`` -> ``TestMetadata``, and whether a saved
``result.json`` still describes the folder.

One test, one place: ``smartlogger test analyze DIR`` reads the test's metadata from
``DIR/test.json`` (``smartlogger.testinfo``), analyses the logfiles in ``DIR`` and keeps the
result in ``DIR/result.json``; ``export xlsx --test DIR`` uses that result only while it is
current: computed from exactly the logfiles now in the folder (by SHA-256) and from the
metadata ``test.json`` states now. Otherwise ``stale_reason`` says what changed.

Does not own reading logfiles (``loading``) or the metadata file's format (``testinfo``).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from pathlib import Path

from smartlogger.analysis.inputs import (
    Datasheet,
    Load,
    TestMetadata,
    load_from_quantity,
    parse_datasheet_csv,
    read_datasheet_csv,
)
from smartlogger.analysis.results import TestResult
from smartlogger.quantities import Current, Power
from smartlogger.testinfo import TEST_FILE, TestInfo, TestInfoError


def metadata_of(info: TestInfo, folder: str | os.PathLike[str], *, load: Load | None = None,
                test_id: str = "") -> TestMetadata:
    """The analysis metadata ``info`` states; ``load`` (e.g. a measured profile) replaces its load."""
    where = str(Path(folder) / TEST_FILE)
    if load is None:
        q = info.parsed_load(where)
        if q is None:
            raise TestInfoError("load", f"{where} states no load: give --load (a current), --load-power "
                                        "or --load-csv, or record it with 'smartlogger test set'")
        load = load_from_quantity(q)
    return TestMetadata(
        load, rated_time_s=info.rated_time_s(where), datasheet=datasheet_of(info, folder),
        end_voltage=info.parsed_end_voltage(where), string_blocks=info.string_blocks,
        reference_temperature_c=info.reference_temperature_c if info.reference_temperature_c is not None else 25.0,
        test_id=test_id or info.test_id,
    )


def datasheet_of(info: TestInfo, folder: str | os.PathLike[str]) -> Datasheet | None:
    """The rated-discharge table ``info`` states (its file in ``folder``, or inline); None without one."""
    where = str(Path(folder) / TEST_FILE)
    if info.datasheet:
        path = Path(folder) / info.datasheet
        if not path.exists():
            raise TestInfoError("datasheet", f"{where}: datasheet {info.datasheet} is not in the folder")
        return read_datasheet_csv(path)
    if info.datasheet_csv:
        return parse_datasheet_csv(info.datasheet_csv, f"{where}: datasheet_csv")
    return None


def describe_load(load: Current | Power) -> str:
    """How the analysis describes a constant load in ``TestResult.load``."""
    return load_from_quantity(load).describe()


def folder_files(folder: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """``(file name, SHA-256)`` of every logfile in the test folder, sorted by name."""
    return [(p.name, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(Path(folder).glob("*.slog")) if p.is_file()]


def result_files(result: TestResult) -> list[tuple[str, str]]:
    """``(file, SHA-256)`` of every logfile a result was computed from, used or excluded
    (from its evidence records); empty for a result written before results recorded them."""
    out = {(f.file, f.sha256) for b in result.blocks for f in b.evidence.files if f.sha256}
    out |= {(f.file, f.sha256) for f in result.excluded if f.sha256}
    return sorted(out)


def stale_reason(result: TestResult, files: Sequence[tuple[str, str]], info: TestInfo | None,
                 folder: str | os.PathLike[str]) -> str | None:
    """Why ``result`` no longer describes the folder (whose logfiles are ``files``: name and
    SHA-256), or None when it does.

    Files are compared by content (a renamed file is the same pull). A result that lists no
    files (written before results recorded their evidence) cannot be checked and is taken as
    current.
    """
    recorded = result_files(result)
    if recorded:
        before = {sha for _, sha in recorded}
        now = {sha for _, sha in files}
        if before != now:
            new = sorted(name for name, sha in files if sha not in before)
            gone = sorted(name for name, sha in recorded if sha not in now)
            parts = ([f"new or changed: {', '.join(new[:4])}{' ...' if len(new) > 4 else ''}"] if new else []) + \
                    ([f"gone: {', '.join(gone[:4])}{' ...' if len(gone) > 4 else ''}"] if gone else [])
            return "the logfiles changed since the analysis (" + "; ".join(parts) + ")"
    if info is None:
        return None
    where = str(Path(folder) / TEST_FILE)
    q = info.parsed_load(where)
    if q is not None and result.load_kind != "current_profile" and describe_load(q) != result.load:
        return f"test.json now states the load {info.load}, the result is for {result.load}"
    rt = info.rated_time_s(where)
    if rt is not None and (result.capacity.rated_time_s is None
                           or not math.isclose(rt, result.capacity.rated_time_s, rel_tol=1e-6)):
        return f"test.json now states the rated time {info.rated_time}"
    ev = info.parsed_end_voltage(where)
    if ev is not None and ev.scope == "cell" and not math.isclose(ev.volts, result.discharge.end_v_per_cell,
                                                                  rel_tol=1e-9):
        return f"test.json now states the end voltage {ev}"
    if info.string_blocks is not None and info.string_blocks != result.string_blocks:
        return f"test.json now states {info.string_blocks} blocks, the result has {result.string_blocks}"
    return None


__all__ = ["describe_load", "folder_files", "metadata_of", "result_files", "stale_reason"]
