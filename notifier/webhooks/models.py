"""Webhook endpoints and delivery states as stored: frozen values, parsed from Redis hashes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import orjson

__all__ = ["DeliveryState", "Endpoint", "EndpointSecret"]


@dataclass(frozen=True, slots=True)
class EndpointSecret:
    secret: str
    #: When a rotated-out secret stops signing (None: the current secret).
    expires: float | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One webhook endpoint as stored."""

    id: str
    url: str
    event_types: tuple[str, ...]
    description: str
    #: The API key that created it; it receives that key's events (None: the open API's).
    owner: str | None
    #: Created by an admin key: receives every key's events.
    all_owners: bool
    secrets: tuple[EndpointSecret, ...]
    created: float
    disabled: bool = False
    disabled_reason: str = ""
    failing_since: float | None = None

    def secrets_in_use(self, now: float) -> list[str]:
        """The secrets that sign now: the current one and any still in their grace period."""
        return [s.secret for s in self.secrets if s.expires is None or s.expires > now]

    def wants(self, event_type: str, owner: str | None) -> bool:
        """Whether an event of ``event_type`` created by ``owner`` goes to this endpoint."""
        if self.disabled:
            return False
        if self.event_types and event_type not in self.event_types:
            return False
        return self.all_owners or (owner is not None and owner == self.owner)

    @classmethod
    def from_hash(cls, data: Mapping[str, str]) -> Endpoint:
        failing = data.get("failing_since")
        return cls(
            id=data["id"],
            url=data["url"],
            event_types=tuple(orjson.loads(data.get("event_types") or "[]")),
            description=data.get("description", ""),
            owner=data.get("owner") or None,
            all_owners=data.get("all_owners") == "1",
            secrets=tuple(
                EndpointSecret(s["secret"], s.get("expires"))
                for s in orjson.loads(data.get("secrets") or "[]")
            ),
            created=float(data["created"]),
            disabled=data.get("disabled") == "1",
            disabled_reason=data.get("disabled_reason", ""),
            failing_since=float(failing) if failing else None,
        )


@dataclass(frozen=True, slots=True)
class DeliveryState:
    status: Literal["pending", "delivered", "failed"]
    attempts: int

    @classmethod
    def parse(cls, raw: str | None) -> DeliveryState | None:
        if not raw:
            return None
        status, _, attempts = raw.partition("|")
        return cls(status, int(attempts or 0))  # type: ignore[arg-type]

    def encode(self) -> str:
        return f"{self.status}|{self.attempts}"
