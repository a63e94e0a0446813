"""kombu's Redis transport with an atomic fetch: from publish until its ack, a message is in
its queue or in kombu's ``unacked`` set, never only in a worker's socket or memory."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from time import monotonic, sleep, time
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

log = logging.getLogger(__name__)

__all__ = [
    "FETCH_SCRIPT",
    "RedisTransport",
    "ReliableFetchChannel",
    "ReliableFetchQoS",
    "ReliableFetchSentinelChannel",
    "SentinelTransport",
]

#: Pops the first message from the queue keys in the order given (as BRPOP would) and, in the
#: same atomic step, registers it where kombu's visibility-timeout restore looks: the
#: ``unacked`` hash (tag -> [payload, exchange, routing key], exactly what kombu's
#: QoS.append writes) and the ``unacked_index`` zset (tag -> fetch time). The payload is
#: embedded as the text it was published as: re-encoding it with cjson would turn ``[]``
#: and ``[null, null]`` into ``{}``.
#: Up to ARGV[2] messages are taken, all from the first queue key that has any (so priorities
#: and the consumer's rotation between queues keep kombu's order); more than one only when the
#: consumer's prefetch leaves room for them (see ``ReliableFetchChannel._batch_size``).
#: KEYS: unacked hash, unacked_index zset, the queue keys. ARGV[1]: the worker's clock (kombu
#: scores with the consumer's time() too); ARGV[2]: how many messages at most; ARGV[2 + i]:
#: "1" when messages from queue key i are to be registered ("0" for a no_ack consumer, e.g.
#: ``celery inspect``'s reply queue). Returns {key, payload, key, payload, ...} or false.
FETCH_SCRIPT = """
local most = tonumber(ARGV[2])
for i = 3, #KEYS do
  local items = redis.call('RPOP', KEYS[i], most)
  if items then
    local reply = {}
    for _, item in ipairs(items) do
      if ARGV[i] == '1' then
        local ok, message = pcall(cjson.decode, item)
        if ok and type(message) == 'table' and type(message.properties) == 'table' then
          local properties = message.properties
          local tag = properties.delivery_tag
          if type(tag) == 'string' then
            local info = properties.delivery_info
            if type(info) ~= 'table' then info = {} end
            redis.call('ZADD', KEYS[2], ARGV[1], tag)
            redis.call('HSET', KEYS[1], tag, '[' .. item .. ',' .. cjson.encode(info.exchange)
              .. ',' .. cjson.encode(info.routing_key) .. ']')
          end
        end
      end
      reply[#reply + 1] = KEYS[i]
      reply[#reply + 1] = item
    end
    return reply
  end
end
return false
"""
# EVALSHA names a script by its SHA-1; not a security use.
FETCH_SCRIPT_SHA = hashlib.sha1(FETCH_SCRIPT.encode(), usedforsecurity=False).hexdigest()


class ReliableFetchQoS(kombu_redis.QoS):
    """kombu's Redis QoS that skips the unacked write for a message the fetch registered, and
    acknowledges in batches inside the worker's event loop.

    kombu sends one MULTI/ZREM/HDEL/EXEC per ack. In the worker the pool reports many tasks
    done per loop tick, so the acks of one tick go out together, in one such transaction, at
    the end of the tick (``hub.call_soon``). Until then a message stays in ``unacked``, which
    is where an unacknowledged message is safe; were the worker killed in that tick, it comes
    back after the visibility timeout and its record's claim skips it. Outside an event loop
    (a plain consumer, ``basic_get``) every ack is sent at once, as kombu does.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Tags acknowledged in this loop tick, not yet removed from Redis.
        self._pending_acks: list[str] = []

    def ack(self, delivery_tag: str) -> None:
        hub = getattr(self.channel.connection, "hub", None)
        if hub is None:
            super().ack(delivery_tag)
            return
        if not self._pending_acks:
            hub.call_soon(self.flush_acks)
        self._pending_acks.append(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)  # local bookkeeping: frees its prefetch slot

    def flush_acks(self) -> None:
        """Remove the acknowledged messages of this tick from ``unacked``, in one transaction.

        A failure (the connection dropped) is logged, as kombu logs a failed ack: the messages
        stay in ``unacked`` and come back after the visibility timeout, already sent.
        """
        tags, self._pending_acks = self._pending_acks, []
        if not tags:
            return
        try:
            with self.pipe_or_acquire() as pipe:
                pipe.zrem(self.unacked_index_key, *tags).hdel(self.unacked_key, *tags).execute()
        except self.channel.connection_errors as exc:
            log.warning("acknowledging %d message(s) failed: %s", len(tags), exc)

    def append(self, message: Any, delivery_tag: str) -> None:
        registered: set[str] = getattr(self.channel, "_registered_tags", set())
        if delivery_tag in registered:
            registered.discard(delivery_tag)
            virtual.QoS.append(self, message, delivery_tag)  # local bookkeeping only
            return
        super().append(message, delivery_tag)


class ReliableFetchChannel(kombu_redis.Channel):
    """kombu's Redis channel, fetching with :data:`FETCH_SCRIPT` instead of BRPOP.

    kombu's BRPOP takes the message off the queue, and only when the worker has read the reply
    does QoS.append write it into ``unacked``: a worker killed in between (or while the reply
    waits in its socket buffer) loses the message. Here the pop and the registration are one
    Lua script, so a message a dead worker fetched comes back with kombu's own
    visibility-timeout restore, run by the living workers (``restore_visible``).

    A script cannot block, so an idle channel polls: the next fetch after an empty one waits
    ``fetch_poll_min`` seconds, doubling up to ``fetch_poll_max``, and none while messages
    keep coming. Everything else (fair rotation, priorities, fanout for ``celery inspect``
    and events, the wire format) is kombu's.
    """

    QoS = ReliableFetchQoS

    #: First wait after an empty fetch; doubles per empty fetch up to :attr:`fetch_poll_max`.
    fetch_poll_min = 0.002
    #: Longest wait between fetches of an idle channel: the most latency an idle worker adds
    #: and 10 cheap scripts a second on Redis per worker.
    fetch_poll_max = 0.1

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        #: Tags the fetch script registered as unacked, until QoS.append sees them.
        self._registered_tags: set[str] = set()
        #: Queues consumed with no_ack: their messages are not registered.
        self._no_ack_queues: set[str] = set()
        self._fetch_misses = 0
        self._next_fetch_at = 0.0
        self._wakeup: Any = None
        #: The synchronous client conn_or_acquire hands out, for as long as its pool lives.
        self._sync_client: Any = None
        super().__init__(*args, **kwargs)
        # So the first fetch finds it; after a Redis restart a NOSCRIPT reply loads it again.
        self.client.script_load(FETCH_SCRIPT)

    def _connparams(self, asynchronous: bool = False) -> Any:
        # When the connection drops, Celery first collects the transport (its ``client``
        # becomes None) and then closes the channel, which tries to give the unacked messages
        # back through that client: an AttributeError, which is not a connection error, so
        # the worker stops with "Unrecoverable error". Raise a connection error instead,
        # which the close ignores; the messages stay in Redis's unacked set and come back
        # after the visibility timeout.
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection is closed")
        return super()._connparams(asynchronous=asynchronous)

    @contextlib.contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        # kombu builds a new redis-py client object (over the same connection pool) for
        # every ack, reject and restore; one client per pool serves them all just as well,
        # since redis-py clients are safe to share and each command or pipeline takes its own
        # connection from the pool. A new pool (after a reconnect) gets a new client.
        if client:
            yield client
            return
        pool = self.pool
        cached = self._sync_client
        if cached is None or cached.connection_pool is not pool:
            cached = self._sync_client = self._create_client()
        yield cached

    def basic_consume(self, queue: str, no_ack: bool = False, *args: Any, **kwargs: Any) -> Any:
        if no_ack:
            self._no_ack_queues.add(queue)
        else:
            self._no_ack_queues.discard(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    #: Most messages one fetch takes (when the prefetch has room for them): the worker's main
    #: process pays one script call and one event-loop round per fetch instead of per message.
    fetch_batch_max = 8

    def _batch_size(self) -> int:
        """How many messages the next fetch may take: 1 without a prefetch limit (kombu's
        BRPOP behaviour, which keeps the rotation between queues message by message), else
        what the prefetch still allows, up to :attr:`fetch_batch_max`."""
        room: int | None = self.qos.can_consume_max_estimate()
        if not room:
            return 1
        return max(1, min(self.fetch_batch_max, room))

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        with self.conn_or_acquire() as client:
            reply = self._run_fetch(client, [queue], register=not no_ack)
        if not reply:
            return None
        message = self.Message(self._received(reply[1], register=not no_ack), channel=self)
        if not no_ack:
            self.qos.append(message, message.delivery_tag)
        return message

    def _fetch_args(
        self, queues: list[str], register: bool | None = None, *, most: int = 1
    ) -> list[Any]:
        """KEYS and ARGV of :data:`FETCH_SCRIPT` (with the key count first) for ``queues``."""
        prefix = self.global_keyprefix or ""
        keys, flags = [], []
        for pri in self.priority_steps:
            for queue in queues:
                keys.append(prefix + self._q_for_pri(queue, pri))
                ack = (queue not in self._no_ack_queues) if register is None else register
                flags.append("1" if ack else "0")
        unacked = [prefix + self.unacked_key, prefix + self.unacked_index_key]
        return [len(keys) + 2, *unacked, *keys, repr(time()), most, *flags]

    def _run_fetch(self, client: Any, queues: list[str], *, register: bool) -> Any:
        args = self._fetch_args(queues, register)
        # redis-py's own execute_command: kombu's prefixing client would prefix KEYS[1] again.
        execute: Any = redis.Redis.execute_command
        try:
            return execute(client, "EVALSHA", FETCH_SCRIPT_SHA, *args)
        except NoScriptError:
            return execute(client, "EVAL", FETCH_SCRIPT, *args)

    def _received(self, raw: Any, *, register: bool = True) -> Any:
        """The payload of a fetched message; remembers its tag when the script registered it."""
        payload = loads(bytes_to_str(raw))
        if register:
            with contextlib.suppress(KeyError, TypeError):
                self._registered_tags.add(payload["properties"]["delivery_tag"])
        return payload

    def _brpop_start(self, timeout: Any = None) -> None:
        wait = self._next_fetch_at - monotonic()
        if wait > 0:
            hub = getattr(self.connection, "hub", None)
            if hub is not None:
                # Inside the worker's event loop: come back on a timer, never block it.
                if self._wakeup is None:
                    self._wakeup = hub.call_later(wait, self._woken)
                return
            sleep(wait)  # drain_events() without an event loop
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        self._in_poll = self.client.connection
        self._brpop_sent_at = monotonic()
        args = self._fetch_args(queues, most=self._batch_size())
        self.client.connection.send_command("EVALSHA", FETCH_SCRIPT_SHA, *args)

    def _woken(self) -> None:
        self._wakeup = None

    def _brpop_read(self, **options: Any) -> bool:
        try:
            try:
                reply = self.client.parse_response(self.client.connection, "EVALSHA", **options)
            except self.connection_errors:
                # Disconnect so the next poll reconnects, as kombu does after a BRPOP error.
                self.client.connection.disconnect()
                raise
            except NoScriptError:  # a restarted Redis: load the script, fetch again
                with self.conn_or_acquire() as client:
                    client.script_load(FETCH_SCRIPT)
                raise virtual.Empty() from None
            if not reply:
                self._fetch_misses += 1
                backoff = self.fetch_poll_min * 2 ** min(self._fetch_misses - 1, 16)
                delay = min(self.fetch_poll_max, backoff)
                self._next_fetch_at = monotonic() + delay
                hub = getattr(self.connection, "hub", None)
                if hub is not None and self._wakeup is None:
                    # Set now, while the loop handles events: a timer added on the next tick
                    # would not shorten that tick's poll, already computed from the timers.
                    self._wakeup = hub.call_later(delay, self._woken)
                if hub is None:
                    # drain_events() without an event loop has no restore timer, and the
                    # script's reply always makes the poll return before kombu's restore.
                    self.connection.cycle.maybe_restore_messages()
                raise virtual.Empty()
            self._fetch_misses = 0
            self._next_fetch_at = 0.0
            prefix = self.global_keyprefix or ""
            dest = bytes_to_str(reply[0])[len(prefix) :]
            dest = dest.rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            register = dest not in self._no_ack_queues
            # Every message is registered (or not) before any is handed over: a callback that
            # raises must not leave a later one of this fetch unknown to QoS.
            payloads = [self._received(raw, register=register) for raw in reply[1::2]]
            for payload in payloads:
                self.connection._deliver(payload, dest)
            return True
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()

    def close(self) -> None:
        if self._wakeup is not None:
            self._wakeup.cancel()
            self._wakeup = None
        if self._qos is not None and not self._closing:
            self._qos.flush_acks()
        if self._in_poll and not self._closing:
            self._give_back_pending_fetch()
        super().close()

    def _give_back_pending_fetch(self) -> None:
        """Requeue the message of a fetch whose reply was never read (a warm shutdown).

        It is safe in ``unacked`` either way; this spares it the visibility timeout.
        """
        connection = self._in_poll
        self._in_poll = None
        try:
            if not connection.can_read(timeout=1):
                return
            reply = self.client.parse_response(connection, "EVALSHA")
            if not reply:
                return
            dest = bytes_to_str(reply[0])[len(self.global_keyprefix or "") :]
            if dest.rsplit(self.sep, 1)[0] in self._no_ack_queues:  # not in unacked: put back
                with self.conn_or_acquire() as client:
                    # RPUSH onto the consuming end, the first fetched last: it is next again.
                    client.rpush(dest, *reversed(reply[1::2]))
                return
            for raw in reversed(reply[1::2]):  # the same order: restore_by_tag RPUSHes too
                tag = loads(bytes_to_str(raw))["properties"]["delivery_tag"]
                self.qos.restore_by_tag(tag)
        except (*self.connection_errors, self.ResponseError, KeyError, TypeError, ValueError):
            pass  # it stays in unacked until the visibility timeout gives it back


class RedisTransport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`ReliableFetchChannel`; for ``redis://`` brokers."""

    Channel = ReliableFetchChannel

    #: The worker's event loop, once registered: idle channels schedule their next fetch on it.
    hub: Any = None

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        self.hub = loop
        super().register_with_event_loop(connection, loop)


class ReliableFetchSentinelChannel(ReliableFetchChannel, kombu_redis.SentinelChannel):
    """:class:`ReliableFetchChannel` on a master found through Redis Sentinel (REDIS_SENTINELS)."""


class SentinelTransport(RedisTransport, kombu_redis.SentinelTransport):
    """kombu's Sentinel transport with the atomic fetch; for ``sentinel://`` brokers."""

    Channel = ReliableFetchSentinelChannel
