"""The API's blueprints, one per resource; ``create_app`` registers ``BLUEPRINTS`` in this order."""

from __future__ import annotations

from flask_smorest import Blueprint

from smartlogger.api.resources import (
    batteries,
    health,
    jobs,
    logfiles,
    loggers,
    organisations,
    tests,
    users,
)

BLUEPRINTS: tuple[Blueprint, ...] = (
    health.blp, organisations.blp, users.blp, batteries.sites, batteries.systems, batteries.strings,
    batteries.positions, loggers.blp, tests.blp, logfiles.blp, jobs.jobs, jobs.audit_blp, jobs.keys,
)
