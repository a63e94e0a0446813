"""SMTPPool against real SMTP servers: aiosmtpd (tests/support) and the latency relay (bench)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiosmtplib
import pytest

from bench.relay import LatencyRelay
from notifier.compose.addresses import parse_address
from notifier.compose.mime import OutgoingEmail, build_email
from notifier.delivery.pool import SMTPPool
from notifier.delivery.transport import SMTPTransport
from notifier.errors import TransientDeliveryError
from tests.support.ports import free_port
from tests.support.smtp_server import RecordingSMTPServer

SENDER = parse_address("Pool Tests <pool@example.com>", field="from")


def make_email(i: int) -> OutgoingEmail:
    return build_email(
        notification_id=f"pool-{i}",
        sender=SENDER,
        to=[parse_address(f"user{i}@example.com", field="to")],
        subject=f"message {i}",
        text=f"body {i}",
        domain="example.com",
    )


def make_pool(
    port: int,
    *,
    size: int,
    cap: int = 1000,
    send_timeout: float = 10.0,
    recover_after: float = 30.0,
) -> SMTPPool:
    return SMTPPool(
        lambda: SMTPTransport(
            hostname="127.0.0.1",
            port=port,
            timeout=5.0,
            send_timeout=send_timeout,
            max_messages_per_connection=cap,
        ),
        size=size,
        send_timeout=send_timeout,
        recover_after=recover_after,
    )


async def send_all(pool: SMTPPool, count: int) -> list[BaseException | object]:
    return await asyncio.gather(
        *(pool.send(make_email(i)) for i in range(count)), return_exceptions=True
    )


@pytest.fixture
def relay() -> Iterator[LatencyRelay]:
    server = LatencyRelay(rtt=0.002, accept=0.01)
    server.start()
    yield server
    server.stop()


def test_concurrent_sends_share_a_bounded_set_of_reused_connections(
    relay: LatencyRelay,
) -> None:
    async def scenario() -> SMTPPool:
        pool = make_pool(relay.port, size=4)
        results = await send_all(pool, 60)
        assert not [r for r in results if isinstance(r, BaseException)]
        await pool.close()
        return pool

    pool = asyncio.run(scenario())
    assert relay.count == 60
    assert relay.stats.peak_open <= 4
    # Reused: a handful of connections for 60 messages, all closed politely.
    assert relay.stats.connections == pool.connections_opened <= 4
    assert relay.stats.quits == relay.stats.connections
    assert sorted(m.rcpt_tos[0] for m in relay.messages) == sorted(
        f"user{i}@example.com" for i in range(60)
    )


def test_per_connection_message_cap_still_applies(relay: LatencyRelay) -> None:
    async def scenario() -> None:
        pool = make_pool(relay.port, size=2, cap=5)
        results = await send_all(pool, 30)
        assert not [r for r in results if isinstance(r, BaseException)]
        await pool.close()

    asyncio.run(scenario())
    assert relay.count == 30
    # 30 messages at most 5 per connection.
    assert relay.stats.connections >= 6
    assert relay.stats.peak_open <= 2


def test_too_many_connections_421_shrinks_the_pool_instead_of_failing(
    relay: LatencyRelay,
) -> None:
    relay.max_connections = 3

    async def scenario() -> SMTPPool:
        pool = make_pool(relay.port, size=8)
        # Open three connections first, so the relay has someone to send through.
        first = await send_all(pool, 3)
        assert not [r for r in first if isinstance(r, BaseException)]
        results = await send_all(pool, 80)
        assert not [r for r in results if isinstance(r, BaseException)], results
        limit = pool.limit
        await pool.close()
        assert limit <= 3
        return pool

    pool = asyncio.run(scenario())
    assert relay.count == 83
    assert relay.stats.refused_connections >= 1
    assert pool.shrinks >= 1
    assert relay.stats.peak_open <= 3


def test_pool_grows_back_after_the_relay_lets_up(relay: LatencyRelay) -> None:
    relay.max_connections = 1

    async def scenario() -> None:
        pool = make_pool(relay.port, size=3, recover_after=0.2)
        await pool.send(make_email(0))
        await send_all(pool, 20)
        assert pool.limit == 1
        relay.max_connections = None
        await asyncio.sleep(0.5)
        results = await send_all(pool, 40)
        assert not [r for r in results if isinstance(r, BaseException)]
        assert pool.limit >= 2
        await pool.close()

    asyncio.run(scenario())
    assert relay.stats.peak_open >= 2


def test_refused_with_no_connection_left_is_a_transient_failure() -> None:
    async def scenario() -> None:
        pool = make_pool(free_port(), size=2)
        # Nothing listens: the relay is down, which is not worth waiting for.
        with pytest.raises(TransientDeliveryError):
            await pool.send(make_email(0))
        await pool.close()

    asyncio.run(scenario())


def test_broken_connections_are_replaced(smtp: RecordingSMTPServer) -> None:
    async def scenario() -> None:
        pool = make_pool(smtp.port, size=2)
        await send_all(pool, 4)
        # The server drops the connection mid-transaction: that send fails (transient), the
        # connection is replaced and the next sends go through.
        smtp.fail(421, stage="rcpt", times=1, disconnect=True)
        results = await send_all(pool, 6)
        await pool.close()
        failures = [r for r in results if isinstance(r, BaseException)]
        assert all(isinstance(f, TransientDeliveryError) for f in failures)
        assert len(failures) <= 1

    asyncio.run(scenario())
    assert len(smtp.messages) >= 9
    assert smtp.connections >= 2


def test_send_timeout_covers_waiting_for_a_connection(relay: LatencyRelay) -> None:
    relay.accept = 1.0

    async def scenario() -> None:
        pool = make_pool(relay.port, size=1, send_timeout=0.5)
        results = await send_all(pool, 3)
        await pool.close()
        assert all(isinstance(r, TransientDeliveryError) for r in results)

    asyncio.run(scenario())
    # Each timed-out send dropped its connection before the relay's 250 went out.
    assert relay.count == 0


def test_close_quits_every_connection(relay: LatencyRelay) -> None:
    async def scenario() -> None:
        pool = make_pool(relay.port, size=5)
        await send_all(pool, 25)
        assert pool.open_connections >= 2
        await pool.close()
        assert pool.open_connections == 0
        with pytest.raises(TransientDeliveryError):
            await pool.send(make_email(99))

    asyncio.run(scenario())
    assert relay.stats.quits == relay.stats.connections


def test_a_busy_relay_with_none_of_ours_open_is_waited_for(relay: LatencyRelay) -> None:
    relay.max_connections = 1

    async def scenario() -> SMTPPool:
        # Another client holds the relay's only connection slot for a while.
        other = aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.port, timeout=5)
        await other.connect()

        async def leave_later() -> None:
            await asyncio.sleep(0.6)
            await other.quit()

        pool = make_pool(relay.port, size=2, send_timeout=5.0)
        leaving = asyncio.create_task(leave_later())
        results = await send_all(pool, 3)
        await leaving
        await pool.close()
        assert not [r for r in results if isinstance(r, BaseException)], results
        return pool

    asyncio.run(scenario())
    assert relay.count == 3
    assert relay.stats.refused_connections >= 1


def test_a_relay_busy_for_longer_than_send_timeout_is_a_transient_421(
    relay: LatencyRelay,
) -> None:
    relay.max_connections = 0

    async def scenario() -> None:
        pool = make_pool(relay.port, size=2, send_timeout=0.8)
        with pytest.raises(TransientDeliveryError) as caught:
            await pool.send(make_email(0))
        await pool.close()
        assert caught.value.code == 421

    asyncio.run(scenario())
    assert relay.count == 0
