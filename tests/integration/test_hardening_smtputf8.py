"""Issue 14 item 12: a non-ASCII local part against a relay that does not offer SMTPUTF8."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from notifier.compose.addresses import parse_address
from notifier.compose.mime import build_email
from notifier.delivery.transport import SMTPTransport
from notifier.errors import PermanentDeliveryError
from tests.support.ports import free_port


class _Sink:
    def __init__(self) -> None:
        self.received: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(envelope)
        return "250 OK"


@pytest.fixture
def ascii_only_relay() -> Iterator[tuple[int, _Sink]]:
    sink = _Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, enable_SMTPUTF8=False)
    controller.start()
    yield port, sink
    controller.stop()


def test_without_smtputf8_it_is_a_permanent_failure_naming_the_address(
    ascii_only_relay: tuple[int, _Sink],
) -> None:
    port, sink = ascii_only_relay
    email = build_email(
        notification_id="n-1",
        sender=parse_address("notifier@example.com", field="MAIL_FROM"),
        to=[parse_address("иван@example.com", field="to")],
        subject="Привет",
        text="body",
    )
    transport = SMTPTransport(hostname="127.0.0.1", port=port, security="none", timeout=5)

    async def send() -> None:
        try:
            await transport.send(email)
        finally:
            await transport.close()

    with pytest.raises(PermanentDeliveryError, match="SMTPUTF8") as caught:
        asyncio.run(send())
    assert caught.value.recipient == "иван@example.com"
    assert sink.received == []
