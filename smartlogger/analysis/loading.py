"""Loading a capacity test from ``.slog`` logfiles into ``BlockLog``s.

Owns the mapping from a decoded logfile (``smartlogger.logfile``) to the
analysis input: the main stream's records become samples, events and clock
jumps (``block_log_from_records``); every signed pull that carries the phone's
time becomes a clock observation, placed after the clock jumps that were in the
log at that pull; the phone-side metadata supplies block label and position
when the logger's configuration has none. Also expands a directory argument
into its ``.slog`` files.

Does not own the logfile format or its verification (``smartlogger.logfile``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from smartlogger.analysis.inputs import (
    BlockLog,
    ClockObservation,
    MetadataError,
    block_log_from_records,
)
from smartlogger.logfile.container import Logfile
from smartlogger.logfile.format import read_logfile
from smartlogger.model import ClockSet, ConfigChange, Record

LOGFILE_SUFFIX = ".slog"


Source = Logfile | bytes | str | os.PathLike[str]


def block_log_from_logfile(source: Source) -> BlockLog:
    """The ``BlockLog`` of one logfile (path, bytes or decoded ``Logfile``)."""
    lf = source if isinstance(source, Logfile) else read_logfile(source)
    name = str(source) if isinstance(source, str | os.PathLike) else lf.identity.serial
    return _block_log([lf], name)


def block_logs_from_logfiles(sources: Iterable[Source]) -> list[BlockLog]:
    """One ``BlockLog`` per logger from any number of logfiles, in first-seen order.

    A logger pulled more than once (incremental "since last pull" files, or a full
    pull repeated with a new nonce) has several logfiles: their main-stream records
    are merged by sequence number. Two files that carry different bytes for the same
    sequence number of one logger cannot both be that logger's log:
    ``MetadataError`` names the logger and the sequence number.
    """
    groups: dict[str, list[Logfile]] = {}
    names: dict[str, list[str]] = {}
    for source in sources:
        lf = source if isinstance(source, Logfile) else read_logfile(source)
        serial = lf.identity.serial
        groups.setdefault(serial, []).append(lf)
        names.setdefault(serial, []).append(
            str(source) if isinstance(source, str | os.PathLike) else serial)
    return [_block_log(files, "+".join(names[serial])) for serial, files in groups.items()]


def _merged_main(files: list[Logfile], name: str) -> list[tuple[int, Record]]:
    if len(files) == 1:
        return files[0].records(0)
    by_seq: dict[int, tuple[bytes, Record]] = {}
    for lf in files:
        raw = {r.seq: r.data for r in lf.streams[0].records} if lf.streams else {}
        for seq, rec in lf.records(0):
            data = raw.get(seq, b"")
            seen = by_seq.get(seq)
            if seen is None:
                by_seq[seq] = (data, rec)
            elif seen[0] != data:
                raise MetadataError(f"logs[{name}]",
                                    f"two logfiles of {lf.identity.serial} disagree on record seq {seq}")
    return [(seq, by_seq[seq][1]) for seq in sorted(by_seq)]


def _block_log(files: list[Logfile], name: str) -> BlockLog:
    main = _merged_main(files, name)
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
        raise MetadataError(f"logs[{name}]", "the logfile holds no logger configuration")
    meta = newest.metadata
    if config.block_position == 0 and meta.block_position:
        config = config.with_changes(block_position=meta.block_position)
    if not config.block_label and meta.block_label:
        config = config.with_changes(block_label=meta.block_label)
    return block_log_from_records(newest.identity, main, config=config, observations=observations,
                                  source=name)


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


def load_test_logs(paths: Iterable[str | os.PathLike[str]]) -> list[BlockLog]:
    """``BlockLog``s of every logfile named by ``paths`` (files or directories), one per logger."""
    return block_logs_from_logfiles(expand_paths(paths))
