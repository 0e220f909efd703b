"""Tenant isolation: a user of another organisation gets 404 on every endpoint for A's objects."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smartlogger.api.auth import PUBLIC_ENDPOINTS
from smartlogger.testing.api import ApiEnv, api_env, backends, simulated_logfiles

OCTET = "application/octet-stream"


@pytest.fixture(scope="module")
def logfiles() -> list[bytes]:
    return simulated_logfiles(2)


@pytest.fixture(scope="module", params=backends())
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          logfiles: list[bytes]) -> Iterator[tuple[ApiEnv, dict[str, int]]]:
    """Organisation A with one of everything; returns the ids by URL parameter name."""
    with api_env(request.param, tmp_path_factory.mktemp("api")) as env:
        c, h = env.client, env.a.headers("admin")
        ids: dict[str, int] = {"org_id": env.a.org_id}
        ids["site_id"] = c.post("/api/sites", headers=h, json={"name": "A site"}).get_json()["id"]
        ids["system_id"] = c.post("/api/systems", headers=h, json={"site_id": ids["site_id"], "name": "UPS"}
                                  ).get_json()["id"]
        ids["string_id"] = c.post("/api/strings", headers=h, json={"system_id": ids["system_id"], "name": "S1",
                                                                    "blocks": 2}).get_json()["id"]
        ids["position_id"] = c.get(f"/api/strings/{ids['string_id']}/positions", headers=h).get_json()[0]["id"]
        ids["test_id"] = c.post("/api/tests", headers=h, json={"string_id": ids["string_id"], "load": "50A",
                                                                "rated_time": "2h"}).get_json()["id"]
        for data in logfiles:
            r = c.post(f"/api/logfiles?test_id={ids['test_id']}", headers=h, data=data, content_type=OCTET)
            assert r.status_code == 201
            ids["logfile_id"] = r.get_json()["id"]
            ids["logger_id"] = r.get_json()["logger_id"]
        env.wait_jobs()
        assert c.get(f"/api/tests/{ids['test_id']}/report", headers=h).get_json()["status"] == "ready"
        ids["job_id"] = c.post(f"/api/tests/{ids['test_id']}/analyse", headers=h).get_json()["id"]
        ids["user_id"] = env.a.user_ids["viewer"]
        ids["token_id"] = c.post("/api/tokens", headers=h, json={}).get_json()["id"]
        yield env, ids


#: A valid body for every endpoint that takes one (so only the tenant check can refuse it).
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("/api/organisations/<int:org_id>", "PATCH"): {"name": "Hijacked"},
    ("/api/users/<int:user_id>", "PATCH"): {"role": "admin"},
    ("/api/sites/<int:site_id>", "PATCH"): {"name": "x"},
    ("/api/positions/<int:position_id>", "PATCH"): {"label": "x"},
    ("/api/tests/<int:test_id>", "PATCH"): {"name": "x"},
    ("/api/logfiles/<int:logfile_id>/test", "PUT"): {"test_id": None},
    ("/api/loggers/<int:logger_id>", "PATCH"): {"simulated": True},
    ("/api/tests/<int:test_id>/live", "PUT"): {"now_ms": 1},
}


def test_every_object_endpoint_is_404_for_another_organisation(world: tuple[ApiEnv, dict[str, int]]) -> None:
    env, ids = world
    c, h = env.client, env.b.headers("admin")  # the most privileged user of the other organisation
    walked = []
    for rule in env.app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or rule.endpoint in PUBLIC_ENDPOINTS or not rule.arguments:
            continue
        url = rule.rule
        for arg in rule.arguments:
            url = url.replace(f"<int:{arg}>", str(ids[arg]))
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            body = BODIES.get((rule.rule, method))
            if method in ("PATCH", "PUT"):
                assert body is not None, f"add a valid body for {method} {rule.rule}"
            resp = c.open(url, method=method, headers=h, json=body)
            assert resp.status_code == 404, (method, url, resp.get_json())
            assert resp.get_json()["error"]["code"] == "not_found"
            walked.append((method, rule.rule))
    assert len(walked) >= 30
    # Nothing changed for A.
    a = env.a.headers("admin")
    assert c.get(f"/api/organisations/{ids['org_id']}", headers=a).get_json()["name"] == "Acme Service"
    assert c.get(f"/api/tests/{ids['test_id']}", headers=a).get_json()["logfiles"] == 2
    assert c.get(f"/api/logfiles/{ids['logfile_id']}", headers=a).status_code == 200


def test_lists_and_references_stay_inside_the_organisation(world: tuple[ApiEnv, dict[str, int]],
                                                            logfiles: list[bytes]) -> None:
    env, ids = world
    c, h = env.client, env.b.headers("admin")
    for path in ("/api/sites", "/api/systems", "/api/strings", "/api/loggers", "/api/tests", "/api/logfiles",
                 "/api/audit"):
        assert c.get(path, headers=h).get_json() == [], path
    assert {u["org_id"] for u in c.get("/api/users", headers=h).get_json()} == {env.b.org_id}
    assert [o["id"] for o in c.get("/api/organisations", headers=h).get_json()] == [env.b.org_id]
    # Hanging B's objects under A's parents, or A's logger on B's position, is 404 too.
    assert c.post("/api/systems", headers=h, json={"site_id": ids["site_id"], "name": "x"}).status_code == 404
    assert c.post("/api/strings", headers=h, json={"system_id": ids["system_id"], "name": "x",
                                                    "blocks": 1}).status_code == 404
    assert c.post("/api/tests", headers=h, json={"string_id": ids["string_id"], "load": "5A"}).status_code == 404
    r = c.post(f"/api/logfiles?test_id={ids['test_id']}", headers=h, data=logfiles[0], content_type=OCTET)
    assert r.status_code == 404
    # The same bytes uploaded by B are B's own logfile (the blob is shared, the row is not).
    r = c.post("/api/logfiles", headers=h, data=logfiles[0], content_type=OCTET)
    assert r.status_code == 201 and r.get_json()["created"] is True
    a_ids = {lf["id"] for lf in c.get("/api/logfiles", headers=env.a.headers("viewer")).get_json()}
    assert r.get_json()["id"] not in a_ids and r.get_json()["test_id"] is None
    assert c.get(f"/api/logfiles?sha256={r.get_json()['sha256']}", headers=h).get_json()[0]["id"] == r.get_json()["id"]
    site_b = c.post("/api/sites", headers=h, json={"name": "B"}).get_json()["id"]
    sys_b = c.post("/api/systems", headers=h, json={"site_id": site_b, "name": "x"}).get_json()["id"]
    str_b = c.post("/api/strings", headers=h, json={"system_id": sys_b, "name": "x", "blocks": 1}).get_json()["id"]
    pos_b = c.get(f"/api/strings/{str_b}/positions", headers=h).get_json()[0]["id"]
    assert c.patch(f"/api/positions/{pos_b}", headers=h, json={"logger_id": ids["logger_id"]}).status_code == 404
    assert c.put(f"/api/logfiles/{r.get_json()['id']}/test", headers=h,
                 json={"test_id": ids["test_id"]}).status_code == 404


def test_query_layer_filters_unfiltered_selects(world: tuple[ApiEnv, dict[str, int]]) -> None:
    """A query that forgets ``org_id`` still only sees the session's organisation."""
    from sqlalchemy import func, select

    from smartlogger.api.db import database
    from smartlogger.api.models import Logfile, Site

    env, ids = world
    db = database(env.app)
    assert db.factory is not None
    with db.factory() as s:
        s.info["org_id"] = env.b.org_id
        assert ids["site_id"] not in {site.id for site in s.scalars(select(Site))}
        assert s.scalar(select(Logfile).where(Logfile.id == ids["logfile_id"])) is None
        assert s.scalar(select(func.count()).select_from(Logfile)) == s.scalar(
            select(func.count()).select_from(Logfile).where(Logfile.org_id == env.b.org_id))
    with db.system_session() as s:  # system code (jobs, CLI) sees everything
        assert s.scalar(select(Logfile).where(Logfile.id == ids["logfile_id"])) is not None


