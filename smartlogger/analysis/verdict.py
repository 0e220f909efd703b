"""The verdict on a capacity test: pass / fail / inconclusive, with its reason in one sentence.

Owns the rules below, the words of the verdict sentence, each block's disposition and
recommendation, and the one ranking rule ("weakest first") in words. Every renderer (the CLI,
the demo, the workbook, the PDF, the API and the app) shows ``TestResult.verdict`` and the
blocks' ``disposition``; none decides anything of its own.

The acceptance criterion is IEEE 450's: a battery whose capacity is below 80 % of rated is
replaced (PRODUCT.md: "a block is commonly replaced when its capacity falls below 80 %").

- A block that reached its end voltage has a measured capacity: below the criterion it
  ``fail``s, otherwise it ``pass``es.
- A block that outlasted the test (the test ended before it reached its end voltage) has only
  a lower bound: at or above the criterion it ``pass``es (it did at least that); below it, it is
  ``not_determined``, never a failure: the test did not find out.
- The string: a measured string capacity decides (pass / fail). A lower bound at or above the
  criterion is a pass. A lower bound below it is a fail when blocks were measured below the
  criterion (they ended the test: the string as it stands cannot carry the load for the rated
  time), and inconclusive otherwise (the test stopped early for another reason: retest).
  Without a rated time or datasheet nothing can be judged: inconclusive.

Does not own the capacity arithmetic or the ranking itself (``analysis.capacity``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from smartlogger.analysis.capacity import REPLACE_BELOW_PCT
from smartlogger.analysis.results import BlockResult, TestResult, VerdictResult

#: The one rule behind ``BlockResult.rank`` / ``TestResult.ranking`` (``capacity.rank_blocks``).
RANKING_RULE = ("Weakest first: blocks that reached their end voltage, lowest capacity first; then the blocks "
                "that outlasted the test (their capacity is only a lower bound), lowest voltage at the test end "
                "relative to their end voltage first.")

#: How many blocks a sentence names before it counts the rest.
_NAMED = 6


def criterion_text(acceptance_pct: float) -> str:
    return (f"capacity at least {acceptance_pct:g} % of rated (IEEE 450 / IEEE 1188: below it the battery "
            "or block is replaced)")


def block_name(b: BlockResult) -> str:
    return str(b.position) if b.position > 0 else b.serial


def blocks_phrase(blocks: Sequence[BlockResult]) -> str:
    """"block 11", "blocks 11 and 13", "blocks 1, 2, 3, 4, 5, 6 and 7 more"."""
    names = [block_name(b) for b in blocks]
    if len(names) == 1:
        return f"block {names[0]}"
    if len(names) > _NAMED + 1:
        return f"blocks {', '.join(names[:_NAMED])} and {len(names) - _NAMED} more"
    return f"blocks {', '.join(names[:-1])} and {names[-1]}"


def pct_text(pct: float, lower_bound: bool = False, nd: int = 0) -> str:
    """A capacity as shown everywhere: "42 %", lower bounds "≥ 63 %" (never a plain number)."""
    return f"{'≥ ' if lower_bound else ''}{pct:.{nd}f} %"


def hours_minutes(seconds: float) -> str:
    """"3 h 10 min" (a customer reads it without knowing h:mm)."""
    total = round(seconds / 60.0)
    h, m = divmod(total, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min"


def disposition(b: BlockResult, acceptance_pct: float) -> str:
    pct = b.capacity_pct
    if pct is None or not math.isfinite(pct):
        return "no_result"
    if not b.lower_bound:
        return "fail" if pct < acceptance_pct else "pass"
    return "pass" if pct >= acceptance_pct else "not_determined"


def recommendation(b: BlockResult, disp: str, acceptance_pct: float, string_failed: bool) -> str:
    if disp == "fail":
        text = f"replace (measured below {acceptance_pct:g} %)"
    elif disp == "pass":
        text = "no action" if not b.lower_bound else f"no action (held at least {acceptance_pct:g} %)"
    elif disp == "not_determined":
        text = "retest once the failed blocks are replaced" if string_failed else "retest to a measured end"
    else:
        text = "no result: check the logger and its data"
    if b.resistance_status == "fail":
        text += "; high resistance: check connections, plan replacement"
    elif b.resistance_status == "warning":
        text += "; raised resistance: watch"
    return text


def _stop_clause(r: TestResult, failed: Sequence[BlockResult]) -> str:
    d = r.discharge
    took = hours_minutes(d.load_time_s if d.load_time_s is not None else d.duration_s)
    reached = sorted((b for b in r.blocks if b.reached_end_voltage), key=lambda b: b.time_to_end_s or 0.0)
    if d.end_reason == "end_voltage":
        return f"The string reached its end voltage ({d.string_end_voltage_v:.1f} V) after {took}"
    if d.end_reason == "load_removed":
        if reached:
            return (f"Test stopped after {took} when the load was removed, most likely by the load bank's "
                    f"end-voltage cutoff, after {blocks_phrase(reached)} had reached "
                    f"{'its' if len(reached) == 1 else 'their'} end voltage")
        return f"Test stopped after {took} when the load was removed before the string reached its end voltage"
    return f"The logs end after {took}, before the string reached its end voltage"


def verdict_of(r: TestResult, acceptance_pct: float = REPLACE_BELOW_PCT) -> VerdictResult:
    """The verdict on ``r`` (see module docstring); pure: ``r`` is not changed."""
    disp = {b.serial: disposition(b, acceptance_pct) for b in r.blocks}
    rank = {s: i for i, s in enumerate(r.ranking)}

    def weakest_first(bs: list[BlockResult]) -> list[BlockResult]:
        return sorted(bs, key=lambda b: (rank.get(b.serial, 1 << 30), b.position, b.serial))

    failed = weakest_first([b for b in r.blocks if disp[b.serial] == "fail"])
    passed_measured = [b for b in r.blocks if disp[b.serial] == "pass" and not b.lower_bound]
    bounds = [b for b in r.blocks if b.lower_bound and disp[b.serial] in ("pass", "not_determined")]
    undetermined = weakest_first([b for b in r.blocks if disp[b.serial] == "not_determined"])
    no_result = [b for b in r.blocks if disp[b.serial] == "no_result"]
    c = r.capacity
    spct = c.capacity_pct if c.capacity_pct is not None and math.isfinite(c.capacity_pct) else None

    parts = [_stop_clause(r, failed)]
    if c.method == "none" or (spct is None and all(b.capacity_pct is None for b in r.blocks)):
        outcome = "inconclusive"
        parts.append(f"no rated time or datasheet was given, so no capacity can be judged against "
                     f"{acceptance_pct:g} % of rated")
    else:
        if spct is not None and not c.lower_bound:
            outcome = "pass" if spct >= acceptance_pct else "fail"
        elif spct is not None and spct >= acceptance_pct:
            outcome = "pass"
        elif failed:
            outcome = "fail"
        else:
            outcome = "inconclusive"
        if spct is not None and not c.lower_bound:
            parts.append(f"the string delivered {pct_text(spct)} of rated capacity")
        elif spct is not None and spct >= acceptance_pct:
            parts.append(f"the string delivered at least {pct_text(spct)} of rated capacity")
        if failed:
            parts.append(f"{blocks_phrase(failed)} {'fails' if len(failed) == 1 else 'fail'} "
                         f"({', '.join(pct_text(b.capacity_pct or 0.0) for b in failed)})")
        if passed_measured:
            lo = min(b.capacity_pct or 0.0 for b in passed_measured)
            parts.append(f"{blocks_phrase(passed_measured)} {'passes' if len(passed_measured) == 1 else 'pass'} "
                         f"({pct_text(lo)} or more)")
        if bounds:
            lo = math.floor(min(b.capacity_pct or 0.0 for b in bounds))
            who = (f"the other {len(bounds)} blocks" if failed or passed_measured or no_result
                   else f"all {len(bounds)} blocks" if len(bounds) > 1 else blocks_phrase(bounds))
            if undetermined:
                parts.append(f"{who} held {lo:.0f} % or more (not determined further)")
            else:
                parts.append(f"{who} held {lo:.0f} % or more (at least the {acceptance_pct:g} % required)")
        if outcome == "inconclusive" and not failed:
            parts.append("retest to a measured end")
    if no_result:
        parts.append(f"{blocks_phrase(no_result)} {'has' if len(no_result) == 1 else 'have'} no result")
    if r.missing_positions:
        pos = r.missing_positions
        parts.append(f"position{'s' if len(pos) > 1 else ''} {', '.join(map(str, pos[:_NAMED]))}"
                     f"{' ...' if len(pos) > _NAMED else ''} not logged")
    sentence = parts[0] + "; " + "; ".join(parts[1:]) + "." if len(parts) > 1 else parts[0] + "."
    return VerdictResult(outcome=outcome, acceptance_pct=float(acceptance_pct), criterion=criterion_text(acceptance_pct),
                         sentence=sentence, failed=[b.serial for b in failed],
                         not_determined=[b.serial for b in undetermined], ranking_rule=RANKING_RULE)


def apply_verdict(r: TestResult, acceptance_pct: float = REPLACE_BELOW_PCT) -> TestResult:
    """Set ``r.verdict`` and every block's ``disposition`` and ``recommendation``; returns ``r``."""
    v = verdict_of(r, acceptance_pct)
    for b in r.blocks:
        b.disposition = disposition(b, acceptance_pct)
        b.recommendation = recommendation(b, b.disposition, acceptance_pct, v.outcome == "fail")
    r.verdict = v
    return r


def ensure_verdict(r: TestResult, acceptance_pct: float = REPLACE_BELOW_PCT) -> TestResult:
    """``r`` with a verdict: a result written before issue 20 gets one computed (same rules)."""
    if r.verdict is None or any(not b.disposition for b in r.blocks):
        apply_verdict(r, r.verdict.acceptance_pct if r.verdict is not None else acceptance_pct)
    return r


__all__ = ["RANKING_RULE", "apply_verdict", "blocks_phrase", "criterion_text", "disposition", "ensure_verdict",
           "hours_minutes", "pct_text", "recommendation", "verdict_of"]
