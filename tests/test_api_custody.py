"""The server keeps custody: provenance, device keys and pull counters per logger (SQLite and PostgreSQL).

A hardware logger (certified by a throwaway production root in the server's trust list) cannot
take a SIMULATED or REPLAYED file and a simulated logger cannot take a hardware one (409, nothing
stored, the refusal audited); the first certified device key and the highest pull counter are
recorded per logger; an older pull after a newer one and a second device key are flagged in the
logfile, the logger and the audit log, named in the receipt, and the clone is kept out of the
analysis. Migration 0006 fills custody from what the server held before.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from smartlogger.api.receipts import verify_receipt
from smartlogger.logfile import pull_logfile, simulated_credentials
from smartlogger.logfile.custody import (
    LoggerCustody,
    ProvenanceConflict,
    after,
    check_provenance,
    custody_flags,
)
from smartlogger.logfile.verify import verify_logfile
from smartlogger.model import Event, EventKind, Generation, LoggerIdentity
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


def _up(env: ApiEnv, data: bytes, test_id: int | None = None) -> Any:
    q = f"?test_id={test_id}" if test_id is not None else ""
    return env.client.post(f"/api/logfiles{q}", headers=env.a.headers("technician"), data=data, content_type=OCTET)


def _logger(env: ApiEnv, serial: str) -> dict[str, Any]:
    return next(lg for lg in env.client.get("/api/loggers", headers=env.a.headers("viewer")).get_json()
                if lg["serial"] == serial)


def _audit(env: ApiEnv, action: str) -> list[dict[str, Any]]:
    return env.client.get(f"/api/audit?action={action}", headers=env.a.headers("admin")).get_json()


def _logfile_count(env: ApiEnv) -> int:
    return len(env.client.get("/api/logfiles?limit=1000", headers=env.a.headers("viewer")).get_json())


def test_the_rules_on_their_own(case: SignedTest) -> None:
    latest, older = (verify_logfile(case.loggers[0].pulls[i], trust=case.trust) for i in (1, 0))
    clone = verify_logfile(case.second_key(0), trust=case.trust)
    held = after(latest, LoggerCustody("SL2-000001", hardware=True))
    assert (held.device_key, held.max_pull_counter) == (latest.device_key, 2)
    assert custody_flags(latest, held) == [] and custody_flags(older, held)[0].kind == "possible_replay"
    assert custody_flags(clone, held)[0].kind == "possible_clone"
    assert after(clone, held) == held and after(older, held) == held  # neither moves the custody
    with pytest.raises(ProvenanceConflict, match="registered as a hardware logger"):
        check_provenance(verify_logfile(case.forged_simulated(0)), held)


def test_provenance_conflicts_are_refused_and_audited(env: ApiEnv, case: SignedTest) -> None:
    first = _up(env, case.loggers[0].pulls[-1])
    assert first.status_code == 201
    lf = first.get_json()
    assert lf["verification_status"] == "verified" and lf["authority"] == "production" and lf["markers"] == []
    assert lf["pull_counter"] == 2 and lf["device_key"] and lf["custody"] == []
    logger = _logger(env, "SL2-000001")
    assert not logger["simulated"] and logger["device_key"] == lf["device_key"] and logger["max_pull_counter"] == 2
    n = _logfile_count(env)
    # A forged SIMULATED file for the hardware serial (signed with the TEST authority's public key).
    r = _up(env, case.forged_simulated(0))
    err = r.get_json()["error"]
    assert r.status_code == 409 and err["code"] == "provenance_conflict"
    assert "registered as a hardware logger" in err["message"] and "SIMULATED" in err["message"]
    # A REPLAYED-only file is named as REPLAYED, not as a simulator.
    replayed = LoggerIdentity("SL2-000001", Generation.GEN2, "2.1.0", replayed=True)
    r = _up(env, _one_event_file(replayed, signed=True))
    assert r.status_code == 409 and "REPLAYED logger" in r.get_json()["error"]["message"]
    assert "SIMULATED" not in r.get_json()["error"]["message"]
    # The reverse: a simulated logger cannot take a file that claims real hardware.
    sim = LoggerIdentity("SIM-0777", Generation.GEN2, "2.1.0", simulated=True)
    assert _up(env, _one_event_file(sim, signed=True)).status_code == 201
    r = _up(env, _one_event_file(replace(sim, simulated=False), signed=False))
    assert r.status_code == 409 and "registered as a SIMULATED/REPLAYED logger" in r.get_json()["error"]["message"]
    assert _logfile_count(env) == n + 1  # only the genuine simulated file was stored
    refused = _audit(env, "upload_refused")
    assert len(refused) == 3 and all(e["object_type"] == "logger" for e in refused)


def _one_event_file(identity: LoggerIdentity, *, signed: bool) -> bytes:
    from smartlogger.device.store import MemoryStore

    store = MemoryStore(serial=identity.serial)
    store.append(Event(1_000, EventKind.POWER_ON))
    cred = simulated_credentials(identity) if signed else None
    return pull_logfile(cred, identity, store, device_ms=2_000)


def test_an_older_pull_after_a_newer_one_is_flagged(env: ApiEnv, case: SignedTest) -> None:
    lg = case.loggers[1]
    assert _up(env, lg.pulls[1]).status_code == 201  # pull #2 first
    r = _up(env, lg.pulls[0])  # then pull #1: kept (it is genuine), flagged
    assert r.status_code == 201
    lf = r.get_json()
    assert lf["verification_status"] == "verified" and [f["kind"] for f in lf["custody"]] == ["possible_replay"]
    assert "pull #2 was already received" in lf["custody"][0]["message"]
    got = env.client.get(f"/api/logfiles/{lf['id']}/receipt", headers=env.a.headers("viewer")).get_json()
    body = got["receipt"]
    assert body["custody"] == ["possible_replay"] and body["verification_status"] == "verified"
    assert body["authority"] == "production" and body["markers"] == []
    assert verify_receipt(body, got["signature"], got["public_key_pem"])
    logger = _logger(env, lg.serial)
    assert logger["max_pull_counter"] == 2  # an older pull never lowers it
    assert [(e["kind"], e["logfile_id"]) for e in logger["custody"]] == [("possible_replay", lf["id"])]
    (event,) = _audit(env, "custody_possible_replay")
    assert event["object_id"] == lf["id"] and "possible replay" in event["detail"]
    # The other order is the normal one: nothing to flag.
    other = case.loggers[2]
    assert _up(env, other.pulls[0]).get_json()["custody"] == []
    assert _up(env, other.pulls[1]).get_json()["custody"] == []
    assert _logger(env, other.serial)["max_pull_counter"] == 2


def test_a_second_device_key_is_flagged_and_kept_out_of_the_analysis(env: ApiEnv, case: SignedTest) -> None:
    c, tech = env.client, env.a.headers("technician")
    tid = c.post("/api/tests", headers=tech, json={"load": "100A", "rated_time": "30min",
                                                    "blocks": 3}).get_json()["id"]
    for data in case.files(latest_only=True).values():
        assert _up(env, data, tid).status_code == 201
    env.wait_jobs()
    genuine = c.get(f"/api/tests/{tid}/results", headers=tech).get_json()["result"]
    r = _up(env, case.second_key(0), tid)
    assert r.status_code == 201
    lf = r.get_json()
    assert lf["verification_status"] == "verified" and [f["kind"] for f in lf["custody"]] == ["possible_clone"]
    logger = _logger(env, "SL2-000001")
    assert logger["device_key"] != lf["device_key"] and logger["custody"][0]["kind"] == "possible_clone"
    assert logger["max_pull_counter"] == 2  # the clone's counter is not this logger's
    assert _audit(env, "custody_possible_clone")[0]["object_id"] == lf["id"]
    # Re-analysed with the clone attached: it is excluded (registered key), the numbers unchanged.
    assert c.post(f"/api/tests/{tid}/analyse", headers=tech).status_code in (200, 202)
    env.wait_jobs()
    res = c.get(f"/api/tests/{tid}/results", headers=tech).get_json()["result"]
    assert [(f["reason"], f["device_key"]) for f in res["excluded"]] == [("second_device_key", lf["device_key"])]
    assert [b["capacity_pct"] for b in res["blocks"]] == [b["capacity_pct"] for b in genuine["blocks"]]
    assert res["evidence"]["verified_only"]


def test_a_mistaken_first_upload_can_be_undone(env: ApiEnv, case: SignedTest) -> None:
    """A forged SIMULATED file registered the hardware serial as simulated; an admin can correct the
    kind only once that file is deleted, and the real logger's file is then accepted."""
    forged = _up(env, case.forged_simulated(1)).get_json()
    logger = _logger(env, "SL2-000002")
    assert logger["simulated"]
    assert _up(env, case.loggers[1].pulls[-1]).status_code == 409  # the history says simulated
    admin, url = env.a.headers("admin"), f"/api/loggers/{logger['id']}"
    assert env.client.patch(url, headers=env.a.headers("technician"), json={"simulated": False}).status_code == 403
    r = env.client.patch(url, headers=admin, json={"simulated": False})
    assert r.status_code == 409 and "cannot change while they are kept" in r.get_json()["error"]["message"]
    assert env.client.delete(f"/api/logfiles/{forged['id']}", headers=admin).status_code == 204
    r = env.client.patch(url, headers=admin, json={"simulated": False})
    assert r.status_code == 200 and r.get_json()["simulated"] is False and r.get_json()["device_key"] is None
    r = _up(env, case.loggers[1].pulls[-1])
    assert r.status_code == 201 and r.get_json()["custody"] == []
    assert _logger(env, "SL2-000002")["device_key"] == r.get_json()["device_key"]
    (event,) = _audit(env, "logger_kind_changed")
    assert "registered again as a hardware logger" in event["detail"]


