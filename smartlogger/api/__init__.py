"""smartlogger.api (see docs/ARCHITECTURE.md)."""
