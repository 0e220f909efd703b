"""Shared value types: identities, block types, thresholds, configuration, log records.

Owns the vocabulary every part speaks and the validation of configurations.
Does not own any encoding (see ``logfile`` and ``protocol``) or any I/O.
Standard library only.

Units are integers wherever the device stores them: millivolts (mV), tenths of
a degree Celsius (dC), milliseconds of device time since the Unix epoch (ms),
seconds for log rates. Conversions to floats happen at the edges.
"""

from __future__ import annotations

import enum
import re
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from smartlogger.errors import ConfigError

# --------------------------------------------------------------------------- identity


class Generation(enum.IntEnum):
    """Logger hardware/firmware generation."""

    GEN1 = 1  # fixed thresholds, fixed log rate, older log format, unsigned
    GEN2 = 2  # configurable rates and thresholds, signed logs


_SERIAL_RE = re.compile(r"^[A-Z0-9][A-Z0-9-]{2,31}$")


@dataclass(frozen=True)
class LoggerIdentity:
    """Who a logger is. ``simulated``/``replayed`` mark data that is not real-hardware evidence."""

    serial: str
    generation: Generation
    firmware: str
    simulated: bool = False
    replayed: bool = False

    def __post_init__(self) -> None:
        if not _SERIAL_RE.match(self.serial):
            raise ConfigError(
                "identity.serial",
                f"{self.serial!r} is not a serial (3-32 of A-Z, 0-9, '-', starting alphanumeric)",
            )
        if not isinstance(self.generation, Generation):
            object.__setattr__(self, "generation", _generation(self.generation))
        if not self.firmware or len(self.firmware) > 32:
            raise ConfigError("identity.firmware", "firmware version must be 1-32 characters")

    @property
    def markers(self) -> tuple[str, ...]:
        """The provenance markers to print next to any data from this logger."""
        out = []
        if self.simulated:
            out.append("SIMULATED")
        if self.replayed:
            out.append("REPLAYED")
        return tuple(out)


def _generation(value: object) -> Generation:
    try:
        return Generation(int(value))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ConfigError("identity.generation", f"{value!r} is not 1 or 2") from None


# --------------------------------------------------------------------------- block types


class Chemistry(enum.StrEnum):
    """Cell chemistry of a block."""

    VRLA = "vrla"  # valve-regulated lead-acid (AGM/GEL)
    FLOODED = "flooded"  # vented lead-acid
    NICD = "nicd"
    LIFEPO4 = "lifepo4"

    @property
    def is_lead_acid(self) -> bool:
        return self in (Chemistry.VRLA, Chemistry.FLOODED)

    @property
    def cell_nominal_mv(self) -> int:
        return _CELL_NOMINAL_MV[self]

    @classmethod
    def parse(cls, text: str, field_name: str = "block_type.chemistry") -> Chemistry:
        key = text.strip().lower().replace("-", "").replace(" ", "")
        aliases = {"agm": "vrla", "gel": "vrla", "leadacid": "vrla", "vla": "flooded", "lfp": "lifepo4"}
        key = aliases.get(key, key)
        try:
            return cls(key)
        except ValueError:
            known = ", ".join(c.value for c in cls)
            raise ConfigError(field_name, f"unknown chemistry {text!r} (known: {known})") from None


_CELL_NOMINAL_MV = {
    Chemistry.VRLA: 2000,
    Chemistry.FLOODED: 2000,
    Chemistry.NICD: 1200,
    Chemistry.LIFEPO4: 3200,
}

#: Measuring ranges of the logger per block class (nominal mV -> (min mV, max mV)),
#: from the BACS C20/C23/C30/C40/C41 module family.
MEASURING_RANGE_MV: dict[int, tuple[int, int]] = {
    2000: (1250, 3200),
    4000: (2400, 5000),
    6000: (4800, 8000),
    12000: (9700, 17000),
    16000: (9700, 21000),
}

#: Temperature sensor range, dC.
TEMPERATURE_RANGE_DC = (-350, 850)


