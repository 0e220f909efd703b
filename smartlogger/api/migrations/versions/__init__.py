"""Alembic revisions, oldest first: 0001 initial schema, 0002 customer viewers."""