def test_a_logger_registered_by_hand_keeps_its_kind(env: ApiEnv, case: SignedTest) -> None:
    c, tech = env.client, env.a.headers("technician")
    r = c.post("/api/loggers", headers=tech, json={"serial": "SL2-000003", "generation": 2, "simulated": False})
    assert r.status_code == 201 and r.get_json()["simulated"] is False
    assert c.post("/api/loggers", headers=tech, json={"serial": "SIM-0042", "generation": 2}).get_json()["simulated"]
    assert _up(env, case.forged_simulated(2)).status_code == 409
    assert _up(env, case.loggers[2].pulls[-1]).status_code == 201


@pytest.mark.parametrize("kind", backends())
def test_migration_0006_fills_custody_from_the_stored_reports(kind: str) -> None:
    from sqlalchemy import JSON, column, select, table

    from smartlogger.api.db import make_engine
    from smartlogger.api.migrate import upgrade
    from smartlogger.testing.api import database_url

    t = "2026-01-01T00:00:00+00:00"
    with database_url(kind) as (url, schema):
        engine = make_engine(url, schema=schema)
        try:
            upgrade(engine, "0005")
            loggers = table("loggers", *(column(c) for c in ("id", "org_id", "serial", "generation", "firmware",
                                                              "simulated", "created_at")))
            logfiles = table("logfiles", *(column(c) for c in (
                "id", "org_id", "sha256", "size", "logger_id", "block_position", "format_version",
                "verification_status", "uploaded_at", "receipt_signature")),
                column("verification", JSON()), column("receipt", JSON()))
            with engine.begin() as conn:
                conn.execute(table("organisations", column("id"), column("name"), column("created_at")).insert()
                             .values(id=1, name="Acme", created_at=t))
                conn.execute(loggers.insert(), [
                    {"id": 1, "org_id": 1, "serial": "SL2-000001", "generation": 2, "firmware": "", "simulated": False,
                     "created_at": t},
                    {"id": 2, "org_id": 1, "serial": "SIM-0001", "generation": 2, "firmware": "", "simulated": True,
                     "created_at": t}])

                def report(status: str, authority: str | None, key: str | None, counter: int,
                           markers: list[str]) -> dict[str, Any]:
                    return {"status": status, "verified": status == "verified", "authority": authority,
                            "device_key": key, "markers": markers, "latest_pull": {"counter": counter}}

                rows = [(1, "verified", report("verified", "production", "k1", 3, [])),
                        (1, "verified", report("verified", "production", "k1", 7, [])),
                        (1, "verified", report("verified", "production", "k2", 9, [])),  # a clone's counter
                        (2, "verified", report("verified", "test", "ks", 4, ["SIMULATED"])),  # before issue 17
                        (1, "tampered", report("tampered", None, None, 99, []))]
                conn.execute(logfiles.insert(), [
                    {"id": i + 1, "org_id": 1, "sha256": f"{i:064x}", "size": 1, "logger_id": lg,
                     "block_position": 0, "format_version": "2.0", "verification_status": st, "uploaded_at": t,
                     "receipt_signature": "", "verification": ver, "receipt": {}}
                    for i, (lg, st, ver) in enumerate(rows)])
            upgrade(engine)
            new_lf = table("logfiles", *(column(c) for c in ("id", "verification_status", "authority",
                                                               "device_key", "pull_counter")),
                           column("markers", JSON()), column("verification", JSON()))
            new_lg = table("loggers", *(column(c) for c in ("id", "device_key", "max_pull_counter")))
            with engine.connect() as conn:
                got = conn.execute(select(new_lf).order_by(new_lf.c.id)).all()
                assert [(r.verification_status, r.authority, r.device_key, r.pull_counter, r.markers)
                        for r in got] == [("verified", "production", "k1", 3, []),
                                          ("verified", "production", "k1", 7, []),
                                          ("verified", "production", "k2", 9, []),
                                          ("simulated", "test", "ks", 4, ["SIMULATED"]),
                                          ("tampered", None, None, 99, [])]
                assert got[3].verification["status"] == "simulated" and not got[3].verification["verified"]
                assert conn.execute(select(new_lg).order_by(new_lg.c.id)).all() == [(1, "k1", 7), (2, "ks", 4)]
        finally:
            engine.dispose()
