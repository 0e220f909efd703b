"""The string's clocks as a whole: every logger on one time line, or left out with a named reason.

``align.align_block`` fits each logger's clock to its own observations (the NFC tap that set
it, the signed pulls). Some clocks cannot be fitted that way: a clock reset by a power loss
that left no record, a tap from a phone with a wrong clock, a pull by one, a logger whose clock
was never set. This module decides with the rest of the string's evidence:

- **Observations that disagree** (``align.clock_candidates``: more than any drift apart) give
  candidate time lines. The blocks of a series string feel the load at the same instant, so the
  loggers' own DISCHARGE_START events vote: the time the most loggers agree on (within
  ``AGREE_S``) is the string's; each logger uses the candidate that puts its event there. A
  logger none of whose candidates agrees is left out (``clock``). When the tie between
  candidates cannot be broken (every logger disagrees the same way: one phone's clock was
  wrong), the NFC taps are used and a warning says by how much absolute times may be off;
  the blocks' timing relative to each other is unaffected.
- **Samples that do not meet the string's**: a logger whose whole log lies away from the
  time most loggers cover (a clock days off with no observation to correct it) is left out
  (``clock``) rather than stretch the test window over years.

Does not fit clocks (``align``) or find the discharge (``discharge``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from smartlogger.analysis.align import AlignedBlock, align_block
from smartlogger.analysis.inputs import BlockLog
from smartlogger.model import EventKind

#: Loggers' DISCHARGE_START events agree when this close (s): detection is threshold-based
#: and the float log rate is up to a minute, so weak and strong blocks detect a little apart.
AGREE_S = 600.0
#: A logger's samples must come this close (s) to the time most loggers cover.
OVERLAP_MARGIN_S = 6 * 3600.0


@dataclass(frozen=True)
class ClockExclusion:
    """A logger left out because its clock cannot be placed on the string's time line."""

    index: int  # into the logs given
    serial: str
    message: str


@dataclass
class ClockDecision:
    """The outcome for the string: the aligned blocks to use (same order as given, ``None`` for
    the excluded), exclusions, string-level warnings and per-logger notes (index -> text)."""

    aligned: list[AlignedBlock | None]
    excluded: list[ClockExclusion]
    warnings: list[str]
    notes: dict[int, str]


def _span_text(seconds: float) -> str:
    a = abs(seconds)
    if a < 120:
        return f"{a:.0f} s"
    if a < 2 * 86400:
        return f"{a / 3600:.1f} h"
    return f"{a / 86400:.0f} d"


def _start_event_ms(al: AlignedBlock) -> float | None:
    """True time (ms) of the logger's latest DISCHARGE_START event (the test of interest is the
    latest, as ``find_test_window`` takes it), or None."""
    t = al.event_true_ms(EventKind.DISCHARGE_START)
    return float(t[-1]) if t.size else None


