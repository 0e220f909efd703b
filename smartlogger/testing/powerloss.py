"""The blackbox power-loss sweep harness (littlefs-style), for tests and benchmarks.

Owns ``power_loss_sweep``: one run of a workload (``sweep_workload``: sample blocks,
events, clock sets, read-outs, a forced reset) on a fault-free chip; before every
selected flash operation the harness takes ``NorFlash.crash_copy`` (the chip as a
power loss during that operation would leave it), mounts a ``BlackboxStore`` on the
copy, re-checks the invariants (no committed record lost or altered, contiguous
sequence numbers, chain anchor and head, read-out mark, summary copies), appends a
probe record and remounts again. This covers every operation index in one pass.
Used by tests/test_powerloss.py and benchmarks/blackbox.py; the store it checks is
``device.blackbox`` (docs/BLACKBOX.md).
"""

from __future__ import annotations

import random
from array import array
from dataclasses import dataclass
from typing import Any

import numpy as np

from smartlogger.device.blackbox import SUMMARY_EVENT_KINDS, BlackboxStore
from smartlogger.device.flash import FlashGeometry, NorFlash
from smartlogger.errors import StoreError
from smartlogger.logfile import chain
from smartlogger.logfile.records import encode_record
from smartlogger.model import (
    ClockSet,
    ConfigChange,
    Event,
    EventKind,
    LoggerIdentity,
    Quantity,
    Record,
    SampleBlock,
    Side,
)


@dataclass(frozen=True)
class MarkRead:
    """Workload step: ``store.mark_read(up_to_seq)``."""

    up_to_seq: int


@dataclass(frozen=True)
class Reset:
    """Workload step: ``store.reset(t_ms=..., force=...)``."""

    t_ms: int
    force: bool = True


WorkloadStep = Record | MarkRead | Reset


@dataclass
class SweepResult:
    """Outcome of ``power_loss_sweep``; the goal is 0 lost, 0 corrupt, 0 invariant failures."""

    points: int = 0  # power-loss points checked
    lost_records: int = 0  # committed (append returned), should have survived, missing after remount
    corrupt_records: int = 0  # present after remount with bytes other than what was appended
    invariant_failures: int = 0  # mount failed, chain/sequence/summary inconsistent, probe lost
    operations: int = 0  # flash program+erase operations of the whole workload
    main_wraps: float = 0.0  # main-region sectors opened / main-region sectors
    failures: list[str] | None = None  # first few failure descriptions

    def note(self, text: str) -> None:
        if self.failures is None:
            self.failures = []
        if len(self.failures) < 20:
            self.failures.append(text)


def sweep_workload(n_blocks: int, seed: int, *, with_reset: bool = True,
                   start_ms: int = 1_767_225_600_000) -> list[WorkloadStep]:
    """A power-loss workload: float samples in blocks of 60-255 (1 min), threshold and discharge
    events, clock sets, read-outs and (``with_reset``) a forced reset half-way. Seeded."""
    rng = np.random.default_rng(seed)
    steps: list[WorkloadStep] = []
    t = start_ms
    for i in range(n_blocks):
        n = int(rng.integers(60, 256))
        mv = 13_500 + np.cumsum(rng.integers(-3, 4, n))
        dc = 240 + rng.integers(-1, 2, n)
        steps.append(SampleBlock(t, 60_000, array("i", mv.astype(np.int32).tobytes()),
                                 array("i", dc.astype(np.int32).tobytes())))
        t += n * 60_000
        if i % 9 == 4:
            steps.append(Event(t, EventKind.ENTER_ALARM, Quantity.TEMPERATURE, Side.HIGH, 461))
        if i % 17 == 6:
            steps.append(Event(t, EventKind.DISCHARGE_START, value=12_400))
        if i % 17 == 11:
            steps.append(Event(t, EventKind.DISCHARGE_END, value=10_800))
        if i % 40 == 20:
            steps.append(ClockSet(t, t - 700))
        if i % 25 == 24:
            steps.append(MarkRead(10**12))
        if with_reset and i == n_blocks // 2:
            steps.append(Reset(t, force=True))
    return steps


