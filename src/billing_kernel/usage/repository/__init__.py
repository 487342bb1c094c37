"""The usage tables, in SQL: recording (`recording.py`: events, lines, counters, over the
statements of `event_sql.py` and `counter_sql.py`, each built once per dialect) and reading
back (`history.py`); the months of lines (`partitions.py`, PostgreSQL) and forgetting them
past their retention (`retention.py`). Used by usage/service/ only."""

from billing_kernel.usage.repository.history import UsageHistory
from billing_kernel.usage.repository.recording import UsageRepository, Written

__all__ = ["UsageHistory", "UsageRepository", "Written"]
