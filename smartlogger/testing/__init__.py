"""Test support shipped with the package: what the test suite, the benchmarks and
downstream users need to exercise smartlogger, kept apart from the product.

- ``api``: an app on a throw-away database (SQLite, or a fresh PostgreSQL schema) with
  seeded tenants, and real simulated logfiles of a small capacity test;
- ``logfile_examples``: deterministic example traces and logfiles (the spec example in
  docs/LOGFILE_FORMAT.md, the fuzzer's seeds);
- ``tamper``: every way of altering a logfile that ``verify`` must catch;
- ``synthetic``: capacity tests with exactly known truth (closed-form curve, drifting clocks);
- ``evidence_cases``: a capacity test as pulled logfiles (hardware loggers under a throwaway
  production root, or simulated) and every forged file the analysis and the server must
  withstand (forged simulated, tampered, relabelled, unsigned continuation, older pull, clone);
- ``realdata``: a real lead-acid discharge (public, not redistributed: read from a local copy),
  replayed and compared with an independent reference;
- ``powerloss``: the blackbox power-loss sweep harness (crash copies of the flash before
  every operation, remount, re-check the invariants).

The product never imports this package (checked by tests/test_architecture.py); it may
import any part of the product. Support that only the test suite needs stays in ``tests/``.
"""
