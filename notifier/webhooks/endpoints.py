"""EndpointStore: webhook endpoints in Redis (create, read, update, disable, delete, rotate
their signing secrets); WebhookStore adds the deliveries on top."""

from __future__ import annotations

import secrets as token
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis

from notifier.errors import WebhookEndpointNotFound
from notifier.storage.keys import Keys
from notifier.storage.redis import map_redis_errors
from notifier.webhooks.models import Endpoint, EndpointSecret

__all__ = ["EndpointStore"]

T = TypeVar("T")


def _secrets_json(values: Sequence[EndpointSecret]) -> str:
    return orjson.dumps([{"secret": s.secret, "expires": s.expires} for s in values]).decode()


class EndpointStore:
    """Webhook endpoints. Every method raises StoreUnavailable when Redis is down."""

    def __init__(self, redis: aioredis.Redis, *, prefix: str = "notifier") -> None:
        self.redis = redis
        self.keys = Keys(prefix)

    async def _call(self, operation: Callable[[], Awaitable[T]]) -> T:
        with map_redis_errors():
            return await operation()

    # Endpoints.

    async def create_endpoint(
        self,
        *,
        url: str,
        event_types: Sequence[str],
        description: str,
        owner: str | None,
        all_owners: bool,
        secret: str,
        now: float | None = None,
    ) -> Endpoint:
        now = time.time() if now is None else now
        endpoint = Endpoint(
            id="ep_" + token.token_hex(12),
            url=url,
            event_types=tuple(event_types),
            description=description,
            owner=owner,
            all_owners=all_owners,
            secrets=(EndpointSecret(secret),),
            created=now,
        )
        fields = {
            "id": endpoint.id,
            "url": url,
            "event_types": orjson.dumps(list(event_types)).decode(),
            "description": description,
            "owner": owner or "",
            "all_owners": "1" if all_owners else "",
            "secrets": _secrets_json(endpoint.secrets),
            "created": repr(now),
        }

        async def write() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(self.keys.webhook_endpoint(endpoint.id), mapping=fields)  # type: ignore[arg-type]
                pipe.zadd(self.keys.webhook_endpoints, {endpoint.id: now})
                await pipe.execute()

        await self._call(write)
        return endpoint

    async def get_endpoint(self, endpoint_id: str) -> Endpoint:
        data: dict[str, str] = await self._call(
            lambda: self.redis.hgetall(self.keys.webhook_endpoint(endpoint_id))  # type: ignore[arg-type,return-value]
        )
        if not data or "url" not in data:
            raise WebhookEndpointNotFound(endpoint_id)
        return Endpoint.from_hash(data)

    async def list_endpoints(self) -> list[Endpoint]:
        async def read() -> list[dict[str, str]]:
            ids = [str(i) for i in await self.redis.zrange(self.keys.webhook_endpoints, 0, -1)]
            if not ids:
                return []
            async with self.redis.pipeline(transaction=False) as pipe:
                for endpoint_id in ids:
                    pipe.hgetall(self.keys.webhook_endpoint(endpoint_id))
                found: list[dict[str, str]] = await pipe.execute()
            return found

        return [Endpoint.from_hash(data) for data in await self._call(read) if data.get("url")]

    async def update_endpoint(self, endpoint_id: str, **changes: Any) -> Endpoint:
        """Change url, event_types, description or disabled; re-enabling forgets the failures."""
        fields: dict[str, str] = {}
        removed: list[str] = []
        if "url" in changes:
            fields["url"] = changes["url"]
        if "event_types" in changes:
            fields["event_types"] = orjson.dumps(list(changes["event_types"])).decode()
        if "description" in changes:
            fields["description"] = changes["description"]
        if "disabled" in changes:
            if changes["disabled"]:
                fields["disabled"] = "1"
                fields["disabled_reason"] = changes.get("disabled_reason", "disabled by the API")
            else:
                removed += ["disabled", "disabled_reason", "failing_since"]
        await self.get_endpoint(endpoint_id)
        key = self.keys.webhook_endpoint(endpoint_id)

        async def write() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                if fields:
                    pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
                if removed:
                    pipe.hdel(key, *removed)
                await pipe.execute()

        await self._call(write)
        return await self.get_endpoint(endpoint_id)

    async def disable_endpoint(self, endpoint_id: str, *, reason: str) -> bool:
        """Disable it; False when it was disabled (or deleted) already."""
        key = self.keys.webhook_endpoint(endpoint_id)

        async def write() -> bool:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.exists(key)
                pipe.hsetnx(key, "disabled", "1")
                exists, changed = await pipe.execute()
            if not exists:
                await self.redis.delete(key)  # HSETNX re-created a deleted endpoint
                return False
            if changed:
                await self.redis.hset(key, "disabled_reason", reason)
            return bool(changed)

        return await self._call(write)

    async def delete_endpoint(self, endpoint_id: str) -> None:
        """Forget it, its delivery state and log; its scheduled deliveries find it gone."""
        await self.get_endpoint(endpoint_id)
        keys = self.keys

        async def write() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zrem(keys.webhook_endpoints, endpoint_id)
                pipe.delete(
                    keys.webhook_endpoint(endpoint_id),
                    keys.webhook_endpoint_messages(endpoint_id),
                    keys.webhook_endpoint_state(endpoint_id),
                    keys.webhook_endpoint_pending(endpoint_id),
                    keys.webhook_endpoint_failed(endpoint_id),
                    keys.webhook_endpoint_log(endpoint_id),
                )
                await pipe.execute()

        await self._call(write)

    async def rotate_secret(
        self, endpoint_id: str, *, new_secret: str, grace_seconds: float, now: float | None = None
    ) -> Endpoint:
        """Sign with ``new_secret`` from now on; the current one keeps signing for the grace."""
        now = time.time() if now is None else now
        endpoint = await self.get_endpoint(endpoint_id)
        kept = [
            EndpointSecret(s.secret, s.expires if s.expires is not None else now + grace_seconds)
            for s in endpoint.secrets
            if grace_seconds > 0 and (s.expires is None or s.expires > now)
        ]
        values = [EndpointSecret(new_secret), *kept]
        await self._call(
            lambda: self.redis.hset(
                self.keys.webhook_endpoint(endpoint_id), "secrets", _secrets_json(values)
            )
        )
        return await self.get_endpoint(endpoint_id)
