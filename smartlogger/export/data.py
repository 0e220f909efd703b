"""Raw samples as CSV or Parquet: the full-resolution companion of the workbooks.

Owns ``write_samples`` (one logger) and ``write_samples_many`` (a whole string,
long format: one row per sample and logger). Workbooks cap what a sheet can hold
(1,048,575 rows) and what a chart should hold; these files keep every sample.

- Parquet keeps the device's integer units (``t_ms`` int64 ms since epoch UTC,
  ``mv`` int32 mV, ``dc`` int16 0.1 C) plus a UTC timestamp column, and records
  serial, units and provenance markers in the file's key/value metadata.
- CSV is for people: local time (ISO 8601 with offset), volts and degrees C,
  plus ``t_ms`` for exactness. A ``#`` comment line states serial and markers.
  Text is never a formula (``export.celltext.csv_text``).

The format follows the file suffix (``.csv``, ``.parquet``/``.pq``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from smartlogger.errors import ExportError
from smartlogger.export.celltext import csv_text
from smartlogger.export.inputs import SampleSeries
from smartlogger.export.timeaxis import SiteTime


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise ExportError(f"{path}: unknown data format {suffix!r} (use .csv or .parquet)")


def _table(series: SampleSeries, with_serial: bool) -> pa.Table:
    t = np.asarray(series.t_ms, dtype=np.int64)
    cols: dict[str, pa.Array] = {}
    if with_serial:
        cols["serial"] = pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(len(t), dtype=np.int32)), pa.array([series.identity.serial]))
    cols["time_utc"] = pa.array(t.astype("datetime64[ms]"), type=pa.timestamp("ms", tz="UTC"))
    cols["t_ms"] = pa.array(t, type=pa.int64())
    cols["mv"] = pa.array(np.asarray(series.mv, dtype=np.int32), type=pa.int32())
    cols["dc"] = pa.array(np.asarray(series.dc, dtype=np.int16), type=pa.int16())
    return pa.table(cols)


def _metadata(series: Sequence[SampleSeries]) -> dict[bytes, bytes]:
    info = {
        "units": {"t_ms": "ms since 1970-01-01 UTC (device clock)", "mv": "mV", "dc": "0.1 degC"},
        "loggers": [{"serial": s.identity.serial, "generation": int(s.identity.generation),
                     "firmware": s.identity.firmware, "markers": list(s.identity.markers),
                     "block_position": s.config.block_position} for s in series],
    }
    return {b"smartlogger": json.dumps(info).encode()}


def _csv_frame(series: SampleSeries, site: SiteTime, with_serial: bool) -> pd.DataFrame:
    t = np.asarray(series.t_ms, dtype=np.int64)
    utc = pd.to_datetime(t, unit="ms", utc=True)
    local = utc if site.name == "UTC" else utc.tz_convert(site.name)
    frame = pd.DataFrame({
        "time": local.strftime("%Y-%m-%dT%H:%M:%S.%f").str.slice(0, 23) + local.strftime("%z"),
        "voltage_v": np.asarray(series.mv, dtype=np.int64) / 1000.0,
        "temperature_c": np.asarray(series.dc, dtype=np.int64) / 10.0,
        "t_ms": t,
    })
    if with_serial:
        frame.insert(0, "serial", csv_text(series.identity.serial))
    return frame


def write_samples(path: str | os.PathLike[str], series: SampleSeries, *,
                  tz: str | SiteTime | None = "UTC") -> Path:
    """Every sample of one logger to ``path`` (.csv or .parquet); returns the path."""
    return write_samples_many(path, [series], tz=tz, with_serial=False)


def write_samples_many(path: str | os.PathLike[str], series: Sequence[SampleSeries], *,
                       tz: str | SiteTime | None = "UTC", with_serial: bool = True) -> Path:
    """Every sample of several loggers, long format (a ``serial`` column), to ``path``."""
    out = Path(path)
    fmt = _format_of(out)
    if not series:
        raise ExportError(f"{out}: no loggers to export")
    site = SiteTime.parse(tz)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        if fmt == "parquet":
            tables = [_table(s, with_serial) for s in series]
            table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
            if with_serial and len(tables) > 1:
                table = table.unify_dictionaries()
            table = table.replace_schema_metadata(_metadata(series))
            pq.write_table(table, tmp, compression="zstd")
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                marks = sorted({m for s in series for m in s.identity.markers})
                serials = ", ".join(csv_text(s.identity.serial) for s in series[:10])
                more = f" (+{len(series) - 10} more)" if len(series) > 10 else ""
                fh.write(f"# smartlogger samples; loggers: {serials}{more}; "
                         f"markers: {', '.join(marks) or 'none'}; time zone: {site.name}\n")
                for k, s in enumerate(series):
                    _csv_frame(s, site, with_serial).to_csv(fh, index=False, header=(k == 0),
                                                            lineterminator="\n")
        os.replace(tmp, out)
    except OSError as err:
        raise ExportError(f"{out}: cannot write: {err.strerror or err}") from err
    finally:
        if tmp.exists():
            tmp.unlink()
    return out
