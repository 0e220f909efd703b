"""The SMARTLOGGER firmware model: sampling state machine, thresholds, events, on virtual time.

Owns ``Logger``: what a logger measures and when, how it decides that its block is
in a discharge, which threshold events it raises, how samples are packed into
``SampleBlock`` records, and what it appends to its ``LogStore``. Also owns the
configuration gate (``apply_config`` / ``ConfigRejected``) and clock setting.
Does not own the battery (``device.battery``), the measurement chain
(``device.sensors``), the RTC (``device.clock``) or the storage layout
(``device.store`` / the blackbox). See docs/FIRMWARE.md for the state machine.

Time: the logger runs on *virtual* time. ``run_until(true_s)`` processes every
oscillator tick up to ``true_s`` in numpy chunks. The firmware measures at every
tick (the fast rate) into its RAM; it stores every tick during a discharge and
every ``float_rate_s`` while idle. Stretches in which, by the sensor's hard bounds,
no tick can cross a threshold or the detection gate are processed by computing
only the stored ticks ("quiet skip"); because sensor noise is counter-based
(``device.sensors``), this gives bit-identical results to processing every tick.
"""

from __future__ import annotations

import enum
import math
from array import array
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from smartlogger.device.beacon import LiveBeacon, LiveSource
from smartlogger.device.clock import Rtc
from smartlogger.device.sensors import Sensor, SignalSource
from smartlogger.device.store import LogStore, MemoryStore
from smartlogger.errors import ConfigError, SimulationError
from smartlogger.logfile.records import decode_config, decode_record, encode_config, encode_record
from smartlogger.model import (
    Chemistry,
    ClockSet,
    ConfigChange,
    Event,
    EventKind,
    Generation,
    Level,
    LoggerConfig,
    LoggerIdentity,
    Quantity,
    Record,
    SampleBlock,
    Side,
    gen1_config,
)
from smartlogger.protocol.live import KitKey, LiveAdvert

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# --------------------------------------------------------------------------- firmware constants

#: Samples per ``SampleBlock`` before the block is closed and appended.
BLOCK_MAX_SAMPLES: Final = 256
#: Seconds before discharge detection that are kept at the fast rate (RAM ring length).
PRETRIGGER_S: Final = 60
#: Consecutive ticks a detection/arming condition must hold (debounce against noise).
DEBOUNCE_TICKS: Final = 3
#: Seconds the voltage must stay recovered (load removed) before a discharge ends.
RECOVERY_HOLD_S: Final = 60
#: Per-cell detection gate: below this a block is not on float charge (mV per cell).
#: Set a little below the rest voltage of a fully charged cell (lead-acid 2.12-2.15 V,
#: NiCd ~1.33 V, LiFePO4 ~3.33 V): a charged block on float or at rest stays above it,
#: a block delivering current drops below it at once.
DETECT_GATE_MV_PER_CELL: Final = {
    Chemistry.VRLA: 2100,
    Chemistry.FLOODED: 2100,
    Chemistry.NICD: 1300,
    Chemistry.LIFEPO4: 3300,
}
#: Per-cell float reference (mV per cell): the step rule measures its drop from the lower of
#: the baseline and this, so a fall from boost/equalise charge back to float is no discharge.
FLOAT_REF_MV_PER_CELL: Final = {
    Chemistry.VRLA: 2250,
    Chemistry.FLOODED: 2250,
    Chemistry.NICD: 1400,
    Chemistry.LIFEPO4: 3400,
}
#: Re-arming margin above the gate, as a fraction of nominal (1 %: 120 mV on a 12 V block).
ARM_MARGIN: Final = 0.01
#: Drop below the baseline (highest reading of the last ``BASELINE_S``) that means "load
#: applied", as a fraction of nominal (2 %: 240 mV on a 12 V block, 40 mV on a 2 V cell).
STEP_MARGIN: Final = 0.02
#: Length of the baseline window, s.
BASELINE_S: Final = 60
#: Rise above the discharge minimum that means "load removed" (the I*R step back), as a
#: fraction of nominal (0.75 %: 90 mV on a 12 V block), held for ``RECOVERY_HOLD_S``.
RISE_MARGIN: Final = 0.0075
#: Threshold hysteresis: voltage 0.5 % of nominal (at least 10 mV), temperature 1.0 C.
V_HYSTERESIS_FRACTION: Final = 0.005
V_HYSTERESIS_MIN_MV: Final = 10
T_HYSTERESIS_DC: Final = 10

