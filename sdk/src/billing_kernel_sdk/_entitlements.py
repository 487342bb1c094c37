"""An org's entitlements, its features and limits, as the kernel answers them
(`GET /api/v1/billing/org/entitlements`), kept for the `cache_seconds` it says."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from billing_kernel_sdk._errors import TransportError
from billing_kernel_sdk.fields import check_id
from billing_kernel_sdk.transport import ENTITLEMENTS_PATH, Request

FeatureValue = bool | int | str
MAX_ORGS_KEPT = 10_000
"""The most orgs' entitlements a tracker keeps; the least recently read go first."""


@dataclass(frozen=True, slots=True)
class Entitlements:
    """What an org may use, as its plan and its own terms said when read."""

    org_id: str
    plan_slug: str
    plan_version: int
    features: Mapping[str, FeatureValue]
    """Every feature it has, by key; one not here is not granted."""
    limits: Mapping[str, int | None]
    """Each metric's limit (None: unlimited); whether a given use fits is `check()`'s."""
    cache_seconds: int
    """How long the kernel said these may be kept."""

    def has_feature(self, key: str) -> bool:
        """Whether the org has the feature: granted with any value but `false`."""
        value = self.features.get(key)
        return value is not None and value is not False

    def feature_value(self, key: str, default: Any = None) -> Any:
        """The feature's value (`5`, `"priority"`, `True`), or `default` when not granted."""
        return self.features.get(key, default)


def entitlements_call(org_id: str) -> Request:
    return Request(ENTITLEMENTS_PATH, {}, check_id(org_id, "org_id"), method="GET")


def read_entitlements(answer: Mapping[str, Any]) -> Entitlements:
    """The kernel's answer as Entitlements; TransportError (retryable) if it is not one."""
    try:
        return Entitlements(
            org_id=str(answer["org_id"]),
            plan_slug=str(answer["plan_slug"]),
            plan_version=int(answer["plan_version"]),
            features=dict(answer["features"]),
            limits={
                metric: terms["included_quantity"] for metric, terms in answer["limits"].items()
            },
            cache_seconds=int(answer["cache_seconds"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TransportError(f"unreadable entitlements: {exc!r}", retryable=True) from None


class EntitlementsCache:
    """Each org's last entitlements and until when they are fresh (monotonic seconds)."""

    def __init__(self) -> None:
        self._held: OrderedDict[str, tuple[float, Entitlements]] = OrderedDict()
        self._lock = threading.Lock()

    def fresh(self, org_id: str, now: float) -> Entitlements | None:
        """The org's entitlements if read less than their `cache_seconds` ago."""
        with self._lock:
            held = self._held.get(org_id)
            if held is None or now >= held[0]:
                return None
            self._held.move_to_end(org_id)
            return held[1]

    def last(self, org_id: str) -> Entitlements | None:
        """The org's last entitlements read, however long ago."""
        with self._lock:
            held = self._held.get(org_id)
            return None if held is None else held[1]

    def keep(self, found: Entitlements, now: float) -> None:
        with self._lock:
            self._held[found.org_id] = (now + found.cache_seconds, found)
            self._held.move_to_end(found.org_id)
            while len(self._held) > MAX_ORGS_KEPT:
                self._held.popitem(last=False)
