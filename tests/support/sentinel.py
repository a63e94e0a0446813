"""A Redis master, a replica and three sentinels on loopback, with passwords everywhere."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import redis

from tests.support.ports import free_port
from tests.support.redis_server import redis_server_binary
from tests.support.redis_tls import Certificates

MASTER_NAME = "notifier-master"
REDIS_PASSWORD = "master-S3cret"
SENTINEL_PASSWORD = "sentinel-S3cret"
#: Sentinels agree the master is down after this long without an answer.
DOWN_AFTER_MS = 1000


class _Process:
    def __init__(self, args: list[str]) -> None:
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


class SentinelTopology:
    """``redis-server`` master and replica plus three ``redis-server --sentinel``."""

    def __init__(
        self, directory: Path, *, sentinels: int = 3, certs: Certificates | None = None
    ) -> None:
        self.directory = directory
        #: With certificates, every server and sentinel listens only on TLS (replication too).
        self.certs = certs
        self.master_port = free_port()
        self.replica_port = free_port()
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.servers: dict[int, _Process] = {}
        self.sentinels: list[_Process] = []

    @property
    def sentinel_setting(self) -> str:
        """REDIS_SENTINELS."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def env(self) -> dict[str, str]:
        """The settings a notifier process needs to find the master through the sentinels."""
        return {
            # Host and port are not used under Sentinel; the password and db are the master's.
            "REDIS_URL": f"{'rediss' if self.certs else 'redis'}://:{REDIS_PASSWORD}@sentinel/0",
            "REDIS_SENTINELS": self.sentinel_setting,
            "REDIS_SENTINEL_MASTER": MASTER_NAME,
            "REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
            **({"REDIS_TLS_CA_FILE": str(self.certs.ca)} if self.certs else {}),
        }

    def _tls_args(self, port: int) -> list[str]:
        """Listen on ``port`` with TLS only; replicate and monitor over TLS."""
        if self.certs is None:
            return ["--port", str(port)]
        return [
            "--port", "0",
            "--tls-port", str(port),
            "--tls-cert-file", str(self.certs.server_cert),
            "--tls-key-file", str(self.certs.server_key),
            "--tls-ca-cert-file", str(self.certs.ca),
            "--tls-auth-clients", "no",
            "--tls-replication", "yes",
        ]  # fmt: skip

    def _ssl(self) -> dict[str, object]:
        if self.certs is None:
            return {}
        return {"ssl": True, "ssl_ca_certs": str(self.certs.ca)}

    def _server(self, port: int, *extra: str) -> _Process:
        directory = self.directory / f"redis-{port}"
        directory.mkdir(parents=True, exist_ok=True)
        return _Process(
            [
                redis_server_binary(),
                *self._tls_args(port),
                "--bind", "127.0.0.1",
                "--dir", str(directory),
                "--save", "",
                "--appendonly", "no",
                "--maxmemory-policy", "noeviction",
                "--requirepass", REDIS_PASSWORD,
                "--masterauth", REDIS_PASSWORD,
                "--logfile", str(directory / "redis.log"),
                *extra,
            ]
        )  # fmt: skip

    def _sentinel(self, port: int) -> _Process:
        directory = self.directory / f"sentinel-{port}"
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "sentinel.conf"
        tls_lines = [" ".join(self._tls_args(port)[i : i + 2]).lstrip("-") for i in range(0, 14, 2)]
        config.write_text(
            "\n".join(
                [
                    *(tls_lines if self.certs else [f"port {port}"]),
                    "bind 127.0.0.1",
                    f"dir {directory}",
                    f"logfile {directory / 'sentinel.log'}",
                    f"requirepass {SENTINEL_PASSWORD}",
                    f"sentinel sentinel-pass {SENTINEL_PASSWORD}",
                    f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} 2",
                    f"sentinel auth-pass {MASTER_NAME} {REDIS_PASSWORD}",
                    f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
                    f"sentinel failover-timeout {MASTER_NAME} 10000",
                    f"sentinel parallel-syncs {MASTER_NAME} 1",
                    "",
                ]
            )
        )
        return _Process([redis_server_binary(), str(config), "--sentinel"])

    def start(self, timeout: float = 30.0) -> None:
        self.servers[self.master_port] = self._server(self.master_port)
        self.servers[self.replica_port] = self._server(
            self.replica_port, "--replicaof", "127.0.0.1", str(self.master_port)
        )
        self._wait(lambda: self.replication(self.replica_port).get("master_link_status") == "up")
        self.sentinels = [self._sentinel(port) for port in self.sentinel_ports]

        def sentinels_ready() -> bool:
            for port in self.sentinel_ports:
                with self.sentinel_client(port) as client:
                    if len(client.sentinel_sentinels(MASTER_NAME)) < len(self.sentinel_ports) - 1:
                        return False
                    if not client.sentinel_slaves(MASTER_NAME):
                        return False
            return True

        self._wait(sentinels_ready, timeout)

    def _wait(self, condition: object, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if condition():  # type: ignore[operator]
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"sentinel topology not ready; see {self.directory}")
            time.sleep(0.1)

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(
            port=port,
            password=REDIS_PASSWORD,
            decode_responses=True,
            socket_connect_timeout=1,
            **self._ssl(),  # type: ignore[arg-type]
        )

    def sentinel_client(self, port: int) -> redis.Redis:
        return redis.Redis(
            port=port,
            password=SENTINEL_PASSWORD,
            decode_responses=True,
            socket_connect_timeout=1,
            **self._ssl(),  # type: ignore[arg-type]
        )

    def replication(self, port: int) -> dict[str, object]:
        with self.client(port) as client:
            info: dict[str, object] = client.info("replication")
            return info

    def master_address(self) -> tuple[str, int]:
        with self.sentinel_client(self.sentinel_ports[0]) as client:
            host, port = client.sentinel_get_master_addr_by_name(MASTER_NAME)
            return str(host), int(port)

    def kill_master(self) -> int:
        """SIGKILL the current master; returns its port."""
        _, port = self.master_address()
        self.servers[port].kill()
        return port

    def replicated_mark(self) -> float:
        """Write a marker on the master and wait until the replica holds it.

        Returns when the marker was written (``time.monotonic()``): the replication stream is
        ordered, so every write acknowledged before then is on the replica too.
        """
        _, master_port = self.master_address()
        replica_port = next(port for port in self.servers if port != master_port)
        token = uuid.uuid4().hex
        with self.client(master_port) as master, self.client(replica_port) as replica:
            marked_at = time.monotonic()
            master.set("test:replication-mark", token)
            deadline = marked_at + 10.0
            while replica.get("test:replication-mark") != token:
                if time.monotonic() > deadline:
                    raise RuntimeError("the replica did not receive the marker within 10 s")
                time.sleep(0.001)
        return marked_at

    def wait_for_failover(self, old_port: int, timeout: float = 30.0) -> int:
        """Wait until the sentinels name a new master and it accepts writes; returns its port."""

        def promoted() -> bool:
            _, port = self.master_address()
            return port != old_port and self.replication(port).get("role") == "master"

        self._wait(promoted, timeout)
        return self.master_address()[1]

    def restart(self, port: int) -> None:
        """Start the server on ``port`` again (empty); the sentinels make it a replica."""
        self.servers[port] = self._server(port)

    def stop(self) -> None:
        for process in [*self.sentinels, *self.servers.values()]:
            process.kill()


#: The secrets a test checks never reach a log line.
PASSWORD_NAMES = {"REDIS_URL": REDIS_PASSWORD, "REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD}
