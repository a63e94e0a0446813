"""Signed outbound webhooks (Standard Webhooks): events about notifications, sent to endpoints.

The mail path emits events (:mod:`.emit`); the pump fans them out to endpoints and queues
deliveries (:mod:`.pump`); a task on the ``webhooks`` queue signs and POSTs each (:mod:`.delivery`).
"""

from __future__ import annotations

from notifier.webhooks.events import EVENT_TYPES, WebhookEvent

__all__ = ["EVENT_TYPES", "WebhookEvent"]
