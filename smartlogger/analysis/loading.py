"""Loading a capacity test from ``.slog`` logfiles into ``BlockLog``s.

Owns the mapping from a decoded logfile (``smartlogger.logfile``) to the
analysis input: the main stream's records become samples, events and clock
jumps (``block_log_from_records``); every signed pull that carries the phone's
time becomes a clock observation, placed after the clock jumps that were in the
log at that pull; the phone-side metadata supplies block label and position
when the logger's configuration has none. Also expands a directory argument
into its ``.slog`` files.

``load_test_files`` is the loader of a capacity test as evidence: it verifies every file
(``logfile.verify``), excludes unreadable and tampered files, merges per logger only the
files ``analysis.evidence.select`` allows, and returns the logs with each block's
evidence and the exclusion records (``LoadedTest``); ``analyze_test(..., excluded=...)``
puts them into the result.

Does not own the logfile format or its verification (``smartlogger.logfile``), nor the
merge rules (``analysis.evidence``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import numpy.typing as npt

from smartlogger.analysis import evidence as ev
from smartlogger.analysis.align import clock_candidates, continuous_time, observations_of
from smartlogger.analysis.analyze import AnalysisOptions, analyze_test
from smartlogger.analysis.discharge import START_FRACTION_OF_NOMINAL
from smartlogger.analysis.inputs import (
    BlockLog,
    ClockObservation,
    HistoryCut,
    HistoryNeeded,
    MetadataError,
    TestMetadata,
    TooManySamples,
    block_log_from_records,
)
from smartlogger.analysis.results import FileEvidence, TestResult
from smartlogger.errors import LogfileError
from smartlogger.logfile.container import Logfile, RawRecord
from smartlogger.logfile.evidence import Authority
from smartlogger.logfile.format import MAGIC, PAYLOAD_AT, iter_sample_batches, read_logfile
from smartlogger.logfile.gen1 import MAGIC as GEN1_MAGIC
from smartlogger.logfile.records import SAMPLE_HEAD, RecordType
from smartlogger.logfile.verify import VerifyReport, verify_logfile
from smartlogger.model import ClockSet, ConfigChange, EventKind, Record, SampleBlock

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


def _merged_main(files: list[Logfile], name: str) -> list[RawRecord]:
    """The main-stream records of one logger's files, merged by seq (as stored: sample payloads
    not decoded)."""
    if len(files) == 1:
        return list(files[0].streams[0].records)
    by_seq: dict[int, RawRecord] = {}
    for lf in files:
        for raw in lf.streams[0].records:
            seen = by_seq.get(raw.seq)
            if seen is None:
                by_seq[raw.seq] = raw
            elif seen.data != raw.data:
                raise MetadataError(f"logs[{name}]",
                                    f"two logfiles of {lf.identity.serial} disagree on record seq {raw.seq}")
    return [by_seq[seq] for seq in sorted(by_seq)]


def _sample_count(raw: RawRecord) -> int:
    """The samples of a sample-block record: its decoded block's, or the count in its payload's head
    (read without decoding the payload)."""
    if raw.decoded is not None:
        return len(cast(SampleBlock, raw.decoded))
    return int.from_bytes(raw.data[PAYLOAD_AT + 1:PAYLOAD_AT + 5], "little")


def _sample_arrays(raws: list[RawRecord]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32],
                                                   npt.NDArray[np.int16]]:
    """``(t_ms, mv, dc)`` of the sample blocks ``raws`` (in log order) as ``block_log_from_records``
    makes them, decoded batch by batch straight into the arrays: no ``SampleBlock`` is built or
    kept on the read logfile, so the log costs its 14 bytes per sample and one batch's temporaries.
    The voltages and temperatures are decoded first and the times (which need no decoding) last.
    """
    todo = [raw for raw in raws if raw.decoded is None]
    # Sample counts: decoded blocks have theirs; the others' heads are checked by the decoder
    # (before its first batch) and then read like it reads them.
    pos: list[int] = []
    n = 0
    batches = iter_sample_batches(todo) if todo else iter(())
    batch = next(batches, None)
    for raw in raws:
        pos.append(n)
        n += _sample_count(raw)
    mv = np.empty(n, dtype=np.int32)
    dc = np.empty(n, dtype=np.int16)
    at = {id(raw): p for raw, p in zip(raws, pos, strict=True)}
    for raw in raws:
        if raw.decoded is not None:
            block = cast(SampleBlock, raw.decoded)
            p = at[id(raw)]
            mv[p:p + len(block)] = np.asarray(block.mv, dtype=np.int32)
            dc[p:p + len(block)] = np.asarray(block.dc, dtype=np.int16)
    while batch is not None:
        recs, _, _, bmv, bdc, counts = batch
        p = at[id(recs[0])]
        if len(recs) == 1 or at[id(recs[-1])] - p == int(counts[:-1].sum()):  # contiguous in the log
            mv[p:p + bmv.size] = bmv
            dc[p:p + bdc.size] = bdc.astype(np.int16)
        else:
            k = 0
            for raw, c in zip(recs, counts.tolist(), strict=True):
                q = at[id(raw)]
                mv[q:q + c] = bmv[k:k + c]
                dc[q:q + c] = bdc[k:k + c].astype(np.int16)
                k += c
        del recs, bmv, bdc, batch
        batch = next(batches, None)
    t = np.empty(n, dtype=np.int64)
    for raw in raws:
        if raw.decoded is not None:
            block = cast(SampleBlock, raw.decoded)
            start, interval = block.start_ms, block.interval_ms
        else:
            start, interval = SAMPLE_HEAD.unpack_from(raw.data, 1)
        k = _sample_count(raw)
        p = at[id(raw)]
        seg = t[p:p + k]
        seg[:] = np.arange(k, dtype=np.int64)
        seg *= interval
        seg += start
    return t, mv, dc


#: Logs of fewer samples are kept whole (``window_history``): the cut is for years of float.
HISTORY_MIN_SAMPLES = 1 << 16
#: Samples kept before each candidate test (s): the window's preroll (1 h), the search for the
#: load step before it (``discharge.LOAD_STEP_SEARCH_S``, 24 h) and the float level and resistance
#: context before that, with a day to spare.
HISTORY_BEFORE_S = 2 * 86400.0
#: Samples kept after each candidate test (s): the window's postroll (600 s), a day to spare.
HISTORY_AFTER_S = 86400.0


def window_history(log: BlockLog, counts: Sequence[int],
                   start_fraction_of_nominal: float = START_FRACTION_OF_NOMINAL) -> BlockLog:
    """``log`` without its float history far from every candidate test (``BlockLog.history``
    says what was left out), or ``log`` itself when nothing may be left out.

    ``counts``: the samples of each sample block, in log order. A candidate test is a sample block
    with a sample below the start level (``start_fraction_of_nominal`` of the nominal voltage, as
    ``discharge.find_test_window`` looks for it) or a firmware DISCHARGE_START / DISCHARGE_END
    event; every sample block within ``HISTORY_BEFORE_S`` before to ``HISTORY_AFTER_S`` after one
    (on the device clock) is kept, with the blocks next to it, the first and the last. The rest is
    left out, whole blocks only: the window search finds the same below-start runs, first and last
    sample. Only a clock whose samples the alignment places by their own device time is cut (the
    device time never steps back, the observations agree): the true time of a kept sample then
    does not depend on the samples left out. ``analyze_test`` raises ``HistoryNeeded`` when the
    window it chose reaches into a hole.
    """
    n = len(log)
    if n < HISTORY_MIN_SAMPLES or len(counts) < 3:
        return log
    t = log.t_ms
    if bool(np.any(t[1:] < t[:-1])):
        return log  # device time repeats (a clock set back, a reset): alignment looks at every sample
    c, group, _ = continuous_time(log)
    if int(group[-1]) != 0 or clock_candidates(observations_of(log)):
        return log  # groups or disagreeing observations: the alignment splits by the samples
    del c, group
    cnt = np.asarray(counts, dtype=np.int64)
    if int(cnt.sum()) != n:
        return log  # the blocks do not map onto the samples one to one: nothing is left out
    nz = np.flatnonzero(cnt > 0)
    starts = np.concatenate(([0], np.cumsum(cnt)[:-1]))[nz]
    ends = starts + cnt[nz] - 1  # last sample of each non-empty block
    nb = nz.size
    # The analysis' own start level, computed as it computes it (``analyze_test``, ``find_test_window``).
    below_mv = log.config.block_type.chemistry.cell_nominal_mv / 1000.0 * start_fraction_of_nominal * log.cells * 1000.0
    low = np.minimum.reduceat(log.mv, starts) < below_mv
    t_lo, t_hi = t[starts], t[ends]
    anchors: list[tuple[float, float]] = [(float(t_lo[k]), float(t_hi[k])) for k in np.flatnonzero(low)]
    anchors += [(float(e.t_ms), float(e.t_ms)) for e in log.events
                if e.kind in (EventKind.DISCHARGE_START, EventKind.DISCHARGE_END)]
    keep = low.copy()
    keep[[0, -1]] = True
    for a, b in anchors:
        k0 = int(np.searchsorted(t_hi, a - HISTORY_BEFORE_S * 1000.0, side="left"))
        k1 = int(np.searchsorted(t_lo, b + HISTORY_AFTER_S * 1000.0, side="right"))
        keep[max(k0 - 1, 0):min(k1 + 1, nb)] = True
    if keep.all():
        return log
    mask = np.zeros(n, dtype=bool)
    for k in np.flatnonzero(keep):
        mask[starts[k]:ends[k] + 1] = True
    kept_before = np.concatenate(([0], np.cumsum(mask)))  # kept samples before each index
    holes = tuple(int(kept_before[starts[k]]) - 1 for k in range(1, nb) if keep[k - 1] and not keep[k])
    jumps = tuple(dataclasses.replace(j, index=int(kept_before[j.index])) for j in log.clock_jumps)
    removed = int(n - int(kept_before[-1]))
    return dataclasses.replace(log, t_ms=t[mask], mv=log.mv[mask], dc=log.dc[mask], clock_jumps=jumps,
                               history=HistoryCut(below_mv, holes, removed))


def _block_log(files: list[Logfile], name: str, *, window: bool = False) -> BlockLog:
    merged = _merged_main(files, name)
    sample_raws = [raw for raw in merged if raw.record_type == RecordType.SAMPLE_BLOCK]
    # Every record but the sample blocks (decoded when read); the samples come as arrays.
    main = [(raw.seq, raw.record) for raw in merged if raw.record_type != RecordType.SAMPLE_BLOCK]
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
        raise MetadataError(f"logs[{name}]", f"the pulls of {newest.identity.serial} hold no logger "
                            f"configuration ({ranges}): its earlier pull is missing from the folder")
    meta = newest.metadata
    if config.block_position == 0 and meta.block_position:
        config = config.with_changes(block_position=meta.block_position)
    if not config.block_label and meta.block_label:
        config = config.with_changes(block_label=meta.block_label)
    samples = _sample_arrays(sample_raws)
    # The records in log order, each sample block as its sample count (its samples are the arrays).
    items: list[tuple[int, Record] | int] = []
    for raw in merged:
        items.append((raw.seq, raw.record) if raw.record_type != RecordType.SAMPLE_BLOCK else _sample_count(raw))
    log = block_log_from_records(newest.identity, items, config=config, observations=observations,
                                 source=name, samples=samples)
    del samples
    if not window:
        return log
    return window_history(log, [x for x in items if isinstance(x, int)])


@dataclass
class LoadedTest:
    """A capacity test loaded as evidence: one ``BlockLog`` per logger (each with its
    ``evidence``), and every file that was not used, with its reason."""

    logs: list[BlockLog] = field(default_factory=list)
    excluded: list[FileEvidence] = field(default_factory=list)
    #: The verification report of every readable file, by the name it was given under.
    reports: dict[str, VerifyReport] = field(default_factory=dict)
    #: The read logfile of every used file, by name (its phone-side metadata, for the report;
    #: without its sample records when loaded with ``window``).
    logfiles: dict[str, Logfile] = field(default_factory=dict)

    def used_logfiles(self) -> list[Logfile]:
        """The read logfiles whose data the analysis uses, in block order."""
        return [self.logfiles[f.file] for log in self.logs if log.evidence is not None
                for f in log.evidence.files if f.used and f.file in self.logfiles]

    @property
    def files(self) -> list[FileEvidence]:
        """Every file given, used and excluded."""
        used = [f for log in self.logs if log.evidence is not None for f in log.evidence.files if f.used]
        return used + self.excluded


#: A logfile to load: a path, or ``(name, bytes / read Logfile / path)``: the name is what the
#: result calls the file (the API names its stored files).
NamedSource = str | os.PathLike[str] | tuple[str, Source]


def load_test_files(sources: Iterable[NamedSource], *, trust: Sequence[Authority] | None = None,
                    registered_keys: Mapping[str, str] | None = None, test_id: str | None = None,
                    window: bool = False, max_samples: int | None = None) -> LoadedTest:
    """Verify and load every logfile of a test; exclude what must not be used (see module docstring).

    ``trust``: the verifier's trust list (default: the production root). ``registered_keys``:
    serial -> device-key fingerprint the server holds for that logger (custody); signed files
    under another key are excluded. The same bytes given twice (a copied file) count once. A
    file that is not a logfile at all is ``not_a_logfile`` (named for what it looks like: a
    renamed workbook, a text file). A logger programmed for another test than ``test_id`` (or,
    without it, than a clear majority of the string) is ``other_test``: a logger from another
    job. Never raises for a bad file: it becomes an exclusion record. Raises ``MetadataError`` only for files that pass every check yet cannot be one
    logger's log (two verified pulls disagreeing on a record).

    ``window``: leave out each log's float history far from every candidate test
    (``window_history``): the analysis holds the tests' samples, not years of float. The report
    and the exports load whole logs (their charts show them). ``max_samples``: most samples the
    loaded logs may hold together; ``TooManySamples`` as soon as a logger's log makes them more
    (one logger's whole log is decoded at a time, then cut).
    """
    out = LoadedTest()
    by_serial: dict[str, list[ev.Candidate]] = {}
    seen: set[str] = set()
    # window: each verified file is kept without its sample records until its logger's turn (then
    # read again from its path or bytes): the whole test's record objects are never held at once.
    again: dict[str, Path | bytes] = {}
    for source in sources:
        name, data = _named(source)
        if isinstance(data, OSError):
            out.excluded.append(ev.file_record(name, None, None, used=False, reason="unreadable",
                                               message=f"cannot be read: {data.strerror or data}"))
            continue
        if isinstance(data, Logfile):
            lf, digest = data, data.sha256
        else:
            digest = hashlib.sha256(data).hexdigest()
            if digest in seen:
                continue  # the same bytes again (a copied file): one pull
            if not data.startswith((MAGIC[:4], GEN1_MAGIC)):
                out.excluded.append(ev.file_record(
                    name, digest, None, used=False, reason="not_a_logfile",
                    message=f"not a smartlogger logfile{_looks_like(data)} ({len(data)} bytes)"))
                continue
            try:
                lf = read_logfile(data, check_hash=False, decode=False)
            except LogfileError as err:
                out.excluded.append(ev.file_record(name, digest, None, used=False, reason="unreadable",
                                                   message=f"not a readable logfile: {err}"))
                continue
        if digest in seen:
            continue
        seen.add(digest)
        report = verify_logfile(lf, trust=trust)
        out.reports[name] = report
        position = lf.metadata.block_position or next(
            (c.config.block_position for c in reversed(lf.config_history)), 0)
        if not report.intact:
            reason = "unreadable" if report.status == "unreadable" else "tampered"
            out.excluded.append(ev.file_record(name, digest, report, used=False, reason=reason,
                                               position=position))
            continue
        if window and not isinstance(data, Logfile):
            item = source[1] if isinstance(source, tuple) else source
            again[digest] = Path(item) if isinstance(item, str | os.PathLike) else data
            lf = _without_samples(lf)
        by_serial.setdefault(report.serial, []).append(ev.Candidate(name, digest, lf, report, position))
    rejected = list(out.excluded)  # unreadable/tampered: named under their logger's block too
    held = 0
    for serial, candidates in by_serial.items():
        used, dropped = ev.select(candidates, ev.registered(registered_keys, serial))
        out.excluded.extend(dropped)
        dropped = [*(f for f in rejected if f.serial == serial), *dropped]
        if not used:
            continue
        try:
            log = _block_log([_whole(c, again) for c in used], "+".join(c.name for c in used), window=window)
        except LogfileError as err:  # a sample payload that does not decode
            out.excluded.extend(ev.file_record(c.name, c.sha256, c.report, used=False, reason="unreadable",
                                               message=f"its records do not decode: {err}", position=c.position)
                                for c in used)
            continue
        except MetadataError as err:  # e.g. no logger configuration in the log
            out.excluded.extend(ev.file_record(c.name, c.sha256, c.report, used=False, reason="unusable",
                                               message=f"cannot be analysed: {err.message}", position=c.position)
                                for c in used)
            continue
        log.evidence = ev.block_evidence(used, dropped)
        out.logs.append(log)
        held += len(log)
        if max_samples is not None and held > max_samples:
            raise TooManySamples(held, max_samples)
        out.logfiles.update((c.name, c.logfile) for c in used)
    _exclude_other_tests(out, test_id)
    return out


def analyze_files(sources: Callable[[], Iterable[NamedSource]], meta: TestMetadata,
                  options: AnalysisOptions | None = None, *, trust: Sequence[Authority] | None = None,
                  registered_keys: Mapping[str, str] | None = None, test_id: str | None = None,
                  max_samples: int | None = None) -> tuple[LoadedTest, TestResult]:
    """Load a test's logfiles (``sources()``: the files, asked for again if needed) and analyse it:
    the logs without their far-away float history (``load_test_files(window=True)``), and whole
    when the analysis needs what was left out (``HistoryNeeded``: the window the clocks placed
    reaches into it). ``max_samples``: most samples the loaded logs may hold (``TooManySamples``).
    The CLI's ``test analyze`` and the API's analysis job call this."""
    for window in (True, False):
        loaded = load_test_files(sources(), trust=trust, registered_keys=registered_keys, test_id=test_id,
                                 window=window, max_samples=max_samples)
        try:
            return loaded, analyze_test(loaded.logs, meta, options, excluded=loaded.excluded)
        except HistoryNeeded:
            if not window:
                raise  # pragma: no cover - a whole log has no history left out
            del loaded
    raise AssertionError("unreachable")  # pragma: no cover


def _without_samples(lf: Logfile) -> Logfile:
    """``lf`` without its sample records (identity, metadata, certificate, attestations and every
    other record kept: what the evidence and the merge decision read)."""
    return dataclasses.replace(lf, streams=[
        dataclasses.replace(st, records=[r for r in st.records if r.record_type != RecordType.SAMPLE_BLOCK])
        for st in lf.streams])


def _whole(c: ev.Candidate, again: dict[str, Path | bytes]) -> Logfile:
    """The candidate's logfile with its sample records: read again (``load_test_files(window=True)``
    kept it without them), the same bytes or ``LogfileError``."""
    src = again.pop(c.sha256, None)
    if src is None:
        return c.logfile
    try:
        data = src.read_bytes() if isinstance(src, Path) else src
    except OSError as err:
        raise LogfileError(f"{c.name} cannot be read again: {err.strerror or err}") from None
    if hashlib.sha256(data).hexdigest() != c.sha256:
        raise LogfileError(f"{c.name} changed while the test was loaded")
    return read_logfile(data, check_hash=False, decode=False)


def _looks_like(data: bytes) -> str:
    """What a file that is not a logfile seems to be, for the message."""
    if data.startswith(b"PK\x03\x04"):
        return " (a ZIP container: a workbook or an archive renamed to .slog?)"
    if data[:5] == b"%PDF-":
        return " (a PDF)"
    head = data[:64]
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return " (a text file)"
    return ""


def _exclude_other_tests(out: LoadedTest, test_id: str | None) -> None:
    """Leave out loggers programmed for another test (a logger from another job in the folder)."""
    if not test_id:
        ids = Counter(log.config.test_id for log in out.logs if log.config.test_id)
        if not ids:
            return
        test_id, n = ids.most_common(1)[0]
        if n * 2 <= len(out.logs):
            return  # no clear majority speaks for the string
    for log in list(out.logs):
        if log.config.test_id and log.config.test_id != test_id:
            out.logs.remove(log)
            message = f"programmed for test {log.config.test_id!r}, not {test_id!r} (a logger from another job?)"
            for f in (log.evidence.files if log.evidence is not None else []):
                if f.used:
                    out.excluded.append(dataclasses.replace(f, used=False, reason="other_test", message=message))
                    out.logfiles.pop(f.file, None)


def _named(source: NamedSource) -> tuple[str, bytes | Logfile | OSError]:
    """The name of a source and its bytes (or the read logfile, or why it cannot be read)."""
    name, item = source if isinstance(source, tuple) else (str(source), source)
    if isinstance(item, bytes | Logfile):
        return name, item
    try:
        return name, Path(item).read_bytes()
    except OSError as err:
        return name, err


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
