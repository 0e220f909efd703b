"""smartlogger.logfile: the portable, signed logfile and everything to read and check it.

Owns the record codec (``records``, ``samples``), the decoded logfile types
(``container``), the ``.slog`` container (``format``), generation-1 files (``gen1``), keys/certificates/pull signatures
(``evidence``), verification (``verify``) and tabular conversion (``convert``).
Depends on ``model`` only (plus numpy, cryptography, pyarrow). See
docs/LOGFILE_FORMAT.md and docs/EVIDENCE.md.
"""

from smartlogger.logfile.container import Logfile, LogfileMetadata, LogStream, RawRecord
from smartlogger.logfile.convert import (
    ClockObservation,
    clock_observations,
    config_history,
    convert,
    load_events,
    load_samples,
    to_dataframe,
    write_csv,
    write_parquet,
)
from smartlogger.logfile.evidence import (
    Authority,
    Certificate,
    DeviceCredentials,
    EvidenceError,
    PullAttestation,
    StreamState,
    default_trust,
    new_authority,
    new_nonce,
    production_root,
    provision_device,
    sign_pull,
    sign_store_pull,
    simulated_credentials,
    test_authority,
)
from smartlogger.logfile.format import (
    build_logfile,
    check_sample_heads,
    check_sample_payloads,
    pull_logfile,
    read_logfile,
    write_logfile,
)
from smartlogger.logfile.gen1 import gen1_logfile_from_store, write_gen1
from smartlogger.logfile.records import decode_record, decode_record_prefix, encode_record
from smartlogger.logfile.verify import EXIT_CODES, Problem, VerifyReport, verify_logfile

__all__ = [
    "EXIT_CODES",
    "Authority",
    "Certificate",
    "ClockObservation",
    "DeviceCredentials",
    "EvidenceError",
    "LogStream",
    "Logfile",
    "LogfileMetadata",
    "Problem",
    "PullAttestation",
    "RawRecord",
    "StreamState",
    "VerifyReport",
    "build_logfile",
    "check_sample_heads",
    "check_sample_payloads",
    "clock_observations",
    "config_history",
    "convert",
    "decode_record",
    "decode_record_prefix",
    "default_trust",
    "encode_record",
    "gen1_logfile_from_store",
    "load_events",
    "load_samples",
    "new_authority",
    "new_nonce",
    "production_root",
    "provision_device",
    "pull_logfile",
    "read_logfile",
    "sign_pull",
    "sign_store_pull",
    "simulated_credentials",
    "test_authority",
    "to_dataframe",
    "verify_logfile",
    "write_csv",
    "write_gen1",
    "write_logfile",
    "write_parquet",
]
