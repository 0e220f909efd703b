"""The API keeps evidence with the data: results, report and logfiles say what a result rests on.

A hardware test (throwaway production root in the server's trust list) is uploaded with a
tampered file and an unsigned continuation of a signed chain; the server's result equals the
library's analysis of the genuine files alone, names the two files as excluded, and the report
workbook states the evidence. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from smartlogger.analysis.analyze import analyze_test
from smartlogger.analysis.inputs import ConstantCurrent, TestMetadata
from smartlogger.analysis.loading import load_test_files
from smartlogger.export.check import formula_cells
from smartlogger.testing.api import ApiEnv, api_env, backends
from smartlogger.testing.evidence_cases import SignedTest, signed_string_test

OCTET = "application/octet-stream"


@pytest.fixture(scope="module")
def case() -> SignedTest:
    return signed_string_test(3)


@pytest.fixture(params=backends())
def env(request: pytest.FixtureRequest, tmp_path: Path, case: SignedTest) -> Iterator[ApiEnv]:
    with api_env(request.param, tmp_path, TRUST=case.trust) as e:
        yield e


def _upload(env: ApiEnv, data: bytes, test_id: int | None = None) -> Any:
    q = f"?test_id={test_id}" if test_id is not None else ""
    return env.client.post(f"/api/logfiles{q}", headers=env.a.headers("technician"), data=data,
                           content_type=OCTET)


def _blocks(result: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(b["serial"], b["capacity_pct"], b["delivered_ah"], b["samples"]) for b in result["blocks"]]


def test_results_and_report_carry_the_evidence(env: ApiEnv, case: SignedTest) -> None:
    c, tech = env.client, env.a.headers("technician")
    tid = c.post("/api/tests", headers=tech, json={"load": "100A", "rated_time": "30min", "blocks": 3,
                                                    "name": "=HYPERLINK(\"x\")"}).get_json()["id"]
    bad = {"tampered": case.tampered(1), "unsigned": case.unsigned_continuation(2)}
    for data in bad.values():  # first: they must not count as the test's data
        assert _upload(env, data, tid).status_code == 201
    for data in case.files().values():
        r = _upload(env, data, tid)
        assert r.status_code == 201 and r.get_json()["verification_status"] == "verified"
    env.wait_jobs()
    res = c.get(f"/api/tests/{tid}/results", headers=tech).get_json()["result"]
    ev = res["evidence"]
    assert ev["verified_only"] and ev["status"] == "verified" and ev["files_excluded"] == 2
    assert sorted(f["reason"] for f in res["excluded"]) == ["tampered", "unsigned_not_merged"]
    assert {f["serial"] for f in res["excluded"]} == {"SL2-000002", "SL2-000003"}
    # The numbers are the library's on the genuine files alone.
    loaded = load_test_files(list(case.files().items()), trust=case.trust)
    direct = analyze_test(loaded.logs, TestMetadata(ConstantCurrent(100.0), rated_time_s=1800.0, string_blocks=3,
                                                    test_id=str(tid)))
    assert _blocks(res) == [(b.serial, b.capacity_pct, b.delivered_ah, b.samples) for b in direct.blocks]
    for b in res["blocks"]:
        assert b["evidence"]["status"] == "verified"
        assert sum(f["used"] for f in b["evidence"]["files"]) == 2
    # The report states it: the evidence row, each block's evidence, the excluded files.
    c.post(f"/api/tests/{tid}/report", headers=tech)
    env.wait_jobs()
    rep = c.get(f"/api/tests/{tid}/report", headers=tech).get_json()
    assert rep["status"] == "ready", rep
    data = c.get(rep["download"], headers=tech).data
    wb = load_workbook(io.BytesIO(data))
    rows = [[x.value for x in r] for r in wb["Summary"].iter_rows()]
    assert next(r for r in rows if r[0] == "Evidence")[1] == ev["statement"]
    reasons = {r[2] for r in rows if r[2] in ("tampered", "unsigned_not_merged")}
    assert reasons == {"tampered", "unsigned_not_merged"}
    path = Path(env.app.config["DATA_DIR"]) / "report.xlsx"
    path.write_bytes(data)
    assert formula_cells(path) == []
