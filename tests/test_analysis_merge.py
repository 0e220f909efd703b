"""One logger pulled more than once: its logfiles merge into one log by sequence number."""

from __future__ import annotations

import pytest

from smartlogger.analysis.inputs import MetadataError
from smartlogger.analysis.loading import block_log_from_logfile, block_logs_from_logfiles
from smartlogger.device.sim import simulate_string_test
from smartlogger.logfile import (
    LogfileMetadata,
    build_logfile,
    pull_logfile,
    read_logfile,
    simulated_credentials,
)


@pytest.fixture(scope="module")
def logger_and_full_pull() -> tuple[object, bytes]:
    sim = simulate_string_test(2, weak=0, load="60A", seed=7)
    lg = sim.loggers[0]
    data = pull_logfile(simulated_credentials(lg.identity), lg.identity, lg.store, device_ms=lg.now_ms(),
                        phone_ms=lg.now_ms())
    return lg, data


def test_a_repeated_full_pull_merges_into_the_same_log(logger_and_full_pull: tuple[object, bytes]) -> None:
    lg, first = logger_and_full_pull
    again = pull_logfile(simulated_credentials(lg.identity), lg.identity, lg.store,  # type: ignore[attr-defined]
                         device_ms=lg.now_ms() + 5000, phone_ms=lg.now_ms() + 5000)  # type: ignore[attr-defined]
    assert again != first  # a new nonce: different bytes
    single = block_log_from_logfile(first)
    (merged,) = block_logs_from_logfiles([first, again])
    assert (merged.t_ms == single.t_ms).all() and (merged.mv == single.mv).all()
    assert len(merged.clock_observations) == len(single.clock_observations) + 1


def test_split_pulls_merge_to_the_whole_log(logger_and_full_pull: tuple[object, bytes]) -> None:
    _, whole = logger_and_full_pull
    lf = read_logfile(whole)
    main, summary = lf.streams[0], lf.streams[1]
    cut = len(main.records) // 2
    first_half = [(r.seq, r.data) for r in main.records[:cut]]
    second_half = [(r.seq, r.data) for r in main.records[cut:]]
    anchors_1 = [(main.anchor_seq, main.anchor_hash), (summary.anchor_seq, summary.anchor_hash)]
    part1 = build_logfile(lf.identity, None, [first_half, []], anchors_1, metadata=LogfileMetadata())
    part2 = build_logfile(lf.identity, None, [second_half, []],
                          [(second_half[0][0], b"\x00" * 32), anchors_1[1]], metadata=LogfileMetadata())
    (merged,) = block_logs_from_logfiles([part2, part1])
    single = block_log_from_logfile(whole)
    assert (merged.t_ms == single.t_ms).all() and (merged.dc == single.dc).all()


def test_conflicting_records_for_one_seq_are_refused(logger_and_full_pull: tuple[object, bytes]) -> None:
    _, whole = logger_and_full_pull
    lf = read_logfile(whole)
    main, summary = lf.streams[0], lf.streams[1]
    recs = [(r.seq, r.data) for r in main.records]
    other = simulate_string_test(2, weak=0, load="60A", seed=8).loggers[0]  # same serial, other log
    lf_other = read_logfile(pull_logfile(None, other.identity, other.store, device_ms=other.now_ms()))
    anchors = [(main.anchor_seq, main.anchor_hash), (summary.anchor_seq, summary.anchor_hash)]
    ours = build_logfile(lf.identity, None, [recs, []], anchors, metadata=LogfileMetadata())
    theirs_recs = [(r.seq, r.data) for r in lf_other.streams[0].records]
    theirs = build_logfile(lf.identity, None, [theirs_recs, []], anchors, metadata=LogfileMetadata())
    with pytest.raises(MetadataError) as ei:
        block_logs_from_logfiles([ours, theirs])
    assert "disagree on record seq" in str(ei.value) and lf.identity.serial in str(ei.value)
