"""Logfile upload (content-addressed, validated, receipted, audited) and the result/report jobs."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from smartlogger.api.db import database
from smartlogger.api.models import Job, Logfile, Logger
from smartlogger.api.receipts import verify_receipt
from smartlogger.testing.api import ApiEnv, api_env, backends, simulated_logfiles

OCTET = "application/octet-stream"


@pytest.fixture(scope="module")
def logfiles() -> list[bytes]:
    return simulated_logfiles(4)


@pytest.fixture(params=backends())
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ApiEnv]:
    with api_env(request.param, tmp_path) as e:
        yield e


def _count(env: ApiEnv, model: type) -> int:
    with database(env.app).system_session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def _blobs(env: ApiEnv) -> list[Path]:
    return [p for p in Path(env.app.config["FILES_DIR"]).rglob("*") if p.is_file()]


def test_upload_is_content_addressed_receipted_and_audited(env: ApiEnv, logfiles: list[bytes]) -> None:
    c, h = env.client, env.a.headers("technician")
    data = logfiles[0]
    first = c.post("/api/logfiles", headers=h, data=data, content_type=OCTET)
    assert first.status_code == 201
    lf = first.get_json()
    assert lf["created"] and lf["sha256"] == hashlib.sha256(data).hexdigest() and lf["size"] == len(data)
    assert lf["serial"] == "SIM-0001" and lf["verification_status"] == "simulated" and lf["block_position"] == 1
    again = c.post("/api/logfiles", headers=h, data=data, content_type="application/vnd.smartlogger.slog")
    assert again.status_code == 200 and again.get_json()["id"] == lf["id"] and not again.get_json()["created"]
    assert _count(env, Logfile) == 1 and _count(env, Logger) == 1 and len(_blobs(env)) == 1
    # The download is the exact bytes.
    dl = c.get(f"/api/logfiles/{lf['id']}/content", headers=env.a.headers("viewer"))
    assert dl.data == data and dl.headers["X-Content-SHA256"] == lf["sha256"]
    # The receipt is signed by the server key and names time, uploader and hash.
    rc = c.get(f"/api/logfiles/{lf['id']}/receipt", headers=env.a.headers("viewer")).get_json()
    key = c.get("/api/server-key", headers=env.a.headers("viewer")).get_json()
    body = rc["receipt"]
    assert body["sha256"] == lf["sha256"] and body["uploader"]["email"] == "technician@acme-service.example"
    assert body["server_key"] == key["fingerprint"] and body["uploaded_at"].endswith("Z")
    assert verify_receipt(body, rc["signature"], key["public_key_pem"])
    assert not verify_receipt({**body, "sha256": "0" * 64}, rc["signature"], key["public_key_pem"])
    ver = c.get(f"/api/logfiles/{lf['id']}/verification", headers=env.a.headers("viewer")).get_json()
    assert ver["report"]["status"] == "simulated" and ver["report"]["serial"] == "SIM-0001"
    events = c.get("/api/audit", headers=env.a.headers("admin")).get_json()
    assert [e["action"] for e in events[:3]] == ["download", "upload_duplicate", "upload"]
    upload = events[2]  # written with the row (one statement on PostgreSQL, one transaction on SQLite)
    assert upload["object_type"] == "logfile" and upload["object_id"] == lf["id"]
    assert upload["sha256"] == lf["sha256"] and upload["user_id"] == env.a.user_ids["technician"]
    assert upload["detail"] == f"{len(data)} bytes, SIM-0001, simulated"
    env.wait_jobs()  # its check job ran (and found the sample payloads fine)
    with database(env.app).system_session() as s:
        job = s.scalars(select(Job).where(Job.logfile_id == lf["id"])).one()
        assert (job.kind, job.status, job.org_id) == ("check", "finished", env.a.org_id)


@pytest.mark.parametrize("case", ["no_magic", "garbage_after_magic", "truncated", "bitflip_in_header", "empty"])
def test_bad_upload_is_rejected_with_the_decoder_message_and_nothing_stored(
        env: ApiEnv, logfiles: list[bytes], case: str) -> None:
    good = logfiles[1]
    data = {
        "no_magic": b"PK\x03\x04 not a logfile",
        "garbage_after_magic": b"\x89SLOG\r\n\x1a\x02\x00\x00\x00garbage",
        "truncated": good[: len(good) // 2],
        "bitflip_in_header": good[:12] + bytes([good[12] ^ 0xFF]) + good[13:],
        "empty": b"",
    }[case]
    r = env.client.post("/api/logfiles", headers=env.a.headers("technician"), data=data, content_type=OCTET)
    assert r.status_code == 422, r.get_json()
    err = r.get_json()["error"]
    assert err["code"] == "invalid_logfile" and err["field"] == "body"
    if case in ("truncated", "garbage_after_magic"):
        from smartlogger.errors import LogfileError
        from smartlogger.logfile import read_logfile

        with pytest.raises(LogfileError) as decoder:
            read_logfile(data)
        assert err["message"] == str(decoder.value)  # the decoder's own message, byte offset included
        assert "at byte" in err["message"]
    assert _count(env, Logfile) == 0 and _count(env, Logger) == 0 and _blobs(env) == []


def test_tampered_but_decodable_logfile_is_kept_and_flagged(env: ApiEnv, logfiles: list[bytes]) -> None:
    from smartlogger.testing.tamper import tamper_cases

    case = next(t for t in tamper_cases(logfiles[0], other=logfiles[1]) if t.kind == "delete")
    r = env.client.post("/api/logfiles", headers=env.a.headers("technician"), data=case.data, content_type=OCTET)
    assert r.status_code == 201 and r.get_json()["verification_status"] == "tampered"
    ver = env.client.get(f"/api/logfiles/{r.get_json()['id']}/verification", headers=env.a.headers("viewer"))
    assert ver.get_json()["report"]["problems"]


def test_complete_test_gives_results_then_report_and_jobs_are_idempotent(
        env: ApiEnv, logfiles: list[bytes]) -> None:
    c, tech, viewer = env.client, env.a.headers("technician"), env.a.headers("viewer")
    t = c.post("/api/tests", headers=tech, json={"load": "50A", "rated_time": "2h", "blocks": 4,
                                                  "name": "String 1 capacity", "client_key": "kit-7/2026-11-21"})
    assert t.status_code == 201
    tid = t.get_json()["id"]
    same = c.post("/api/tests", headers=tech, json={"load": "50A", "blocks": 4, "client_key": "kit-7/2026-11-21"})
    assert same.status_code == 200 and same.get_json()["id"] == tid
    assert c.get(f"/api/tests/{tid}/results", headers=viewer).status_code == 404
    assert c.get(f"/api/tests/{tid}/report", headers=viewer).status_code == 409
    for data in logfiles:
        assert c.post(f"/api/logfiles?test_id={tid}", headers=tech, data=data, content_type=OCTET).status_code == 201
    env.wait_jobs()
    test = c.get(f"/api/tests/{tid}", headers=viewer).get_json()
    assert test["status"] == "analysed" and test["logfiles"] == 4
    res = c.get(f"/api/tests/{tid}/results", headers=viewer).get_json()
    blocks = res["result"]["blocks"]
    assert len(blocks) == 4 and {b["serial"] for b in blocks} == {f"SIM-000{i}" for i in range(1, 5)}
    assert res["result"]["markers"] == ["SIMULATED"]
    # The analysis is the library's: same numbers as calling it directly.
    from smartlogger.analysis.analyze import analyze_test
    from smartlogger.analysis.inputs import TestMetadata, load_from_quantity
    from smartlogger.analysis.loading import block_log_from_logfile
    from smartlogger.quantities import parse_load

    direct = analyze_test([block_log_from_logfile(d) for d in logfiles],
                          TestMetadata(load_from_quantity(parse_load("50A")), rated_time_s=7200.0, string_blocks=4,
                                       test_id=str(tid)))
    assert [b["capacity_pct"] for b in blocks] == [b.capacity_pct for b in direct.blocks]
    rep = c.get(f"/api/tests/{tid}/report", headers=viewer).get_json()
    assert rep["status"] == "ready" and rep["job"]["status"] == "finished"
    xlsx = c.get(rep["download"], headers=viewer)
    assert xlsx.status_code == 200 and xlsx.data[:4] == b"PK\x03\x04" and len(xlsx.data) == rep["size"]
    # Idempotent: the same inputs give the same (finished) jobs, the report is cached.
    job = c.post(f"/api/tests/{tid}/analyse", headers=tech).get_json()
    assert job["status"] == "finished" and job["attempts"] == 1
    assert c.post(f"/api/tests/{tid}/report", headers=viewer).get_json()["id"] == rep["id"]
    # Uploading a file of the test again changes nothing.
    assert c.post(f"/api/logfiles?test_id={tid}", headers=tech, data=logfiles[0], content_type=OCTET).status_code == 200
    assert c.post(f"/api/tests/{tid}/analyse", headers=tech).get_json()["id"] == job["id"]
    # Changed metadata is new input: a new analysis and a new report.
    c.patch(f"/api/tests/{tid}", headers=tech, json={"rated_time": "3h"})
    env.wait_jobs()
    job2 = c.post(f"/api/tests/{tid}/analyse", headers=tech).get_json()
    assert job2["id"] != job["id"] and job2["status"] == "finished"
    rep2 = c.get(f"/api/tests/{tid}/report", headers=viewer).get_json()
    assert rep2["status"] == "ready" and rep2["id"] != rep["id"]
    got = c.get(f"/api/jobs/{job2['id']}", headers=viewer).get_json()
    assert got["kind"] == "analyse" and got["test_id"] == tid


def test_failed_analysis_reports_why_and_can_be_retried(env: ApiEnv) -> None:
    from smartlogger.testing.logfile_examples import example_file

    c, tech = env.client, env.a.headers("technician")
    tid = c.post("/api/tests", headers=tech, json={"load": "5A", "blocks": 1}).get_json()["id"]
    assert c.post(f"/api/logfiles?test_id={tid}", headers=tech, data=example_file(),
                  content_type=OCTET).status_code == 201
    env.wait_jobs()
    assert c.get(f"/api/tests/{tid}", headers=tech).get_json()["status"] == "failed"
    job = c.post(f"/api/tests/{tid}/analyse", headers=tech).get_json()  # failed -> queued again
    env.wait_jobs()
    job = c.get(f"/api/jobs/{job['id']}", headers=tech).get_json()
    assert job["status"] == "failed" and job["attempts"] == 2
    assert "string_blocks" in job["error"] and "Traceback" not in job["error"]


def test_delete_logfile_is_admin_only_and_audited(env: ApiEnv, logfiles: list[bytes]) -> None:
    c = env.client
    lf = c.post("/api/logfiles", headers=env.a.headers("technician"), data=logfiles[2], content_type=OCTET).get_json()
    c.post("/api/logfiles", headers=env.b.headers("technician"), data=logfiles[2], content_type=OCTET)
    assert c.delete(f"/api/logfiles/{lf['id']}", headers=env.a.headers("technician")).status_code == 403
    assert c.delete(f"/api/logfiles/{lf['id']}", headers=env.a.headers("admin")).status_code == 204
    assert c.get(f"/api/logfiles/{lf['id']}", headers=env.a.headers("admin")).status_code == 404
    assert c.get(f"/api/logfiles?sha256={lf['sha256']}", headers=env.b.headers("viewer")).get_json() != []
    assert len(_blobs(env)) == 1  # the bytes are never deleted with a record (B holds them too)
    audit = c.get("/api/audit?action=delete", headers=env.a.headers("admin")).get_json()
    assert audit[0]["sha256"] == lf["sha256"] and audit[0]["object_type"] == "logfile"


def test_concurrent_uploads_of_one_new_logger_and_of_the_same_bytes(env: ApiEnv, logfiles: list[bytes]) -> None:
    """Races: many files of a logger nobody has seen, and the same bytes at once -> one row each."""
    from concurrent.futures import ThreadPoolExecutor

    from smartlogger.logfile import LogfileMetadata, read_logfile
    from smartlogger.testing.tamper import rebuild

    lf = read_logfile(logfiles[3])
    variants = []
    for i in range(6):
        lf.metadata = LogfileMetadata(test={"copy": str(i)})
        variants.append(rebuild(lf))
    bodies = variants + [variants[0]] * 4
    h = env.a.headers("technician")

    def post(data: bytes) -> tuple[int, int]:
        r = env.app.test_client().post("/api/logfiles", headers=h, data=data, content_type=OCTET)
        assert r.status_code in (200, 201), r.get_json()
        return r.status_code, r.get_json()["id"]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(post, bodies))
    assert sorted(code for code, _ in results).count(201) == 6
    assert len({i for _, i in results}) == 6
    assert _count(env, Logfile) == 6 and _count(env, Logger) == 1


class _RawPull:
    """A ``ChainedStore`` over given record bytes: lets a test sign a pull of records no
    firmware would write (the device signs whatever its flash holds)."""

    def __init__(self, streams: list[list[tuple[int, bytes]]], anchors: list[tuple[int, bytes]]) -> None:
        from smartlogger.logfile import chain

        self.streams, self.anchors = streams, anchors
        self.heads = []
        for records, (anchor_seq, anchor_hash) in zip(streams, anchors, strict=True):
            h = anchor_hash
            for seq, data in records:
                h = chain.chain_next(h, seq, data)
            self.heads.append((records[-1][0] + 1 if records else anchor_seq, h))

    def chain_anchor(self, stream: int = 0) -> tuple[int, bytes]:
        return self.anchors[stream]

    def chain_head(self, stream: int = 0) -> tuple[int, bytes]:
        return self.heads[stream]

    def records(self, from_seq: int = 0) -> Iterator[tuple[int, bytes]]:
        return iter(self.streams[0])

    def summary_records(self, from_seq: int = 0) -> Iterator[tuple[int, bytes]]:
        return iter(self.streams[1])


def _signed_with_bad_sample(good: bytes, how: str) -> bytes:
    """``good`` re-signed with its first SampleBlock changed: CRCs, footer hash, chain and
    signature are all valid. ``how``: "payload" drops the bit-packed channels behind a valid
    head (only a full decode notices); "codec" names an unknown codec in the head."""
    from smartlogger.logfile import pull_logfile, read_logfile, simulated_credentials
    from smartlogger.logfile.records import SAMPLE_HEAD, RecordType

    lf = read_logfile(good, decode=False)
    payload_at = 1 + SAMPLE_HEAD.size
    streams = [[(r.seq, r.data) for r in st.records] for st in lf.streams]
    i = next(i for i, (_, d) in enumerate(streams[0]) if d[0] == RecordType.SAMPLE_BLOCK)
    seq, data = streams[0][i]
    assert int.from_bytes(data[payload_at + 1:payload_at + 5], "little") > 0  # declares samples
    bad = data[:payload_at + 5] if how == "payload" else data[:payload_at] + b"\x07" + data[payload_at + 1:]
    streams[0][i] = (seq, bad)
    pull = _RawPull(streams, [(st.anchor_seq, st.anchor_hash) for st in lf.streams])
    att = lf.latest_attestation
    assert att is not None
    # ChainedStore is typed with Record; build_logfile also takes (and keeps verbatim) record bytes.
    return pull_logfile(simulated_credentials(lf.identity), lf.identity, pull,  # type: ignore[arg-type]
                        device_ms=att.device_ms, nonce=att.nonce, metadata=lf.metadata)


def test_logfile_whose_sample_payload_does_not_decode_is_stored_then_marked_unreadable(
        env: ApiEnv, logfiles: list[bytes]) -> None:
    """The payload decode runs in the check job: the file is kept (never dropped) and flagged."""
    from smartlogger.errors import LogfileError
    from smartlogger.logfile import read_logfile, verify_logfile

    data = _signed_with_bad_sample(logfiles[0], "payload")
    assert verify_logfile(read_logfile(data, decode=False)).status == "simulated"  # CRC/hash/chain/signature
    with pytest.raises(LogfileError) as decoder:
        read_logfile(data)
    c, tech = env.client, env.a.headers("technician")
    r = c.post("/api/logfiles", headers=tech, data=data, content_type=OCTET)
    assert r.status_code == 201, r.get_json()
    lf_id = r.get_json()["id"]
    env.wait_jobs()
    got = c.get(f"/api/logfiles/{lf_id}", headers=tech).get_json()
    assert got["verification_status"] == "unreadable"
    report = c.get(f"/api/logfiles/{lf_id}/verification", headers=tech).get_json()["report"]
    assert report["status"] == "unreadable" and not report["verified"]
    problem = report["problems"][-1]
    assert problem["kind"] == "unreadable" and problem["message"] == str(decoder.value)
    assert problem["offset"] == decoder.value.offset and "at byte" in problem["message"]
    assert c.get(f"/api/logfiles/{lf_id}/content", headers=tech).data == data  # kept, byte for byte
    series = c.get(f"/api/logfiles/{lf_id}/series", headers=tech)  # no chart of what does not decode
    assert series.status_code == 409 and str(decoder.value) in series.get_json()["error"]["message"]
    with database(env.app).system_session() as s:
        from smartlogger.api.models import Job

        job = s.scalar(select(Job).where(Job.logfile_id == lf_id))
        assert job is not None and job.kind == "check" and job.status == "finished"
        assert str(decoder.value) in job.error
    job_out = c.get(f"/api/jobs/{job.id}", headers=tech).get_json()
    assert job_out["logfile_id"] == lf_id and job_out["kind"] == "check"
    audit = c.get("/api/audit?action=logfile_unreadable", headers=env.a.headers("admin")).get_json()
    assert [e["object_id"] for e in audit] == [lf_id]
    # A good file's check job leaves its verdict alone.
    ok = c.post("/api/logfiles", headers=tech, data=logfiles[1], content_type=OCTET).get_json()
    env.wait_jobs()
    assert c.get(f"/api/logfiles/{ok['id']}", headers=tech).get_json()["verification_status"] == "simulated"


def test_sample_head_naming_an_unknown_codec_is_rejected_at_upload(env: ApiEnv, logfiles: list[bytes]) -> None:
    """Heads (codec, declared sample count) are checked in the request, CRCs valid or not."""
    data = _signed_with_bad_sample(logfiles[0], "codec")
    r = env.client.post("/api/logfiles", headers=env.a.headers("technician"), data=data, content_type=OCTET)
    assert r.status_code == 422, r.get_json()
    err = r.get_json()["error"]
    assert err["code"] == "invalid_logfile" and "unknown sample codec 7" in err["message"]
    assert "at byte" in err["message"]
    assert _count(env, Logfile) == 0 and _count(env, Logger) == 0 and _blobs(env) == []


def test_background_checks_wait_for_a_quiet_moment_but_not_for_ever(env: ApiEnv) -> None:
    """ThreadRunner: urgent jobs first; a check waits for idle_s without requests, at most max_delay_s."""
    from smartlogger.api.worker import ThreadRunner

    busy = ThreadRunner(env.app, idle_s=3600, max_delay_s=3600)
    try:
        busy.request_started()
        busy.submit_background(10**6)  # no such job: run_job claims nothing and returns
        assert not busy.wait_idle(0.2)  # held back: a request came in just now
        busy.submit(10**6 + 1)  # an urgent job runs at once, the check still waits
        assert not busy.wait_idle(0.2)
        with busy._cond:
            assert busy._pending == 1 and [j for _, j in busy._background] == [10**6]
        busy._last_request -= 3600  # ...and the server has been quiet since
        with busy._cond:
            busy._cond.notify_all()
        assert busy.wait_idle(10)
    finally:
        busy.close()
    due = ThreadRunner(env.app, idle_s=3600, max_delay_s=0)
    try:
        due.request_started()
        due.submit_background(10**6)
        assert due.wait_idle(10)  # overdue: runs although requests keep coming
    finally:
        due.close()


def test_a_batch_of_checks_fails_only_the_job_whose_blob_is_gone(tmp_path: Path, logfiles: list[bytes]) -> None:
    """run_checks: one transaction per batch, yet one job's failure does not undo the others."""
    from smartlogger.api.models import Job
    from smartlogger.api.worker import run_checks

    # Checks held back (a quiet hour never comes), so the test runs the batch itself.
    with api_env("sqlite", tmp_path, CHECK_IDLE_SECONDS=3600, CHECK_MAX_DELAY_SECONDS=3600) as env:
        h = env.a.headers("technician")
        ids = [env.client.post("/api/logfiles", headers=h, data=d, content_type=OCTET).get_json()["id"]
               for d in logfiles[:2]]
        gone = hashlib.sha256(logfiles[0]).hexdigest()
        Path(env.app.config["FILES_DIR"], gone[:2], gone).unlink()
        with database(env.app).system_session() as s:
            jobs = {j.logfile_id: j.id for j in s.scalars(select(Job).where(Job.kind == "check"))
                    if j.logfile_id is not None}
        assert sorted(jobs) == sorted(ids)
        run_checks(env.app, list(jobs.values()))
        run_checks(env.app, list(jobs.values()))  # claimed already: runs nothing twice
        with database(env.app).system_session() as s:
            got = {j.logfile_id: (j.status, j.error, j.attempts) for j in s.scalars(select(Job))}
        assert got[ids[0]][0] == "failed" and "not in the file store" in got[ids[0]][1]
        assert got[ids[1]] == ("finished", "", 1) and got[ids[0]][2] == 1
        runner = env.app.extensions["smartlogger_jobs"]
        runner.idle_s = 0  # let the runner take its (already claimed, so no-op) copies now
        with runner._cond:
            runner._cond.notify_all()
        assert runner.wait_idle(10)


