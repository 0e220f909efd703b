"""smartlogger.device (see docs/ARCHITECTURE.md)."""
