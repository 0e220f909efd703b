"""Loading a capacity test from ``.slog`` logfiles into ``BlockLog``s, leaving out what cannot be used.

Owns the mapping from decoded logfiles (``smartlogger.logfile``) to the analysis input:

- ``load_logfiles(files)``: the files of one test, given as data (name and bytes, a path, or a
  decoded ``Logfile``), in any order. Several pulls of one logger (incremental "since last
  pull" files, a full pull repeated, the same file twice) are merged into one log by sequence
  number, so a folder of repeated pulls analyses like one full pull. A file that cannot be used
  does not stop the test: it is *excluded* with a reason code and a message
  (``analysis.results.ExcludedFile``) and the rest of the string is analysed. This is the one
  exclusion mechanism; the results, the CLI, the workbook and the app list these records.
- ``block_log_from_records`` (in ``inputs``) does the per-logger decoding: the main stream's
  records become samples, events and clock jumps; every signed pull that carries the phone's
  time becomes a clock observation placed after the clock jumps in the log at that pull; the
  phone-side metadata supplies block label and position when the configuration has none.
- ``read_test_files``: a directory argument expanded into its ``.slog`` files, as
  ``(name, path)`` pairs for ``load_logfiles``.

Does not own the logfile format or its verification (``smartlogger.logfile``).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from smartlogger.analysis.inputs import (
    BlockLog,
    ClockObservation,
    MetadataError,
    block_log_from_records,
)
from smartlogger.analysis.results import ExcludedFile, InputFile
from smartlogger.errors import LogfileError
from smartlogger.logfile.container import Logfile
from smartlogger.logfile.format import MAGIC, read_logfile
from smartlogger.logfile.gen1 import MAGIC as GEN1_MAGIC
from smartlogger.model import ClockSet, ConfigChange, Record

LOGFILE_SUFFIX = ".slog"

# Reason codes of the exclusions made here (see ``ExcludedFile``).
NOT_A_LOGFILE = "not_a_logfile"
UNREADABLE = "unreadable"
NO_CONFIGURATION = "no_configuration"
CONFLICTING_PULLS = "conflicting_pulls"
OTHER_TEST = "other_test"

Source = Logfile | bytes | str | os.PathLike[str]


@dataclass
class LoadedTest:
    """The logs of one test, one ``BlockLog`` per logger, and what was left out.

    ``logfiles`` maps each kept logger's serial to its ``(name, Logfile)`` pulls (for the
    evidence rows of a report); ``inputs`` lists every file read, used or not.
    """

    logs: list[BlockLog]
    excluded: list[ExcludedFile] = field(default_factory=list)
    inputs: list[InputFile] = field(default_factory=list)
    logfiles: dict[str, list[tuple[str, Logfile]]] = field(default_factory=dict)
    #: loggers of this string excluded for their data (not other tests'): serial -> position (0: unknown)
    excluded_loggers: dict[str, int] = field(default_factory=dict)


def _name_of(source: Source, index: int) -> str:
    if isinstance(source, str | os.PathLike):
        return Path(source).name
    if isinstance(source, Logfile):
        return f"{source.identity.serial} ({source.sha256[:12]})"
    return f"file {index + 1}"


def _read(name: str, source: Source) -> tuple[Logfile | None, InputFile, ExcludedFile | None]:
    """Decode one file; a file that does not decode becomes an exclusion, never an exception."""
    if isinstance(source, Logfile):
        return source, InputFile(name, source.sha256, source.identity.serial), None
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
    except OSError as err:
        why = err.strerror or type(err).__name__
        return None, InputFile(name, "", ""), ExcludedFile(name, "", UNREADABLE, f"cannot read the file: {why}")
    sha = hashlib.sha256(data).hexdigest()
    if not (data.startswith(MAGIC[:4]) or data.startswith(GEN1_MAGIC)):
        kind = _guess_kind(data)
        return None, InputFile(name, sha, ""), ExcludedFile(
            name, "", NOT_A_LOGFILE, f"not a smartlogger logfile{kind} ({len(data)} bytes)")
    try:
        lf = read_logfile(data)  # decodes every record, sample payloads included
    except (LogfileError, ValueError) as err:  # ValueError: a decoded value the model refuses
        return None, InputFile(name, sha, ""), ExcludedFile(name, "", UNREADABLE, f"damaged: {err}")
    return lf, InputFile(name, sha, lf.identity.serial), None


def _guess_kind(data: bytes) -> str:
    if data.startswith(b"PK\x03\x04"):
        return " (a ZIP container: a workbook or archive renamed to .slog?)"
    if data[:5] == b"%PDF-":
        return " (a PDF)"
    head = data[:64]
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return " (a text file)"
    return ""


def load_logfiles(files: Iterable[tuple[str, Source]], *, test_id: str | None = None) -> LoadedTest:
    """One ``BlockLog`` per logger from the files of one test, excluding what cannot be used.

    ``files`` are ``(name, source)`` pairs; the name is how an exclusion refers to the file.
    Exclusions (``ExcludedFile``): a file that is not a logfile or does not decode; a logger
    whose pulls hold no configuration (only pulls with no records); a logger whose pulls
    disagree on a record; a logger programmed for another test than ``test_id`` (or, when it
    is not given, than a clear majority of the string). Never raises for the files' content.
    """
    inputs: list[InputFile] = []
    excluded: list[ExcludedFile] = []
    groups: dict[str, list[tuple[str, Logfile]]] = {}
    seen_sha: set[str] = set()
    for i, (name, source) in enumerate(files):
        lf, inp, exc = _read(name or _name_of(source, i), source)
        inputs.append(inp)
        if exc is not None:
            excluded.append(exc)
            continue
        assert lf is not None
        if lf.sha256 in seen_sha:
            continue  # the same bytes twice (a copied file): one pull
        seen_sha.add(lf.sha256)
        groups.setdefault(lf.identity.serial, []).append((inp.path, lf))
    logs: list[BlockLog] = []
    kept: dict[str, list[tuple[str, Logfile]]] = {}
    excluded_positions: dict[str, int] = {}
    for serial, pulls in groups.items():
        names = "+".join(n for n, _ in pulls)
        try:
            log = _block_log([lf for _, lf in pulls], names)
        except _Unusable as err:
            excluded.append(ExcludedFile(names, serial, err.reason, err.message))
            excluded_positions[serial] = err.position
            continue
        log.files = tuple(n for n, _ in pulls)
        logs.append(log)
        kept[serial] = pulls
    expected = test_id or _majority_test_id(logs)
    if expected:
        for log in list(logs):
            tid = log.config.test_id
            if tid and tid != expected:
                logs.remove(log)
                del kept[log.serial]
                excluded.append(ExcludedFile(
                    "+".join(log.files), log.serial, OTHER_TEST,
                    f"programmed for test {tid!r}, not {expected!r} (a logger from another job?)"))
    return LoadedTest(logs, excluded, inputs, kept, excluded_positions)


def _majority_test_id(logs: Sequence[BlockLog]) -> str:
    ids = Counter(log.config.test_id for log in logs if log.config.test_id)
    if not ids:
        return ""
    tid, n = ids.most_common(1)[0]
    return tid if n * 2 > len(logs) else ""  # only a clear majority speaks for the string


class _Unusable(Exception):
    def __init__(self, reason: str, message: str, position: int = 0) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.position = position


def _merged_main(files: list[Logfile]) -> list[tuple[int, Record]]:
    if len(files) == 1:
        return files[0].records(0)
    by_seq: dict[int, tuple[bytes, Record]] = {}
    for lf in files:
        for raw in (lf.streams[0].records if lf.streams else []):
            seen = by_seq.get(raw.seq)
            if seen is None:
                by_seq[raw.seq] = (raw.data, raw.record)
            elif seen[0] != raw.data:
                raise _Unusable(CONFLICTING_PULLS,
                                f"two pulls of {lf.identity.serial} disagree on record seq {raw.seq}: "
                                "they cannot both be this logger's log")
    return [(seq, by_seq[seq][1]) for seq in sorted(by_seq)]


def _block_log(files: list[Logfile], name: str) -> BlockLog:
    main = _merged_main(files)
    jump_seqs = [seq for seq, rec in main if isinstance(rec, ClockSet)]
    observations = []
    seen_obs: set[tuple[int, int]] = set()
    for lf in files:
        for att in lf.attestations:
            if att.phone_ms is None or (att.device_ms, att.phone_ms) in seen_obs:
                continue
            seen_obs.add((att.device_ms, att.phone_ms))
            head = att.streams[0].next_seq if att.streams else None
            segment = sum(1 for s in jump_seqs if head is None or s < head)
            observations.append(ClockObservation(att.device_ms, att.phone_ms, "ble", segment))
    observations.sort(key=lambda o: o.device_ms)
    # The newest file (latest pull) speaks for the phone-side metadata and history.
    newest = max(files, key=lambda lf: max((a.device_ms for a in lf.attestations), default=-1))
    history = newest.config_history
    config = next((rec.config for _, rec in reversed(main) if isinstance(rec, ConfigChange)), None)
    if config is None and history:
        config = history[-1].config
    if config is None:
        ranges = ", ".join(f"seq {lf.streams[0].anchor_seq}..{lf.streams[0].next_seq - 1}"
                           if lf.streams and lf.streams[0].records else "no records" for lf in files)
        raise _Unusable(NO_CONFIGURATION,
                        f"the pulls of {newest.identity.serial} hold no logger configuration ({ranges}): "
                        "its earlier pull is missing from the folder",
                        newest.metadata.block_position)
    meta = newest.metadata
    if config.block_position == 0 and meta.block_position:
        config = config.with_changes(block_position=meta.block_position)
    if not config.block_label and meta.block_label:
        config = config.with_changes(block_label=meta.block_label)
    return block_log_from_records(newest.identity, main, config=config, observations=observations,
                                  source=name)


# --------------------------------------------------------------------------- strict helpers


def block_log_from_logfile(source: Source) -> BlockLog:
    """The ``BlockLog`` of one logfile (path, bytes or decoded ``Logfile``); raises if unusable."""
    return _strict(load_logfiles([(_name_of(source, 0), source)]))[0]


def block_logs_from_logfiles(sources: Iterable[Source]) -> list[BlockLog]:
    """One ``BlockLog`` per logger from any number of logfiles, in first-seen order; raises
    ``MetadataError`` (naming the file) where ``load_logfiles`` would exclude one."""
    return _strict(load_logfiles((_name_of(s, i), s) for i, s in enumerate(sources)))


def _strict(loaded: LoadedTest) -> list[BlockLog]:
    if loaded.excluded:
        e = loaded.excluded[0]
        raise MetadataError(f"logs[{e.path}]", e.message)
    return loaded.logs


# --------------------------------------------------------------------------- folders


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given, directories replaced by their ``.slog`` files (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix == LOGFILE_SUFFIX and q.is_file())
            if not found:
                raise MetadataError("logs", f"{p} holds no {LOGFILE_SUFFIX} files")
            out.extend(found)
        else:
            out.append(p)
    return out


def read_test_files(paths: Iterable[str | os.PathLike[str]]) -> list[tuple[str, Path]]:
    """``(name, path)`` of every logfile named by ``paths`` (files or test folders), for
    ``load_logfiles``; the name is the file name."""
    return [(p.name, p) for p in expand_paths(paths)]


def load_test_logs(paths: Iterable[str | os.PathLike[str]]) -> list[BlockLog]:
    """``BlockLog``s of every logfile named by ``paths`` (files or directories), one per logger;
    raises where a file is unusable (see ``load_logfiles`` for the forgiving form)."""
    return _strict(load_logfiles(read_test_files(paths)))