@dataclass(frozen=True)
class BlockType:
    """A battery block: chemistry and number of series cells in it."""

    chemistry: Chemistry
    cells: int

    def __post_init__(self) -> None:
        if not isinstance(self.chemistry, Chemistry):
            object.__setattr__(self, "chemistry", Chemistry.parse(str(self.chemistry)))
        if not 1 <= self.cells <= 24:
            raise ConfigError("block_type.cells", f"{self.cells} cells is outside 1..24")
        _ = self.measuring_class_mv  # raises if no class fits

    @property
    def nominal_mv(self) -> int:
        return self.cells * self.chemistry.cell_nominal_mv

    @property
    def measuring_class_mv(self) -> int:
        """The logger measuring class this block uses (nearest class whose range holds nominal)."""
        nominal = self.nominal_mv
        # A block must fit with headroom both ways: 120 % of nominal for charging (2.4 V/cell
        # lead-acid boost, 1.45 V/cell NiCd) and 90 % for warnings above the end voltage.
        # An 8 V lead-acid block or a 4-cell NiCd block fits no class.
        fits = [c for c, (lo, hi) in MEASURING_RANGE_MV.items()
                if lo * 10 <= nominal * 9 and nominal * 6 <= hi * 5]
        if not fits:
            raise ConfigError(
                "block_type",
                f"{self.cells}-cell {self.chemistry.value} block ({nominal / 1000:g} V) fits no "
                "measuring range (2, 4, 6, 12, 16 V classes)",
            )
        return min(fits, key=lambda c: abs(c - nominal))

    @property
    def measuring_range_mv(self) -> tuple[int, int]:
        return MEASURING_RANGE_MV[self.measuring_class_mv]

    @classmethod
    def lead_acid(cls, nominal_v: int, *, vented: bool = False) -> BlockType:
        """A lead-acid block of 2, 4, 6, 12 or 16 V."""
        if nominal_v not in (2, 4, 6, 12, 16):
            raise ConfigError("block_type.nominal_v", f"{nominal_v} V is not 2, 4, 6, 12 or 16 V")
        return cls(Chemistry.FLOODED if vented else Chemistry.VRLA, nominal_v // 2)

    def describe(self) -> str:
        return f"{self.nominal_mv / 1000:g} V {self.chemistry.value} ({self.cells} cells)"


# --------------------------------------------------------------------------- thresholds


class Quantity(enum.StrEnum):
    VOLTAGE = "voltage"
    TEMPERATURE = "temperature"


class Side(enum.StrEnum):
    LOW = "low"
    HIGH = "high"


class Level(enum.StrEnum):
    WARNING = "warning"  # shown yellow/orange
    ALARM = "alarm"  # shown red


#: Reference temperature the temperature window must contain (EUROBAT rating temperature), dC.
REFERENCE_TEMPERATURE_DC = 200


@dataclass(frozen=True)
class Thresholds:
    """Warning and alarm levels for voltage (mV) and temperature (dC).

    Valid when, for each quantity, low alarm < low warning < nominal < high
    warning < high alarm; voltages inside the block's measuring range and
    temperatures inside the sensor range.
    """

    v_low_alarm_mv: int
    v_low_warn_mv: int
    v_high_warn_mv: int
    v_high_alarm_mv: int
    t_low_alarm_dc: int
    t_low_warn_dc: int
    t_high_warn_dc: int
    t_high_alarm_dc: int

    def validate(self, block: BlockType, prefix: str = "thresholds") -> None:
        lo, hi = block.measuring_range_mv
        nominal = block.nominal_mv
        for name in ("v_low_alarm_mv", "v_low_warn_mv", "v_high_warn_mv", "v_high_alarm_mv"):
            v = getattr(self, name)
            if not isinstance(v, int):
                raise ConfigError(f"{prefix}.{name}", f"{v!r} is not an integer number of mV")
            if not lo <= v <= hi:
                raise ConfigError(
                    f"{prefix}.{name}",
                    f"{v / 1000:.3f} V is outside the measuring range {lo / 1000:g}-{hi / 1000:g} V "
                    f"of a {block.describe()} block",
                )
        _order(prefix, "v", self.v_low_alarm_mv, self.v_low_warn_mv, nominal,
               self.v_high_warn_mv, self.v_high_alarm_mv, "nominal", lambda x: f"{x / 1000:.3f} V")
        tlo, thi = TEMPERATURE_RANGE_DC
        for name in ("t_low_alarm_dc", "t_low_warn_dc", "t_high_warn_dc", "t_high_alarm_dc"):
            t = getattr(self, name)
            if not isinstance(t, int):
                raise ConfigError(f"{prefix}.{name}", f"{t!r} is not an integer number of dC")
            if not tlo <= t <= thi:
                raise ConfigError(
                    f"{prefix}.{name}",
                    f"{t / 10:.1f} C is outside the sensor range {tlo / 10:g}..{thi / 10:g} C",
                )
        _order(prefix, "t", self.t_low_alarm_dc, self.t_low_warn_dc, REFERENCE_TEMPERATURE_DC,
               self.t_high_warn_dc, self.t_high_alarm_dc, "reference 20 C", lambda x: f"{x / 10:.1f} C")

    def level(self, quantity: Quantity, side: Side, level: Level) -> int:
        q = "v" if quantity is Quantity.VOLTAGE else "t"
        lv = "alarm" if level is Level.ALARM else "warn"
        unit = "mv" if quantity is Quantity.VOLTAGE else "dc"
        value: int = getattr(self, f"{q}_{side.value}_{lv}_{unit}")
        return value

    @classmethod
    def default_for(cls, block: BlockType) -> Thresholds:
        """Sensible defaults: per-cell levels scaled to the block, clipped into its range."""
        n = block.cells
        if block.chemistry.is_lead_acid:
            per_cell = (1800, 1900, 2350, 2450)  # alarm low (1.80 V/cell ~ empty), warn, warn, alarm
            if n == 6:
                per_cell = (1650, 1800, 2350, 2450)  # 9.9 V empty for a 12 V block (gen-1 value)
        elif block.chemistry is Chemistry.NICD:
            per_cell = (1000, 1100, 1500, 1600)
        else:
            per_cell = (2600, 2900, 3550, 3650)
        lo, hi = block.measuring_range_mv
        vals = [min(max(p * n, lo), hi) for p in per_cell]
        # Clipping into a narrow class range can make levels collide (e.g. a 10-cell
        # lead-acid block in the 16 V class: both high levels clip to 21 V). Then put
        # the alarm at the range edge and the warning halfway to nominal, so the
        # defaults stay valid whenever any valid thresholds exist for the block.
        nominal = block.nominal_mv
        if not vals[0] < vals[1] < nominal:
            vals[0], vals[1] = lo, (lo + nominal) // 2
        if not nominal < vals[2] < vals[3]:
            vals[2], vals[3] = -(-(nominal + hi) // 2), hi
        return cls(vals[0], vals[1], vals[2], vals[3], 0, 50, 350, 450)


def _order(prefix: str, q: str, la: int, lw: int, nominal: int, hw: int, ha: int,
           nominal_name: str, fmt: object) -> None:
    show = fmt if callable(fmt) else str
    unit = "mv" if q == "v" else "dc"
    if not la < lw:
        raise ConfigError(f"{prefix}.{q}_low_warn_{unit}",
                          f"low warning {show(lw)} must be above the low alarm {show(la)}")
    if not lw < nominal:
        raise ConfigError(f"{prefix}.{q}_low_warn_{unit}",
                          f"low warning {show(lw)} must be below the {nominal_name} {show(nominal)}")
    if not nominal < hw:
        raise ConfigError(f"{prefix}.{q}_high_warn_{unit}",
                          f"high warning {show(hw)} must be above the {nominal_name} {show(nominal)}")
    if not hw < ha:
        raise ConfigError(f"{prefix}.{q}_high_alarm_{unit}",
                          f"high alarm {show(ha)} must be above the high warning {show(hw)}")


# --------------------------------------------------------------------------- configuration

MIN_LOG_RATE_S = 1
MAX_LOG_RATE_S = 24 * 3600


@dataclass(frozen=True)
class LoggerConfig:
    """What a technician programs into a logger (over NFC) before a test."""

    block_type: BlockType
    thresholds: Thresholds
    rated_ah: float
    float_rate_s: int = 60
    discharge_rate_s: int = 1
    block_label: str = ""
    block_position: int = 0  # 1-based position in the string; 0 = not set
    test_id: str = ""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name in ("float_rate_s", "discharge_rate_s"):
            r = getattr(self, name)
            if isinstance(r, bool) or not isinstance(r, int) or not MIN_LOG_RATE_S <= r <= MAX_LOG_RATE_S:
                raise ConfigError(name, f"log rate {r!r} s is outside 1 s .. 24 h (86400 s)")
        if self.discharge_rate_s > self.float_rate_s:
            raise ConfigError(
                "discharge_rate_s",
                f"discharge rate {self.discharge_rate_s} s must not be slower than the float rate "
                f"{self.float_rate_s} s",
            )
        if isinstance(self.rated_ah, bool) or not (
            isinstance(self.rated_ah, int | float) and 0.1 <= self.rated_ah <= 20000
        ):
            raise ConfigError("rated_ah", f"{self.rated_ah!r} Ah is outside 0.1..20000 Ah")
        if len(self.block_label.encode()) > 16:
            raise ConfigError("block_label", "block label is longer than 16 bytes")
        if not 0 <= self.block_position <= 65535:
            raise ConfigError("block_position", f"{self.block_position} is outside 0..65535")
        if len(self.test_id.encode()) > 32:
            raise ConfigError("test_id", "test id is longer than 32 bytes")
        self.thresholds.validate(self.block_type)

    def with_changes(self, **changes: object) -> LoggerConfig:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def default_for(cls, block: BlockType, rated_ah: float) -> LoggerConfig:
        return cls(block_type=block, thresholds=Thresholds.default_for(block), rated_ah=rated_ah)


def gen1_config(rated_ah: float = 100.0) -> LoggerConfig:
    """The fixed configuration of a generation-1 logger on a 12 V lead-acid block.

    Empty at 9.9 V (alarm) and a fixed 10 s log rate; neither is writable.
    """
    block = BlockType.lead_acid(12)
    th = Thresholds(9900, 10800, 14100, 14700, 0, 50, 350, 450)
    return LoggerConfig(block, th, rated_ah, float_rate_s=10, discharge_rate_s=10)


# --------------------------------------------------------------------------- samples and records


@dataclass(frozen=True)
class Sample:
    """One measurement. ``t_ms`` is device time (ms since epoch, by the logger's own RTC)."""

    t_ms: int
    mv: int
    dc: int


@dataclass(frozen=True)
class SampleBlock:
    """Samples at a fixed interval: the i-th sample was taken at ``start_ms + i * interval_ms``.

    ``mv`` and ``dc`` are equal-length int32 arrays (``array('i')``).
    """

    start_ms: int
    interval_ms: int
    mv: array[int] = field(compare=True)
    dc: array[int] = field(compare=True)

    def __post_init__(self) -> None:
        if len(self.mv) != len(self.dc):
            raise ValueError("mv and dc must have equal length")
        if self.interval_ms <= 0:
            raise ValueError("interval_ms must be positive")

    @classmethod
    def of(cls, start_ms: int, interval_ms: int, mv: Sequence[int], dc: Sequence[int]) -> SampleBlock:
        return cls(start_ms, interval_ms, array("i", mv), array("i", dc))

    def __len__(self) -> int:
        return len(self.mv)

    @property
    def end_ms(self) -> int:
        """Time of the last sample."""
        return self.start_ms + (len(self.mv) - 1) * self.interval_ms

    def samples(self) -> list[Sample]:
        return [Sample(self.start_ms + i * self.interval_ms, v, t)
                for i, (v, t) in enumerate(zip(self.mv, self.dc, strict=True))]


class EventKind(enum.IntEnum):
    """What happened. Values are stable: they are written to flash and logfiles."""

    ENTER_WARNING = 1
    LEAVE_WARNING = 2
    ENTER_ALARM = 3
    LEAVE_ALARM = 4
    DISCHARGE_START = 5  # value: mV at detection
    DISCHARGE_END = 6  # value: minimum mV during the discharge
    RATE_CHANGE = 7  # value: new interval in s
    POWER_ON = 8
    RESET = 9  # value: 1 if forced
    GAP = 10  # value: seconds not logged (e.g. power loss)
    CHARGE_START = 11


@dataclass(frozen=True)
class Event:
    """A firmware event at device time ``t_ms``.

    ``quantity``/``side`` are set for threshold events; ``value`` is the measured
    value that triggered it (mV or dC) or the kind-specific value above.
    """

    t_ms: int
    kind: EventKind
    quantity: Quantity | None = None
    side: Side | None = None
    value: int = 0


@dataclass(frozen=True)
class ConfigChange:
    """A configuration was applied at ``t_ms``; ``seq`` is the NFC config sequence number."""

    t_ms: int
    config: LoggerConfig
    seq: int = 0


@dataclass(frozen=True)
class ClockSet:
    """The RTC was set: device time jumped from ``old_ms`` to ``new_ms`` (phone time at the tap)."""

    old_ms: int
    new_ms: int

    @property
    def t_ms(self) -> int:
        return self.new_ms


@dataclass(frozen=True)
class DailySummary:
    """Min/mean/max of one device day (UTC), for the long-lived summary history."""

    day_start_ms: int
    count: int
    mv_min: int
    mv_mean: int
    mv_max: int
    dc_min: int
    dc_mean: int
    dc_max: int

    @property
    def t_ms(self) -> int:
        return self.day_start_ms


@dataclass(frozen=True)
class DischargeSummary:
    """One detected discharge, for the summary history."""

    start_ms: int
    end_ms: int
    min_mv: int
    ah_estimate_mah: int  # delivered charge estimate, mAh (0 if the logger has no current)

    @property
    def t_ms(self) -> int:
        return self.start_ms


#: Everything a logger writes to its log. Every record has a ``t_ms``.
Record = SampleBlock | Event | ConfigChange | ClockSet | DailySummary | DischargeSummary