def power_loss_sweep(workload: list[WorkloadStep], identity: LoggerIdentity, *,
                     geometry: FlashGeometry, points: set[int] | None = None,
                     out_of_order: bool = False, seed: int = 0, probe_every: int = 1,
                     bad_sectors: frozenset[int] = frozenset()) -> SweepResult:
    """Check recovery from a power loss at each operation index in ``points`` (None: all).

    ``bad_sectors`` go bad right after formatting (their erases and programs fail).
    """
    flash = NorFlash(geometry, seed=seed)
    store = BlackboxStore.create(identity, flash=flash)
    for sector in bad_sectors:
        flash.mark_bad(sector)
    flash.out_of_order = out_of_order
    base = flash.op_count
    main_first, main_n = store.layout.main
    result = SweepResult()
    rng = random.Random(seed)
    expected: dict[int, bytes] = {}  # main seq -> committed bytes
    heads: dict[int, bytes] = {0: chain.stream_genesis(identity.serial, 0)}  # seq -> chain value before it
    copies: list[bytes] = []  # committed records that must have a summary copy, in order
    state: dict[str, Any] = {"n": 0, "inflight": None, "inflight_copy": False,
                             "reset_floor": None, "read": (0, 0)}

    def check(op_index: int, twin: NorFlash, crashed_oldest: int) -> None:
        result.points += 1
        n: int = state["n"]  # appends that returned: seq of the in-flight record
        try:
            st = BlackboxStore.mount(twin)
        except Exception as err:  # any failure to mount is an invariant failure
            result.invariant_failures += 1
            result.note(f"op {op_index}: mount failed: {err!r}")
            return
        damaged = {name: rep.corrupt_entries for name, rep in st.mount_reports.items()
                   if rep.corrupt_entries}
        if damaged:
            result.invariant_failures += 1
            result.note(f"op {op_index}: committed entries with bad CRC in {damaged}")
        got = dict(st.raw_records(0))
        nxt = st.next_seq
        inflight: bytes | None = state["inflight"]
        floor = state["reset_floor"]
        lo = crashed_oldest if floor is None else max(crashed_oldest, floor)
        if nxt not in (n, n + 1) and floor is None:
            result.invariant_failures += 1
            result.note(f"op {op_index}: next_seq {nxt}, expected {n} or {n + 1}")
        if sorted(got) != list(range(st.oldest_seq, nxt)):
            result.invariant_failures += 1
            result.note(f"op {op_index}: sequence numbers are not contiguous")
        for seq in range(lo, n):
            if seq not in got:
                result.lost_records += 1
                result.note(f"op {op_index}: committed record {seq} lost")
        for seq, data in got.items():
            want = expected.get(seq, inflight if seq == n else None)
            if seq >= n and floor is not None:
                continue  # reset in flight: the RESET event is new
            if want is None or data != want:
                result.corrupt_records += 1
                result.note(f"op {op_index}: record {seq} differs from what was appended")
        if floor is None and got:
            a_seq, a_hash = st.chain_anchor(0)
            h_seq, h_hash = st.chain_head(0)
            want_head = heads.get(h_seq)
            if want_head is None and inflight is not None and h_seq == n + 1:
                want_head = chain.chain_next(heads[n], n, inflight)
            if heads.get(a_seq) != a_hash or want_head != h_hash:
                result.invariant_failures += 1
                result.note(f"op {op_index}: chain anchor/head do not match the appended records")
        if st.read_up_to_seq not in state["read"]:
            result.invariant_failures += 1
            result.note(f"op {op_index}: read_up_to {st.read_up_to_seq} not in {state['read']}")
        have = [d for _s, d in st.raw_records(1) if d[0] in (2, 3, 4)]
        if copies and floor is None:
            # the summary stream ends with the committed copies (plus maybe the in-flight one)
            ok = False
            extra = [inflight] if inflight is not None and state["inflight_copy"] else []
            for want_copies in (copies, copies + extra):
                m = min(len(have), len(want_copies))
                ok = ok or (m > 0 and have[-m:] == want_copies[-m:])
            # a tiny summary region may have wrapped past every copy
            ok = ok or (not have and st.chain_anchor(1)[0] > 0)
            if not ok:
                result.invariant_failures += 1
                result.note(f"op {op_index}: summary copies do not match the main stream")
        if probe_every and result.points % probe_every == 0:
            try:
                probe = Event(0, EventKind.GAP, value=op_index)
                pseq = st.append(probe)
                again = BlackboxStore.mount(twin)
                if dict(again.raw_records(0)).get(pseq) != encode_record(probe) or \
                        again.chain_head(0) != st.chain_head(0):
                    raise StoreError("probe record missing after remount")
            except Exception as err:
                result.invariant_failures += 1
                result.note(f"op {op_index}: append after recovery failed: {err!r}")

    def hook(op: Any) -> None:
        index = op.index - base
        if points is None or index in points:
            check(index, flash.crash_copy(op, rng), store.oldest_seq)

    flash.on_op = hook
    for step in workload:
        if isinstance(step, MarkRead):
            old = store.read_up_to_seq
            state["read"] = (old, max(old, min(step.up_to_seq, store.next_seq)))
            store.mark_read(step.up_to_seq)
            state["read"] = (store.read_up_to_seq, store.read_up_to_seq)
            continue
        if isinstance(step, Reset):
            floor = store.next_seq
            state["reset_floor"] = floor
            state["read"] = (store.read_up_to_seq, floor)
            store.reset(t_ms=step.t_ms, force=step.force)
            expected.clear()
            copies.clear()
            for seq, data in store.raw_records(0):
                expected[seq] = data
                heads[seq + 1] = chain.chain_next(heads[seq], seq, data)
            state["reset_floor"] = None
            state["read"] = (floor, floor)
            state["n"] = store.next_seq
            continue
        data = encode_record(step)
        copy = isinstance(step, ConfigChange | ClockSet) or (
            isinstance(step, Event) and step.kind in SUMMARY_EVENT_KINDS)
        state["inflight"], state["inflight_copy"] = data, copy
        seq = store.append(step)
        expected[seq] = data
        heads[seq + 1] = chain.chain_next(heads[seq], seq, data)
        if copy:
            copies.append(data)
        state["inflight"], state["n"] = None, seq + 1
    flash.on_op = None
    result.operations = flash.op_count - base
    opened = int(flash.erase_counts[main_first:main_first + main_n].sum())
    result.main_wraps = opened / main_n
    return result
