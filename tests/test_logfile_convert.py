"""Loaders and CSV/Parquet conversion (smartlogger.logfile.convert)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from smartlogger.logfile.convert import (
    clock_observations,
    config_history,
    convert,
    load_events,
    load_samples,
    to_dataframe,
)
from smartlogger.logfile.format import read_logfile
from smartlogger.model import EventKind, SampleBlock
from smartlogger.testing.logfile_examples import EPOCH_2026_MS, example_pulls


def _latest() -> bytes:
    return example_pulls("SIM-0001", capacity=None)[1]


def test_load_samples_matches_the_records() -> None:
    lf = read_logfile(_latest())
    t, mv, dc = load_samples(lf)
    assert t.dtype == np.int64 and mv.dtype == np.int32 and dc.dtype == np.int16
    blocks = [r.record for r in lf.streams[0].records if isinstance(r.record, SampleBlock)]
    assert mv.size == sum(len(b) for b in blocks) == 240 + 1800 + 120
    assert t[0] == blocks[0].start_ms and t[-1] == blocks[-1].end_ms
    assert t[240] == blocks[4].start_ms and t[241] - t[240] == 1000  # the 1 Hz discharge
    assert mv.tolist() == [v for b in blocks for v in b.mv]


def test_load_samples_of_a_window_decodes_only_the_blocks_that_reach_into_it() -> None:
    lf = read_logfile(_latest())
    t, mv, dc = load_samples(lf)
    blocks = [r.record for r in lf.streams[0].records if isinstance(r.record, SampleBlock)]
    # A window inside the 1 Hz discharge (blocks 4 onwards): the float blocks before it are skipped.
    lo, hi = int(t[300]), int(t[400])
    tw, mvw, dcw = load_samples(lf, from_ms=lo, to_ms=hi)
    reaching = [b for b in blocks if b.end_ms >= lo and b.start_ms <= hi]
    assert 0 < len(reaching) < len(blocks) and tw.size == sum(len(b) for b in reaching) < t.size
    inside, inside_w = (t >= lo) & (t <= hi), (tw >= lo) & (tw <= hi)
    assert tw[inside_w].tolist() == t[inside].tolist() and mvw[inside_w].tolist() == mv[inside].tolist()
    assert dcw[inside_w].tolist() == dc[inside].tolist()
    # Open-ended windows, and one outside the log.
    assert load_samples(lf, to_ms=int(t[-1]))[0].size == t.size == load_samples(lf, from_ms=int(t[0]))[0].size
    assert load_samples(lf, from_ms=int(t[-1]) + 1)[0].size == 0


def test_events_history_and_clock_observations() -> None:
    lf = read_logfile(_latest())
    kinds = [e.kind for e in load_events(lf)]
    # the ENTER_WARNING copy in the summary stream is de-duplicated
    assert kinds.count(EventKind.ENTER_WARNING) == 1 and kinds[0] == EventKind.POWER_ON
    assert [c.seq for c in config_history(lf)] == [1]
    obs = clock_observations(lf)
    assert [o.source for o in obs] == ["nfc_tap", "pull", "pull"]
    assert obs[0].offset_ms == -2_250
    assert [o.offset_ms for o in obs[1:]] == [2_000, 2_100]


def test_csv_is_iso_utc_volts_and_celsius(tmp_path: Path) -> None:
    out = tmp_path / "b07.csv"
    rows = convert(_latest(), out)
    lines = out.read_text().splitlines()
    assert rows == len(lines) - 1 == 2160
    assert lines[0] == "time_utc,voltage_v,temperature_c"
    t, mv, dc = load_samples(_latest())
    first = lines[1].split(",")
    assert first[0] == "2026-01-01T00:01:00.000Z" and t[0] == EPOCH_2026_MS + 60_000
    assert first[1] == f"{mv[0] // 1000}.{mv[0] % 1000:03d}"
    assert float(first[2]) == pytest.approx(dc[0] / 10)


def test_parquet_and_dataframe(tmp_path: Path) -> None:
    out = tmp_path / "b07.parquet"
    assert convert(_latest(), out) == 2160
    table = pq.read_table(out)
    assert table.schema.metadata[b"smartlogger.serial"] == b"SIM-0001"
    assert table.schema.metadata[b"smartlogger.markers"] == b"SIMULATED"
    df = to_dataframe(_latest())
    assert table.column("mv").to_pylist() == df["mv"].tolist()
    assert str(df["time"].dt.tz) == "UTC"
    with pytest.raises(ValueError, match=r"\.xlsx"):
        convert(_latest(), tmp_path / "x.xlsx")