#: Quiet-skip chunk (1 day) and full-processing chunk (1 h) in oscillator ms.
_BIG_CHUNK_MS: Final = 86_400_000
_SMALL_CHUNK_MS: Final = 3_600_000


class ConfigRejected(ConfigError):
    """``apply_config`` refused a configuration. ``reason`` is a short code.

    Codes: ``gen1`` (generation-1 logger: not writable), ``block_type`` (other
    measuring class than the logger hardware), ``range`` (a field fails validation),
    ``stale`` (sequence number older than the applied one).
    """

    def __init__(self, reason: str, message: str, *, field: str = "config") -> None:
        self.reason = reason
        super().__init__(field, f"configuration rejected ({reason}): {message}")


class _Detect(enum.Enum):
    """Discharge detector state (see docs/FIRMWARE.md)."""

    ARMED = "armed"  # on float / fully charged: waiting for the voltage to fall below the gate
    DISCHARGE = "discharge"  # logging at the fast rate
    RESTING = "resting"  # load removed, not yet recharged: waiting for recharge or a new load step


@dataclass(frozen=True)
class DischargeInfo:
    """The latest detected discharge (device ms; ``end_ms`` is None while it lasts)."""

    start_ms: int
    end_ms: int | None
    min_mv: int


@dataclass(frozen=True)
class LoggerStatus:
    """What the logger would show on a status read."""

    mode: str  # "float" or "discharge"
    detector: str  # "armed", "discharge" or "resting"
    true_s: float  # virtual time processed up to
    device_ms: int
    last_sample_ms: int | None
    last_mv: int | None
    last_dc: int | None
    active: frozenset[tuple[Quantity, Side, Level]]  # threshold flags currently raised
    last_discharge: DischargeInfo | None
    record_count: int  # records appended to the store so far (its next_seq)
    config_seq: int

    @property
    def warning(self) -> bool:
        return any(lv is Level.WARNING for _, _, lv in self.active)

    @property
    def alarm(self) -> bool:
        return any(lv is Level.ALARM for _, _, lv in self.active)


@dataclass
class _OpenBlock:
    start_k: int
    stride: int
    mv: list[IntArray]
    dc: list[IntArray]
    count: int

    @property
    def next_k(self) -> int:
        return self.start_k + self.count * self.stride


_COMPARATORS: Final = tuple(
    (q, s, lv) for q in (Quantity.VOLTAGE, Quantity.TEMPERATURE) for s in (Side.LOW, Side.HIGH)
    for lv in (Level.WARNING, Level.ALARM)
)


def _first_run(mask: BoolArray, need: int, carried: int) -> tuple[int | None, int]:
    """First index where ``mask`` has been true ``need`` times in a row (counting ``carried``
    trues before index 0), and the trailing run length if there is none."""
    n = mask.size
    if n == 0:
        return None, carried
    idx = np.arange(n)
    last_false = np.maximum.accumulate(np.where(mask, -1, idx))
    run = idx - last_false
    run = np.where(last_false < 0, run + carried, run)
    hits = np.flatnonzero(run >= need)
    if hits.size:
        return int(hits[0]), 0
    return None, int(run[-1])


