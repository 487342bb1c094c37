"""Usage's operations: recording (`recording.py`: events counted exactly once, counters,
seats, holds), reading back (`history.py`: events, counters, usage per month, day and
property value), the months of lines made ahead (`partitions.py`, PostgreSQL), and events
forgotten past their retention (`retention.py`)."""

from billing_kernel.usage.service.history import UsageReader
from billing_kernel.usage.service.partitions import PartitionService
from billing_kernel.usage.service.recording import UsageService, count_outcomes
from billing_kernel.usage.service.retention import RetentionService

__all__ = [
    "PartitionService",
    "RetentionService",
    "UsageReader",
    "UsageService",
    "count_outcomes",
]
