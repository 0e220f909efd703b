"""Synthetic capacity tests with exactly known truth, for tests and benchmarks.

Owns a small closed-form lead-acid discharge curve and a drifting-RTC sampler
that produce ``BlockLog``s plus the ground truth (true sample times, each
block's true time to its end voltage). It is deliberately simpler than the
battery model in ``smartlogger.device`` (which the analysis must not import):
its purpose is to know the right answer to the millisecond, not realism.

Curve (V per cell, ``f`` = delivered fraction of the block's capacity at this
rate): ``v(f) = 2.06 - 0.20 f - 0.11 f**12``, so ``v(1) = 1.75 V/cell`` exactly:
a block reaches 1.75 V/cell when it has delivered its capacity.
Does not own anything the product depends on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from smartlogger.analysis.inputs import BlockLog, ClockJump, ClockObservation
from smartlogger.model import BlockType, Generation, LoggerConfig, LoggerIdentity

FloatArray = npt.NDArray[np.float64]

#: Float charge voltage before the test and open-circuit recovery after it (V/cell).
FLOAT_V_PER_CELL = 2.27
REST_V_PER_CELL = 2.12
#: Epoch of the synthetic tests (ms): 2026-01-01T00:00:00Z.
T0_MS = 1_767_225_600_000


def cell_voltage(f: FloatArray) -> FloatArray:
    """Loaded cell voltage (V) at delivered fraction ``f`` of capacity."""
    fc = np.clip(f, 0.0, 1.08)  # beyond that a real cell collapses; hold at ~1.57 V
    return np.asarray(2.06 - 0.20 * fc - 0.11 * fc**12, dtype=np.float64)


@dataclass
class SyntheticTruth:
    """What really happened: load on/off (true ms), per block time to 1.75 V/cell (s
    after load on; None if not reached) and the true time of every kept sample."""

    load_on_ms: int
    load_off_ms: int
    time_to_end_s: list[float | None]
    capacity_ah: list[float]
    sample_true_ms: list[FloatArray] = field(default_factory=list)


def synthetic_string_test(
    n_blocks: int = 4,
    *,
    current_a: float = 10.0,
    capacity_ah: list[float] | None = None,
    rated_ah: float = 100.0,
    duration_s: float | None = None,
    pre_s: float = 300.0,
    post_s: float = 300.0,
    drift_ppm: list[float] | None = None,
    offset_ms: list[float] | None = None,
    obs_noise_ms: float = 5.0,
    temperature_c: float = 25.0,
    seed: int = 1,
    simulated: bool = True,
    with_clock_obs: bool = True,
) -> tuple[list[BlockLog], SyntheticTruth]:
    """A string of ``n_blocks`` 12 V VRLA blocks, each logged at 1 s on its own RTC.

    The load ``current_a`` is applied ``pre_s`` after the logs start and removed
    after ``duration_s`` (default: when the string's mean cell reaches 1.75 V),
    then ``post_s`` of rest. Each RTC has ``drift_ppm`` and ``offset_ms`` (default
    random within +/-50 ppm and +/-2 s); the phone observes each clock at an NFC
    tap before and a BLE pull after the test with ``obs_noise_ms`` Gaussian error.
    """
    rng = np.random.default_rng(seed)
    caps = np.asarray(capacity_ah if capacity_ah is not None else [rated_ah] * n_blocks, dtype=np.float64)
    ppm = np.asarray(drift_ppm if drift_ppm is not None else rng.uniform(-50, 50, n_blocks))
    off = np.asarray(offset_ms if offset_ms is not None else rng.uniform(-2000, 2000, n_blocks))
    t_end_true = caps * 3600.0 / current_a  # s under load to 1.75 V/cell
    if duration_s is None:
        # The string's mean cell voltage reaches 1.75 V/cell near the mean block's end.
        fgrid = np.linspace(0.5, 1.3, 8001)
        tgrid = fgrid[None, :] * 0 + np.linspace(0, float(t_end_true.max()) * 1.3, 8001)[None, :]
        vmean = cell_voltage(tgrid * current_a / 3600.0 / caps[:, None]).mean(axis=0)
        duration_s = float(tgrid[0, int(np.argmax(vmean <= 1.75))]) + 30.0
    load_on = T0_MS + int(pre_s * 1000)
    load_off = load_on + int(duration_s * 1000)
    total_s = pre_s + duration_s + post_s
    logs: list[BlockLog] = []
    truth = SyntheticTruth(load_on, load_off, [], caps.tolist())
    block = BlockType.lead_acid(12)
    for i in range(n_blocks):
        p = ppm[i] * 1e-6
        # Device clock: d = T0 + (true - T0) * (1 + p) + off. Samples on whole device seconds.
        d0 = T0_MS + off[i]
        k = np.arange(int(total_s * (1 + p)) + 1, dtype=np.float64)
        d = np.floor(d0) + 1000.0 * k
        true = T0_MS + (d - T0_MS - off[i]) / (1 + p)
        t_load = np.clip(true - load_on, 0, load_off - load_on) / 1000.0  # s under load so far
        f = current_a * t_load / 3600.0 / caps[i]
        under = (true >= load_on) & (true <= load_off)
        v = np.where(under, cell_voltage(f), np.where(true < load_on, FLOAT_V_PER_CELL, REST_V_PER_CELL))
        noise = rng.normal(0.0, 0.001, v.size)
        mv = np.round((v + noise) * 6 * 1000).astype(np.int32)
        temp = temperature_c + 2.0 * np.clip(t_load / max(duration_s, 1.0), 0, 1)
        dc = np.round(temp * 10).astype(np.int16)
        obs: tuple[ClockObservation, ...] = ()
        if with_clock_obs:
            tap_true = float(T0_MS - 60_000)
            pull_true = float(T0_MS + total_s * 1000 + 60_000)
            obs = tuple(
                ClockObservation(round(T0_MS + (tt - T0_MS) * (1 + p) + off[i]),
                                 round(tt + rng.normal(0.0, obs_noise_ms)), src)
                for tt, src in ((tap_true, "nfc"), (pull_true, "ble"))
            )
        ident = LoggerIdentity(f"SIM-{i + 1:04d}", Generation.GEN2, "2.0.0", simulated=simulated)
        cfg = LoggerConfig.default_for(block, rated_ah).with_changes(block_position=i + 1, block_label=f"B{i + 1}")
        logs.append(BlockLog(ident, cfg, d.astype(np.int64), mv, dc, clock_observations=obs,
                             source=f"synthetic:{i + 1}"))
        truth.sample_true_ms.append(true)
        tte = float(t_end_true[i])
        truth.time_to_end_s.append(tte if tte <= duration_s else None)
    return logs, truth


def with_gap(log: BlockLog, start: int, stop: int) -> BlockLog:
    """The same log without samples ``start..stop-1`` (a power loss)."""
    keep = np.ones(len(log), dtype=bool)
    keep[start:stop] = False
    return BlockLog(log.identity, log.config, log.t_ms[keep], log.mv[keep], log.dc[keep],
                    log.events, log.clock_observations, log.clock_jumps, log.source)


def with_clock_jump(log: BlockLog, index: int, jump_ms: int, *, recorded: bool = True) -> BlockLog:
    """The same log with a clock jump just before sample ``index``.

    ``recorded``: the RTC ran ``jump_ms`` wrong until an NFC tap set it to the
    phone's time between samples ``index-1`` and ``index``; the log holds that
    ``ClockSet`` (a phone-referenced ``ClockJump``). The phone time of the tap is
    interpolated from the log's own tap and pull observations.
    Not recorded: from sample ``index`` on the RTC reads ``jump_ms`` more, with no
    record of it (an RTC glitch); the pull observation sees the jumped clock.
    """
    t = log.t_ms.copy()
    if not recorded:
        t[index:] += jump_ms
        obs = tuple(o if o.source != "ble" else ClockObservation(o.device_ms + jump_ms, o.phone_ms, o.source, 0)
                    for o in log.clock_observations)
        return BlockLog(log.identity, log.config, t, log.mv, log.dc, log.events, obs, (), log.source)
    d_j = int(log.t_ms[index - 1]) + 500  # undisturbed device time at the tap
    taps = [o for o in log.clock_observations if o.source == "nfc"]
    pulls = [o for o in log.clock_observations if o.source == "ble"]
    if not taps or not pulls:
        raise ValueError("a recorded jump needs the log's tap and pull observations")
    a, b = taps[0], pulls[0]
    new = round(a.phone_ms + (d_j - a.device_ms) * (b.phone_ms - a.phone_ms) / (b.device_ms - a.device_ms))
    t[:index] += jump_ms
    t[index:] += new - d_j
    obs = tuple(
        ClockObservation(o.device_ms + jump_ms, o.phone_ms, o.source, 0) if o.source == "nfc"
        else ClockObservation(o.device_ms + new - d_j, o.phone_ms, o.source, 1)
        for o in log.clock_observations
    )
    return BlockLog(log.identity, log.config, t, log.mv, log.dc, log.events, obs,
                    (ClockJump(index, d_j + jump_ms, new),), log.source)
