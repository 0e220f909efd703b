"""Device time to spreadsheet time: the site's local time with its UTC offset stated.

Owns the conversion of logger timestamps (ms since the Unix epoch, UTC) into
Excel date serials (days since 1899-12-30, local wall time of the site) and the
label that states the offset on every time axis and time column, e.g.
``"Time (Europe/Berlin, UTC+01:00)"``; when a window crosses a daylight-saving
change the label names both offsets (``UTC+01:00/+02:00``). Excel has no time
zone in a date cell, so the label is the only place the offset can live.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt
import pandas as pd

from smartlogger.errors import ExportError

#: Excel serial of 1970-01-01 00:00 (the 1900 date system, as Excel for Windows).
EXCEL_EPOCH_SERIAL = 25569.0
MS_PER_DAY = 86_400_000

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

#: Number formats for time cells and time axes.
DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
AXIS_FORMAT_SHORT = "hh:mm"  # windows up to 2 days
AXIS_FORMAT_LONG = "yyyy-mm-dd"  # longer windows
DATE_FORMAT = "yyyy-mm-dd"


@dataclass(frozen=True)
class SiteTime:
    """A site's time zone. ``name`` is an IANA zone (``"Europe/Berlin"``) or ``"UTC"``."""

    name: str = "UTC"

    @classmethod
    def parse(cls, tz: str | dt.tzinfo | SiteTime | None) -> SiteTime:
        if tz is None:
            return cls("UTC")
        if isinstance(tz, SiteTime):
            return tz
        if isinstance(tz, dt.tzinfo):
            key = getattr(tz, "key", None) or str(tz)
            tz = key if key != "UTC" else "UTC"
        name = str(tz).strip() or "UTC"
        if name.upper() in ("UTC", "Z", "GMT"):
            return cls("UTC")
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ExportError(f"tz: {name!r} is not a known time zone (use e.g. 'UTC', "
                              "'Europe/Berlin')") from None
        return cls(name)

    def offsets_ms(self, t_ms: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """UTC offset (ms) in force at each instant."""
        t = np.asarray(t_ms, dtype=np.int64)
        if self.name == "UTC" or t.size == 0:
            return np.zeros(t.shape, dtype=np.int64)
        utc = pd.to_datetime(t, unit="ms", utc=True)
        local = utc.tz_convert(self.name).tz_localize(None)
        # as_unit: pandas picks the index resolution from the input; pin it to ms.
        offs = local.as_unit("ms").asi8 - utc.tz_localize(None).as_unit("ms").asi8
        return np.asarray(offs, dtype=np.int64)

    def serial(self, t_ms: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Excel date serials (local wall time) for device times ``t_ms``."""
        t = np.asarray(t_ms, dtype=np.int64)
        local = t + self.offsets_ms(t)
        return local.astype(np.float64) / MS_PER_DAY + EXCEL_EPOCH_SERIAL

    def local_datetime(self, t_ms: int) -> dt.datetime:
        """Naive local wall time of one instant (for header and table cells)."""
        utc = _EPOCH + dt.timedelta(milliseconds=int(t_ms))
        if self.name == "UTC":
            return utc.replace(tzinfo=None)
        # zoneinfo per value: a pandas round trip costs ~0.5 ms, this ~2 us.
        return utc.astimezone(ZoneInfo(self.name)).replace(tzinfo=None)

    def offset_label(self, t0_ms: int, t1_ms: int) -> str:
        """``UTC+01:00`` or, across a DST change, ``UTC+01:00/+02:00``."""
        if self.name == "UTC":
            return "UTC+00:00"
        # Offsets every 6 h across the window (DST changes are months apart).
        probe = np.append(np.arange(int(t0_ms), int(max(t0_ms, t1_ms)), 6 * 3_600_000,
                                    dtype=np.int64), np.int64(max(t0_ms, t1_ms)))
        seen: list[str] = []
        for off in self.offsets_ms(probe).tolist():
            txt = _fmt_offset(dt.timedelta(milliseconds=off))
            if txt not in seen:
                seen.append(txt)
        return "UTC" + "/".join(seen)

    def axis_title(self, t0_ms: int, t1_ms: int) -> str:
        """Title of a time axis or column, stating the zone and offset."""
        label = self.offset_label(t0_ms, t1_ms)
        if self.name == "UTC":
            return "Time (UTC)"
        return f"Time ({self.name}, {label})"


def _fmt_offset(off: dt.timedelta) -> str:
    minutes = int(off.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def axis_format(t0_ms: int, t1_ms: int) -> str:
    """Tick label format for a time axis spanning ``t0_ms .. t1_ms``."""
    return AXIS_FORMAT_SHORT if t1_ms - t0_ms <= 2 * MS_PER_DAY else AXIS_FORMAT_LONG
