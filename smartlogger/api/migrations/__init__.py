"""Alembic migrations of the API database (see smartlogger.api.migrate); a package so wheels ship it."""
