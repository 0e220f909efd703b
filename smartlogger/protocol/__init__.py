"""smartlogger.protocol (see docs/ARCHITECTURE.md)."""
