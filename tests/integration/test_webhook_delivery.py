"""deliver_webhook against a real Redis and a real receiver: disabling a failing endpoint."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from notifier.settings import Settings, load_settings
from notifier.storage.connection import connect_async
from notifier.webhooks.delivery import deliver_webhook, new_http_client
from notifier.webhooks.emit import emit
from notifier.webhooks.events import notification_event
from notifier.webhooks.pump import pump_once
from notifier.webhooks.signing import new_secret
from notifier.webhooks.store import WebhookStore
from tests.support.redis_server import RedisServer
from tests.support.webhook_receiver import WebhookReceiver


@pytest.fixture
def settings(redis_server: RedisServer) -> Settings:
    return load_settings(
        redis_url=redis_server.url,
        redis_prefix=f"t{uuid.uuid4().hex[:8]}",
        webhook_disable_after=0.5,
        webhook_retry_schedule="0.1,0.1,0.1,0.1,0.1,0.1,0.1",
    )


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver().start()
    yield server
    server.stop()


def disabled_count(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "notifier_webhook_endpoints_disabled_total", {"reason": reason}
    )
    return value or 0.0


def test_failing_past_disable_after_disables_the_endpoint_and_says_so(
    settings: Settings, receiver: WebhookReceiver
) -> None:
    receiver.answer(*[500] * 10)
    before = disabled_count("failing")

    async def scenario() -> None:
        redis = connect_async(settings)
        store = WebhookStore(redis, prefix=settings.redis_prefix)
        client = new_http_client()
        try:
            common = {"description": "", "owner": "alice", "all_owners": False}
            secret = new_secret()
            receiver.secrets.append(secret)
            failing = await store.create_endpoint(
                url=receiver.url("failing"),
                event_types=["notification.sent"],
                secret=secret,
                **common,  # type: ignore[arg-type]
            )
            await store.create_endpoint(
                url=receiver.url("watch"),
                event_types=["endpoint.disabled"],
                secret=new_secret(),
                **common,  # type: ignore[arg-type]
            )
            event = notification_event(
                "sent",
                notification_id="n-1",
                template="welcome",
                recipients=["ada@example.com"],
                owner="alice",
                attempt=1,
                at=0.0,
            )
            await emit(redis, store.keys, event)
            scheduled, _ = await pump_once(store)
            assert scheduled == 1  # to the failing endpoint only: the other filters it out

            def attempt() -> Coroutine[Any, Any, str]:
                return deliver_webhook(
                    store=store,
                    client=client,
                    settings=settings,
                    endpoint_id=failing.id,
                    message_id=event.id,
                )

            assert await attempt() == "retry"
            assert (await store.get_endpoint(failing.id)).failing_since is not None
            await asyncio.sleep(0.6)  # past WEBHOOK_DISABLE_AFTER, still failing
            assert await attempt() == "retry"
            endpoint = await store.get_endpoint(failing.id)
            assert endpoint.disabled and "failing since" in endpoint.disabled_reason
            notices = await store.read_inbox()
            assert [(n.type, n.owner) for n in notices] == [("endpoint.disabled", "alice")]
            assert failing.id in notices[0].body
            # A delivery due after the disabling gives up without a request.
            requests = len(receiver.received())
            assert await attempt() == "skipped"
            assert len(receiver.received()) == requests
            assert await store.failed_messages(failing.id) == [event.id]
            log = await store.attempts(failing.id)
            assert [a["response_code"] for a in log] == [500, 500]
        finally:
            await client.aclose()
            await redis.aclose()

    asyncio.run(scenario())
    assert disabled_count("failing") == before + 1


def test_a_queued_delivery_whose_task_vanished_is_queued_again_after_its_lease(
    settings: Settings, receiver: WebhookReceiver
) -> None:
    async def scenario() -> None:
        redis = connect_async(settings)
        store = WebhookStore(redis, prefix=settings.redis_prefix)
        client = new_http_client()
        try:
            secret = new_secret()
            receiver.secrets.append(secret)
            endpoint = await store.create_endpoint(
                url=receiver.url("lease"),
                event_types=[],
                description="",
                owner=None,
                all_owners=True,
                secret=secret,
            )
            event = notification_event(
                "accepted", notification_id="n-2", template=None, recipients=[], owner=None, at=0
            )
            await emit(redis, store.keys, event)
            assert await pump_once(store, lease_seconds=0.3) == (1, 1)
            # Its task message is "lost" (never run): nothing more while the lease holds...
            assert await pump_once(store, lease_seconds=0.3) == (0, 0)
            await asyncio.sleep(0.4)
            # ...then it is queued again, once.
            assert await pump_once(store, lease_seconds=0.3) == (0, 1)
            outcome = await deliver_webhook(
                store=store,
                client=client,
                settings=settings,
                endpoint_id=endpoint.id,
                message_id=event.id,
            )
            assert outcome == "delivered"
            assert await redis.zcard(store.keys.webhook_scheduled) == 0
            # The other copy of the task, run late, finds it delivered and sends nothing.
            requests = len(receiver.received())
            again = await deliver_webhook(
                store=store,
                client=client,
                settings=settings,
                endpoint_id=endpoint.id,
                message_id=event.id,
            )
            assert again == "skipped" and len(receiver.received()) == requests
        finally:
            await client.aclose()
            await redis.aclose()

    asyncio.run(scenario())
