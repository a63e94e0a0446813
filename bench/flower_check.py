"""Check with a real Flower that it shows notifier's workers and tasks with WORKER_EVENTS=false.

Flower turns task events on in the workers it watches (the ``enable_events`` control command),
so notifier can leave them off by default. Flower is not a dependency: install it anywhere,

    python -m venv /tmp/flower && /tmp/flower/bin/pip install flower redis
    .venv/bin/python bench/flower_check.py --celery /tmp/flower/bin/celery

and this starts a private Redis, the latency relay, a worker (``-c 2``, the default pool) and
Flower, publishes 20 ``notifier.send`` tasks and prints what Flower's API reports. Exit
status 0 when Flower lists the worker and all 20 tasks as SUCCESS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from celery import Celery  # noqa: E402

from bench.procs import free_port  # noqa: E402
from bench.relay import LatencyRelay  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.worker import service_env  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--celery", required=True, help="the celery command of Flower's venv")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="notifier-flower-"))
    redis = RedisServer(tmp / "redis")
    redis.start()
    relay = LatencyRelay()
    relay.start()
    env = service_env(redis_url=redis.url, smtp_port=relay.port, extra={"WORKER_EVENTS": "false"})
    worker_log = tmp / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "notifier", "worker", "-c", "2", "-l", "info"],
        cwd=REPO,
        env=env,
        stdout=worker_log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    port = free_port()
    flower = subprocess.Popen(
        [args.celery, "--broker", redis.url, "flower", f"--port={port}", "--address=127.0.0.1"],
        env={**os.environ, "FLOWER_UNAUTHENTICATED_API": "true"},
        stdout=(tmp / "flower.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def get(path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return json.loads(answer.read())

    try:
        deadline = time.monotonic() + 60
        while b" ready." not in worker_log.read_bytes():
            if time.monotonic() > deadline:
                raise RuntimeError(worker_log.read_text()[-2000:])
            time.sleep(0.2)
        while True:
            try:
                workers = get("/api/workers?refresh=1")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        for name, info in workers.items():
            stats = info.get("stats", {})
            pool = stats.get("pool", {})
            print(f"worker {name}: pool {pool.get('implementation')}, processes ", end="")
            print(f"{pool.get('processes')}, prefetch {stats.get('prefetch_count')}")
        time.sleep(3)  # Flower enables events in the workers it found
        client = Celery("flower_check", broker=redis.url, backend=redis.url)
        request = {"template": "plain", "context": {"subject": "s", "body": "b"}}
        ids = [
            client.send_task("notifier.send", kwargs={**request, "to": [f"f{i}@example.com"]}).id
            for i in range(20)
        ]
        while relay.count < 20 and time.monotonic() < deadline + 30:
            time.sleep(0.2)
        time.sleep(2)
        tasks = get("/api/tasks")
        states: dict[str, int] = {}
        for task_id in ids:
            state = str(tasks.get(task_id, {}).get("state"))
            states[state] = states.get(state, 0) + 1
        lines = worker_log.read_text().splitlines()
        enabled = [line for line in lines if "enabled by remote" in line]
        print(f"relay received {relay.count}; Flower's states for the 20 tasks: {states}")
        print(f"worker log: {enabled[:1]}")
        return 0 if workers and states == {"SUCCESS": 20} else 1
    finally:
        for process in (flower, worker):
            os.killpg(process.pid, 15)
        worker.wait(30)
        flower.wait(10)
        relay.stop()
        redis.kill()


if __name__ == "__main__":
    sys.exit(main())
