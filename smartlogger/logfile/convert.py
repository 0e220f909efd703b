"""Loaders and conversions of a logfile: numpy/pandas for analysis, CSV and Parquet for people.

Owns the tabular view of a log: samples as ``(t_ms, mv, dc)`` numpy arrays,
events, the configuration history and the clock observations (NFC-tap clock
sets and pull offsets) the analysis needs to align loggers; and the CSV (one row
per sample, ISO-8601 UTC, volts, degrees C) and Parquet (pyarrow) writers.
Does not own the container (``format``) or any analysis.

Sample times are the logger's own device time, in record order; a clock set
shows up as a jump, listed by ``clock_observations``.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from smartlogger.errors import LogfileError
from smartlogger.logfile.container import Logfile
from smartlogger.logfile.format import decode_sample_records, read_logfile
from smartlogger.logfile.records import SAMPLE_HEAD, RecordType
from smartlogger.logfile.samples import read_head
from smartlogger.model import ClockSet, ConfigChange, Event

if TYPE_CHECKING:
    import pandas as pd

Source = Logfile | bytes | str | os.PathLike[str]


def _logfile(source: Source) -> Logfile:
    return source if isinstance(source, Logfile) else read_logfile(source)


def load_samples(source: Source, *, from_ms: int | None = None, to_ms: int | None = None,
                 ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.int16]]:
    """All samples of the main stream: ``t_ms`` (int64, device ms), ``mv`` (int32), ``dc`` (int16).

    The sample payloads of all blocks are decoded in one vectorised pass (``samples.decode_many``).
    ``from_ms``/``to_ms`` (device time, inclusive): decode only the blocks whose samples reach
    into that window, read from the block heads (a day of a 10-year log decodes a day's blocks).
    Their samples outside the window are returned too; a block whose head does not read is
    decoded anyway, so its error is raised as without a window.
    """
    lf = _logfile(source)
    raws = [raw for raw in lf.streams[0].records if raw.record_type == RecordType.SAMPLE_BLOCK]
    if from_ms is not None or to_ms is not None:
        raws = [raw for raw in raws if _reaches(raw.data, from_ms, to_ms)]
    if not raws:
        return np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int16)
    starts, intervals, mv, dc32, counts = decode_sample_records(raws)
    first_index = np.cumsum(counts) - counts
    index_in_block = np.arange(mv.size, dtype=np.int64) - np.repeat(first_index, counts)
    t_ms = np.repeat(starts, counts) + index_in_block * np.repeat(intervals, counts)
    if dc32.size and (int(dc32.min()) < -32768 or int(dc32.max()) > 32767):
        raise LogfileError("a temperature sample does not fit int16 dC")
    return t_ms, mv, dc32.astype(np.int16)


def _reaches(record: bytes, from_ms: int | None, to_ms: int | None) -> bool:
    """Whether a SampleBlock record's samples reach into ``[from_ms, to_ms]`` (True if its head
    does not read: the decoder then says what is wrong)."""
    try:
        start, interval = SAMPLE_HEAD.unpack_from(record, 1)
        count, _ = read_head(record, 1 + SAMPLE_HEAD.size)
    except (struct.error, LogfileError):
        return True
    last = start + max(count - 1, 0) * interval
    return (from_ms is None or last >= from_ms) and (to_ms is None or start <= to_ms)


def load_events(source: Source, *, stream: int | None = None) -> list[Event]:
    """Events of the main and summary streams (or one ``stream``), de-duplicated, in time order."""
    lf = _logfile(source)
    seen: dict[tuple[object, ...], Event] = {}
    for st in lf.streams:
        if stream is not None and st.stream != stream:
            continue
        for raw in st.records:
            if isinstance(raw.record, Event):
                ev = raw.record
                seen.setdefault((ev.t_ms, ev.kind, ev.quantity, ev.side, ev.value), ev)
    return sorted(seen.values(), key=lambda e: e.t_ms)


def config_history(source: Source) -> list[ConfigChange]:
    """Every configuration the logger ran with, oldest first."""
    return _logfile(source).config_history


@dataclass(frozen=True)
class ClockObservation:
    """A moment where the logger's clock was compared with the phone's.

    ``offset_ms = device_ms - reference_ms``: how far the logger's clock was ahead.
    ``source`` is "nfc_tap" (a ClockSet record: device time before the set vs the phone
    time written) or "pull" (device time signed at a pull vs the phone's clock).
    """

    source: Literal["nfc_tap", "pull"]
    device_ms: int
    reference_ms: int

    @property
    def offset_ms(self) -> int:
        return self.device_ms - self.reference_ms


def clock_observations(source: Source) -> list[ClockObservation]:
    """NFC-tap clock sets and pull offsets, in device-time order."""
    lf = _logfile(source)
    out: list[ClockObservation] = []
    seen: set[tuple[int, int]] = set()
    for st in lf.streams:
        for raw in st.records:
            rec = raw.record
            if isinstance(rec, ClockSet) and (rec.old_ms, rec.new_ms) not in seen:
                seen.add((rec.old_ms, rec.new_ms))
                out.append(ClockObservation("nfc_tap", rec.old_ms, rec.new_ms))
    for att in lf.attestations:
        if att.phone_ms is not None:
            out.append(ClockObservation("pull", att.device_ms, att.phone_ms))
    return sorted(out, key=lambda o: o.device_ms)


def to_dataframe(source: Source) -> pd.DataFrame:
    """Samples as a pandas DataFrame: ``time`` (UTC), ``t_ms``, ``mv``, ``dc``, ``voltage_v``,
    ``temperature_c``."""
    import pandas as pd  # lazy: pandas is heavy, and only this conversion needs it

    t_ms, mv, dc = load_samples(source)
    return pd.DataFrame({
        "time": pd.to_datetime(t_ms, unit="ms", utc=True),
        "t_ms": t_ms, "mv": mv, "dc": dc,
        "voltage_v": mv / 1000.0, "temperature_c": dc / 10.0,
    })


def _arrow_table(lf: Logfile, *, for_csv: bool) -> object:
    import pyarrow as pa  # lazy: pyarrow only for the CSV/Parquet conversions (heavy import)

    t_ms, mv, dc = load_samples(lf)
    # decimals keep the exact mV / 0.1 C resolution in text ("12.801", "23.4")
    volts = _decimal(mv, 12, 3)
    temp = _decimal(dc, 8, 1)
    if for_csv:
        iso = np.datetime_as_string(t_ms.astype("datetime64[ms]"), unit="ms", timezone="UTC")
        return pa.table({"time_utc": pa.array(iso), "voltage_v": volts, "temperature_c": temp})
    return pa.table({
        "time": pa.array(t_ms, pa.timestamp("ms", tz="UTC")),
        "t_ms": pa.array(t_ms), "mv": pa.array(mv), "dc": pa.array(dc),
        "voltage_v": pa.array(mv / 1000.0), "temperature_c": pa.array(dc / 10.0),
    })


def _decimal(unscaled: npt.NDArray[np.integer], precision: int, scale: int) -> object:
    """A pyarrow decimal128 array from integers in units of 10**-scale (no float rounding)."""
    import pyarrow as pa  # lazy: as in _arrow_table

    wide = np.empty((unscaled.size, 2), dtype="<i8")  # 128-bit two's complement, low word first
    wide[:, 0] = unscaled
    wide[:, 1] = wide[:, 0] >> 63
    return pa.Array.from_buffers(pa.decimal128(precision, scale), unscaled.size,
                                 [None, pa.py_buffer(wide.tobytes())])


def write_csv(source: Source, path: str | os.PathLike[str]) -> int:
    """One row per sample: ``time_utc`` (ISO-8601, ms, Z), ``voltage_v``, ``temperature_c``.
    Returns the number of rows."""
    import pyarrow.csv as pacsv  # lazy: as in _arrow_table

    lf = _logfile(source)
    table = _arrow_table(lf, for_csv=True)
    with open(path, "wb") as fh:
        fh.write(b"time_utc,voltage_v,temperature_c\n")
        pacsv.write_csv(table, fh, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return int(table.num_rows)  # type: ignore[attr-defined]


def write_parquet(source: Source, path: str | os.PathLike[str]) -> int:
    """Samples as Parquet (time, t_ms, mv, dc, voltage_v, temperature_c) with the logger identity
    as file metadata. Returns the number of rows."""
    import pyarrow.parquet as pq  # lazy: as in _arrow_table

    lf = _logfile(source)
    table = _arrow_table(lf, for_csv=False)
    meta = {b"smartlogger.serial": lf.identity.serial.encode(),
            b"smartlogger.generation": str(int(lf.identity.generation)).encode(),
            b"smartlogger.markers": ",".join(lf.identity.markers).encode(),
            b"smartlogger.source_sha256": lf.sha256.encode()}
    table = table.replace_schema_metadata(meta)  # type: ignore[attr-defined]
    pq.write_table(table, os.fspath(path))
    return int(table.num_rows)


def convert(source: Source, out: str | os.PathLike[str]) -> int:
    """Write ``out`` as CSV or Parquet by its suffix; returns the number of sample rows."""
    suffix = Path(out).suffix.lower()
    if suffix == ".csv":
        return write_csv(source, out)
    if suffix in (".parquet", ".pq"):
        return write_parquet(source, out)
    raise ValueError(f"cannot convert to {suffix or 'a file without suffix'}: use .csv or .parquet")
