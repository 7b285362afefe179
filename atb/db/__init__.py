"""Persistence: SQLAlchemy models, the database node, migrations and the event journal."""
