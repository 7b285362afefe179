"""Alembic environment shipped inside the package (see atb/db/migrate.py).

A package (not a bare folder) so setuptools ships env.py and versions/*.py as package data.
"""
