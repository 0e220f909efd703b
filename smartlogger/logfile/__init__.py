"""smartlogger.logfile (see docs/ARCHITECTURE.md)."""
