"""A test after months on float (issue 18): the loader keeps each log's samples around its tests
(``loading.window_history``), the analysis gives the same result as on the whole logs, and falls
back to the whole logs when it needs what was left out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from smartlogger.analysis.analyze import AnalysisOptions, analyze_test
from smartlogger.analysis.inputs import ConstantCurrent, HistoryNeeded, TestMetadata, TooManySamples
from smartlogger.analysis.loading import (
    HISTORY_AFTER_S,
    HISTORY_BEFORE_S,
    analyze_files,
    load_test_files,
)
from smartlogger.device.sim import DEFAULT_TEST_START_MS, simulate_string_test
from smartlogger.device.store import MemoryStore
from smartlogger.export.adapters import (
    REPORT_AFTER_MS,
    REPORT_BEFORE_MS,
    report_inputs_from_logfiles,
)
from smartlogger.logfile import LogfileMetadata, pull_logfile, simulated_credentials
from smartlogger.logfile.records import RecordType

FLOAT_DAYS = 60
META = TestMetadata(ConstantCurrent(50.0), rated_time_s=2 * 3600)


def _files(float_days: float) -> list[tuple[str, bytes]]:
    """Signed pulls of a 4-block test (about 1 h 17 min at 50 A) after ``float_days`` on float at
    60 s; the pull reads the phone's time, so each clock's drift is fitted."""
    st = simulate_string_test(4, weak=1, load="50A", rest_before_s=float_days * 86400.0, rest_after_s=600,
                              test_id="T1", seed=3, store_factory=lambda ident: MemoryStore(serial=ident.serial))
    out = []
    for lg in st.loggers:
        meta = LogfileMetadata(block_label=lg.config.block_label, block_position=lg.config.block_position,
                               test={"load": "50A", "test_id": "T1"})
        out.append((f"{lg.identity.serial}.slog", pull_logfile(
            simulated_credentials(lg.identity), lg.identity, lg.store, device_ms=lg.now_ms(),
            phone_ms=DEFAULT_TEST_START_MS + round(lg.true_s * 1000), nonce=bytes(16), metadata=meta)))
    return out


@pytest.fixture(scope="module")
def history() -> list[tuple[str, bytes]]:
    return _files(FLOAT_DAYS)


def test_the_loader_keeps_the_test_not_the_float_history(history: list[tuple[str, bytes]]) -> None:
    whole = load_test_files(history)
    kept = load_test_files(history, window=True)
    float_samples = FLOAT_DAYS * 1440
    # What is kept: the margins around the test at the float rate, the test at 1 Hz, the first block.
    bound = (HISTORY_BEFORE_S + HISTORY_AFTER_S) / 60 + 3 * 256 + 2 * 3600
    for w, k in zip(whole.logs, kept.logs, strict=True):
        assert w.history is None and len(w) > float_samples
        assert k.history is not None and k.history.removed == len(w) - len(k)
        assert len(k) < bound < len(w) / 5
        assert len(k.history.holes) == 1


def test_same_result_as_the_whole_logs(history: list[tuple[str, bytes]]) -> None:
    whole = load_test_files(history)
    expected = analyze_test(whole.logs, META, excluded=whole.excluded).to_json()
    loaded, result = analyze_files(lambda: history, META)
    assert all(log.history is not None for log in loaded.logs)  # analysed on the cut logs
    assert result.to_json() == expected


def test_same_capacity_as_without_the_history(history: list[tuple[str, bytes]]) -> None:
    _, long = analyze_files(lambda: history, META)
    _, short = analyze_files(lambda: _files(0.01), META)
    assert long.capacity.capacity_pct == pytest.approx(short.capacity.capacity_pct, abs=0.1)
    assert long.discharge.duration_s == pytest.approx(short.discharge.duration_s, abs=2.0)
    for a, b in zip(long.blocks, short.blocks, strict=True):
        assert a.capacity_pct == pytest.approx(b.capacity_pct, abs=0.1)
        assert a.reached_end_voltage == b.reached_end_voltage
        assert a.float_voltage_v == pytest.approx(b.float_voltage_v, abs=0.002)


def test_whole_logs_when_the_analysis_needs_the_history(history: list[tuple[str, bytes]]) -> None:
    # A start level above the one the history was cut for: the float samples left out could be
    # "below" it. The analysis refuses the cut logs; analyze_files loads them whole.
    opts = AnalysisOptions(start_fraction_of_nominal=1.2)
    kept = load_test_files(history, window=True)
    with pytest.raises(HistoryNeeded):
        analyze_test(kept.logs, META, opts, excluded=kept.excluded)
    whole = load_test_files(history)
    expected = analyze_test(whole.logs, META, opts, excluded=whole.excluded).to_json()
    loaded, result = analyze_files(lambda: history, META, opts)
    assert all(log.history is None for log in loaded.logs)
    assert result.to_json() == expected


def test_the_budget_counts_the_samples_kept(history: list[tuple[str, bytes]]) -> None:
    kept = sum(len(log) for log in load_test_files(history, window=True).logs)
    whole = sum(len(log) for log in load_test_files(history).logs)
    analyze_files(lambda: history, META, max_samples=kept)  # the whole files would not fit
    assert whole > kept
    with pytest.raises(TooManySamples) as err:
        analyze_files(lambda: history, META, max_samples=kept - 1)
    assert err.value.held == kept


def test_a_file_changed_between_verification_and_decoding_is_excluded(
        history: list[tuple[str, bytes]], tmp_path: Path) -> None:
    # The loader reads each file again at its logger's turn (it kept it without its sample
    # records): a file whose bytes changed meanwhile is not the file that was verified.
    paths = []
    for name, data in history:
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)

    def sources() -> Iterator[tuple[str, Path]]:
        yield from ((p.name, p) for p in paths)
        paths[0].write_bytes(history[1][1])  # after every file was verified

    loaded = load_test_files(sources(), window=True)
    assert len(loaded.logs) == len(history) - 1
    [gone] = [f for f in loaded.excluded if f.file == paths[0].name]
    assert gone.reason == "unreadable" and "changed while the test was loaded" in gone.message
    kept = loaded.used_logfiles()[0]
    assert not any(r.record_type == RecordType.SAMPLE_BLOCK for r in kept.streams[0].records)


def test_the_report_charts_the_test_not_the_float_history(history: list[tuple[str, bytes]]) -> None:
    """The customer report of a test after months on float: its logs are loaded around the test
    (within the same budget as the analysis) and charted from an hour before the discharge to two
    hours after it, not over the 60 days (a chart whose discharge is a sliver at its right end)."""
    _, result = analyze_files(lambda: history, META)
    kept = sum(len(log) for log in load_test_files(history, window=True).logs)
    inputs = report_inputs_from_logfiles(history, result=result, max_samples=kept)
    d = result.discharge
    for s in inputs.series:
        assert d.start_ms - REPORT_BEFORE_MS <= s.t_ms[0] < d.start_ms
        assert d.end_ms < s.t_ms[-1] <= d.end_ms + REPORT_AFTER_MS
    with pytest.raises(TooManySamples):
        report_inputs_from_logfiles(history, result=result, max_samples=kept - 1)