def test_an_insert_that_fails_on_another_constraint_is_a_409_and_stores_no_row(env: ApiEnv,
                                                                               logfiles: list[bytes]) -> None:
    """Not a duplicate: e.g. the uploader (or the test) was deleted between the checks and the INSERT.
    The one-statement insert (PostgreSQL) and the transaction (SQLite) store nothing, and say so."""
    from smartlogger.api.errors import ApiError
    from smartlogger.api.resources.logfiles import upload_engine
    from smartlogger.api.services import Uploader, ingest_logfile

    app = env.app
    with app.app_context(), database(app).system_session() as s, pytest.raises(ApiError) as info:
        ingest_logfile(s, app.extensions["smartlogger_files"], app.extensions["smartlogger_key"],
                       Uploader(user_id=2**31 - 1, org_id=env.a.org_id, email="gone@acme.example"),
                       logfiles[2], autocommit=upload_engine(app))
    assert info.value.status == 409 and "the logfile was not stored" in info.value.message
    assert _count(env, Logfile) == 0 and _count(env, Job) == 0


def test_series_is_every_sample_or_a_min_max_envelope_of_a_window(env: ApiEnv, logfiles: list[bytes]) -> None:
    """What a chart needs: the samples (or per time bucket their min and max, so no peak or dip is
    lost) of a window of device time, and the log's configurations for the threshold lines."""
    import dataclasses

    import numpy as np

    from smartlogger.logfile import config_history
    from smartlogger.logfile.convert import load_samples

    c, tech, viewer = env.client, env.a.headers("technician"), env.a.headers("viewer")
    data = logfiles[0]
    lf_id = c.post("/api/logfiles", headers=tech, data=data, content_type=OCTET).get_json()["id"]
    t, mv, dc = load_samples(data)
    order = np.argsort(t, kind="stable")
    t, mv, dc = t[order], mv[order], dc[order]
    # Everything, unreduced: exactly the samples, in time order, and every configuration.
    full = c.get(f"/api/logfiles/{lf_id}/series?max_points=20000", headers=viewer).get_json()
    assert not full["reduced"] and full["samples"] == t.size and full["serial"] == "SIM-0001"
    assert full["t_ms"] == t.tolist() and full["mv"] == mv.tolist() and full["dc"] == dc.tolist()
    assert full["configs"] == [{"t_ms": ch.t_ms, **dataclasses.asdict(ch.config.thresholds)}
                               for ch in config_history(data)]
    # A window, reduced: at most max_points, inside the window, in time order, extremes kept.
    lo, hi = int(t[t.size // 4]), int(t[3 * t.size // 4])
    inside = (t >= lo) & (t <= hi)
    win = c.get(f"/api/logfiles/{lf_id}/series?from_ms={lo}&to_ms={hi}&max_points=100", headers=viewer).get_json()
    assert win["reduced"] and win["samples"] == int(inside.sum()) and (win["from_ms"], win["to_ms"]) == (lo, hi)
    assert 0 < len(win["t_ms"]) <= 100 and len(win["mv"]) == len(win["dc"]) == len(win["t_ms"])
    assert win["t_ms"] == sorted(win["t_ms"]) and lo <= win["t_ms"][0] and win["t_ms"][-1] <= hi
    assert (min(win["mv"]), max(win["mv"])) == (int(mv[inside].min()), int(mv[inside].max()))
    assert (min(win["dc"]), max(win["dc"])) == (int(dc[inside].min()), int(dc[inside].max()))
    # Bad windows name the field; another organisation sees nothing; reading it is audited.
    bad = c.get(f"/api/logfiles/{lf_id}/series?from_ms=10&to_ms=5", headers=viewer)
    assert bad.status_code == 422 and bad.get_json()["error"]["field"] == "query.to_ms"
    assert c.get(f"/api/logfiles/{lf_id}/series?max_points=5", headers=viewer).status_code == 422
    assert c.get(f"/api/logfiles/{lf_id}/series", headers=env.b.headers("viewer")).status_code == 404
    events = c.get("/api/audit?action=download", headers=env.a.headers("admin")).get_json()
    assert {(e["object_type"], e["object_id"]) for e in events} == {("logfile_series", lf_id)}
