"""Every Redis key name notifier uses, built in one place from ``REDIS_PREFIX``.

``Keys("notifier").record("abc")`` is ``notifier:n:abc``. The store, its Lua scripts (which get
these names as KEYS), the rate limiter, event intake, recovery and the tests all ask here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from notifier.messages import DEFAULT_QUEUE
from notifier.storage.records import STATUSES

__all__ = ["PUBLISHING", "Keys"]

#: Prefix of a ``P:scheduled`` member whose message went to RabbitMQ and awaits its confirm.
PUBLISHING = "published:"


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix (``P`` below).

    ============================  ==========  ==================================================
    key                           type        holds
    ============================  ==========  ==================================================
    ``P:n:ID``                    hash        one notification record
    ``P:n:ID:attempts``           list        its SMTP attempts (JSON), oldest first
    ``P:status:S``                sorted set  ids with status ``S``, scored by creation time
    ``P:all``                     sorted set  every id, scored by creation time
    ``P:scheduled``               sorted set  ids with a delayed task message, scored by due time
    ``P:scheduled:messages``      hash        id -> the task message to queue when due
                                              (with a BROKER_URL, ``published:ID`` members
                                              hold a message published but not yet
                                              confirmed, scored by when to publish it again)
    ``P:idem:SCOPE:KEY``          string      ``id|fingerprint`` of an Idempotency-Key request
    ``P:event:SHA256``            string      the result of a handled event (by dedupe key)
    ``P:events:ignored``          hash        event type -> how many had no routing rule
    ``P:ratelimit:IDENTITY``      hash        a token bucket
    ``P:n:ID:feedback``           list        bounces and complaints about it (JSON)
    ``P:sup:ADDRESS[|CATEGORY]``  hash        one suppression list entry
    ``P:sup:index``               sorted set  suppression entries, scored by creation time
    ``P:sup:expiry``              sorted set  entries with an expiry, scored by it
    ``P:soft:ADDRESS``            sorted set  recent soft bounces of an address, by time
    ``P:feedback:seen:SHA256``    string      a bounce/complaint already applied (replays)
    ``P:inbound:unclassified``    list        ids of kept inbound mail, newest first
    ``P:inbound:raw``             hash        id -> kept inbound mail (JSON)
    ``P:wh:inbox``                list        webhook events not yet fanned out (JSON)
    ``P:wh:endpoints``            sorted set  webhook endpoint ids, scored by creation time
    ``P:wh:ep:ID``                hash        one webhook endpoint (url, filter, secrets, ...)
    ``P:wh:ep:ID:msgs``           sorted set  messages fanned out to it, by event time
    ``P:wh:ep:ID:state``          hash        message id -> ``status|attempts`` for it
    ``P:wh:ep:ID:pending``        set         messages not yet delivered (its backlog)
    ``P:wh:ep:ID:failed``         sorted set  messages it never took, by when given up
    ``P:wh:ep:ID:log``            list        its delivery attempts (JSON), newest first
    ``P:wh:msg:ID``               string      one webhook message (JSON: owner, type, body)
    ``P:wh:scheduled``            sorted set  ``ENDPOINT MESSAGE`` deliveries, by due time
    ``QUEUE``                     list        Celery's queue (kombu's Redis transport)
    ``P:task-owner:TASK``         string      the API key that sent a ``/calculate`` task
    ``P:replication-barrier``     string      INCRed before WAIT (REDIS_WAIT_REPLICAS)
    ``celery-task-meta-TASK``     string      Celery's stored task result (its own name)
    ============================  ==========  ==================================================
    """

    prefix: str = "notifier"
    #: The Celery queue's list (not under the prefix: kombu names it after the queue).
    queue: str = DEFAULT_QUEUE

    def record(self, notification_id: str) -> str:
        return f"{self.prefix}:n:{notification_id}"

    def attempts(self, notification_id: str) -> str:
        return f"{self.record(notification_id)}:attempts"

    def status(self, status: str) -> str:
        return f"{self.prefix}:status:{status}"

    @property
    def all(self) -> str:
        return f"{self.prefix}:all"

    def index(self, status: str | None) -> str:
        """The index of ``status``, or of every record when ``status`` is None."""
        return self.status(status) if status else self.all

    @property
    def scheduled(self) -> str:
        return f"{self.prefix}:scheduled"

    @property
    def scheduled_messages(self) -> str:
        return f"{self.scheduled}:messages"

    def script_keys(self) -> list[str]:
        """The keys every store script gets first, in this order (see ``scripts/prelude.lua``)."""
        return [
            self.scheduled,
            self.scheduled_messages,
            self.queue,
            self.all,
            self.webhook_inbox,
            *(self.status(status) for status in STATUSES),
        ]

    def idempotency(self, scope: str, key: str) -> str:
        return f"{self.prefix}:idem:{scope}:{key}"

    def event_result(self, dedup_key: str) -> str:
        # Hashed: a dedupe key is a publisher's text of any length and alphabet.
        digest = hashlib.sha256(dedup_key.encode()).hexdigest()
        return f"{self.prefix}:event:{digest}"

    @property
    def events_ignored(self) -> str:
        return f"{self.prefix}:events:ignored"

    def rate_limit(self, identity: str) -> str:
        return f"{self.prefix}:ratelimit:{identity}"

    def task_owner(self, task_id: str) -> str:
        return f"{self.prefix}:task-owner:{task_id}"

    def replication_barrier(self) -> str:
        """Written before ``WAIT`` so the wait covers this connection's earlier writes."""
        return f"{self.prefix}:replication-barrier"

    def feedback(self, notification_id: str) -> str:
        return f"{self.record(notification_id)}:feedback"

    def suppression(self, entry_id: str) -> str:
        return f"{self.prefix}:sup:{entry_id}"

    @property
    def suppression_index(self) -> str:
        return f"{self.prefix}:sup:index"

    @property
    def suppression_expiry(self) -> str:
        return f"{self.prefix}:sup:expiry"

    def soft_bounces(self, address: str) -> str:
        return f"{self.prefix}:soft:{address}"

    def feedback_seen(self, dedupe_key: str) -> str:
        digest = hashlib.sha256(dedupe_key.encode()).hexdigest()
        return f"{self.prefix}:feedback:seen:{digest}"

    @property
    def unclassified(self) -> str:
        return f"{self.prefix}:inbound:unclassified"

    @property
    def unclassified_raw(self) -> str:
        return f"{self.prefix}:inbound:raw"

    @property
    def webhook_inbox(self) -> str:
        return f"{self.prefix}:wh:inbox"

    @property
    def webhook_endpoints(self) -> str:
        return f"{self.prefix}:wh:endpoints"

    def webhook_endpoint(self, endpoint_id: str) -> str:
        return f"{self.prefix}:wh:ep:{endpoint_id}"

    def webhook_endpoint_messages(self, endpoint_id: str) -> str:
        return f"{self.webhook_endpoint(endpoint_id)}:msgs"

    def webhook_endpoint_state(self, endpoint_id: str) -> str:
        return f"{self.webhook_endpoint(endpoint_id)}:state"

    def webhook_endpoint_pending(self, endpoint_id: str) -> str:
        return f"{self.webhook_endpoint(endpoint_id)}:pending"

    def webhook_endpoint_failed(self, endpoint_id: str) -> str:
        return f"{self.webhook_endpoint(endpoint_id)}:failed"

    def webhook_endpoint_log(self, endpoint_id: str) -> str:
        return f"{self.webhook_endpoint(endpoint_id)}:log"

    def webhook_message(self, message_id: str) -> str:
        return f"{self.prefix}:wh:msg:{message_id}"

    @property
    def webhook_scheduled(self) -> str:
        return f"{self.prefix}:wh:scheduled"

    @staticmethod
    def celery_result(task_id: str) -> str:
        """Where Celery's Redis result backend keeps a task's result (Celery's name, no prefix)."""
        return f"celery-task-meta-{task_id}"
