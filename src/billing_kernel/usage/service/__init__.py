"""Usage's operations: recording (`recording.py`: events counted exactly once, counters,
seats, holds) and reading back (`history.py`: events, counters, usage per month, day and
property value)."""

from billing_kernel.usage.service.history import UsageReader
from billing_kernel.usage.service.recording import UsageService, count_outcomes

__all__ = ["UsageReader", "UsageService", "count_outcomes"]