def resolve_clocks(logs: Sequence[BlockLog], aligned: Sequence[AlignedBlock], *,
                   obs_uncertainty_ms: float, max_drift_ppm: float) -> ClockDecision:
    """Choose each logger's time line with the string's evidence (see module docstring)."""
    out: list[AlignedBlock | None] = list(aligned)
    excluded: list[ClockExclusion] = []
    warnings: list[str] = []
    notes: dict[int, str] = {}

    # Every logger's candidate time lines and where each puts its discharge start.
    options: dict[int, list[tuple[AlignedBlock, float | None]]] = {}
    for i, al in enumerate(aligned):
        if not al.candidates:
            options[i] = [(al, _start_event_ms(al))]
            continue
        alts: list[tuple[AlignedBlock, float | None]] = []
        for k, cand in enumerate(al.candidates):
            alt = al if k == al.chosen else align_block(logs[i], obs_uncertainty_ms=obs_uncertainty_ms,
                                                        max_drift_ppm=max_drift_ppm, use=cand.indices)
            alts.append((alt, _start_event_ms(alt)))
        options[i] = alts

    ref = _vote(options, aligned)
    conflicting = [i for i, al in enumerate(aligned) if al.candidates]
    for i in conflicting:
        al = aligned[i]
        alts = options[i]
        if ref is None or all(t is None for _, t in alts):
            notes[i] = (f"clock observations disagree; used the {al.candidates[al.chosen].label} "
                        "(nothing else in the logs to decide with)")
            continue
        dist = [abs(t - ref) if t is not None else math.inf for _, t in alts]
        best = int(np.argmin(dist))
        if dist[best] > AGREE_S * 1000.0:
            near = min(dist)
            excluded.append(ClockExclusion(i, logs[i].serial, (
                "its clock observations disagree (" + "; ".join(c.label for c in al.candidates)
                + ") and none places its discharge start within "
                + f"{_span_text(AGREE_S)} of the string's (nearest {_span_text(near / 1000.0)} off): "
                "its samples cannot be placed on the string's time")))
            out[i] = None
            continue
        out[i] = alts[best][0]
        notes[i] = (f"clock observations disagree; used the {al.candidates[best].label}: it places the "
                    f"logger's discharge start with the string's (within {_span_text(dist[best] / 1000.0)})")

    if conflicting and len(conflicting) == len(aligned):
        labels = {aligned[i].candidates[aligned[i].chosen].label.split(" at ")[0] for i in conflicting}
        spread = max(abs(c.offset_ms - aligned[i].candidates[aligned[i].chosen].offset_ms)
                     for i in conflicting for c in aligned[i].candidates) / 1000.0
        if ref is None or all(out[i] is aligned[i] for i in conflicting):
            warnings.append(
                f"every logger's clock observations disagree by up to {_span_text(spread)}: a phone's clock was "
                f"probably wrong at the taps or at the pulls; times are taken from the {', '.join(sorted(labels))} "
                f"(absolute times may be off by {_span_text(spread)}; the blocks' timing relative to each other "
                "comes from their own clocks and is not affected)")

    _drop_outliers(logs, out, excluded)
    return ClockDecision(out, excluded, warnings, notes)


def _vote(options: dict[int, list[tuple[AlignedBlock, float | None]]],
          aligned: Sequence[AlignedBlock]) -> float | None:
    """The discharge start (true ms) the most loggers can agree on; ties go to the loggers'
    default choices (the NFC taps)."""
    points = [(t, i, k == (aligned[i].chosen if aligned[i].candidates else 0))
              for i, alts in options.items() for k, (_, t) in enumerate(alts) if t is not None]
    if not points:
        return None
    best: tuple[int, int, float] | None = None
    tol = AGREE_S * 1000.0
    for t, _, _ in points:
        voters = {i for tt, i, _ in points if abs(tt - t) <= tol}
        defaults = sum(1 for tt, _, d in points if d and abs(tt - t) <= tol)
        key = (len(voters), defaults, -t)
        if best is None or key > (best[0], best[1], -best[2]):
            best = (len(voters), defaults, t)
    assert best is not None
    near = [tt for tt, _, _ in points if abs(tt - best[2]) <= tol]
    return float(np.median(near))


def _drop_outliers(logs: Sequence[BlockLog], out: list[AlignedBlock | None],
                   excluded: list[ClockExclusion]) -> None:
    """Leave out loggers whose samples lie away from the time most loggers cover."""
    spans = [(i, float(al.true_ms[0]), float(al.true_ms[-1])) for i, al in enumerate(out)
             if al is not None and al.true_ms.size]
    if len(spans) < 2:
        return
    # The instant covered by the most loggers' logs (sweep over the span ends).
    events = sorted([(a, 1) for _, a, _ in spans] + [(b, -1) for _, _, b in spans], key=lambda e: (e[0], -e[1]))
    depth = best = 0
    at = events[0][0]
    for t, d in events:
        depth += d
        if depth > best:
            best, at = depth, t
    if best * 2 <= len(spans):
        return  # no majority: nothing to measure the others against
    margin = OVERLAP_MARGIN_S * 1000.0
    for i, a, b in spans:
        if a - margin <= at <= b + margin:
            continue
        al = out[i]
        assert al is not None
        off = (a - at) if a > at else (b - at)
        how = ("no tap or pull observation to correct it" if not al.fit.referenced
               else "its tap and pull observations place it there")
        excluded.append(ClockExclusion(i, logs[i].serial, (
            f"its samples lie {_span_text(off / 1000.0)} {'after' if off > 0 else 'before'} the time the other "
            f"loggers cover ({how}): its clock cannot be placed on the string's time")))
        out[i] = None
