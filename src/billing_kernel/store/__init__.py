"""Persistence: the only package that writes SQL.

`tables` declares the schema (created by the Alembic migrations in `migrations/`), `database`
owns the engine and transactions, and one repository module per aggregate holds every query.
Each query on org data takes the org id and filters by it in the repository, never in a caller.
"""
