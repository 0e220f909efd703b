"""A bounded schemathesis run against the API's own OpenAPI document: zero 5xx, responses as documented."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from smartlogger.testing.api import api_env, simulated_logfiles

EXAMPLES_PER_OPERATION = 10  # ~45 operations: the run stays around 10-20 s on this machine
CHECKS = (not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance)


@pytest.mark.slow
def test_openapi_fuzz_has_no_server_errors(tmp_path: Path) -> None:
    failures: dict[tuple[str, str, str], str] = {}
    calls = 0
    with api_env("sqlite", tmp_path) as env:
        c, h = env.client, env.a.headers("admin")
        # Something to find at small ids, so successful responses are checked too.
        site = c.post("/api/sites", headers=h, json={"name": "S"}).get_json()["id"]
        system = c.post("/api/systems", headers=h, json={"site_id": site, "name": "U"}).get_json()["id"]
        string = c.post("/api/strings", headers=h, json={"system_id": system, "name": "1", "blocks": 2}).get_json()
        test = c.post("/api/tests", headers=h, json={"string_id": string["id"], "load": "50A"}).get_json()["id"]
        for data in simulated_logfiles(2):
            c.post(f"/api/logfiles?test_id={test}", headers=h, data=data, content_type="application/octet-stream")
        env.wait_jobs()
        schema = schemathesis.openapi.from_wsgi("/api/openapi.json", env.app)
        operations = [res.ok() for res in schema.get_all_operations()]
        assert len(operations) >= 40

        for op in operations:
            @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
            @given(case=op.as_strategy())
            def run(case: schemathesis.Case) -> None:
                nonlocal calls
                calls += 1
                resp = case.call(headers=h)
                for check in CHECKS:
                    try:
                        case.validate_response(resp, checks=[check])
                    except Exception as err:  # schemathesis raises a FailureGroup per failing check
                        failures.setdefault((case.method, case.path, check.__name__),
                                            f"{resp.status_code}: {str(err).splitlines()[0]}")

            run()
        env.wait_jobs()
    assert calls >= 5 * len(operations)
    assert failures == {}

#: What a stateful scenario may create; emptied before each one, so that a scenario replayed by
#: Hypothesis meets the same state (without it, schemathesis's stateful phase drew from links
#: into objects earlier scenarios had left, and Hypothesis stopped with FlakyStrategyDefinition).
SCENARIO_STATE = ("audit_events", "jobs", "reports", "results", "logfiles", "tests", "loggers", "block_positions",
                  "battery_strings", "battery_systems", "sites")


@pytest.mark.slow
def test_stateful_workflows_have_no_server_errors(tmp_path: Path) -> None:
    """Schemathesis's stateful phase: sequences of calls that feed one answer's ids into the next
    request (links inferred from the OpenAPI document: create a site, a system, a string, a test,
    upload, attach, read, delete...), with the same checks: zero 5xx, answers as documented.
    Users and tokens are left to the test above (a scenario that revoked the caller's own token
    would turn every later call into a 401)."""
    from sqlalchemy import text

    from smartlogger.api.db import database

    failures: dict[tuple[str, str, str], str] = {}
    codes: dict[int, int] = {}
    with api_env("sqlite", tmp_path) as env:
        h = env.a.headers("admin")
        schema = schemathesis.openapi.from_wsgi("/api/openapi.json", env.app).exclude(path_regex="^/api/(tokens|users)")
        workflow = schema.as_state_machine()
        assert len(workflow.bundles) >= 20  # links between operations were found

        class Workflow(workflow):  # type: ignore[misc,valid-type]
            def setup(self) -> None:
                env.wait_jobs()
                with database(env.app).system_session() as s:
                    for table in SCENARIO_STATE:
                        s.execute(text(f"DELETE FROM {table}"))

            def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, object]:
                return {"headers": h}

            def validate_response(self, response: object, case: schemathesis.Case,
                                  additional_checks: object = None, **kwargs: object) -> None:
                status = response.status_code  # type: ignore[attr-defined]
                codes[status] = codes.get(status, 0) + 1
                for check in CHECKS:
                    try:
                        case.validate_response(response, checks=[check])
                    except Exception as err:  # a FailureGroup per failing check
                        failures.setdefault((case.method, case.path, check.__name__),
                                            f"{status}: {str(err).splitlines()[0]}")

        # derandomize: the scenarios are drawn from a fixed seed, so a run here and a run in CI make the
        # same calls (with random draws, one CI run made only 2 objects in 218 calls and failed the
        # "objects were made" check below).
        Workflow.run(settings=settings(max_examples=50, stateful_step_count=8, deadline=None, database=None, derandomize=True,
                                       suppress_health_check=list(HealthCheck)))
        env.wait_jobs()
    assert sum(codes.values()) >= 100 and codes.get(201, 0) >= 5, codes  # objects were made and used
    assert failures == {}, failures
