"""Logfile upload (content-addressed, validated, receipted, audited) and the result/report jobs."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from smartlogger.api.db import database
from smartlogger.api.models import Logfile, Logger
from smartlogger.api.receipts import verify_receipt
from smartlogger.api.testing import ApiEnv, api_env, backends, simulated_logfiles

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
    assert lf["serial"] == "SIM-0001" and lf["verification_status"] == "verified" and lf["block_position"] == 1
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
    assert ver["report"]["status"] == "verified" and ver["report"]["serial"] == "SIM-0001"
    actions = [e["action"] for e in c.get("/api/audit", headers=env.a.headers("admin")).get_json()]
    assert actions[:3] == ["download", "upload_duplicate", "upload"]


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
    from smartlogger.logfile.tamper import tamper_cases

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
    from smartlogger.analysis.inputs import TestMetadata, parse_duration_s, parse_load
    from smartlogger.analysis.loading import block_log_from_logfile

    direct = analyze_test([block_log_from_logfile(d) for d in logfiles],
                          TestMetadata(parse_load("50A"), rated_time_s=parse_duration_s("2h"), string_blocks=4,
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
    from smartlogger.logfile.examples import example_file

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
    from smartlogger.logfile.tamper import rebuild

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
