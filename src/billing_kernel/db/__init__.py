"""The database, shared by every capability: `tables` (the whole schema in one place),
`types` (exact money and UTC time on SQLite and PostgreSQL), `database` (engine,
transactions, the dialects' differences, momentary failures as DatabaseUnavailable),
`unit_of_work` (one transaction that several services write through), `migrate` and
`migrations/` (Alembic). SQL itself is written only in the capabilities' `repository.py`.
"""
