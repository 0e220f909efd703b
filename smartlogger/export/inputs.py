"""What the exporters take: plain values, independent of how they were produced.

Owns the input types of the workbook writers:

- ``SampleSeries``: a protocol for one logger's samples (``analysis.inputs.BlockLog``
  satisfies it structurally; ``LoggerSamples`` is the plain implementation).
- ``ExceedanceRow``: one threshold exceedance, as shown in yellow/red.
- ``EvidenceRow``: one logfile's evidence facts (hash, verification, key).
- ``BlockOutcome`` / ``StringTestOutcome``: the result of a capacity test.
- ``LongtermData``: a blackbox's long-lived history (daily summaries, events,
  discharges) plus its raw samples.

Adapters from ``logfile``/``analysis`` objects live in ``export.adapters`` so the
writers stay testable with plain values. Units follow ``smartlogger.model``:
mV, dC (0.1 C), ms since the Unix epoch (UTC).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from smartlogger.errors import ExportError
from smartlogger.model import (
    DailySummary,
    DischargeSummary,
    Event,
    Level,
    LoggerConfig,
    LoggerIdentity,
    Quantity,
    Side,
    Thresholds,
)

if TYPE_CHECKING:  # typing only: export.report imports the analysis, the plain inputs do not
    from smartlogger.export.report import ReportContent


class SampleSeries(Protocol):
    """One logger's samples: ``t_ms`` int64 ms (device time), ``mv`` mV, ``dc`` 0.1 C."""

    @property
    def identity(self) -> LoggerIdentity: ...

    @property
    def config(self) -> LoggerConfig: ...

    @property
    def t_ms(self) -> npt.NDArray[np.int64]: ...

    @property
    def mv(self) -> npt.NDArray[np.int32]: ...

    @property
    def dc(self) -> npt.NDArray[np.int16]: ...


@dataclass(eq=False)
class LoggerSamples:
    """Plain ``SampleSeries``. ``thresholds_history`` lists ``(from_ms, thresholds)``
    in time order when the configuration changed during the log (config changes);
    empty means ``config.thresholds`` held throughout."""

    identity: LoggerIdentity
    config: LoggerConfig
    t_ms: npt.NDArray[np.int64]
    mv: npt.NDArray[np.int32]
    dc: npt.NDArray[np.int16]
    thresholds_history: Sequence[tuple[int, Thresholds]] = ()

    def __post_init__(self) -> None:
        self.t_ms = np.ascontiguousarray(self.t_ms, dtype=np.int64)
        self.mv = np.ascontiguousarray(self.mv, dtype=np.int32)
        self.dc = np.ascontiguousarray(self.dc, dtype=np.int16)
        n = len(self.t_ms)
        if self.t_ms.ndim != 1 or self.mv.shape != (n,) or self.dc.shape != (n,):
            raise ExportError(f"{self.identity.serial}: t_ms, mv and dc must be 1-D arrays of "
                              f"equal length (got {self.t_ms.shape}, {self.mv.shape}, {self.dc.shape})")


def check_series(series: SampleSeries) -> None:
    """Refuse empty or time-reversed series with an error naming the logger and sample."""
    t = np.asarray(series.t_ms)
    if len(t) == 0:
        raise ExportError(f"{series.identity.serial}: the log holds no samples")
    if len(t) > 1:
        back = np.flatnonzero(t[1:] < t[:-1])
        if len(back):
            i = int(back[0]) + 1
            raise ExportError(f"{series.identity.serial}: sample {i} at {int(t[i])} ms is earlier "
                              f"than sample {i - 1} at {int(t[i - 1])} ms; correct the clock first")


def thresholds_timeline(series: SampleSeries) -> list[tuple[int, Thresholds]]:
    """``(from_ms, thresholds)`` steps over the series (at least one step)."""
    hist = list(getattr(series, "thresholds_history", ()) or ())
    if not hist:
        return [(int(series.t_ms[0]) if len(series.t_ms) else 0, series.config.thresholds)]
    return sorted(hist, key=lambda h: h[0])


@dataclass(frozen=True)
class ExceedanceRow:
    """One exceedance: ``quantity`` beyond its ``side`` ``level`` from ``start_ms`` to ``end_ms``.

    ``extreme`` is the worst value reached and ``limit`` the threshold crossed, both
    in the quantity's unit (mV or dC). ``end_ms`` None = still exceeded at log end.
    ``severity`` is the app's colour, "yellow" (slight or brief) or "red" (massive or
    long), when the analysis classified it; None colours by ``level``.
    """

    serial: str
    quantity: Quantity
    side: Side
    level: Level
    start_ms: int
    end_ms: int | None
    extreme: int
    limit: int
    position: int = 0
    severity: str | None = None
    reason: str = ""

    @property
    def colour(self) -> str:
        """"yellow" or "red": the fill of this row."""
        if self.severity in ("yellow", "red"):
            return self.severity
        return "red" if self.level is Level.ALARM else "yellow"

    @property
    def duration_s(self) -> float | None:
        return None if self.end_ms is None else (self.end_ms - self.start_ms) / 1000.0


