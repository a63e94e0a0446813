"""Run every benchmark in one go and print the figures, the ratios and the targets.

Usage: ``python bench/run.py [--n 5000] [--relay-n 1000] [--only raw,seed,...]
[--sink auto|smtp-sink|aiosmtpd] [--rtt 5 --accept 25]`` (``make bench`` runs it with the
defaults). Rows 1-6 run against a zero-latency sink; the ``relay_*`` rows against
``bench/relay.py``, an SMTP relay that answers each command RTT ms after it arrived and each
message ACCEPT ms later. See bench/README.md for what each row means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import aiosmtplib  # noqa: E402
import httpx  # noqa: E402
from celery import Celery  # noqa: E402

from bench.loadgen import run_load  # noqa: E402
from bench.procs import (  # noqa: E402
    BENCH,
    CeleryWorker,
    CpuMeter,
    ManagedProcess,
    RedisProcess,
    UvicornServer,
    rss_kib,
)
from bench.sink import (  # noqa: E402
    CountingSink,
    RelaySink,
    SinkStalled,
    make_sink,
    sink_summary,
)

ROWS = (
    "raw",
    "seed",
    "fastapi_mail",
    "notifier",
    "notifier_dkim",
    "notifier_rabbitmq",
    "batch",
    "api",
    "relay_seed",
    "relay_fastapi_mail",
    "relay_send",
    "relay_event",
    "relay_http",
    "relay_batch",
)
LABELS = {
    "raw": "1. raw ceiling (1 aiosmtplib connection)",
    "seed": "2. seed design (Celery, asyncio.run + new connection per mail)",
    "fastapi_mail": "3. fastapi-mail in Celery",
    "notifier": "4. notifier one-by-one (send_task notifier.send)",
    "notifier_dkim": "4d. notifier one-by-one with DKIM on (RSA 2048)",
    "notifier_rabbitmq": "4r. notifier one-by-one, RabbitMQ broker (BROKER_URL, quorum queue)",
    "batch": "5. notifier batch (POST /notifications/batch)",
    "api": "6. API POST /api/v1/notifications vs seed endpoint",
    "relay_seed": "R2. relay: seed design",
    "relay_fastapi_mail": "R3. relay: fastapi-mail in Celery",
    "relay_send": "R4. relay: notifier.send one by one",
    "relay_event": "R5. relay: notifier.event one by one",
    "relay_http": "R6. relay: HTTP POST /api/v1/notifications one each",
    "relay_batch": "R7. relay: HTTP batch (POST /notifications/batch)",
}
API_KEY = "bench-key"
MAIL_FROM = "Notifier Bench <notifier@example.com>"
LOGIN_URL = "https://app.example.com/login"
#: Unmeasured messages before a notifier one-by-one row: enough for a burst that keeps every
#: process's SENDS_IN_FLIGHT_PER_PROCESS (64) busy, so RSS is sampled from a warm process.
NOTIFIER_WARMUP = 500
# Redis databases, one per system under test, so their queues never mix.
DB_NOTIFIER, DB_SEED, DB_FASTAPI_MAIL = 0, 1, 2


class Skipped(Exception):
    """A row that cannot run here; the reason is printed and stored."""


def welcome_request(i: int) -> dict[str, Any]:
    """The wire-shape body of one welcome notification (HTTP API body and notifier.send kwargs)."""
    return {
        "to": [f"user{i}@example.com"],
        "template": "welcome",
        "locale": "en",
        "context": {"name": f"User {i}", "login_url": LOGIN_URL},
    }


def welcome_event(i: int, run_id: str) -> dict[str, Any]:
    """A CloudEvents envelope the shipped rules turn into one welcome email."""
    return {
        "specversion": "1.0",
        "type": "user.registered",
        "source": "bench",
        "id": f"bench-{run_id}-{i}",
        "data": {
            "email": f"user{i}@example.com",
            "name": f"User {i}",
            "login_url": LOGIN_URL,
            "locale": "en",
        },
    }


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.n: int = args.n
        self.warmup: int = args.warmup
        self.tmp = Path(tempfile.mkdtemp(prefix="notifier-bench-"))
        self.logs = BENCH / "results" / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.redis = RedisProcess(self.tmp / "redis")
        self.zero_sink: CountingSink = make_sink(args.sink)
        self.relay = RelaySink(rtt_ms=args.rtt, accept_ms=args.accept)
        #: The SMTP server the rows run against now (the zero-latency sink or the relay).
        self.sink: CountingSink = self.zero_sink
        self.relay_n: int = args.relay_n
        self.notifier_worker: CeleryWorker | None = None
        #: BROKER_URL of the notifier rows (RabbitMQ, row 4r); None: the Redis broker.
        self.broker_url: str | None = None
        self.processes: list[ManagedProcess] = []

    # Environment and processes.

    def base_env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SMTP_", "API_", "RATE_", "REDIS_", "CELERY_", "MAIL_"))
        }
        env.update({"PYTHONUNBUFFERED": "1", "SMTP_HOST": self.sink.host})
        env["SMTP_PORT"] = str(self.sink.port)
        return env

    def notifier_env(self) -> dict[str, str]:
        env = self.base_env()
        env.update(
            {
                "REDIS_URL": self.redis.url(DB_NOTIFIER),
                "SMTP_SECURITY": "none",
                "MAIL_FROM": MAIL_FROM,
                "TEMPLATES_DIR": str(REPO / "templates"),
                "NOTIFIER_ENV": "development",
                "API_KEYS": API_KEY,
                "PYTHONPATH": str(REPO),
            }
        )
        env.update(self.args.worker_env)
        return env

    def start_notifier_worker(self) -> CeleryWorker:
        if self.notifier_worker is None:
            worker = CeleryWorker(
                app=self.args.notifier_app,
                cwd=REPO,
                env=self.notifier_env(),
                log_path=self.logs / "notifier-worker.log",
                concurrency=self.args.processes,
                pool=self.args.notifier_pool,
            )
            worker.start()
            self.processes.append(worker)
            self.notifier_worker = worker
        return self.notifier_worker

    def stop_notifier_worker(self) -> None:
        if self.notifier_worker is not None:
            self.notifier_worker.stop()
            self.notifier_worker = None

    def publisher(self, db: int) -> Celery:
        """A bare client that knows only the broker URL, like the seed's publisher."""
        client = Celery("bench_publisher", broker=self.broker_url or self.redis.url(db))
        client.conf.update(task_serializer="json", accept_content=["json"])
        if self.broker_url:
            client.conf.task_default_queue_type = "quorum"  # as the worker declares it
        return client

    # Measurement helpers.

    def cpu_meter(self, worker: CeleryWorker | None) -> CpuMeter:
        assert self.redis.process is not None and self.sink.process is not None
        processes = {"redis-server": [self.redis.pid], "sink": [self.sink.process.pid]}
        if self.broker_url:
            processes["rabbitmq (beam.smp)"] = rabbitmq_pids()
        if worker is not None:
            processes["worker main process"] = [worker.pid]
            processes["worker pool processes"] = worker.child_pids()
        return CpuMeter(processes)

    def drain(
        self,
        *,
        publish: Callable[[int], None],
        n: int,
        warm: bool = True,
        worker: CeleryWorker | None = None,
    ) -> dict[str, Any]:
        """Warm up, then publish ``n`` messages and time until the sink has them all."""
        if warm and self.warmup:
            base = self.sink.count
            for i in range(self.warmup):
                publish(-1 - i)
            self.sink.wait_for(base + self.warmup)
        base = self.sink.count
        meter = self.cpu_meter(worker)
        meter.start()
        started = time.monotonic()
        for i in range(n):
            publish(i)
        published = time.monotonic() - started
        done = self.sink.wait_for(base + n)
        elapsed = done - started
        cpu = meter.stop(messages=n)
        time.sleep(0.5)  # anything beyond n would be a duplicate
        return {
            "messages": n,
            "seconds": round(elapsed, 3),
            "msg_per_s": round(n / elapsed, 1),
            "publish_seconds": round(published, 3),
            "extra_messages": self.sink.count - base - n,
            **cpu,
        }

    # The rows.

    def row_raw(self) -> dict[str, Any]:
        from notifier.compose.addresses import parse_address
        from notifier.compose.mime import build_email
        from notifier.compose.rendering import TemplateRenderer

        renderer = TemplateRenderer(REPO / "templates")
        request = welcome_request(0)
        rendered = renderer.render("welcome", request["context"], locale="en")
        email = build_email(
            notification_id=str(uuid.uuid4()),
            sender=parse_address(MAIL_FROM, field="MAIL_FROM"),
            to=[parse_address(request["to"][0], field="to")],
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
        )
        data = email.as_bytes()
        envelope_from = email.envelope_from
        recipients = [[f"user{i}@example.com"] for i in range(self.n)]

        async def send_all() -> dict[str, Any]:
            smtp = aiosmtplib.SMTP(hostname=self.sink.host, port=self.sink.port, timeout=30)
            await smtp.connect()
            try:
                for i in range(self.warmup):
                    await smtp.sendmail(envelope_from, [f"warm{i}@example.com"], data)
                base = self.sink.count
                meter = self.cpu_meter(None)
                meter.start()
                started = time.monotonic()
                for rcpt in recipients:
                    await smtp.sendmail(envelope_from, rcpt, data)
                done = await asyncio.to_thread(self.sink.wait_for, base + self.n)
                elapsed = done - started
                cpu = meter.stop(messages=self.n)
            finally:
                await smtp.quit()
            return {
                "messages": self.n,
                "seconds": round(elapsed, 3),
                "msg_per_s": round(self.n / elapsed, 1),
                "message_bytes": len(data),
                **cpu,
            }

        return asyncio.run(send_all())

    def _plain_celery_row(
        self,
        *,
        name: str,
        db: int,
        task: str,
        make_args: Callable[[int], list[Any]],
        n: int | None = None,
    ) -> dict[str, Any]:
        self.redis.client(db).flushdb()
        env = self.base_env()
        env.update(
            {
                "REDIS_URL": self.redis.url(db),
                "MAIL_FROM": MAIL_FROM,
                "MAIL_FROM_ADDRESS": "notifier@example.com",
            }
        )
        worker = CeleryWorker(
            app="tasks",
            cwd=BENCH / f"{name}_worker",
            env=env,
            log_path=self.logs / f"{name}-worker.log",
            concurrency=self.args.processes,
        )
        worker.start()
        self.processes.append(worker)
        client = self.publisher(db)
        try:
            result = self.drain(
                publish=lambda i: client.send_task(task, args=make_args(i)),
                n=n or self.n,
                worker=worker,
            )
        finally:
            worker.stop()
            client.close()
        result["worker_log"] = str(worker.log_path.relative_to(REPO))
        return result

    def row_seed(self, n: int | None = None) -> dict[str, Any]:
        return self._plain_celery_row(
            name="seed",
            db=DB_SEED,
            task="send_email_task",
            make_args=lambda i: [f"user{i}@example.com", "Welcome!", "Thanks for registering!"],
            n=n,
        )

    def row_fastapi_mail(self, n: int | None = None) -> dict[str, Any]:
        try:
            import fastapi_mail  # noqa: F401
        except ImportError:
            raise Skipped("fastapi-mail is not installed (pip install -e '.[bench]')") from None
        return self._plain_celery_row(
            name="fastapi_mail",
            db=DB_FASTAPI_MAIL,
            task="send_welcome_email",
            make_args=lambda i: [f"user{i}@example.com", f"User {i}", LOGIN_URL],
            n=n,
        )

    def row_relay_seed(self) -> dict[str, Any]:
        return self.row_seed(self.relay_n)

    def row_relay_fastapi_mail(self) -> dict[str, Any]:
        return self.row_fastapi_mail(self.relay_n)

    def row_relay_send(self) -> dict[str, Any]:
        return self.row_notifier(self.relay_n)

    def row_relay_event(self) -> dict[str, Any]:
        return self.row_notifier(self.relay_n, task="notifier.event")

    def row_relay_batch(self) -> dict[str, Any]:
        return self.row_batch(self.relay_n)

    def row_notifier(self, n: int | None = None, *, task: str = "notifier.send") -> dict[str, Any]:
        self.stop_notifier_worker()
        self.redis.client(DB_NOTIFIER).flushdb()
        worker = self.start_notifier_worker()
        client = self.publisher(DB_NOTIFIER)
        sampler = RssSampler(worker)
        profilers: list[subprocess.Popen[bytes]] = []
        run_id = uuid.uuid4().hex[:8]

        def publish(i: int) -> None:
            if task == "notifier.event":
                client.send_task(task, args=[welcome_event(i, run_id)])
            else:
                client.send_task(task, kwargs=welcome_request(i))

        try:
            # Warm up first, so the samples start with templates loaded and SMTP connected,
            # and with a burst that fills every process's sends in flight (all its threads
            # and connections made).
            warmup = max(self.warmup, NOTIFIER_WARMUP) if self.warmup else 0
            base = self.sink.count
            for i in range(warmup):
                publish(-1 - i)
            self.sink.wait_for(base + warmup)
            sampler.start()
            if self.args.profile:
                profilers = start_profilers(worker, self.logs)
            result = self.drain(publish=publish, n=n or self.n, warm=False, worker=worker)
        finally:
            sampler.stop()
            for profiler in profilers:
                # py-spy writes its output when interrupted.
                profiler.send_signal(signal.SIGINT)
                profiler.wait(60)
            client.close()
        result["rss"] = sampler.summary()
        result["worker_log"] = str(worker.log_path.relative_to(REPO))
        if profilers:
            result["profiles"] = [str(p) for p in sorted(self.logs.glob("profile-*.txt"))]
        return result

    def row_notifier_dkim(self) -> dict[str, Any]:
        """Row 4 with every message DKIM-signed (RSA 2048): what signing costs per message."""
        from notifier.delivery.dkim import generate_key

        key_file = self.tmp / "dkim.pem"
        key_file.write_bytes(generate_key("rsa"))
        saved = dict(self.args.worker_env)
        self.args.worker_env.update(
            {
                "DKIM_DOMAIN": "example.com",
                "DKIM_SELECTOR": "bench",
                "DKIM_PRIVATE_KEY_FILE": str(key_file),
            }
        )
        try:
            return self.row_notifier()
        finally:
            # The next rows get a worker without DKIM.
            self.stop_notifier_worker()
            self.args.worker_env.clear()
            self.args.worker_env.update(saved)

    def api_paths(self, server: UvicornServer) -> set[str]:
        response = httpx.get(f"{server.base_url}/openapi.json", timeout=10)
        response.raise_for_status()
        return set(response.json().get("paths", {}))

    def start_api(self, *, app: str, env: dict[str, str], log: str) -> UvicornServer:
        server = UvicornServer(app=app, cwd=REPO, env=env, log_path=self.logs / log)
        server.start()
        self.processes.append(server)
        return server

    def require_notifier_api(self) -> None:
        if not (REPO / "api" / "main.py").exists():
            raise Skipped("api/main.py does not exist yet (the API issue is not merged)")

    def row_batch(self, n: int | None = None) -> dict[str, Any]:
        self.require_notifier_api()
        batch_size = 500
        n = n or self.n
        worker = self.start_notifier_worker()
        server = self.start_api(app="api.main:app", env=self.notifier_env(), log="notifier-api.log")
        try:
            if "/api/v1/notifications/batch" not in self.api_paths(server):
                raise Skipped("the API has no POST /api/v1/notifications/batch yet")
            headers = {"Authorization": f"Bearer {API_KEY}"}
            with httpx.Client(base_url=server.base_url, headers=headers, timeout=120) as http:
                rejected: list[Any] = []

                def post(first: int, count: int) -> None:
                    items = [welcome_request(first + k) for k in range(count)]
                    response = http.post(
                        "/api/v1/notifications/batch", json={"notifications": items}
                    )
                    if response.status_code >= 300:
                        raise RuntimeError(
                            f"batch answered {response.status_code}: {response.text[:500]}"
                        )
                    rejected.extend(batch_rejections(response.json()))

                # Warm-up batch: the API's first request and the worker's connections.
                if self.warmup:
                    base = self.sink.count
                    post(-10 * n - self.warmup, self.warmup)
                    self.sink.wait_for(base + self.warmup)
                base = self.sink.count
                meter = self.cpu_meter(worker)
                meter.processes["api (uvicorn)"] = [server.pid]
                meter.start()
                started = time.monotonic()
                for first in range(0, n, batch_size):
                    post(first, min(batch_size, n - first))
                    if rejected:
                        raise RuntimeError(f"batch items rejected: {rejected[:3]}")
                published = time.monotonic() - started
                done = self.sink.wait_for(base + n)
                elapsed = done - started
                cpu = meter.stop(messages=n)
                time.sleep(0.5)
        finally:
            server.stop()
        return {
            "messages": n,
            "seconds": round(elapsed, 3),
            "msg_per_s": round(n / elapsed, 1),
            "publish_seconds": round(published, 3),
            "batch_size": batch_size,
            "extra_messages": self.sink.count - base - n,
            "worker_log": str(worker.log_path.relative_to(REPO)),
            **cpu,
        }

    def row_relay_http(self) -> dict[str, Any]:
        """One POST per notification (16 connections), the worker sending meanwhile."""
        self.require_notifier_api()
        self.stop_notifier_worker()
        self.redis.client(DB_NOTIFIER).flushdb()
        worker = self.start_notifier_worker()
        server = self.start_api(app="api.main:app", env=self.notifier_env(), log="notifier-api.log")
        n = self.relay_n

        def make(i: int) -> tuple[bytes, dict[str, str]]:
            headers = {
                "Authorization": f"Bearer {API_KEY}",
                "Idempotency-Key": f"bench-{uuid.uuid4()}",
            }
            return json.dumps(welcome_request(i)).encode(), headers

        def post(count: int, offset: int) -> Any:
            return asyncio.run(
                run_load(
                    port=server.port,
                    path="/api/v1/notifications",
                    make_request=lambda i: make(offset + i),
                    concurrency=16,
                    total=count,
                    max_seconds=600,
                )
            )

        try:
            if self.warmup:
                base = self.sink.count
                post(self.warmup, 10_000_000)
                self.sink.wait_for(base + self.warmup)
            base = self.sink.count
            meter = self.cpu_meter(worker)
            meter.processes["api (uvicorn)"] = [server.pid]
            meter.start()
            started = time.monotonic()
            load = post(n, 0)
            published = time.monotonic() - started
            bad = {s: c for s, c in load.statuses.items() if s >= 300}
            if bad:
                raise RuntimeError(f"non-2xx answers: {bad}")
            done = self.sink.wait_for(base + n)
            elapsed = done - started
            cpu = meter.stop(messages=n)
            time.sleep(0.5)
        finally:
            server.stop()
        return {
            "messages": n,
            "seconds": round(elapsed, 3),
            "msg_per_s": round(n / elapsed, 1),
            "publish_seconds": round(published, 3),
            "api_p99_ms": round(load.percentile(99), 1),
            "extra_messages": self.sink.count - base - n,
            "worker_log": str(worker.log_path.relative_to(REPO)),
            **cpu,
        }

    def row_api(self) -> dict[str, Any]:
        # No worker drains the queues here: both endpoints only enqueue, and a worker would
        # compete with the API for the two cores.
        self.stop_notifier_worker()
        self.require_notifier_api()
        total, seconds, concurrency = self.args.api_requests, self.args.api_seconds, 16
        results: dict[str, Any] = {"concurrency": concurrency, "worker_running": False}

        seed_env = self.base_env()
        seed_env.update({"REDIS_URL": self.redis.url(DB_SEED), "PYTHONPATH": str(REPO)})
        self.redis.client(DB_SEED).flushdb()
        seed = self.start_api(app="bench.seed_api:app", env=seed_env, log="seed-api.log")
        try:
            results["seed_endpoint"] = self._load(
                seed,
                "/api/v1/users/register",
                lambda i: (
                    json.dumps({"email": f"user{i}@example.com", "name": f"User {i}"}).encode(),
                    {},
                ),
                total=total,
                seconds=seconds,
            )
        finally:
            seed.stop()

        self.redis.client(DB_NOTIFIER).flushdb()
        api = self.start_api(app="api.main:app", env=self.notifier_env(), log="notifier-api.log")
        try:
            if "/api/v1/notifications" not in self.api_paths(api):
                raise Skipped("the API has no POST /api/v1/notifications yet")
            results["notifier"] = self._load(
                api,
                "/api/v1/notifications",
                lambda i: (
                    json.dumps(welcome_request(i)).encode(),
                    {
                        "Authorization": f"Bearer {API_KEY}",
                        "Idempotency-Key": f"bench-{uuid.uuid4()}",
                    },
                ),
                total=total,
                seconds=seconds,
            )
        finally:
            api.stop()
        return results

    def _load(
        self,
        server: UvicornServer,
        path: str,
        make: Callable[[int], tuple[bytes, dict[str, str]]],
        *,
        total: int,
        seconds: float,
    ) -> dict[str, Any]:
        warm = asyncio.run(
            run_load(
                port=server.port,
                path=path,
                make_request=lambda i: make(10_000_000 + i),
                concurrency=16,
                total=min(300, total),
                max_seconds=seconds,
            )
        )
        result = asyncio.run(
            run_load(
                port=server.port,
                path=path,
                make_request=make,
                concurrency=16,
                total=total,
                max_seconds=seconds,
            )
        )
        data = result.as_dict()
        data["warmup_statuses"] = {str(k): v for k, v in warm.statuses.items()}
        bad = {s: c for s, c in result.statuses.items() if s >= 300}
        if bad:
            data["error"] = f"non-2xx answers: {bad}"
        return data

    # Driving it all.

    def use_sink(self, sink: CountingSink) -> None:
        """Point the next rows (and the next notifier worker) at ``sink``."""
        if sink is self.sink and sink.process is not None:
            return
        self.stop_notifier_worker()
        self.sink = sink
        if sink.process is None:
            sink.start()

    def row_notifier_rabbitmq(self) -> dict[str, Any]:
        """Row 4 with RabbitMQ as the broker (records and results stay in Redis): what the
        record-then-publish-with-confirms path costs. Needs a RabbitMQ on 127.0.0.1:5672 and
        rabbitmqctl; runs in a vhost of its own, deleted afterwards."""
        with rabbitmq_vhost() as url:
            saved = dict(self.args.worker_env)
            self.args.worker_env["BROKER_URL"] = url
            self.broker_url = url
            try:
                return self.row_notifier()
            finally:
                self.stop_notifier_worker()
                self.broker_url = None
                self.args.worker_env.clear()
                self.args.worker_env.update(saved)

    def run(self, rows: list[str]) -> dict[str, Any]:
        self.redis.start()
        outcome: dict[str, Any] = {}
        try:
            for name in rows:
                self.use_sink(self.relay if name.startswith("relay_") else self.zero_sink)
                print(f"--- {LABELS[name]} ...", flush=True)
                started = time.monotonic()
                try:
                    outcome[name] = getattr(self, f"row_{name}")()
                except Skipped as exc:
                    outcome[name] = {"skipped": str(exc)}
                except (SinkStalled, RuntimeError, OSError, httpx.HTTPError) as exc:
                    traceback.print_exc()
                    outcome[name] = {"error": f"{type(exc).__name__}: {exc}"}
                outcome[name]["wall_seconds"] = round(time.monotonic() - started, 1)
                print(f"    {summarize(outcome[name])}", flush=True)
        finally:
            for process in reversed(self.processes):
                process.stop(timeout=15)
            self.zero_sink.stop()
            self.relay.stop()
            self.redis.stop()
            shutil.rmtree(self.tmp, ignore_errors=True)
        return outcome