class Logger:
    """One SMARTLOGGER on one block (see module docstring)."""

    def __init__(
        self,
        identity: LoggerIdentity,
        config: LoggerConfig,
        *,
        store: LogStore | None = None,
        rtc: Rtc | None = None,
        sensor: Sensor | None = None,
        source: SignalSource | None = None,
        seed: int = 0,
        config_seq: int = 0,
        power_on_s: float = 0.0,
        beacon: LiveBeacon | None = None,
    ) -> None:
        if identity.generation is Generation.GEN1:
            fixed = gen1_config(config.rated_ah)
            if (config.thresholds, config.float_rate_s, config.discharge_rate_s, config.block_type) != (
                fixed.thresholds, fixed.float_rate_s, fixed.discharge_rate_s, fixed.block_type
            ):
                raise ConfigRejected("gen1", "a generation-1 logger runs only its fixed profile")
        config.validate()
        self.identity = identity
        self.config = config
        # A logger that boots again (power back after a loss) restores the configuration it
        # had committed to its log, with that configuration's sequence number.
        self.config_seq = config_seq
        self.store: LogStore = store if store is not None else MemoryStore(serial=identity.serial)
        self.rtc = rtc if rtc is not None else Rtc.seeded(seed)
        self.sensor = sensor if sensor is not None else Sensor.seeded(config.block_type, seed)
        if self.sensor.range_mv != config.block_type.measuring_range_mv:
            raise ConfigRejected("block_type", "sensor and configuration are for different block classes")
        self.source = source
        self.seed = seed
        # The live adverts' key store (kit key, last tap, sequence reservation): it survives
        # a power loss, so a logger that boots again is given the same one.
        self.beacon = beacon if beacon is not None else LiveBeacon()

        if power_on_s < 0 or not math.isfinite(power_on_s):
            raise SimulationError(f"power-on time {power_on_s!r} s must be a finite time >= 0")
        self._true_s = float(power_on_s)
        # oscillator ms of tick 0 of the current grid: the first whole ms at or after power-on
        self._origin_ms = math.ceil(self.rtc.oscillator_ms(self._true_s) - 1e-9)
        self._next_k = 0  # next tick to process
        self._detect = _Detect.RESTING  # armed once the block is seen charged
        self._run_a = 0
        self._run_b = 0
        self._extreme = 0  # running minimum during a discharge, mV
        self._active: dict[tuple[Quantity, Side, Level], bool] = dict.fromkeys(_COMPARATORS, False)
        self._open: _OpenBlock | None = None
        self._last_stored_k = -1
        self._last: tuple[int, int, int] | None = None  # (k, mv, dc) of the last measured tick
        self._discharge: DischargeInfo | None = None
        self._pending: list[tuple[int, int, Record]] = []
        self.skip_quiet = True  # tests switch this off to prove the skip is exact
        self._set_grid(config)
        self._append(Event(self.now_ms(), EventKind.POWER_ON))
        self._append(ConfigChange(self.now_ms(), config, config_seq))

    # ------------------------------------------------------------------ public API

    def now_ms(self) -> int:
        """Device RTC time at the current virtual time."""
        return self.rtc.device_ms(self._true_s)

    @property
    def true_s(self) -> float:
        return self._true_s

    def attach(self, source: SignalSource) -> None:
        """Clip the logger onto a (new) block signal."""
        self.source = source

    def apply_config(self, config: LoggerConfig, seq: int) -> None:
        """Apply a configuration received over NFC, atomically, and log a ``ConfigChange``.

        Raises ``ConfigRejected`` (nothing changed) for a generation-1 logger, another
        block class, an invalid field, or ``seq`` older than ``config_seq``.
        """
        if self.identity.generation is Generation.GEN1:
            raise ConfigRejected("gen1", "generation-1 loggers have fixed thresholds and log rate")
        try:
            config.validate()
        except ConfigError as err:
            raise ConfigRejected("range", err.message, field=err.field) from err
        if config.block_type.measuring_range_mv != self.config.block_type.measuring_range_mv:
            raise ConfigRejected(
                "block_type",
                f"logger measures {self.config.block_type.measuring_class_mv / 1000:g} V class blocks, "
                f"configuration is for {config.block_type.describe()}",
                field="block_type",
            )
        if seq < self.config_seq:
            raise ConfigRejected("stale", f"sequence {seq} is older than the applied {self.config_seq}",
                                 field="seq")
        old_interval = self._interval_s()
        self._close_block(self._next_k)
        self._flush_pending()
        next_osc = self._origin_ms + self._next_k * self._tick_ms
        self.config = config
        self.config_seq = seq
        self._set_grid(config)
        self._origin_ms = next_osc
        self._next_k = 0
        self._last_stored_k = -1
        self._last = None
        now = self.now_ms()
        self._append(ConfigChange(now, config, seq))
        if self._interval_s() != old_interval:
            self._append(Event(now, EventKind.RATE_CHANGE, value=self._interval_s()))

    def set_clock(self, new_ms: int) -> int:
        """Set the RTC (phone time at the NFC tap); logs ``ClockSet``; returns the old reading."""
        self._close_block(self._next_k)
        self._flush_pending()
        old = self.rtc.set(new_ms, self._true_s)
        self._append(ClockSet(old, int(new_ms)))
        self.beacon.tapped(self.now_ms())
        return old

    # ------------------------------------------------------------------ live adverts

    @property
    def live_key_id(self) -> int:
        """The id of the kit key the live adverts are sealed with (0: none)."""
        return self.beacon.key_id

    def set_live_key(self, key: KitKey) -> None:
        """An NFC tap gave the kit key of the live adverts (``protocol.live``)."""
        self.beacon.provision(key, self.now_ms())

    def live_advert(self) -> LiveAdvert | None:
        """The live advert of the newest sample (None without a kit key or a sample)."""
        st = self.status()
        volt_alarm = any(q is Quantity.VOLTAGE and lv is Level.ALARM for q, _, lv in st.active)
        return self.beacon.advert(LiveSource(
            st.last_sample_ms, st.last_mv or 0, st.last_dc or 0, st.mode == "discharge",
            volt_alarm, st.warning, self.config.block_position, self.config.test_id))

    def live_interval_ms(self) -> int:
        """The live adverts' interval now (fast in a discharge, slow on float)."""
        return self.beacon.interval_ms(self._detect is _Detect.DISCHARGE)

    def status(self) -> LoggerStatus:
        last_ms = self._dev_ms(self._last[0]) if self._last else None
        return LoggerStatus(
            mode="discharge" if self._detect is _Detect.DISCHARGE else "float",
            detector=self._detect.value,
            true_s=self._true_s,
            device_ms=self.now_ms(),
            last_sample_ms=last_ms,
            last_mv=self._last[1] if self._last else None,
            last_dc=self._last[2] if self._last else None,
            active=frozenset(k for k, on in self._active.items() if on),
            last_discharge=self._discharge,
            record_count=self.store.next_seq,
            config_seq=self.config_seq,
        )

    def run_until(self, true_s: float) -> None:
        """Advance virtual time to ``true_s``, processing every tick at or before it."""
        if true_s < self._true_s:
            raise SimulationError(f"cannot run backwards from {self._true_s} s to {true_s} s")
        if self.source is None:
            raise SimulationError(f"logger {self.identity.serial} has no signal source attached")
        k_last = math.floor((self.rtc.oscillator_ms(true_s) - self._origin_ms) / self._tick_ms + 1e-9)
        big = max(1, _BIG_CHUNK_MS // self._tick_ms)
        small = max(1, _SMALL_CHUNK_MS // self._tick_ms)
        while self._next_k <= k_last:
            ka = self._next_k
            kb = min(k_last + 1, ka + big)
            if self._quiet(ka, kb):
                self._process_quiet(ka, kb)
            else:
                for sa in range(ka, kb, small):
                    sb = min(kb, sa + small)
                    if self._quiet(sa, sb):
                        self._process_quiet(sa, sb)
                    else:
                        self._process_full(sa, sb)
            self._flush_pending()
        self._true_s = float(true_s)

    def flush(self) -> None:
        """Close the open sample block and append it (e.g. before a log pull or at power-down)."""
        self._close_block(self._next_k)
        self._flush_pending()
        self.store.flush()

    # ------------------------------------------------------------------ RAM snapshot

    def snapshot(self) -> dict[str, Any]:
        """The firmware's RAM and RTC as plain JSON data (the open sample block included).

        A virtual site keeps it in its checkpoint so that a *paused* simulation resumes
        exactly where it was (``resume``); a power loss instead loses it (a new ``Logger``
        boots on the same store). The store, sensor and signal source are not part of it.
        """
        blk = self._open
        return {
            "v": 1,
            "config": encode_config(self.config).hex(),
            "config_seq": self.config_seq,
            "rtc": {"base_ms": self.rtc.base_ms, "drift_ppm": self.rtc.drift_ppm},
            "true_s": self._true_s,
            "origin_ms": self._origin_ms,
            "next_k": self._next_k,
            "detect": self._detect.value,
            "run_a": self._run_a,
            "run_b": self._run_b,
            "extreme": self._extreme,
            "active": [self._active[key] for key in _COMPARATORS],
            "open": None if blk is None else {
                "start_k": blk.start_k, "stride": blk.stride, "count": blk.count,
                "mv": np.concatenate(blk.mv).astype(np.int64).tolist() if blk.mv else [],
                "dc": np.concatenate(blk.dc).astype(np.int64).tolist() if blk.dc else []},
            "last_stored_k": self._last_stored_k,
            "last": None if self._last is None else list(self._last),
            "discharge": None if self._discharge is None else [
                self._discharge.start_ms, self._discharge.end_ms, self._discharge.min_mv],
            "pending": [[k, order, encode_record(rec).hex()] for k, order, rec in self._pending],
            "skip_quiet": self.skip_quiet,
        }

    @classmethod
    def resume(cls, identity: LoggerIdentity, snapshot: dict[str, Any], *, store: LogStore,
               sensor: Sensor, source: SignalSource | None = None, seed: int = 0,
               beacon: LiveBeacon | None = None) -> Logger:
        """The logger as ``snapshot`` left it, on ``store``: nothing is logged (no power-on).

        Raises ``SimulationError`` for a snapshot this firmware cannot read.
        """
        try:
            if snapshot.get("v") != 1:
                raise ValueError(f"snapshot version {snapshot.get('v')!r}")
            config, _ = decode_config(bytes.fromhex(snapshot["config"]))
            rtc = Rtc(base_ms=int(snapshot["rtc"]["base_ms"]),
                      drift_ppm=float(snapshot["rtc"]["drift_ppm"]))
            self = cls.__new__(cls)
            self.identity = identity
            self.config = config
            self.config_seq = int(snapshot["config_seq"])
            self.store = store
            self.rtc = rtc
            self.sensor = sensor
            self.source = source
            self.seed = seed
            self.beacon = beacon if beacon is not None else LiveBeacon()
            self._set_grid(config)
            self._true_s = float(snapshot["true_s"])
            self._origin_ms = int(snapshot["origin_ms"])
            self._next_k = int(snapshot["next_k"])
            self._detect = _Detect(snapshot["detect"])
            self._run_a = int(snapshot["run_a"])
            self._run_b = int(snapshot["run_b"])
            self._extreme = int(snapshot["extreme"])
            active = list(snapshot["active"])
            if len(active) != len(_COMPARATORS):
                raise ValueError("comparator flags")
            self._active = {key: bool(on) for key, on in zip(_COMPARATORS, active, strict=True)}
            blk = snapshot["open"]
            self._open = None if blk is None else _OpenBlock(
                int(blk["start_k"]), int(blk["stride"]),
                [np.asarray(blk["mv"], dtype=np.int64)], [np.asarray(blk["dc"], dtype=np.int64)],
                int(blk["count"]))
            if self._open is not None and self._open.mv[0].size != self._open.count:
                raise ValueError("open sample block length")
            self._last_stored_k = int(snapshot["last_stored_k"])
            last = snapshot["last"]
            self._last = None if last is None else (int(last[0]), int(last[1]), int(last[2]))
            d = snapshot["discharge"]
            self._discharge = None if d is None else DischargeInfo(
                int(d[0]), None if d[1] is None else int(d[1]), int(d[2]))
            self._pending = [(int(k), int(order), decode_record(bytes.fromhex(h)))
                             for k, order, h in snapshot["pending"]]
            self.skip_quiet = bool(snapshot["skip_quiet"])
        except (KeyError, TypeError, ValueError) as err:
            raise SimulationError(f"{identity.serial}: unreadable firmware snapshot: {err}") from None
        if self.sensor.range_mv != config.block_type.measuring_range_mv:
            raise SimulationError(f"{identity.serial}: snapshot is for another block class")
        return self

    # ------------------------------------------------------------------ grid and helpers

    def _set_grid(self, config: LoggerConfig) -> None:
        tick_s = math.gcd(config.float_rate_s, config.discharge_rate_s)
        self._tick_ms = tick_s * 1000
        self._float_stride = config.float_rate_s // tick_s
        self._fast_stride = config.discharge_rate_s // tick_s
        self._pretrigger_ticks = max(1, PRETRIGGER_S * 1000 // self._tick_ms)
        self._hold_ticks = max(1, RECOVERY_HOLD_S * 1000 // self._tick_ms)
        bt = config.block_type
        nominal = bt.nominal_mv
        self._gate_mv = bt.cells * DETECT_GATE_MV_PER_CELL[bt.chemistry]
        self._arm_mv = self._gate_mv + round(ARM_MARGIN * nominal)
        self._float_ref_mv = bt.cells * FLOAT_REF_MV_PER_CELL[bt.chemistry]
        self._step_mv = round(STEP_MARGIN * nominal)
        self._rise_mv = round(RISE_MARGIN * nominal)
        self._baseline_ticks = max(1, BASELINE_S * 1000 // self._tick_ms)
        self._v_hyst = max(V_HYSTERESIS_MIN_MV, round(V_HYSTERESIS_FRACTION * nominal))

    def _interval_s(self) -> int:
        c = self.config
        return c.discharge_rate_s if self._detect is _Detect.DISCHARGE else c.float_rate_s

    def _dev_ms(self, k: int) -> int:
        return self.rtc.base_ms + self._origin_ms + k * self._tick_ms

    def _measure(self, ks: IntArray) -> tuple[IntArray, IntArray]:
        assert self.source is not None
        osc = self._origin_ms + ks * self._tick_ms
        volts, temp_c = self.source.at(self.rtc.true_s(osc))
        return self.sensor.measure(volts, temp_c, osc)

    def _append(self, record: Record) -> None:
        self.store.append(record)

    def _emit(self, k: int, order: int, record: Record) -> None:
        self._pending.append((k, order, record))

    def _flush_pending(self) -> None:
        if not self._pending:
            return
        self._pending.sort(key=lambda item: (item[0], item[1]))
        for _, _, record in self._pending:
            self.store.append(record)
        self._pending.clear()

    def _threshold(self, q: Quantity, s: Side, lv: Level) -> tuple[int, int]:
        """(level, hysteresis) of one comparator."""
        return (self.config.thresholds.level(q, s, lv),
                self._v_hyst if q is Quantity.VOLTAGE else T_HYSTERESIS_DC)

    # ------------------------------------------------------------------ sample blocks

    def _store(self, ks: IntArray, mv: IntArray, dc: IntArray, stride: int) -> None:
        pos = 0
        n = int(ks.size)
        while pos < n:
            blk = self._open
            if blk is not None and (blk.stride != stride or blk.next_k != int(ks[pos])):
                self._close_block(int(ks[pos]))
                blk = None
            if blk is None:
                blk = self._open = _OpenBlock(int(ks[pos]), stride, [], [], 0)
            take = min(BLOCK_MAX_SAMPLES - blk.count, n - pos)
            blk.mv.append(mv[pos:pos + take])
            blk.dc.append(dc[pos:pos + take])
            blk.count += take
            pos += take
            self._last_stored_k = int(ks[pos - 1])
            if blk.count >= BLOCK_MAX_SAMPLES:
                self._close_block(self._last_stored_k)

    def _close_block(self, key_k: int) -> None:
        blk = self._open
        if blk is None:
            return
        self._open = None
        mv = array("i", np.concatenate(blk.mv).astype(np.int32).tobytes())
        dc = array("i", np.concatenate(blk.dc).astype(np.int32).tobytes())
        rec = SampleBlock(self._dev_ms(blk.start_k), blk.stride * self._tick_ms, mv, dc)
        self._emit(max(key_k, blk.next_k - blk.stride), 0, rec)

    def _store_segment(self, ks: IntArray, mv: IntArray, dc: IntArray, i0: int, i1: int,
                       fast: bool) -> None:
        """Store the ticks of ``ks[i0:i1]`` that fall on the current mode's log grid."""
        if i1 <= i0:
            return
        stride = self._fast_stride if fast else self._float_stride
        sel = ks[i0:i1] % stride == 0
        idx = np.flatnonzero(sel) + i0
        if idx.size:
            self._store(ks[idx], mv[idx], dc[idx], stride)

    # ------------------------------------------------------------------ quiet skip

    def _quiet(self, ka: int, kb: int) -> bool:
        """True if, by hard sensor bounds, no tick in [ka, kb) can change any state."""
        if not self.skip_quiet or self._detect is not _Detect.ARMED or any(self._active.values()):
            return False
        assert self.source is not None
        # the baseline window reaches back before ka: bound it over the same span (conservative)
        k0 = max(0, ka - self._baseline_ticks)
        t0, t1 = self.rtc.true_s(np.array([self._origin_ms + k0 * self._tick_ms,
                                           self._origin_ms + (kb - 1) * self._tick_ms]))
        mv_lo, mv_hi, dc_lo, dc_hi = self.sensor.bounds(*self.source.envelope(float(t0), float(t1)))
        th = self.config.thresholds
        return (mv_lo >= self._gate_mv and mv_lo >= min(mv_hi, self._float_ref_mv) - self._step_mv
                and mv_lo >= th.v_low_warn_mv and mv_hi <= th.v_high_warn_mv
                and dc_lo >= th.t_low_warn_dc and dc_hi <= th.t_high_warn_dc)

    def _process_quiet(self, ka: int, kb: int) -> None:
        stride = self._float_stride
        first = -(-ka // stride) * stride
        ks = np.arange(first, kb, stride, dtype=np.int64)
        if ks.size == 0 or ks[-1] != kb - 1:
            ks = np.append(ks, np.int64(kb - 1))  # the last tick, for the status read
        mv, dc = self._measure(ks)
        stored = ks % stride == 0
        if stored.any():
            self._store(ks[stored], mv[stored], dc[stored], stride)
        self._last = (int(ks[-1]), int(mv[-1]), int(dc[-1]))
        self._run_a = 0  # the gate was never crossed
        self._next_k = kb

    # ------------------------------------------------------------------ full processing

    def _process_full(self, ka: int, kb: int) -> None:
        ks = np.arange(ka, kb, dtype=np.int64)
        mv, dc = self._measure(ks)
        self._comparators(ks, mv, dc)
        self._detector(ks, mv, dc)
        self._last = (int(ks[-1]), int(mv[-1]), int(dc[-1]))
        self._next_k = kb

    def _comparators(self, ks: IntArray, mv: IntArray, dc: IntArray) -> None:
        for key in _COMPARATORS:
            q, side, lv = key
            x = mv if q is Quantity.VOLTAGE else dc
            level, hyst = self._threshold(q, side, lv)
            if side is Side.LOW:
                enter_idx = np.flatnonzero(x < level)
                leave_idx = np.flatnonzero(x >= level + hyst)
            else:
                enter_idx = np.flatnonzero(x > level)
                leave_idx = np.flatnonzero(x <= level - hyst)
            active = self._active[key]
            pos = 0
            while True:
                arr = leave_idx if active else enter_idx
                p = int(np.searchsorted(arr, pos))
                if p >= arr.size:
                    break
                j = int(arr[p])
                active = not active
                if active:
                    kind = EventKind.ENTER_ALARM if lv is Level.ALARM else EventKind.ENTER_WARNING
                    order = 3 if lv is Level.ALARM else 2  # warning raised before alarm
                else:
                    kind = EventKind.LEAVE_ALARM if lv is Level.ALARM else EventKind.LEAVE_WARNING
                    order = 2 if lv is Level.ALARM else 3  # alarm cleared before warning
                k = int(ks[j])
                self._emit(k, order, Event(self._dev_ms(k), kind, q, side, int(x[j])))
                pos = j + 1
            self._active[key] = active

    def _detector(self, ks: IntArray, mv: IntArray, dc: IntArray) -> None:
        n = int(ks.size)
        pos = 0
        cache: list[IntArray] = []

        def base() -> IntArray:
            if not cache:
                cache.append(self._baseline(ks, mv))
            return cache[0]

        while pos < n:
            sub = mv[pos:]
            if self._detect is _Detect.ARMED:
                fell = (sub < self._gate_mv) | (sub < base()[pos:] - self._step_mv)
                j, self._run_a = _first_run(fell, DEBOUNCE_TICKS, self._run_a)
                if j is None:
                    self._store_segment(ks, mv, dc, pos, n, fast=False)
                    return
                self._store_segment(ks, mv, dc, pos, pos + j, fast=False)
                pos += j
                self._start_discharge(ks, mv, pos)
            elif self._detect is _Detect.DISCHARGE:
                # load removed or charger back: the reading rose clearly above the
                # discharge minimum and stayed there
                runmin = np.minimum(np.minimum.accumulate(sub), self._extreme)
                j, self._run_b = _first_run(sub >= runmin + self._rise_mv, self._hold_ticks, self._run_b)
                if j is None:
                    self._extreme = int(runmin[-1])
                    self._store_segment(ks, mv, dc, pos, n, fast=True)
                    return
                self._store_segment(ks, mv, dc, pos, pos + j, fast=True)
                self._extreme = int(runmin[j])
                pos += j
                self._end_discharge(ks, mv, pos, charged=bool(mv[pos] >= self._arm_mv))
            else:  # RESTING
                ja, run_a = _first_run(sub >= self._arm_mv, DEBOUNCE_TICKS, self._run_a)
                jb, run_b = _first_run(sub < base()[pos:] - self._step_mv, DEBOUNCE_TICKS, self._run_b)
                if ja is None and jb is None:
                    self._run_a, self._run_b = run_a, run_b
                    self._store_segment(ks, mv, dc, pos, n, fast=False)
                    return
                loaded = ja is None or (jb is not None and jb < ja)
                j = jb if loaded else ja
                assert j is not None
                self._store_segment(ks, mv, dc, pos, pos + j, fast=False)
                pos += j
                if loaded:
                    self._start_discharge(ks, mv, pos)
                else:
                    self._detect = _Detect.ARMED
                    self._run_a = self._run_b = 0

    def _baseline(self, ks: IntArray, mv: IntArray) -> IntArray:
        """Per tick, the reference of the step rule: the highest reading of the ``BASELINE_S``
        before it (the float/rest level), capped at the float reference."""
        w = self._baseline_ticks
        ka = int(ks[0])
        lo = max(0, ka - w)
        hist = self._measure(np.arange(lo, ka, dtype=np.int64))[0] if ka > lo else mv[:0]
        pad = np.full(w - hist.size, np.iinfo(np.int64).min // 2, dtype=np.int64)
        ext = np.concatenate((pad, hist, mv))
        windows = np.lib.stride_tricks.sliding_window_view(ext[:-1], w)
        base: IntArray = np.minimum(windows.max(axis=1), self._float_ref_mv)
        return base

    def _start_discharge(self, ks: IntArray, mv: IntArray, i: int) -> None:
        """Discharge detected at ``ks[i]``: close the float block, log events, store the pre-trigger."""
        kd = int(ks[i])
        self._trim_open_block(kd - self._pretrigger_ticks)
        self._close_block(kd)
        t = self._dev_ms(kd)
        self._emit(kd, 1, Event(t, EventKind.DISCHARGE_START, value=int(mv[i])))
        self._emit(kd, 1, Event(t, EventKind.RATE_CHANGE, value=self.config.discharge_rate_s))
        stride = self._fast_stride
        lo = max(0, kd - self._pretrigger_ticks, self._last_stored_k + 1)
        first = -(-lo // stride) * stride
        pre = np.arange(first, kd, stride, dtype=np.int64)
        if pre.size:
            pmv, pdc = self._measure(pre)
            self._store(pre, pmv, pdc, stride)
        self._detect = _Detect.DISCHARGE
        self._run_a = self._run_b = 0
        self._extreme = int(mv[i])
        self._discharge = DischargeInfo(t, None, int(mv[i]))

    def _trim_open_block(self, lo: int) -> None:
        """Drop the float samples at ticks ``>= lo`` from the block still in RAM: the pre-trigger
        stores those ticks at the fast rate. Without it, a float sample taken between the load step
        and its detection (a few ticks later) cut the pre-trigger off after itself, and the log held
        no fast sample before the step (one load step in ten at a 60 s float rate)."""
        blk = self._open
        if blk is None or blk.next_k <= lo:
            return
        keep = max(0, -(-(lo - blk.start_k) // blk.stride))  # samples at ticks < lo
        mv = np.concatenate(blk.mv)[:keep]
        dc = np.concatenate(blk.dc)[:keep]
        if keep == 0:
            self._open = None
            self._last_stored_k = blk.start_k - 1
            return
        blk.mv, blk.dc, blk.count = [mv], [dc], keep
        self._last_stored_k = blk.start_k + (keep - 1) * blk.stride

    def _end_discharge(self, ks: IntArray, mv: IntArray, i: int, charged: bool) -> None:
        ke = int(ks[i])
        self._close_block(ke)
        t = self._dev_ms(ke)
        self._emit(ke, 1, Event(t, EventKind.DISCHARGE_END, value=self._extreme))
        self._emit(ke, 1, Event(t, EventKind.RATE_CHANGE, value=self.config.float_rate_s))
        start = self._discharge.start_ms if self._discharge else t
        self._discharge = DischargeInfo(start, t, self._extreme)
        self._detect = _Detect.ARMED if charged else _Detect.RESTING
        self._run_a = self._run_b = 0
