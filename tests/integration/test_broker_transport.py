"""The Redis broker transport's atomic fetch against a real redis-server and bare publishers.

A consumer process is SIGKILLed right after its fetch, before kombu registers the message as
unacked (the window of kombu's BRPOP): with the stock transport the message is gone, with
ours it is in ``unacked`` and the visibility-timeout restore gives it to the next consumer.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.asynchronous import Hub
from kombu.message import Message

from notifier.worker.broker_transport import RedisTransport
from tests.reliability.faults import plain_request, publisher
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import REPO, WorkerProcess, service_env

#: A consumer that dies (SIGKILL, no cleanup) the moment its transport hands a fetched
#: message to kombu: after the fetch, before QoS.append writes ``unacked``.
DYING_CONSUMER = """
import os, signal, sys
from kombu import Connection, Consumer, Exchange, Queue
from kombu.transport.redis import Transport as Stock
from notifier.worker.broker_transport import RedisTransport as Ours

base = {"stock": Stock, "ours": Ours}[sys.argv[2]]

class Dying(base):
    def _deliver(self, message, queue):
        os.kill(os.getpid(), signal.SIGKILL)

queue = Queue("celery", Exchange("celery"), routing_key="celery")
with Connection(sys.argv[1], transport=Dying) as conn:
    with Consumer(conn, [queue], callbacks=[lambda body, message: None], accept=["json"]):
        conn.drain_events(timeout=20)
