"""A real webhook receiver: uvicorn in a thread, verifying every request with standardwebhooks.

It answers what the test plans (``answer(500, 500)`` then 200s), can sleep before answering (a
slow receiver), and can be stopped and started again on the same port (a receiver that is down).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.types import Receive, Scope, Send

from tests.support.ports import free_port


@dataclass
class Delivery:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: str
    #: Index (in ``secrets``) of each secret whose signature verifies, on its own.
    verified_by: list[int]
    answered: int
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.headers.get("webhook-id", "")

    @property
    def type(self) -> str:
        return str(self.payload.get("type", ""))

    @property
    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = self.payload.get("data") or {}
        return data


class WebhookReceiver:
    """Serves ``POST /<anything>``; ``url(path)`` is an endpoint URL for it."""

    def __init__(self, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.secrets: list[str] = []
        self.sleep = 0.0
        self.deliveries: list[Delivery] = []
        #: Requests whose body has been read, answered or not yet (a slow receiver's backlog).
        self.requests_started = 0
        self._plan: list[int] = []
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str = "hook") -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def answer(self, *codes: int) -> None:
        """Answer these status codes to the next requests, then 200 again."""
        with self._lock:
            self._plan.extend(codes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks).decode()
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        with self._lock:
            self.requests_started += 1
        # Slow: sleep in steps, so that stopping the receiver ends the wait quietly.
        until = time.monotonic() + self.sleep
        while self._server is not None and time.monotonic() < until:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        verified = []
        payload: dict[str, Any] = {}
        for index, secret in enumerate(list(self.secrets)):
            try:
                payload = Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
            verified.append(index)
        with self._lock:
            code = self._plan.pop(0) if self._plan else 200
            if not verified:
                code = 401  # an unverifiable request is refused, like a real receiver would
            self.deliveries.append(
                Delivery(scope["path"], headers, body, verified, code, payload or _loads(body))
            )
        await send({"type": "http.response.start", "status": code, "headers": []})
        await send({"type": "http.response.body", "body": f"answered {code}".encode()})

    # Lifecycle.

    def start(self) -> WebhookReceiver:
        config = uvicorn.Config(
            self, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the webhook receiver did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            server, self._server = self._server, None
            server.should_exit = True
            self._thread.join(15)

    # Reading what arrived.

    def received(self, predicate: Callable[[Delivery], bool] = lambda d: True) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if predicate(d)]

    def accepted(self, predicate: Callable[[Delivery], bool] = lambda d: True) -> list[Delivery]:
        """Deliveries that verified and were answered 2xx."""
        return self.received(lambda d: bool(d.verified_by) and d.answered < 300 and predicate(d))

    def wait_for(
        self,
        predicate: Callable[[Delivery], bool],
        *,
        count: int = 1,
        timeout: float = 30.0,
    ) -> list[Delivery]:
        """Wait until ``count`` accepted deliveries match ``predicate``."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.accepted(predicate)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                seen = [(d.type, d.answered, d.verified_by) for d in self.received()]
                raise AssertionError(f"expected {count} matching deliveries, got {seen[-20:]}")
            time.sleep(0.05)


def _loads(body: str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
