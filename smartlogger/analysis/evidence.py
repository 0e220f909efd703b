"""The evidence behind a capacity test: which logfiles the analysis may use, and what a result rests on.

Owns the rules that decide, per logger, which verified files are merged and which are
excluded, the exclusion codes (``REASONS``) and the words of the evidence statements:

- tampered and unreadable files are never used;
- files of one serial are merged only within one evidence class: hardware-``verified``
  files if there are any, else ``simulated``, else ``unsigned``. Unsigned data is never
  merged into signed data of the same serial (an unsigned "continuation" of a signed
  chain would otherwise carry a made-up discharge into a signed block), nor simulated
  data into hardware evidence (anyone can sign a SIMULATED file for any serial with the
  TEST authority's public key): such files are excluded and named;
- signed files of one serial under different device keys are not one logger's log: the
  key registered for the logger (server custody) wins, else the key with the earliest
  certificate (``issued_ms`` is signed by the authority, so it cannot be forged); the
  others are excluded as ``second_device_key`` (possible clone).

The records themselves are the dataclasses of ``analysis.results`` (``FileEvidence``,
``BlockEvidence``, ``TestEvidence``), so the results JSON, the workbooks, the API and the
web app show exactly what was decided here. Reading and merging files is ``analysis.loading``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from smartlogger.analysis.results import BlockEvidence, FileEvidence, TestEvidence
from smartlogger.logfile.container import Logfile
from smartlogger.logfile.verify import VerifyReport

#: Exclusion codes (``FileEvidence.reason``) and what they mean; every loader uses these.
REASONS: Final[dict[str, str]] = {
    "unreadable": "not a readable logfile (damaged, truncated, not a logfile)",
    "tampered": "fails verification: not the logger's unaltered log",
    "unsigned_not_merged": "an unsigned file of a logger that has signed files: unsigned data is never "
                           "merged into signed data",
    "simulated_not_merged": "a SIMULATED/REPLAYED file of a logger that has hardware-verified files: "
                            "never merged into evidence",
    "second_device_key": "certified under another device key than the logger's (possible clone)",
    "unusable": "intact, but cannot be analysed (e.g. no logger configuration in the log)",
}

#: Evidence classes, strongest first (a block's status is the class of the files it used).
CLASSES: Final = ("verified", "simulated", "unsigned")
UNCHECKED: Final = "unchecked"


@dataclass
class Candidate:
    """A readable logfile that passed verification as intact, before the merge decision."""

    name: str
    sha256: str
    logfile: Logfile
    report: VerifyReport
    position: int

    @property
    def serial(self) -> str:
        return self.report.serial

    @property
    def issued_ms(self) -> int:
        cert = self.logfile.certificate
        return cert.issued_ms if cert is not None else 0


def file_record(name: str, sha256: str | None, report: VerifyReport | None, *, used: bool,
                reason: str = "", message: str = "", position: int = 0,
                serial: str | None = None) -> FileEvidence:
    """A ``FileEvidence`` from a verification report (None: the file could not be read at all)."""
    if report is None:
        return FileEvidence(name, sha256, serial, position, "unreadable", None, [], None, None, used, reason,
                            message)
    latest = report.latest_pull["counter"] if report.latest_pull else None
    return FileEvidence(name, sha256, report.serial or serial, position, report.status, report.authority,
                        list(report.markers), report.device_key, latest, used, reason,
                        message or report.verdict)


def select(candidates: Sequence[Candidate], registered_key: str | None = None
           ) -> tuple[list[Candidate], list[FileEvidence]]:
    """The files of ONE serial the analysis merges, and the others as exclusion records."""
    excluded: list[FileEvidence] = []
    remaining = list(candidates)

    def drop(c: Candidate, reason: str, message: str) -> None:
        excluded.append(file_record(c.name, c.sha256, c.report, used=False, reason=reason, message=message,
                                    position=c.position))
        remaining.remove(c)

    if registered_key is not None:
        for c in [c for c in remaining if c.report.device_key and c.report.device_key != registered_key]:
            drop(c, "second_device_key",
                 f"certified for {c.serial} under device key {c.report.device_key}, but the logger is "
                 f"registered with key {registered_key}: possible clone; excluded")
    if not remaining:
        return [], excluded
    cls = next(k for k in CLASSES if any(c.report.status == k for c in remaining))
    for c in [c for c in remaining if c.report.status != cls]:
        if c.report.status == "unsigned":
            drop(c, "unsigned_not_merged",
                 f"an unsigned file of {c.serial}, whose {cls} (signed) files are used: unsigned data is "
                 "never merged into signed data; excluded")
        else:
            drop(c, "simulated_not_merged",
                 f"a {' + '.join(c.report.markers) or 'SIMULATED'} file for {c.serial}, whose hardware-verified "
                 "files are used: simulated data is never merged into evidence; excluded")
    keys = {c.report.device_key for c in remaining if c.report.device_key}
    if len(keys) > 1:
        first = min(remaining, key=lambda c: (c.issued_ms, c.report.device_key or ""))
        for c in [c for c in remaining if c.report.device_key != first.report.device_key]:
            drop(c, "second_device_key",
                 f"certified for {c.serial} under device key {c.report.device_key}, but its earliest "
                 f"certificate names key {first.report.device_key}: two keys for one serial, possible "
                 "clone; excluded")
    return remaining, excluded


def block_evidence(used: Sequence[Candidate], excluded: Sequence[FileEvidence]) -> BlockEvidence:
    """The evidence of one block: the class of the files it used, and every file of its logger."""
    status = used[0].report.status if used else UNCHECKED
    files = [file_record(c.name, c.sha256, c.report, used=True, position=c.position) for c in used]
    pulls = f"{len(used)} {status} file{'s' if len(used) != 1 else ''} used"
    note = pulls + (f"; excluded: {_count_reasons(excluded)}" if excluded else "")
    return BlockEvidence(status, [*files, *excluded], note)


def unchecked_block() -> BlockEvidence:
    """The evidence of a block whose log did not come from logfiles (synthetic, or built in code)."""
    return BlockEvidence(UNCHECKED, [], "not loaded from logfiles: evidence not checked")


def test_evidence(blocks: Iterable[tuple[str, int, BlockEvidence]], excluded: Sequence[FileEvidence]
                  ) -> TestEvidence:
    """What the whole result rests on: ``blocks`` are ``(serial, position, evidence)``."""
    blocks = list(blocks)
    counts = Counter(ev.status for _, _, ev in blocks)
    order = [*CLASSES, UNCHECKED]
    weakest = max((s for s in counts), key=order.index, default=UNCHECKED)
    verified_only = bool(blocks) and set(counts) == {"verified"}
    used = sum(1 for _, _, ev in blocks for f in ev.files if f.used)
    parts: list[str] = []
    if verified_only:
        parts.append(f"Rests on verified hardware evidence only: the data of all {len(blocks)} block(s) comes "
                     "from logfiles certified by the manufacturer's production root with every check passed.")
    else:
        weak = []
        for status in order[1:]:
            names = [_block_name(serial, pos) for serial, pos, ev in blocks if ev.status == status]
            if names and len(names) == len(blocks) > 1:
                weak.append(f"all {len(blocks)} blocks rest on {_DESCRIBE[status]}")
            elif names:
                weak.append(f"{_list(names)} rest{'s' if len(names) == 1 else ''} on {_DESCRIBE[status]}")
        if counts.get("verified"):
            weak.append(f"{counts['verified']} block(s) on verified hardware evidence")
        parts.append("NOT verified evidence only: " + "; ".join(weak) + ".")
    if excluded:
        shown = [f"{f.file} ({f.reason})" for f in excluded[:10]]
        more = f" and {len(excluded) - 10} more" if len(excluded) > 10 else ""
        parts.append(f"{len(excluded)} logfile(s) excluded and not used: {'; '.join(shown)}{more}.")
        present = {serial for serial, _, _ in blocks}
        lost = sorted({(f.serial, f.position) for f in excluded if f.serial and f.serial not in present})
        if lost:
            parts.append("No usable data for " + _list([_block_name(s, p) for s, p in lost])
                         + ": every file of it was excluded.")
    return TestEvidence(weakest, verified_only, " ".join(parts), dict(sorted(counts.items())), used,
                        len(excluded))


_DESCRIBE: Final[dict[str, str]] = {
    "simulated": "SIMULATED/REPLAYED data (certified by the TEST authority: not evidence)",
    "unsigned": "unsigned data (nothing signed it: integrity cannot be proven)",
    UNCHECKED: "data whose evidence was not checked (not loaded from logfiles)",
}


def _block_name(serial: str, position: int) -> str:
    return f"block {position} ({serial})" if position else serial


def _list(names: Sequence[str]) -> str:
    return ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")


def _count_reasons(excluded: Sequence[FileEvidence]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in sorted(Counter(f.reason for f in excluded).items()))


def registered(keys: Mapping[str, str] | None, serial: str) -> str | None:
    return keys.get(serial) if keys is not None else None
