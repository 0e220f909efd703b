"""smartlogger.field (see docs/ARCHITECTURE.md)."""
