"""POST/GET/DELETE /api/v1/notifications and the dead-letter view, end to end."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from notifier.storage.keys import Keys
from tests.e2e.api.conftest import assert_nothing_sent, assert_problem, welcome
from tests.support.records import wait_for_status
from tests.support.redis_server import RedisServer
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.usefixtures("worker")


def test_send_is_delivered_and_recorded(
    client: httpx.Client, smtp: RecordingSMTPServer, redis_server: RedisServer
) -> None:
    body = welcome("Ada Lovelace <ada@example.com>", cc=["cc@example.com"])
    body["bcc"] = ["audit@example.com"]
    body["metadata"] = {"user_id": "42"}
    response = client.post("/api/v1/notifications", json=body)

    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "queued"
    assert str(uuid.UUID(accepted["id"], version=4)) == accepted["id"]
    assert response.headers["location"] == f"/api/v1/notifications/{accepted['id']}"

    message = smtp.wait_for(1, to="ada@example.com")[0]
    assert sorted(message.rcpt_tos) == ["ada@example.com", "audit@example.com", "cc@example.com"]
    wait_for_status(redis_server.url, accepted["id"], {"sent"})
    record = client.get(response.headers["location"]).json()
    assert record["status"] == "sent"
    assert record["template"] == "welcome" and record["locale"] == "en"
    assert record["to"] == ["Ada Lovelace <ada@example.com>"]
    assert record["cc"] == ["cc@example.com"] and record["bcc"] == ["audit@example.com"]
    assert record["metadata"] == {"user_id": "42"}
    assert record["message_id"] == message.message_id
    assert record["attempts"][0]["code"] == 250 and record["attempts"][0]["outcome"] == "sent"
    assert record["created_at"].endswith("Z") and record["sent_at"].endswith("Z")
    assert record["smtp_reply"]


def test_raw_content_to_an_idn_domain_is_delivered(
    client: httpx.Client, smtp: RecordingSMTPServer
) -> None:
    response = client.post(
        "/api/v1/notifications",
        json={"to": "user@bücher.example", "subject": "Привет", "text": "Plain body"},
    )
    assert response.status_code == 202, response.text
    message = smtp.wait_for(1)[0]
    assert list(message.rcpt_tos) == ["user@xn--bcher-kva.example"]
    assert message.parsed()["Subject"] == "Привет"


def test_scheduled_then_cancelled_is_never_sent(
    client: httpx.Client, smtp: RecordingSMTPServer, redis_server: RedisServer
) -> None:
    send_at = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
    response = client.post(
        "/api/v1/notifications", json=welcome("later@example.com", send_at=send_at)
    )
    assert response.status_code == 202, response.text
    notification_id = response.json()["id"]
    assert response.json()["status"] == "scheduled"
    assert client.get(f"/api/v1/notifications/{notification_id}").json()["send_at"]

    cancelled = client.delete(f"/api/v1/notifications/{notification_id}")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json() == {"id": notification_id, "status": "cancelled"}
    assert client.get(f"/api/v1/notifications/{notification_id}").json()["status"] == "cancelled"
    assert redis_server.client().zscore(Keys().scheduled, notification_id) is None

    again = client.delete(f"/api/v1/notifications/{notification_id}")
    body = assert_problem(again, 409)
    assert body["current_status"] == "cancelled" and "cancelled" in body["detail"]
    assert_nothing_sent(client, smtp)


def test_scheduled_is_sent_when_due(
    client: httpx.Client, smtp: RecordingSMTPServer, redis_server: RedisServer
) -> None:
    send_at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    response = client.post(
        "/api/v1/notifications", json=welcome("due@example.com", send_at=send_at)
    )
    assert response.json()["status"] == "scheduled"
    smtp.wait_for(1, to="due@example.com")
    wait_for_status(redis_server.url, response.json()["id"], {"sent"})


def test_cancel_after_sending_is_a_conflict_naming_the_status(
    client: httpx.Client, smtp: RecordingSMTPServer, redis_server: RedisServer
) -> None:
    notification_id = client.post("/api/v1/notifications", json=welcome("x@example.com")).json()[
        "id"
    ]
    wait_for_status(redis_server.url, notification_id, {"sent"})
    body = assert_problem(client.delete(f"/api/v1/notifications/{notification_id}"), 409)
    assert body["current_status"] == "sent"
    assert "is sent" in body["detail"]
    assert len(smtp.messages_to("x@example.com")) == 1


def test_failed_notification_is_requeued_by_retry(
    client: httpx.Client, smtp: RecordingSMTPServer, redis_server: RedisServer
) -> None:
    smtp.fail(550, recipients=["dead@example.com"])
    notification_id = client.post("/api/v1/notifications", json=welcome("dead@example.com")).json()[
        "id"
    ]
    wait_for_status(redis_server.url, notification_id, {"failed"})
    record = client.get(f"/api/v1/notifications/{notification_id}").json()
    assert record["error_code"] == 550 and record["reason"]
    assert [a["code"] for a in record["attempts"]] == [550]
    assert smtp.messages == []

    smtp.reset()  # the server accepts from now on
    response = client.post(f"/api/v1/notifications/{notification_id}/retry")
    assert response.status_code == 202, response.text
    assert response.json() == {"id": notification_id, "status": "queued"}
    smtp.wait_for(1, to="dead@example.com")
    wait_for_status(redis_server.url, notification_id, {"sent"})

    body = assert_problem(client.post(f"/api/v1/notifications/{notification_id}/retry"), 409)
    assert body["current_status"] == "sent"
    assert_nothing_sent(client, smtp, expected=1)


def test_unknown_id_is_404(client: httpx.Client) -> None:
    unknown = str(uuid.uuid4())
    assert_problem(client.get(f"/api/v1/notifications/{unknown}"), 404)
    assert_problem(client.delete(f"/api/v1/notifications/{unknown}"), 404)
    assert_problem(client.post(f"/api/v1/notifications/{unknown}/retry"), 404)


def test_dead_letters_are_listed_newest_first_in_pages(
    client: httpx.Client, smtp: RecordingSMTPServer, redis_server: RedisServer
) -> None:
    addresses = [f"bounce{i}@example.com" for i in range(3)]
    smtp.fail(550, recipients=addresses)
    ids = []
    for address in addresses:
        ids.append(client.post("/api/v1/notifications", json=welcome(address)).json()["id"])
    for notification_id in ids:
        wait_for_status(redis_server.url, notification_id, {"failed"})

    first = client.get("/api/v1/notifications", params={"status": "failed", "limit": 2})
    assert first.status_code == 200, first.text
    page = first.json()
    assert [item["id"] for item in page["items"]] == ids[::-1][:2]
    assert all(item["status"] == "failed" for item in page["items"])
    assert page["next_cursor"]

    seen = [item["id"] for item in page["items"]]
    cursor = page["next_cursor"]
    while cursor:
        page = client.get(
            "/api/v1/notifications", params={"status": "failed", "limit": 2, "cursor": cursor}
        ).json()
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
    assert len(seen) == len(set(seen))
    assert [i for i in seen if i in ids] == ids[::-1]

    assert_problem(
        client.get("/api/v1/notifications", params={"status": "lost"}), 422, field="status"
    )
    assert_problem(client.get("/api/v1/notifications", params={"limit": 0}), 422, field="limit")
    assert_problem(client.get("/api/v1/notifications", params={"cursor": "x"}), 422, field="cursor")


def test_batch_accepts_valid_items_and_rejects_invalid_ones(
    client: httpx.Client, smtp: RecordingSMTPServer, redis_server: RedisServer
) -> None:
    items: list[dict[str, object]] = [welcome(f"batch{i}@example.com") for i in range(30)]
    items[5] = welcome("not-an-address")
    items[17] = {
        "to": "batch17@example.com",
        "template": "password_reset",
        "context": {"name": "A"},
    }

    response = client.post("/api/v1/notifications/batch", json={"notifications": items})

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 28 and body["rejected"] == 2
    results = body["results"]
    assert [r["index"] for r in results] == list(range(30))
    assert results[5]["status"] == "rejected" and results[5]["errors"][0]["field"] == "to[0]"
    assert results[17]["status"] == "rejected"
    assert results[17]["errors"][0]["field"] == "context.reset_url"
    accepted = [r for r in results if r["status"] == "queued"]
    assert len(accepted) == 28 and len({r["id"] for r in accepted}) == 28
    smtp.wait_for(28)
    for result in accepted:
        wait_for_status(redis_server.url, result["id"], {"sent"})
    assert_nothing_sent(client, smtp, expected=28)


def test_batch_over_the_limit_is_rejected_whole(
    client: httpx.Client, smtp: RecordingSMTPServer
) -> None:
    items = [welcome(f"many{i}@example.com") for i in range(501)]
    response = client.post("/api/v1/notifications/batch", json={"notifications": items})
    assert_problem(response, 422, field="notifications")
    assert_problem(
        client.post("/api/v1/notifications/batch", json={"notifications": []}),
        422,
        field="notifications",
    )
    assert_nothing_sent(client, smtp)


def test_worker_fixture_is_alive(worker: WorkerProcess) -> None:
    assert worker.child_pids()