@dataclass(frozen=True)
class EvidenceRow:
    """Evidence facts of one logfile (shown on the Summary/Evidence sheets).

    ``status`` is the verdict of ``verify`` (verified, simulated, unsigned, tampered,
    unreadable); ``verified`` is true only for hardware evidence. ``verdict`` is the
    one-sentence statement; ``details`` are the individual findings as label/value
    pairs (signature, chain, gaps, ...). ``used`` says whether the analysis used the
    file's data (False: excluded, ``excluded_because`` says why).
    """

    file: str
    sha256: str
    serial: str
    verified: bool
    result: str
    key_fingerprint: str = ""
    markers: tuple[str, ...] = ()
    details: tuple[tuple[str, str], ...] = ()
    status: str = ""
    verdict: str = ""
    used: bool = True
    excluded_because: str = ""

    @property
    def evidence_status(self) -> str:
        return self.status or ("verified" if self.verified else "not verified")


@dataclass(frozen=True)
class BlockOutcome:
    """One block's result in a capacity test.

    ``capacity_pct`` is the delivered capacity in % of rated (None if it could not
    be determined); ``status`` is one of "ok", "warning", "alarm" (the traffic light);
    ``evidence`` what the block's numbers rest on ("verified", "simulated", "unsigned",
    "unchecked"; "" when not known).
    """

    position: int
    serial: str
    capacity_pct: float | None
    delivered_ah: float | None = None
    end_time_s: float | None = None  # when the block reached the end voltage, s after start
    min_mv: int | None = None
    max_dc: int | None = None
    status: str = "ok"
    label: str = ""
    note: str = ""
    resistance_mohm: float | None = None  # internal (DC step) resistance, mOhm
    resistance_uncertainty_mohm: float | None = None  # its standard uncertainty, mOhm
    resistance_status: str | None = None  # "ok", "warning", "fail" against the test's reference
    evidence: str = ""


@dataclass(frozen=True)
class StringTestOutcome:
    """The result of one capacity test of a string (what the Summary sheet states)."""

    test_id: str
    result: str  # e.g. "PASS", "FAIL"
    capacity_pct: float | None
    method: str  # how capacity was computed (IEEE 450 time-adjusted, Ah integration, ...)
    duration_s: float
    load: str  # description, e.g. "constant current 50 A"
    temperature_correction: str  # e.g. "IEEE 450 factor 1.04 at 23 C"
    blocks: Sequence[BlockOutcome]
    weakest: Sequence[int] = ()  # positions, weakest first
    start_ms: int | None = None
    end_v_per_cell: float | None = None
    notes: Sequence[str] = ()
    site: str = ""
    start_found: str = ""  # how the discharge start and end were found, in words
    resistance_reference: str = ""  # e.g. "4.95 mOhm (string median); warning +20 %, fail +50 %"
    #: What the result rests on (``analysis.results.TestEvidence``): the weakest block's status,
    #: the statement in words, whether it is verified hardware evidence only, and the files not
    #: used as ``(file, serial, reason, message)``.
    evidence_status: str = ""
    evidence_statement: str = ""
    verified_only: bool = False
    excluded: Sequence[tuple[str, str, str, str]] = ()
    #: The customer report (verdict first; ``export.report``) when the outcome comes from an analysis
    #: result: the Summary sheet then shows it, as the PDF does.
    report: ReportContent | None = None


@dataclass(frozen=True)
class DailyRow:
    """Daily min/mean/max of one logger (``day_start_ms`` = local midnight as UTC ms)."""

    day_start_ms: int
    count: int
    mv_min: int
    mv_mean: float
    mv_max: int
    dc_min: int
    dc_mean: float
    dc_max: int

    @classmethod
    def of(cls, d: DailySummary) -> DailyRow:
        return cls(d.day_start_ms, d.count, d.mv_min, float(d.mv_mean), d.mv_max, d.dc_min,
                   float(d.dc_mean), d.dc_max)


@dataclass(eq=False)
class LongtermData:
    """A blackbox's lifetime record for the long-term export.

    ``daily`` may come from the summary stream (``DailySummary`` records, which
    outlive the raw ring) or be computed from ``samples``; ``samples`` may be None
    when only the summary stream survives.
    """

    identity: LoggerIdentity
    config: LoggerConfig
    daily: Sequence[DailyRow]
    events: Sequence[Event] = ()
    discharges: Sequence[DischargeSummary] = ()
    samples: SampleSeries | None = None
    evidence: EvidenceRow | None = None
    extra: dict[str, str] = field(default_factory=dict)
