"""smartlogger.analysis (see docs/ARCHITECTURE.md)."""
