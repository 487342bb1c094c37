"""Events as the API answers them: exactly as every channel delivers them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from billing_kernel.events.rules import Event


class EventOut(BaseModel):
    """An event as every channel delivers it."""

    type: str = Field(examples=["usage.threshold_crossed"])
    id: str = Field(description="Stable: the same on every delivery and retry.")
    timestamp: str
    data: dict[str, Any]

    @classmethod
    def of(cls, event: Event) -> EventOut:
        return cls.model_validate(event.payload())
