"""Capacity figures for README "Running at scale": the API row with and without
REDIS_WAIT_REPLICAS (master + replica), Redis operations and memory per notification, and
notifications per CPU-second of a worker.

    .venv/bin/python bench/scale.py [--requests 3000] [--notifications 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.loadgen import run_load  # noqa: E402
from bench.procs import UvicornServer, cpu_seconds, free_port  # noqa: E402
from tests.support.smtp_server import RecordingSMTPServer  # noqa: E402
from tests.support.worker import WorkerProcess, service_env  # noqa: E402

API_KEY = "scale-key"


def redis_server(directory: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
            "--logfile",
            str(directory / "redis.log"),
            *extra,
        ],
    )
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    return process


def request_body(i: int) -> tuple[bytes, dict[str, str]]:
    body = {
        "to": [f"user{i}@example.com"],
        "template": "welcome",
        "context": {"name": f"User {i}", "login_url": "https://example.com/login"},
    }
    return json.dumps(body).encode(), {
        "Authorization": f"Bearer {API_KEY}",
        "Idempotency-Key": f"scale-{uuid.uuid4()}",
    }


def api_env(redis_url: str, smtp_port: int, **extra: str) -> dict[str, str]:
    env = service_env(redis_url=redis_url, smtp_port=smtp_port)
    env.update({"API_KEYS": API_KEY, "WORKER_EVENTS": "false", **extra})
    return env


def api_row(tmp: Path, port: int, smtp_port: int, *, wait: int, requests: int) -> dict[str, Any]:
    extra = {"REDIS_WAIT_REPLICAS": str(wait), "REDIS_WAIT_TIMEOUT_MS": "100"}
    server = UvicornServer(
        app="api.main:app",
        cwd=REPO,
        env=api_env(f"redis://127.0.0.1:{port}/0", smtp_port, **extra),
        log_path=tmp / f"api-wait{wait}.log",
    )
    server.start()
    try:

        async def load(total: int, offset: int) -> Any:
            return await run_load(
                port=server.port,
                path="/api/v1/notifications",
                make_request=lambda i: request_body(offset + i),
                concurrency=16,
                total=total,
                max_seconds=120,
            )

        asyncio.run(load(300, 10_000_000))  # warm-up
        result = asyncio.run(load(requests, 0)).as_dict()
    finally:
        server.stop(timeout=10)
    return {k: result[k] for k in ("requests", "rps", "p50_ms", "p99_ms", "statuses")}


def key_sizes(client: redis.Redis) -> dict[str, int]:
    """Average MEMORY USAGE of each kind of per-notification key, and the index totals."""
    kinds = {
        "record hash": "notifier:n:*",
        "attempts list": "notifier:n:*:attempts",
        "celery result": "celery-task-meta-*",
        "idempotency key": "notifier:idem:*",
    }
    sizes: dict[str, int] = {}
    for kind, pattern in kinds.items():
        keys = [
            k
            for k in client.scan_iter(match=pattern, count=1000)
            if kind != "record hash" or k.count(":") == 2
        ][:200]
        usages = [client.memory_usage(k) or 0 for k in keys]
        sizes[kind] = round(sum(usages) / len(usages)) if usages else 0
    indexes = ["notifier:all", *client.scan_iter(match="notifier:status:*")]
    sizes["index sorted sets (total)"] = sum(client.memory_usage(k) or 0 for k in indexes)
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--notifications", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3, help="API runs per WAIT setting")
    parser.add_argument("--api-only", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="notifier-scale-"))
    smtp = RecordingSMTPServer()
    smtp.start()
    master_port, replica_port = free_port(), free_port()
    servers = [
        redis_server(tmp / "master", master_port),
        redis_server(tmp / "replica", replica_port, "--replicaof", "127.0.0.1", str(master_port)),
    ]
    report: dict[str, Any] = {}
    try:
        master = redis.Redis(port=master_port, decode_responses=True)
        while master.info("replication").get("connected_slaves", 0) < 1:
            time.sleep(0.1)

        # 1. The API row, WAIT off and on, twice each (alternating, against this box's noise).
        rows: dict[str, list[dict[str, Any]]] = {"wait_0": [], "wait_1": []}
        for _ in range(args.rounds):
            for wait in (0, 1):
                master.flushall()
                rows[f"wait_{wait}"].append(
                    api_row(tmp, master_port, smtp.port, wait=wait, requests=args.requests)
                )
        report["api"] = rows
        if args.api_only:
            print(json.dumps(report, indent=2))
            return

        # 2. One notification end to end (API accept, worker delivery): Redis calls, memory.
        master.flushall()
        before_memory = int(master.info("memory")["used_memory"])
        master.config_resetstat()
        env = api_env(f"redis://127.0.0.1:{master_port}/0", smtp.port)
        worker = WorkerProcess(env=env, log_path=tmp / "worker.log", concurrency=1)
        worker.start(timeout=60)
        server = UvicornServer(app="api.main:app", cwd=REPO, env=env, log_path=tmp / "api.log")
        server.start()
        n = args.notifications
        try:
            processes = [worker.process.pid, *worker.child_pids()]  # type: ignore[union-attr]
            cpu_before = sum(cpu_seconds(pid) or 0.0 for pid in processes)
            started = time.monotonic()
            asyncio.run(
                run_load(
                    port=server.port,
                    path="/api/v1/notifications",
                    make_request=request_body,
                    concurrency=8,
                    total=n,
                    max_seconds=300,
                )
            )
            while len(smtp.messages) < n and time.monotonic() - started < 600:
                time.sleep(0.2)
            elapsed = time.monotonic() - started
            cpu_used = sum(cpu_seconds(pid) or 0.0 for pid in processes) - cpu_before
        finally:
            server.stop(timeout=10)
            worker.terminate()
        stats = master.info("commandstats")
        calls = {name.removeprefix("cmdstat_"): v["calls"] for name, v in stats.items()}
        total_calls = sum(calls.values())
        after_memory = int(master.info("memory")["used_memory"])
        record_key = next(
            (k for k in master.scan_iter(match="notifier:n:*", count=1000) if k.count(":") == 2),
            None,
        )
        report["end_to_end"] = {
            "notifications": n,
            "delivered": len(smtp.messages),
            "seconds": round(elapsed, 1),
            "worker_cpu_seconds": round(cpu_used, 2),
            "notifications_per_worker_cpu_second": round(n / cpu_used, 1) if cpu_used else None,
            "redis_calls_per_notification": round(total_calls / n, 2),
            "redis_calls_top": dict(sorted(calls.items(), key=lambda kv: -kv[1])[:12]),
            "redis_bytes_per_notification": round((after_memory - before_memory) / n),
            "memory_usage_of_one_record_hash": master.memory_usage(record_key)
            if record_key
            else None,
            "keys": master.dbsize(),
            "bytes_by_key_kind": key_sizes(master),
        }
    finally:
        for process in servers:
            process.kill()
            process.wait()
        smtp.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
