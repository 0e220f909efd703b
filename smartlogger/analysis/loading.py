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
from smartlogger.logfile.format import Logfile, read_logfile
from smartlogger.model import ClockSet, ConfigChange

LOGFILE_SUFFIX = ".slog"


def block_log_from_logfile(source: Logfile | bytes | str | os.PathLike[str]) -> BlockLog:
    """The ``BlockLog`` of one logfile (path, bytes or decoded ``Logfile``)."""
    lf = source if isinstance(source, Logfile) else read_logfile(source)
    name = str(source) if isinstance(source, str | os.PathLike) else lf.identity.serial
    main = lf.records(0)
    jump_seqs = [seq for seq, rec in main if isinstance(rec, ClockSet)]
    observations = []
    for att in lf.attestations:
        if att.phone_ms is None:
            continue
        head = att.streams[0].next_seq if att.streams else None
        segment = sum(1 for s in jump_seqs if head is None or s < head)
        observations.append(ClockObservation(att.device_ms, att.phone_ms, "ble", segment))
    history = lf.config_history
    config = next((rec.config for _, rec in reversed(main) if isinstance(rec, ConfigChange)), None)
    if config is None and history:
        config = history[-1].config
    if config is None:
        raise MetadataError(f"logs[{name}]", "the logfile holds no logger configuration")
    meta = lf.metadata
    if config.block_position == 0 and meta.block_position:
        config = config.with_changes(block_position=meta.block_position)
    if not config.block_label and meta.block_label:
        config = config.with_changes(block_label=meta.block_label)
    return block_log_from_records(lf.identity, main, config=config, observations=observations, source=name)


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
    """``BlockLog``s of every logfile named by ``paths`` (files or directories)."""
    return [block_log_from_logfile(p) for p in expand_paths(paths)]