@pytest.mark.parametrize("kind", backends())
def test_customer_viewer_sees_only_that_customers_batteries(kind: str, tmp_path: Path,
                                                           logfiles: list[bytes]) -> None:
    with api_env(kind, tmp_path) as env:
        c, tech = env.client, env.a.headers("technician")
        ids: dict[str, dict[str, int]] = {}
        for customer in ("Bank", "Hospital"):
            site = c.post("/api/sites", headers=tech, json={"name": f"{customer} DC", "customer": customer}).get_json()
            system = c.post("/api/systems", headers=tech, json={"site_id": site["id"], "name": "UPS"}).get_json()
            string = c.post("/api/strings", headers=tech, json={"system_id": system["id"], "name": "S",
                                                                 "blocks": 1}).get_json()
            test = c.post("/api/tests", headers=tech, json={"string_id": string["id"], "load": "50A"}).get_json()
            data = logfiles[0] if customer == "Bank" else logfiles[1]
            lf = c.post(f"/api/logfiles?test_id={test['id']}", headers=tech, data=data, content_type=OCTET).get_json()
            ids[customer] = {"site_id": site["id"], "system_id": system["id"], "string_id": string["id"],
                             "test_id": test["id"], "logfile_id": lf["id"], "logger_id": lf["logger_id"]}
        env.wait_jobs()
        admin = env.a.headers("admin")
        bad = c.post("/api/users", headers=admin, json={"email": "x@bank.example", "role": "technician",
                                                         "customer": "Bank"})
        assert bad.status_code == 422 and bad.get_json()["error"]["field"] == "customer"
        user = c.post("/api/users", headers=admin, json={"email": "it@bank.example", "role": "viewer",
                                                          "customer": "Bank"}).get_json()
        token = c.post("/api/tokens", headers=admin, json={"user_id": user["id"]}).get_json()["token"]
        h = {"Authorization": f"Bearer {token}"}
        mine, theirs = ids["Bank"], ids["Hospital"]
        assert [s["id"] for s in c.get("/api/sites", headers=h).get_json()] == [mine["site_id"]]
        assert [t["id"] for t in c.get("/api/tests", headers=h).get_json()] == [mine["test_id"]]
        assert [lf["id"] for lf in c.get("/api/logfiles", headers=h).get_json()] == [mine["logfile_id"]]
        assert [lg["id"] for lg in c.get("/api/loggers", headers=h).get_json()] == [mine["logger_id"]]
        for path in ("/api/sites/{site_id}", "/api/systems/{system_id}", "/api/strings/{string_id}",
                     "/api/strings/{string_id}/positions", "/api/tests/{test_id}", "/api/tests/{test_id}/results",
                     "/api/tests/{test_id}/logfiles", "/api/logfiles/{logfile_id}",
                     "/api/logfiles/{logfile_id}/content", "/api/logfiles/{logfile_id}/receipt",
                     "/api/logfiles/{logfile_id}/series",
                     "/api/loggers/{logger_id}", "/api/tests/{test_id}/report"):
            assert c.get(path.format(**mine), headers=h).status_code == 200, path
            r = c.get(path.format(**theirs), headers=h)
            assert r.status_code == 404, (path, r.get_json())
        assert c.post(f"/api/tests/{theirs['test_id']}/report", headers=h).status_code == 404
        # The service company's own viewer (no customer) still sees both.
        assert len(c.get("/api/sites", headers=env.a.headers("viewer")).get_json()) == 2