@contextlib.contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    """An amqp:// URL of a fresh vhost on the local RabbitMQ (guest), deleted afterwards."""
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError as exc:
        raise Skipped(f"no RabbitMQ on 127.0.0.1:5672 ({exc})") from None
    ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    if not Path(ctl).exists():
        raise Skipped("rabbitmqctl not found")
    vhost = f"notifier-bench-{uuid.uuid4().hex[:8]}"

    def run_ctl(*args: str) -> None:
        subprocess.run([ctl, *args], check=True, capture_output=True, timeout=60)

    run_ctl("add_vhost", vhost)
    try:
        run_ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        run_ctl("delete_vhost", vhost)


def rabbitmq_pids() -> list[int]:
    """The RabbitMQ server's Erlang VM (its CPU counts for row 4r)."""
    found = subprocess.run(["pgrep", "-f", "beam.smp"], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


class RssSampler:
    """Samples VmRSS of a worker's pool processes twice a second."""

    def __init__(self, worker: CeleryWorker) -> None:
        self.worker = worker
        self.samples: dict[int, list[tuple[float, int]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._sample()
        self._thread.start()

    def _sample(self) -> None:
        now = round(time.monotonic() - self._t0, 2)
        for pid in self.worker.child_pids():
            value = rss_kib(pid)
            if value is not None:
                self.samples.setdefault(pid, []).append((now, value))

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self._sample()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._sample()

    def summary(self) -> dict[str, Any]:
        per_process = {}
        for pid, samples in self.samples.items():
            values = [v for _, v in samples]
            per_process[str(pid)] = {
                "start_kib": values[0],
                "end_kib": values[-1],
                "max_kib": max(values),
                "growth_kib": values[-1] - values[0],
                "samples": len(values),
            }
        growth = max((p["growth_kib"] for p in per_process.values()), default=0)
        start = min((p["start_kib"] for p in per_process.values()), default=0)
        return {
            "per_process": per_process,
            "max_growth_kib": growth,
            # Flat: no process grew by more than 2 MiB or 5 % of its size after warm-up.
            "flat": growth <= max(2048, 0.05 * start),
        }


def start_profilers(worker: CeleryWorker, logs: Path) -> list[subprocess.Popen[bytes]]:
    """py-spy on the worker's main and pool processes for the measured part of a notifier row."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        print("    (py-spy not installed: no profile)", flush=True)
        return []
    for old in logs.glob("profile-*.txt"):
        old.unlink()
    profilers = []
    targets = [("main", worker.pid)] + [("pool", pid) for pid in worker.child_pids()]
    for role, pid in targets:
        output = logs / f"profile-{role}-{pid}.txt"
        # --gil: only the thread holding the GIL, i.e. where the CPU goes (a pool process has
        # many threads waiting on the event loop, which would otherwise fill the profile).
        args = [py_spy, "record", "--pid", str(pid), "--format", "raw", "--nonblocking", "--gil"]
        args += ["--duration", "600", "--rate", "200", "-o", str(output)]
        profilers.append(
            subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
    return profilers


def batch_rejections(body: Any) -> list[Any]:
    """Items of a batch answer that were not accepted (the shape is the API issue's)."""
    items = body if isinstance(body, list) else None
    if isinstance(body, dict):
        for key in ("results", "items", "notifications"):
            if isinstance(body.get(key), list):
                items = body[key]
                break
    if items is None:
        return []
    return [
        item
        for item in items
        if isinstance(item, dict)
        and (item.get("error") or item.get("errors") or int(item.get("status_code", 202)) >= 400)
    ]


def summarize(row: dict[str, Any]) -> str:
    if "skipped" in row:
        return f"skipped: {row['skipped']}"
    if "error" in row and "msg_per_s" not in row:
        return f"error: {row['error']}"
    if "msg_per_s" in row:
        return f"{row['msg_per_s']} msg/s ({row['messages']} in {row['seconds']} s)"
    parts = []
    for key in ("seed_endpoint", "notifier"):
        if key in row:
            r = row[key]
            parts.append(f"{key}: {r['rps']} req/s p50 {r['p50_ms']} ms p99 {r['p99_ms']} ms")
    return "; ".join(parts)


def rate(rows: dict[str, Any], name: str) -> float | None:
    value = rows.get(name, {}).get("msg_per_s")
    return float(value) if value else None


def ratios(rows: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 8 with the measured ratio and whether it is met."""
    out: list[dict[str, Any]] = []

    def add(name: str, num: float | None, den: float | None, op: str, target: float) -> None:
        value = num / den if num and den else None
        met = None if value is None else (value >= target if op == ">=" else value < target)
        out.append(
            {
                "name": name,
                "ratio": None if value is None else round(value, 2),
                "target": f"{op} {target:g}",
                "met": met,
            }
        )

    one, batch = rate(rows, "notifier"), rate(rows, "batch")
    add("notifier one-by-one / seed design", one, rate(rows, "seed"), ">=", 2.0)
    add("notifier one-by-one / fastapi-mail", one, rate(rows, "fastapi_mail"), ">=", 1.5)
    add("notifier one-by-one / raw ceiling", one, rate(rows, "raw"), ">=", 0.8)
    add("notifier batch / raw ceiling", batch, rate(rows, "raw"), ">=", 1.3)
    api = rows.get("api", {})
    ours, seed = api.get("notifier", {}), api.get("seed_endpoint", {})
    add("API req/s / seed endpoint req/s", ours.get("rps"), seed.get("rps"), ">=", 1.0)
    add("API p99 / seed endpoint p99", ours.get("p99_ms"), seed.get("p99_ms"), "<", 2.0)
    # Issue 13: latency hidden (relay with RTT/ACCEPT), and the zero-latency one-by-one row.
    relay_seed = rate(rows, "relay_seed")
    add("relay: notifier.send / seed design", rate(rows, "relay_send"), relay_seed, ">=", 12.0)
    add("relay notifier.send / its zero-latency rate", rate(rows, "relay_send"), one, ">=", 0.8)
    add("relay: notifier.event / seed design", rate(rows, "relay_event"), relay_seed, ">=", 10.0)
    add("relay: HTTP single POST / seed design", rate(rows, "relay_http"), relay_seed, ">=", 10.0)
    add("zero latency: one-by-one / seed design", one, rate(rows, "seed"), ">=", 1.5)
    add("zero latency: one-by-one / fastapi-mail", one, rate(rows, "fastapi_mail"), ">=", 1.3)
    rss = rows.get("notifier", {}).get("rss") or rows.get("relay_send", {}).get("rss")
    if rss:
        out.append(
            {
                "name": "worker RSS growth per process during run 4 (KiB)",
                "ratio": rss["max_growth_kib"],
                "target": "flat (<= max(2 MiB, 5 %))",
                "met": rss["flat"],
            }
        )
    return out


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]
    except OSError:
        mem = "?"
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "mem_total_kib": mem,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_at_start": list(os.getloadavg()),
    }


def print_table(report: dict[str, Any]) -> None:
    meta, rows = report["meta"], report["rows"]
    print()
    print(
        f"N={meta['n']} (relay rows {meta['relay_n']})  sink={meta['sink']['kind']}  "
        f"relay RTT {meta['relay']['rtt_ms']:g} ms ACCEPT {meta['relay']['accept_ms']:g} ms  "
        f"worker processes={meta['processes']}  "
        f"cpus={meta['machine']['cpus']} ({meta['machine']['cpu_model']})"
    )
    print(f"{'row':<66} {'result':>48}")
    print("-" * 115)
    for name in ROWS:
        if name in rows:
            print(f"{LABELS[name]:<66} {summarize(rows[name]):>48}")
            per_message = rows[name].get("cpu_ms_per_message")
            if per_message:
                parts = [f"{k} {v:g}" for k, v in per_message.items() if v]
                print(f"{'':<6}CPU ms/msg: " + ", ".join(parts))
    rss = rows.get("notifier", {}).get("rss")
    if rss:
        for pid, p in rss["per_process"].items():
            print(
                f"   worker pool pid {pid}: RSS {p['start_kib'] / 1024:.1f} -> "
                f"{p['end_kib'] / 1024:.1f} MiB (max {p['max_kib'] / 1024:.1f}, "
                f"{p['samples']} samples)"
            )
    print()
    print(f"{'target (issues 8 and 13)':<56} {'ratio':>10} {'target':>24} {'met':>6}")
    print("-" * 100)
    for r in report["ratios"]:
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:g}"
        met = "n/a" if r["met"] is None else ("yes" if r["met"] else "NO")
        print(f"{r['name']:<56} {ratio:>10} {r['target']:>24} {met:>6}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5000, help="messages per row (default 5000)")
    parser.add_argument(
        "--only",
        default=",".join(ROWS),
        help=f"comma-separated subset of rows: {','.join(ROWS)}",
    )
    parser.add_argument("--sink", choices=("auto", "smtp-sink", "aiosmtpd"), default="auto")
    parser.add_argument(
        "--relay-n", type=int, default=1000, help="messages per relay row (default 1000)"
    )
    parser.add_argument("--rtt", type=float, default=5.0, help="relay ms per command (5)")
    parser.add_argument("--accept", type=float, default=25.0, help="relay ms per message (25)")
    parser.add_argument(
        "--set",
        dest="worker_env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for notifier's worker and API (repeatable), e.g. "
        "SENDS_IN_FLIGHT_PER_PROCESS=64, to measure its effect",
    )
    parser.add_argument(
        "--notifier-pool",
        default=None,
        help="-P for the notifier worker (default: the app's own, ConcurrentPool)",
    )
    parser.add_argument("--processes", type=int, default=2, help="worker pool processes")
    parser.add_argument("--warmup", type=int, default=50, help="unmeasured messages per row")
    parser.add_argument("--api-requests", type=int, default=3000, help="requests per endpoint")
    parser.add_argument("--api-seconds", type=float, default=30.0, help="time cap per endpoint")
    parser.add_argument(
        "--notifier-app",
        default="notifier",
        help="Celery app of the notifier worker (bench.notifier_variants:NAME to measure a "
        "setting's cost)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the notifier pool processes in row 4"
    )
    parser.add_argument(
        "--output", type=Path, default=BENCH / "results" / "latest.json", help="JSON report path"
    )
    args = parser.parse_args(argv)
    rows = [r.strip() for r in args.only.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    args.rows = [r for r in ROWS if r in rows]
    pairs = [item.partition("=") for item in args.worker_env]
    if any(not name or not sep for name, sep, _ in pairs):
        parser.error("--set takes NAME=VALUE")
    args.worker_env = {name: value for name, _, value in pairs}
    if args.n < 1:
        parser.error("--n must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    started = datetime.now(UTC)
    meta = {
        "n": args.n,
        "relay_n": args.relay_n,
        "relay": {"rtt_ms": args.rtt, "accept_ms": args.accept},
        "processes": args.processes,
        "warmup": args.warmup,
        "sink": sink_summary(bench.sink),
        "machine": machine(),
        "started_at": started.isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "notifier_app": args.notifier_app,
        "notifier_settings": args.worker_env,
    }
    print(f"sink: {meta['sink']['kind']}  N={args.n}  rows: {', '.join(args.rows)}", flush=True)
    rows = bench.run(args.rows)
    meta["duration_seconds"] = round((datetime.now(UTC) - started).total_seconds(), 1)
    report = {"meta": meta, "rows": rows, "ratios": ratios(rows)}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"\nwritten to {args.output}")
    return 1 if any("error" in row and "msg_per_s" not in row for row in rows.values()) else 0


def git_commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    )
    return out.stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
