"""A private RabbitMQ node for one test: its own node name, ports, data and logs, which the test
may stop, kill and start again (the shared node on 5672 is never touched).

Debian's ``/usr/sbin/rabbitmq-server`` is a wrapper that ``su``s to the ``rabbitmq`` user and
``cd``s to ``/var/lib/rabbitmq``; the script it runs, ``/usr/lib/rabbitmq/bin/rabbitmq-server``,
runs as any user and reads everything below from the environment (environment first, then
``RABBITMQ_CONF_ENV_FILE``, then built-in defaults). ``HOME`` holds the node's Erlang cookie
(created on first start); epmd on 4369 is shared, and a node name is registered there only while
the node runs. The distribution port defaults to AMQP port + 20000, so it is chosen free too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import ssl
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

from tests.support.ports import free_port
from tests.support.redis_tls import Certificates

#: Debian and Ubuntu: the real start script behind the wrapper in /usr/sbin.
DEBIAN_SCRIPT = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
LOOPBACK_DISTRIBUTION = "-kernel inet_dist_use_interface {127,0,0,1}"


def rabbitmq_server_script() -> str:
    """The rabbitmq-server start script; skips the test when there is none (fails under CI)."""
    if DEBIAN_SCRIPT.is_file():
        return str(DEBIAN_SCRIPT)
    found = shutil.which("rabbitmq-server")
    if found is None:
        message = "rabbitmq-server is not installed (scripts/ensure-system-deps installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


class RabbitNode:
    """``rabbitmq-server`` on free loopback ports with its files under ``directory``.

    With ``certs`` it listens only on a TLS port (amqps), signed by that test CA; clients must
    present a certificate the CA signed when ``client_certs_required``.
    """

    def __init__(
        self,
        directory: Path,
        *,
        certs: Certificates | None = None,
        client_certs_required: bool = True,
    ) -> None:
        self.directory = directory
        self.certs = certs
        self.client_certs_required = client_certs_required
        self.name = f"notifier-test-{uuid.uuid4().hex[:10]}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        """The node's root vhost as guest (allowed from loopback), amqps:// with ``certs``."""
        scheme = "amqps" if self.certs else "amqp"
        return f"{scheme}://guest:guest@127.0.0.1:{self.port}/"

    def client_ssl(self) -> dict[str, Any] | bool:
        """kombu's ``ssl`` options that this node accepts (False without TLS)."""
        if self.certs is None:
            return False
        return {
            "ca_certs": str(self.certs.ca),
            "certfile": str(self.certs.client_cert),
            "keyfile": str(self.certs.client_key),
            "cert_reqs": ssl.CERT_REQUIRED,
            "server_hostname": None,  # kombu fills in the URL's host: its name is checked
        }

    def connection(self, **options: Any) -> Connection:
        return Connection(self.url, ssl=self.client_ssl(), connect_timeout=5, **options)

    def _config(self) -> str:
        lines = ["loopback_users.guest = true"]
        if self.certs is None:
            lines.append(f"listeners.tcp.default = 127.0.0.1:{self.port}")
        else:
            lines += [
                "listeners.tcp = none",
                f"listeners.ssl.default = 127.0.0.1:{self.port}",
                f"ssl_options.cacertfile = {self.certs.ca}",
                f"ssl_options.certfile = {self.certs.server_cert}",
                f"ssl_options.keyfile = {self.certs.server_key}",
                "ssl_options.verify = verify_peer",
                f"ssl_options.fail_if_no_peer_cert = {str(self.client_certs_required).lower()}",
            ]
        return "\n".join(lines) + "\n"

    def _environment(self) -> dict[str, str]:
        home = self.directory / "home"
        for path in (home, self.directory / "mnesia", self.directory / "log"):
            path.mkdir(parents=True, exist_ok=True)
        (self.directory / "rabbitmq.conf").write_text(self._config())
        (self.directory / "enabled_plugins").write_text("[].\n")  # no management port
        (self.directory / "rabbitmq-env.conf").write_text("")  # not /etc/rabbitmq's
        keep = ("PATH", "LANG", "LC_ALL", "TMPDIR")
        env = {key: os.environ[key] for key in keep if key in os.environ}
        env.update(
            {
                "HOME": str(home),
                "RABBITMQ_NODENAME": self.name,
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(self.port),
                "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_MNESIA_BASE": str(self.directory / "mnesia"),
                "RABBITMQ_LOG_BASE": str(self.directory / "log"),
                "RABBITMQ_CONFIG_FILE": str(self.directory / "rabbitmq.conf"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.directory / "enabled_plugins"),
                "RABBITMQ_CONF_ENV_FILE": str(self.directory / "rabbitmq-env.conf"),
                "ERL_EPMD_ADDRESS": "127.0.0.1",
                # Erlang distribution on loopback only, as the shared node is configured.
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": LOOPBACK_DISTRIBUTION,
            }
        )
        return env

    def start(self, *, timeout: float = 60.0) -> None:
        """Start the node (again, keeping its data) and wait until it takes AMQP connections."""
        script = rabbitmq_server_script()
        env = self._environment()
        self.starts += 1
        output = (self.directory / f"server-{self.starts}.out").open("wb")
        try:
            self.process = subprocess.Popen(
                [script],
                cwd=self.directory,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: kill() takes beam and its helpers
            )
        finally:
            output.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.connection() as connection:
                    connection.connect()
                return
            except Exception as exc:
                if self.process.poll() is not None:
                    raise RuntimeError(f"rabbitmq node exited: {self.output()[-1500:]}") from exc
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"rabbitmq node not up after {timeout}s: {exc}") from exc
                time.sleep(0.25)

    def output(self) -> str:
        return (self.directory / f"server-{self.starts}.out").read_text(errors="replace")

    def stop(self, *, timeout: float = 60.0) -> None:
        """Graceful shutdown (SIGTERM: the script has the node stop cleanly)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # the script's trap stops beam cleanly
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reap()

    def kill(self) -> None:
        """SIGKILL the node's whole process group: no clean shutdown, data as on disk."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self._reap()

    def _reap(self) -> None:
        # beam may outlive the script by a moment; its helpers share the group.
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process = None

    def restart(self, *, hard: bool = False, down_for: float = 0.0) -> None:
        """Stop (or with ``hard`` kill) the node, wait ``down_for`` seconds, start it again."""
        if hard:
            self.kill()
        else:
            self.stop()
        time.sleep(down_for)
        self.start()
