"""smartlogger.export (see docs/ARCHITECTURE.md)."""
