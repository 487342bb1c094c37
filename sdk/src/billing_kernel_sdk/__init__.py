"""The usage-tracking SDK: report usage from the product without ever slowing or failing it.

```python
from billing_kernel_sdk import UsageTracker

tracker = UsageTracker("http://billing.internal:8000", api_key, spool_dir="/var/lib/app/usage")
tracker.track("acme", "tokens", 1532)
tracker.track_llm_usage("acme", openai_response)
with tracker.run("acme", run_id=run.id):           # admitted, or QuotaExceeded
    ...
with tracker.guard("acme", "exports"):              # consumes 1, or QuotaExceeded
    ...
with tracker.reserve("acme", "tokens", 4_000) as r:  # held against the limit
    r.commit(llm_tokens(call_model()))
if tracker.has_feature("acme", "sso"):             # its entitlements, kept 60 s
    ...
```

See `UsageTracker` and `AsyncUsageTracker` for the guarantees; `TrackerStats` for what
`stats()` reports; transports are injectable (`transport=`) for tests and for embedding the
kernel in-process (`billing_kernel.embedded`).
"""

from billing_kernel_sdk._delivery import TrackerStats
from billing_kernel_sdk._entitlements import Entitlements
from billing_kernel_sdk._errors import SpoolBusyError, TrackerError, TransportError
from billing_kernel_sdk._integrations import llm_tokens
from billing_kernel_sdk._quota import (
    AsyncReservation,
    Decision,
    QuotaExceeded,
    Reservation,
    ReservationError,
    Upgrade,
)
from billing_kernel_sdk._tracker import AsyncUsageTracker, UsageTracker
from billing_kernel_sdk.transport import (
    AsyncHttpTransport,
    AsyncTransport,
    EventResult,
    HttpTransport,
    Transport,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncHttpTransport",
    "AsyncReservation",
    "AsyncTransport",
    "AsyncUsageTracker",
    "Decision",
    "Entitlements",
    "EventResult",
    "HttpTransport",
    "QuotaExceeded",
    "Reservation",
    "ReservationError",
    "SpoolBusyError",
    "TrackerError",
    "TrackerStats",
    "Transport",
    "TransportError",
    "Upgrade",
    "UsageTracker",
    "__version__",
    "llm_tokens",
]
