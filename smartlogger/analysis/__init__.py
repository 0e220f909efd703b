"""smartlogger.analysis: capacity-test analysis (see docs/CAPACITY.md).

Pure computation on decoded logs: clock alignment of the loggers, discharge
detection, exceedance classification, capacity by the IEEE 450/1188 methods,
SOH, ranking and trends, with a JSON-serialisable results object. Entry point:
``smartlogger.analysis.analyze.analyze_test``; loading from ``.slog`` files:
``smartlogger.analysis.loading``. Imports ``model`` and ``logfile`` only.
"""
