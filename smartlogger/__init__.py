"""smartlogger: battery block loggers from firmware model to report.

The package is split into parts with one-way imports (see docs/ARCHITECTURE.md):
``model`` and ``errors`` are shared value types; ``device`` is the logger
firmware model; ``protocol`` the wire formats both ends share; ``logfile`` the
portable log format; ``field`` the technician's tool; ``analysis`` the
capacity test; ``export`` the workbooks; ``api`` the sync server.
"""

from smartlogger.errors import SmartLoggerError

__version__ = "0.1.0"

__all__ = ["SmartLoggerError", "__version__"]
