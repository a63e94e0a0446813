"""A private vhost on the local RabbitMQ (127.0.0.1:5672, guest), one per test.

Tests skip when no RabbitMQ listens locally, except under CI, where scripts/ensure-system-deps
installs and starts it and a missing broker is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

HOST, PORT = "127.0.0.1", int(os.environ.get("RABBITMQ_PORT", "5672"))


def _rabbitmqctl(*args: str) -> None:
    command = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    subprocess.run([command, *args], check=True, capture_output=True, timeout=60)


def require_rabbitmq() -> None:
    """Skip the test when RabbitMQ is not reachable here, unless CI is set."""
    try:
        socket.create_connection((HOST, PORT), timeout=2).close()
    except OSError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"RabbitMQ is not reachable at {HOST}:{PORT} under CI: {exc}")
        pytest.skip(f"RabbitMQ is not reachable at {HOST}:{PORT}")


@contextmanager
def private_vhost() -> Iterator[str]:
    """An ``amqp://`` URL of a fresh vhost the guest user may use; deleted afterwards."""
    require_rabbitmq()
    vhost = f"notifier-test-{uuid.uuid4().hex[:12]}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{HOST}:{PORT}/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


def close_connections(url: str) -> None:
    """Have RabbitMQ close every client connection of ``url``'s vhost (as a restart would)."""
    vhost = url.rsplit("/", 1)[1]
    _rabbitmqctl("close_all_connections", "-p", vhost, "closed by a test")
