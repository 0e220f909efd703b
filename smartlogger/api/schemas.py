"""Marshmallow 4 schemas of every API input and output (also the OpenAPI components).

Owns the JSON shapes and input validation (lengths, ranges, enums). Inputs are
``*InSchema`` / ``*PatchSchema``; outputs ``*Schema``. Unknown input fields are
rejected (marshmallow's default ``RAISE``), so a typo in a field name is a 422
naming it rather than silently ignored. Times are ISO 8601 UTC.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields as f
from marshmallow import validate as v

from smartlogger.api.models import ROLES

_NAME = v.Length(min=1, max=200)
#: Row ids are 32-bit positive integers in every database we support.
MAX_ID = 2**31 - 1


def Id(**kwargs: Any) -> f.Integer:
    """An id field: 1..2**31-1 (larger values are a 422, never a database overflow)."""
    return f.Integer(validate=v.Range(1, MAX_ID), **kwargs)


class PageArgs(ma.Schema):
    limit = f.Integer(load_default=100, validate=v.Range(1, 1000))
    offset = f.Integer(load_default=0, validate=v.Range(0, 2**31 - 1))


# ----------------------------------------------------------------------------- organisations & users


class OrganisationSchema(ma.Schema):
    id = f.Integer(dump_only=True)
    name = f.String(required=True, validate=_NAME)
    created_at = f.DateTime(dump_only=True)


class OrganisationPatchSchema(ma.Schema):
    name = f.String(required=True, validate=_NAME)


class UserSchema(ma.Schema):
    id = f.Integer(dump_only=True)
    org_id = f.Integer(dump_only=True)
    email = f.Email(required=True, validate=v.Length(max=320))
    name = f.String(load_default="", validate=v.Length(max=200))
    role = f.String(required=True, validate=v.OneOf(ROLES))
    customer = f.String(load_default=None, allow_none=True, validate=v.Length(min=1, max=200),
                        metadata={"description": "viewers only: limit them to the sites of this customer"})
    active = f.Boolean(dump_only=True)
    created_at = f.DateTime(dump_only=True)


class UserPatchSchema(ma.Schema):
    name = f.String(validate=v.Length(max=200))
    role = f.String(validate=v.OneOf(ROLES))
    customer = f.String(allow_none=True, validate=v.Length(min=1, max=200))
    active = f.Boolean()


class TokenInSchema(ma.Schema):
    user_id = Id(metadata={"description": "default: yourself (admins may issue for others)"})
    days = f.Integer(load_default=90, validate=v.Range(1, 3650))
    label = f.String(load_default="", validate=v.Length(max=200))


class TokenSchema(ma.Schema):
    id = f.Integer(dump_only=True)
    user_id = f.Integer(dump_only=True)
    prefix = f.String(dump_only=True, metadata={"description": "first 8 characters, to recognise it"})
    label = f.String(dump_only=True)
    created_at = f.DateTime(dump_only=True)
    expires_at = f.DateTime(dump_only=True)
    revoked_at = f.DateTime(dump_only=True, allow_none=True)


class NewTokenSchema(TokenSchema):
    token = f.String(dump_only=True, metadata={"description": "the bearer token; shown only once"})


class MeSchema(ma.Schema):
    user = f.Nested(UserSchema)
    organisation = f.Nested(OrganisationSchema)


# ----------------------------------------------------------------------------- sites -> strings


class SiteSchema(ma.Schema):
    id = f.Integer(dump_only=True)
    name = f.String(required=True, validate=_NAME)
    customer = f.String(load_default="", validate=v.Length(max=200),
                        metadata={"description": "the battery owner; their viewers see only their sites"})
    address = f.String(load_default="", validate=v.Length(max=2000))
    created_at = f.DateTime(dump_only=True)


class SitePatchSchema(ma.Schema):
    name = f.String(validate=_NAME)
    customer = f.String(validate=v.Length(max=200))
    address = f.String(validate=v.Length(max=2000))


class SystemSchema(ma.Schema):
    id = f.Integer(dump_only=True)
    site_id = Id(required=True)
    name = f.String(required=True, validate=_NAME)
    kind = f.String(load_default="UPS", validate=v.Length(min=1, max=50))
    created_at = f.DateTime(dump_only=True)


class StringSchema(ma.Schema):
    id = f.Integer(dump_only=True)
    system_id = Id(required=True)
    name = f.String(required=True, validate=_NAME)
    blocks = f.Integer(required=True, validate=v.Range(1, 10000),
                       metadata={"description": "number of series blocks (positions are created)"})
    block_voltage_v = f.Float(load_default=12.0, validate=v.Range(1.0, 48.0))
    chemistry = f.String(load_default="vrla", validate=v.OneOf(["vrla", "flooded", "nicd", "lifepo4"]))
    rated_ah = f.Float(load_default=100.0, validate=v.Range(0.1, 100000.0))
    created_at = f.DateTime(dump_only=True)


class PositionSchema(ma.Schema):
    id = f.Integer(dump_only=True)
    string_id = f.Integer(dump_only=True)
    position = f.Integer(dump_only=True)
    label = f.String(validate=v.Length(max=50))
    logger_id = Id(allow_none=True)


class PositionPatchSchema(ma.Schema):
    label = f.String(validate=v.Length(max=50))
    logger_id = Id(allow_none=True)


# ----------------------------------------------------------------------------- loggers


class LoggerSchema(ma.Schema):
    id = f.Integer(dump_only=True)
    serial = f.String(required=True, validate=v.Regexp(r"^[A-Z0-9][A-Z0-9-]{2,31}$"))
    generation = f.Integer(required=True, validate=v.OneOf([1, 2]))
    firmware = f.String(load_default="", validate=v.Length(max=32))
    simulated = f.Boolean(load_default=None, allow_none=True, metadata={
        "description": "registered as a SIMULATED/REPLAYED logger (default: a serial starting SIM-); files of "
                       "the other kind are refused (409 provenance_conflict)"})
    created_at = f.DateTime(dump_only=True)
    device_key = f.String(dump_only=True, allow_none=True, metadata={
        "description": "fingerprint of the first certified device key the server saw for this logger"})
    max_pull_counter = f.Integer(dump_only=True, allow_none=True, metadata={
        "description": "highest signed pull counter seen under that key"})
    custody = f.List(f.Dict(), dump_only=True, metadata={
        "description": "custody flags: {kind: possible_clone | possible_replay, logfile_id, sha256, at, message}"})


class LoggerKindSchema(ma.Schema):
    simulated = f.Boolean(required=True, metadata={
        "description": "register the logger as SIMULATED/REPLAYED (true) or hardware (false)"})


# ----------------------------------------------------------------------------- tests


class TestInSchema(ma.Schema):
    __test__ = False
    string_id = Id(allow_none=True, load_default=None)
    name = f.String(load_default="", validate=v.Length(max=200))
    client_key = f.String(load_default=None, allow_none=True, validate=v.Length(min=1, max=100),
                          metadata={"description": "field tool's id; the same key returns the same test"})
    # ``load_``: a field named ``load`` would shadow ``Schema.load`` for type checkers.
    load_ = f.String(required=True, data_key="load", attribute="load", validate=v.Length(min=1, max=100),
                    metadata={"description": "as the CLI takes it: '50A' or '12kW'"})
    rated_time = f.String(load_default=None, allow_none=True, validate=v.Length(min=1, max=50),
                          metadata={"description": "rated time at this load, e.g. '3h'"})
    end_v_per_cell = f.Float(load_default=None, allow_none=True, validate=v.Range(0.5, 4.0))
    end_voltage = f.String(load_default=None, allow_none=True, validate=v.Length(min=1, max=50),
                           metadata={"description": "end voltage per cell, block or string as the CLI takes it: "
                                                    "'1.75V/cell', '10.5V/block', '252V/string' (instead of "
                                                    "end_v_per_cell)"})
    reference_temperature_c = f.Float(load_default=25.0, validate=v.Range(-40.0, 60.0))
    blocks = f.Integer(load_default=None, allow_none=True, validate=v.Range(1, 10000),
                       metadata={"description": "logfiles expected; default: the string's block count"})
    datasheet_csv = f.String(load_default=None, allow_none=True, validate=v.Length(max=200_000))
    metadata = f.Dict(keys=f.String(validate=v.Length(max=100)), values=f.String(validate=v.Length(max=2000)),
                      load_default=dict)


class TestPatchSchema(TestInSchema):
    """Same fields as ``TestInSchema``, all optional (used with ``partial=True``)."""

    __test__ = False


class TestSchema(ma.Schema):
    __test__ = False
    id = f.Integer()
    string_id = Id(allow_none=True)
    name = f.String()
    client_key = f.String(allow_none=True)
    load_ = f.String(data_key="load", attribute="load")
    rated_time = f.String(allow_none=True)
    end_v_per_cell = f.Float(allow_none=True)
    end_voltage = f.String(allow_none=True)
    reference_temperature_c = f.Float()
    blocks = f.Integer()
    metadata = f.Dict(attribute="meta")
    logfiles = f.Integer(metadata={"description": "loggers with a logfile attached so far (a logger pulled twice counts once)"})
    status = f.String(metadata={"description": "collecting | complete | analysing | analysed | failed"})
    created_at = f.DateTime()


# ----------------------------------------------------------------------------- logfiles


class LogfileSchema(ma.Schema):
    id = f.Integer()
    sha256 = f.String()
    size = f.Integer(metadata={"description": "bytes"})
    serial = f.String()
    logger_id = f.Integer()
    test_id = Id(allow_none=True)
    block_position = f.Integer()
    format_version = f.String()
    verification_status = f.String(metadata={
        "description": "verified (hardware evidence) | simulated (an intact file of a SIMULATED/REPLAYED "
                       "logger: never evidence) | unsigned | tampered; unreadable once the check job "
                       "found sample payloads that do not decode (docs/EVIDENCE.md)"})
    authority = f.String(allow_none=True, metadata={
        "description": "who certified the logger: production (hardware root) | test (simulated/replayed); null unsigned"})
    markers = f.List(f.String(), metadata={"description": "SIMULATED / REPLAYED, as the file claims"})
    device_key = f.String(allow_none=True, metadata={"description": "fingerprint of the certified device key"})
    pull_counter = f.Integer(allow_none=True, metadata={"description": "the file's latest signed pull counter"})
    custody = f.List(f.Dict(), metadata={
        "description": "what the server noticed on upload: {kind: possible_clone | possible_replay, message}"})
    uploaded_by = f.Integer(allow_none=True)
    uploaded_at = f.DateTime()
    created = f.Boolean(metadata={"description": "false when the same bytes were already here"})


class UploadArgs(ma.Schema):
    test_id = Id(load_default=None, allow_none=True,
                        metadata={"description": "attach the logfile to this test"})


class AttachSchema(ma.Schema):
    test_id = Id(required=True, allow_none=True)


class ReceiptSchema(ma.Schema):
    receipt = f.Dict(metadata={"description": "the signed body (canonical JSON of this object)"})
    signature = f.String(metadata={"description": "Ed25519 signature, hex"})
    algorithm = f.String()
    public_key_pem = f.String()


class ServerKeySchema(ma.Schema):
    algorithm = f.String()
    public_key_pem = f.String()
    fingerprint = f.String(metadata={"description": "SHA-256 of the raw public key, hex"})


class VerificationSchema(ma.Schema):
    logfile_id = f.Integer()
    sha256 = f.String()
    report = f.Dict(metadata={"description": "logfile.verify.VerifyReport as JSON"})


MAX_SERIES_POINTS = 20_000


class SeriesArgs(ma.Schema):
    from_ms = f.Integer(load_default=None, allow_none=True, validate=v.Range(-(2**62), 2**62),
                        metadata={"description": "window start, device ms (default: the first sample)"})
    to_ms = f.Integer(load_default=None, allow_none=True, validate=v.Range(-(2**62), 2**62),
                      metadata={"description": "window end, device ms, inclusive (default: the last sample)"})
    max_points = f.Integer(load_default=2000, validate=v.Range(10, MAX_SERIES_POINTS),
                           metadata={"description": "at most this many points per quantity"})

    @ma.validates_schema
    def _window(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("from_ms") is not None and data.get("to_ms") is not None and data["to_ms"] < data["from_ms"]:
            raise ma.ValidationError("to_ms is before from_ms", field_name="to_ms")


class SeriesConfigSchema(ma.Schema):
    t_ms = f.Integer(metadata={"description": "device time the configuration was written"})
    v_low_alarm_mv = f.Integer()
    v_low_warn_mv = f.Integer()
    v_high_warn_mv = f.Integer()
    v_high_alarm_mv = f.Integer()
    t_low_alarm_dc = f.Integer()
    t_low_warn_dc = f.Integer()
    t_high_warn_dc = f.Integer()
    t_high_alarm_dc = f.Integer()


class SeriesSchema(ma.Schema):
    logfile_id = f.Integer()
    serial = f.String()
    from_ms = f.Integer(allow_none=True)
    to_ms = f.Integer(allow_none=True)
    samples = f.Integer(metadata={"description": "samples in the window, before any reduction"})
    reduced = f.Boolean(metadata={"description": "min and max per time bucket instead of every sample"})
    t_ms = f.List(f.Integer(), metadata={"description": "device ms of each point (in time order)"})
    mv = f.List(f.Integer(), metadata={"description": "voltage, mV, at each point"})
    dc = f.List(f.Integer(), metadata={"description": "temperature, 0.1 degC, at each point"})
    configs = f.List(f.Nested(SeriesConfigSchema),
                     metadata={"description": "every configuration in the log (thresholds), oldest first"})


# ----------------------------------------------------------------------------- results, reports, jobs


class JobSchema(ma.Schema):
    id = f.Integer()
    kind = f.String(metadata={"description": "analyse | report | check (the deferred sample decode of a logfile)"})
    test_id = Id(allow_none=True)
    logfile_id = Id(allow_none=True, metadata={"description": "the logfile a check job decodes"})
    status = f.String(metadata={"description": "queued | running | finished | failed"})
    error = f.String()
    attempts = f.Integer()
    created_at = f.DateTime()
    started_at = f.DateTime(allow_none=True)
    finished_at = f.DateTime(allow_none=True)


class ResultSchema(ma.Schema):
    test_id = f.Integer()
    computed_at = f.DateTime()
    inputs_sha256 = f.String()
    result = f.Dict(metadata={"description": "analysis TestResult JSON (smartlogger test schema)"})


class ReportSchema(ma.Schema):
    id = f.Integer(allow_none=True)
    test_id = f.Integer()
    status = f.String(metadata={"description": "queued | running | ready | failed"})
    job = f.Nested(JobSchema, allow_none=True)
    size = f.Integer(allow_none=True)
    sha256 = f.String(allow_none=True)
    download = f.String(allow_none=True, metadata={"description": "URL of the workbook when ready"})


class AuditSchema(ma.Schema):
    id = f.Integer()
    at = f.DateTime()
    user_id = Id(allow_none=True)
    action = f.String()
    object_type = f.String()
    object_id = f.Integer(allow_none=True)
    sha256 = f.String(allow_none=True)
    remote_addr = f.String()
    detail = f.String()


class StoreStateSchema(ma.Schema):
    status = f.String(metadata={"description": "ok | unavailable | misconfigured | full (details in the "
                                               "server log)"})


class HealthSchema(ma.Schema):
    status = f.String(metadata={"description": "ok | degraded"})
    version = f.String()
    store = f.Nested(StoreStateSchema)


# ----------------------------------------------------------------------------- live watch

_val = v  # a live block has a field named ``v``

#: Most blocks one live snapshot may carry (a watcher of a longer string sends its lowest blocks).
MAX_LIVE_BLOCKS = 1000
#: Positions in the block lists (warning, alarm, stale, missing): as many as a string may have.
MAX_LIVE_POSITIONS = 10000
_MS = _val.Range(0, 2**53)  # epoch or phone milliseconds (exact in a JSON number)
_POS = _val.Range(1, 65535)  # an advert's 16-bit block position
_VOLTS = _val.Range(0.0, 100_000.0)  # a block (<= 65.535 V in an advert) or a string
_SECONDS = _val.Range(0.0, 1e9)


def _positions() -> f.List[Any]:
    return f.List(f.Integer(validate=_POS), load_default=list, validate=_val.Length(max=MAX_LIVE_POSITIONS))


class LiveBlockSchema(ma.Schema):
    position = f.Integer(required=True, validate=_POS)
    v = f.Float(required=True, validate=_val.Range(0.0, 100.0), metadata={"description": "V"})
    c = f.Float(load_default=None, allow_none=True, validate=_val.Range(-3300.0, 3300.0),
                metadata={"description": "degC"})
    state = f.String(required=True, validate=_val.OneOf(["float", "discharge", "alarm"]))
    warning = f.Boolean(load_default=False)
    stale = f.Boolean(load_default=False)
    min_v = f.Float(load_default=None, allow_none=True, validate=_val.Range(0.0, 100.0))
    age_s = f.Float(load_default=None, allow_none=True, validate=_val.Range(-1e9, 1e9),
                    metadata={"description": "age of the value on the watcher's clock, s"})
    to_end_s = f.Float(load_default=None, allow_none=True, validate=_SECONDS,
                       metadata={"description": "predicted time to the block's end voltage, s"})


class LiveAlarmSchema(ma.Schema):
    position = f.Integer(required=True, validate=_POS)
    v = f.Float(required=True, validate=_val.Range(0.0, 100.0))
    alarm_v = f.Float(required=True, validate=_val.Range(0.0, 100.0))
    sample_ms = f.Integer(required=True, validate=_MS)
    fired_ms = f.Integer(required=True, validate=_MS)
    elapsed_s = f.Float(load_default=None, allow_none=True, validate=_SECONDS)


class LiveInSchema(ma.Schema):
    """One live snapshot of a watch (``smartlogger test watch --post``; docs/LIVE.md)."""

    now_ms = f.Integer(required=True, validate=_MS, metadata={"description": "the watcher's clock, epoch ms"})
    started_ms = f.Integer(load_default=None, allow_none=True, validate=_MS,
                           metadata={"description": "when the watch started (watcher's clock)"})
    string_v = f.Float(load_default=None, allow_none=True, validate=_VOLTS)
    blocks_expected = f.Integer(load_default=None, allow_none=True, validate=_val.Range(1, MAX_LIVE_POSITIONS))
    blocks_seen = f.Integer(load_default=0, validate=_val.Range(0, MAX_LIVE_POSITIONS))
    discharge_start_ms = f.Integer(load_default=None, allow_none=True, validate=_MS)
    elapsed_s = f.Float(load_default=None, allow_none=True, validate=_SECONDS)
    delivered_ah = f.Float(load_default=None, allow_none=True, validate=_val.Range(0.0, 1e7))
    predicted_end_ms = f.Integer(load_default=None, allow_none=True, validate=_MS)
    predicted_first_block = f.Integer(load_default=None, allow_none=True, validate=_POS)
    warning_blocks = _positions()
    alarm_blocks = _positions()
    stale = _positions()
    missing = _positions()
    alarm = f.Nested(LiveAlarmSchema, load_default=None, allow_none=True)
    blocks = f.List(f.Nested(LiveBlockSchema), load_default=list, validate=_val.Length(max=MAX_LIVE_BLOCKS),
                    metadata={"description": f"at most {MAX_LIVE_BLOCKS} (a longer string: its lowest blocks)"})
    accepted = f.Integer(load_default=0, validate=_val.Range(0, 2**53))
    rejected = f.Dict(keys=f.String(validate=_val.Length(min=1, max=32)), values=f.Integer(validate=_val.Range(0, 2**53)),
                      load_default=dict, validate=_val.Length(max=16),
                      metadata={"description": "rejected adverts by reason"})


class LiveSchema(ma.Schema):
    test_id = f.Integer()
    received_at = f.DateTime(allow_none=True, metadata={"description": "server time of the newest post"})
    age_s = f.Float(allow_none=True, metadata={"description": "seconds since received_at"})
    snapshot = f.Nested(LiveInSchema, allow_none=True, metadata={"description": "null: nothing posted yet"})
