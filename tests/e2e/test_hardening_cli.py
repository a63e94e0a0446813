"""Issue 14 items 16 and 17: the operator CLI, run as a subprocess against the real Redis."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import orjson

from notifier.intake import record_rejected
from notifier.storage.redis import connect_redis
from notifier.storage.store import NotificationStore
from tests.support.redis_server import RedisServer


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "notifier.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_failed_can_show_the_recipients(redis_server: RedisServer) -> None:
    prefix = f"h14-{uuid.uuid4().hex[:8]}"
    notification_id = str(uuid.uuid4())

    async def dead_letter() -> None:
        redis = connect_redis(redis_server.url)
        try:
            store = NotificationStore(redis, prefix=prefix)
            fields = {"source": "api", "to": orjson.dumps(["ada.lovelace@example.com"]).decode()}
            await record_rejected(
                store, notification_id, fields=fields, reason="550 ada.lovelace@example.com"
            )
        finally:
            await redis.aclose()

    asyncio.run(dead_letter())
    env = {"REDIS_URL": redis_server.url, "REDIS_PREFIX": prefix}
    masked = cli(env, "failed")
    assert masked.returncode == 0, masked.stderr
    assert notification_id in masked.stdout and "ada.lovelace@" not in masked.stdout
    shown = cli(env, "failed", "--show-recipients")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("ada.lovelace@example.com") == 2  # the recipient and the reason


def test_celery_worker_with_invalid_settings_says_so_in_one_line(tmp_path: Path) -> None:
    celery = str(Path(sys.executable).with_name("celery"))
    result = subprocess.run(
        [celery, "-A", "notifier", "worker"],
        env={**os.environ, "RETRY_MAX_ATTEMPTS": "0"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "RETRY_MAX_ATTEMPTS" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