"""

VISIBILITY = 2


def _publish(own_redis: RedisServer, task_id: str) -> None:
    """One notifier.send as another service publishes it: a bare Celery client."""
    client = publisher(own_redis.url)
    client.send_task("notifier.send", kwargs=plain_request("a@example.com"), task_id=task_id)
    client.close()


def _kill_after_fetch(own_redis: RedisServer, transport: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", DYING_CONSUMER, own_redis.url, transport],
        cwd=REPO,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return done.returncode


def _unacked_ids(own_redis: RedisServer) -> dict[str, float]:
    client = own_redis.client()
    try:
        entries = client.hgetall("unacked")
        return {
            json.loads(entry)[0]["headers"]["id"]: float(client.zscore("unacked_index", tag) or 0)
            for tag, entry in entries.items()
        }
    finally:
        client.close()


def _queue_length(own_redis: RedisServer, key: str = "celery") -> int:
    client = own_redis.client()
    try:
        return int(client.llen(key))
    finally:
        client.close()


def _connection(own_redis: RedisServer, **options: Any) -> Connection:
    return Connection(
        own_redis.url,
        transport=RedisTransport,
        transport_options={
            "visibility_timeout": VISIBILITY,
            "unacked_restore_throttle": 1,
            **options,
        },
    )


def _consume(
    conn: Connection, queues: list[Queue], *, count: int, timeout: float, no_ack: bool = False
) -> list[Message]:
    received: list[Message] = []

    def on_message(body: Any, message: Message) -> None:
        received.append(message)

    deadline = time.monotonic() + timeout
    with Consumer(conn, queues, callbacks=[on_message], accept=["json"], no_ack=no_ack):
        while len(received) < count and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=0.5)
    return received


def _celery_queue(name: str = "celery") -> Queue:
    return Queue(name, Exchange(name), routing_key=name)


def test_stock_kombu_loses_a_message_killed_between_fetch_and_unacked(
    own_redis: RedisServer,
) -> None:
    # The window this transport closes, shown with kombu's own transport: after the kill the
    # message is neither in its queue nor in unacked, so nothing can ever restore it.
    _publish(own_redis, "stock-1")
    assert _kill_after_fetch(own_redis, "stock") == -9
    assert _queue_length(own_redis) == 0
    assert "stock-1" not in _unacked_ids(own_redis)


def test_message_of_a_consumer_killed_after_fetch_is_restored(own_redis: RedisServer) -> None:
    _publish(own_redis, "ours-1")
    before_fetch = time.time()
    assert _kill_after_fetch(own_redis, "ours") == -9
    # Fetched and killed, but registered as unacked by the same script that popped it.
    assert _queue_length(own_redis) == 0
    unacked = _unacked_ids(own_redis)
    assert set(unacked) == {"ours-1"}
    assert unacked["ours-1"] >= before_fetch

    with _connection(own_redis) as conn:
        received = _consume(conn, [_celery_queue()], count=1, timeout=30)
        assert [m.headers["id"] for m in received] == ["ours-1"]
        message = received[0]
        # Back through kombu's visibility-timeout restore: marked redelivered, not before the
        # timeout since the dead consumer's fetch.
        assert message.delivery_info.get("redelivered") or message.headers.get("redelivered")
        assert time.time() >= unacked["ours-1"] + VISIBILITY
        message.ack()
    assert _unacked_ids(own_redis) == {}
    assert _queue_length(own_redis) == 0


def test_fetched_message_is_unacked_until_ack_and_restored_on_reject(
    own_redis: RedisServer,
) -> None:
    _publish(own_redis, "ack-1")
    with _connection(own_redis) as conn:
        [message] = _consume(conn, [_celery_queue()], count=1, timeout=10)
        # The script's registration is exactly kombu's: [payload, exchange, routing key].
        client = own_redis.client()
        entry = json.loads(str(client.hget("unacked", message.delivery_tag)))
        client.close()
        assert entry[0] == message._raw
        info = message.delivery_info
        assert entry[1:] == [info["exchange"], info["routing_key"]] == ["", "celery"]
        message.reject(requeue=True)
        assert _unacked_ids(own_redis) == {}
        assert _queue_length(own_redis) == 1
        [again] = _consume(conn, [_celery_queue()], count=1, timeout=10)
        assert again.headers["id"] == "ack-1"
        again.ack()
    assert _unacked_ids(own_redis) == {}


def test_fair_rotation_between_queues_and_priorities(own_redis: RedisServer) -> None:
    mail, hooks = _celery_queue("mail"), _celery_queue("hooks")
    with _connection(own_redis) as conn:
        producer = Producer(conn)
        for queue in (mail, hooks):
            queue(conn.default_channel).declare()
        for index in range(6):
            producer.publish({"n": index}, exchange=mail.exchange, routing_key="mail")
        for index in range(6):
            producer.publish({"n": index}, exchange=hooks.exchange, routing_key="hooks")
        got = _consume(conn, [mail, hooks], count=12, timeout=15)
        for message in got:
            message.ack()
        order = [m.delivery_info["routing_key"] for m in got]
        # Neither queue waits for the other to drain: they alternate.
        assert sorted(order) == ["hooks"] * 6 + ["mail"] * 6
        assert order[:4].count("mail") == 2, order

        # kombu's Redis priorities: 0 first, then 3, 6, 9.
        for priority in (9, 6, 9, 0):
            producer.publish(
                {"p": priority}, exchange=mail.exchange, routing_key="mail", priority=priority
            )
        got = _consume(conn, [mail], count=4, timeout=15)
        for message in got:
            message.ack()
        assert [m.payload["p"] for m in got] == [0, 6, 9, 9]
    assert _unacked_ids(own_redis) == {}


def test_no_ack_consumer_leaves_nothing_unacked(own_redis: RedisServer) -> None:
    # celery inspect reads its replies with no_ack: they must not come back after the timeout.
    replies = _celery_queue("replies")
    with _connection(own_redis) as conn:
        replies(conn.default_channel).declare()
        Producer(conn).publish({"r": 1}, exchange=replies.exchange, routing_key="replies")
        got = _consume(conn, [replies], count=1, timeout=10, no_ack=True)
        assert [m.payload for m in got] == [{"r": 1}]
    client = own_redis.client()
    try:
        assert client.hlen("unacked") == 0
    finally:
        client.close()


def test_basic_get_registers_atomically(own_redis: RedisServer) -> None:
    _publish(own_redis, "get-1")
    with _connection(own_redis) as conn:
        queue = _celery_queue()(conn.default_channel)
        message = queue.get()
        assert message is not None and message.headers["id"] == "get-1"
        assert set(_unacked_ids(own_redis)) == {"get-1"}
        message.ack()
        assert _unacked_ids(own_redis) == {}
        assert queue.get() is None


def test_fetch_survives_a_flushed_script_cache(own_redis: RedisServer) -> None:
    # A restarted Redis has no scripts: the fetch loads it again and goes on.
    with _connection(own_redis) as conn:
        queue = _celery_queue()
        queue(conn.default_channel).declare()
        client = own_redis.client()
        client.script_flush()
        client.close()
        _publish(own_redis, "flushed-1")
        got = _consume(conn, [queue], count=1, timeout=10)
        assert [m.headers["id"] for m in got] == ["flushed-1"]
        got[0].ack()


def test_close_gives_back_a_fetch_whose_reply_was_not_read(own_redis: RedisServer) -> None:
    # A warm shutdown while a fetch's reply waits unread: the message goes back to its queue
    # at once instead of waiting out the visibility timeout in unacked.
    _publish(own_redis, "pending-1")
    conn = _connection(own_redis)
    channel = conn.default_channel
    consumer = Consumer(channel, [_celery_queue()], callbacks=[], accept=["json"])
    consumer.consume()
    # What the event loop does on a tick: send the fetch; its reply would be read later.
    conn.transport.cycle._register_BRPOP(channel)
    deadline = time.monotonic() + 10
    while _queue_length(own_redis) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _queue_length(own_redis) == 0
    assert set(_unacked_ids(own_redis)) == {"pending-1"}
    conn.close()
    assert _unacked_ids(own_redis) == {}
    assert _queue_length(own_redis) == 1


def test_celery_inspect_from_our_app_and_a_bare_client(
    own_redis: RedisServer, make_worker: Callable[..., WorkerProcess], smtp: RecordingSMTPServer
) -> None:
    # What Flower does with only a broker URL (kombu's stock transport), and `celery -A
    # notifier inspect` with ours, whose replies are read no_ack and so never sit in unacked.
    env = service_env(redis_url=own_redis.url, smtp_port=smtp.port)
    worker = make_worker(env, concurrency=1)
    commands = {
        "bare": ["--broker", own_redis.url, "inspect", "ping", "-t", "10"],
        "ours": ["-A", "notifier", "inspect", "active_queues", "-t", "10"],
    }
    for name, args in commands.items():
        done = subprocess.run(
            [sys.executable, "-m", "celery", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, (name, done.stdout, done.stderr)
        assert worker.name.split("@")[0] in done.stdout, (name, done.stdout)
    assert "'name': 'celery'" in done.stdout and "'name': 'webhooks'" in done.stdout
    client = own_redis.client()
    try:
        assert client.hlen("unacked") == 0
    finally:
        client.close()


def test_global_key_prefix(own_redis: RedisServer) -> None:
    # kombu's global_keyprefix: the script's queue and unacked keys carry it exactly once.
    queue = _celery_queue("pq")
    with _connection(own_redis, global_keyprefix="pfx:") as conn:
        queue(conn.default_channel).declare()
        producer = Producer(conn)
        for index in range(2):
            producer.publish({"n": index}, exchange=queue.exchange, routing_key="pq")
        client = own_redis.client()
        try:
            assert client.llen("pfx:pq") == 2
            [consumed] = _consume(conn, [queue], count=1, timeout=10)
            got = queue(conn.default_channel).get()
            assert got is not None
            assert client.hlen("pfx:unacked") == 2 and client.zcard("pfx:unacked_index") == 2
            assert not client.exists("unacked", "pfx:pfx:unacked", "pq")
            consumed.ack()
            got.ack()
            assert client.hlen("pfx:unacked") == 0
        finally:
            client.close()


def _exec_calls(own_redis: RedisServer) -> int:
    client = own_redis.client()
    try:
        stats = client.info("commandstats")
        return int(stats.get("cmdstat_exec", {}).get("calls", 0))
    finally:
        client.close()


def _fetch_once(conn: Connection, *, prefetch: int, read: bool = True) -> list[Message]:
    """Consume the celery queue with ``prefetch``, send one fetch as the event loop does and,
    with ``read``, read its reply; returns the messages handed over (unacknowledged)."""
    received: list[Message] = []
    channel = conn.default_channel
    consumer = Consumer(
        channel,
        [_celery_queue()],
        callbacks=[lambda body, message: received.append(message)],
        accept=["json"],
        prefetch_count=prefetch,
    )
    consumer.consume()
    conn.transport.cycle._register_BRPOP(channel)
    if read:
        conn.drain_events(timeout=10)
    return received


def test_one_fetch_takes_what_the_prefetch_allows_in_order(own_redis: RedisServer) -> None:
    for index in range(12):
        _publish(own_redis, f"batch-{index:02d}")
    with _connection(own_redis) as conn:
        received = _fetch_once(conn, prefetch=5)
        # Five messages (the prefetch), oldest first, each registered by the script.
        assert [m.headers["id"] for m in received] == [f"batch-{i:02d}" for i in range(5)]
        assert set(_unacked_ids(own_redis)) == {m.headers["id"] for m in received}
        assert _queue_length(own_redis) == 7
        for message in received:
            message.ack()
        assert _unacked_ids(own_redis) == {}


def test_acks_of_one_event_loop_tick_go_out_in_one_transaction(own_redis: RedisServer) -> None:
    for index in range(4):
        _publish(own_redis, f"tick-{index}")
    with _connection(own_redis) as conn:
        received = _fetch_once(conn, prefetch=10)
        assert len(received) == 4
        # Inside an event loop (the worker's hub) acks wait for the end of the tick.
        hub = Hub()
        conn.transport.hub = hub
        try:
            before = _exec_calls(own_redis)
            for message in received:
                message.ack()
            assert len(_unacked_ids(own_redis)) == 4  # not yet removed in Redis
            hub.run_once()
            assert _unacked_ids(own_redis) == {}
            assert _exec_calls(own_redis) - before == 1
        finally:
            conn.transport.hub = None
            hub.close()


def test_close_sends_the_acks_still_waiting_for_the_tick(own_redis: RedisServer) -> None:
    _publish(own_redis, "late-ack")
    conn = _connection(own_redis)
    [message] = _fetch_once(conn, prefetch=10)
    hub = Hub()
    conn.transport.hub = hub
    message.ack()
    assert set(_unacked_ids(own_redis)) == {"late-ack"}
    conn.close()  # a warm shutdown: the acknowledged message must not come back
    hub.close()
    assert _unacked_ids(own_redis) == {}
    assert _queue_length(own_redis) == 0


def test_close_gives_back_every_message_of_an_unread_batch_in_order(own_redis: RedisServer) -> None:
    for index in range(3):
        _publish(own_redis, f"unread-{index}")
    conn = _connection(own_redis)
    _fetch_once(conn, prefetch=10, read=False)  # the fetch is sent, its reply never read
    deadline = time.monotonic() + 10
    while _queue_length(own_redis) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert set(_unacked_ids(own_redis)) == {"unread-0", "unread-1", "unread-2"}
    conn.close()
    assert _unacked_ids(own_redis) == {}
    # Back in the queue, to be fetched in the order they were published.
    with _connection(own_redis) as again:
        got = _consume(again, [_celery_queue()], count=3, timeout=10)
        assert [m.headers["id"] for m in got] == ["unread-0", "unread-1", "unread-2"]
        for message in got:
            message.ack()
