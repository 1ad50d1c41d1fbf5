"""Imports every domain's models so the metadata (and Alembic autogenerate) sees all tables.

Each domain package adds its ``models`` module here.
"""
