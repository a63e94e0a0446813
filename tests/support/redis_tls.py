"""Test certificates (openssl CLI) and a redis-server that speaks only TLS, with an ACL user."""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.support.ports import free_port
from tests.support.redis_server import redis_server_binary

USERNAME = "notifier"
PASSWORD = "tls-S3cret-Pa55word"


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        pytest.skip("the openssl command is not installed")
    subprocess.run([binary, *args], cwd=cwd, check=True, capture_output=True)


@dataclass(frozen=True)
class Certificates:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate it signed."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert),
        cwd=directory,
    )  # fmt: skip
    return cert, key


def _signed(
    directory: Path, name: str, ca: tuple[Path, Path], extensions: str
) -> tuple[Path, Path]:
    cert, key, csr = (directory / f"{name}.{ext}" for ext in ("crt", "key", "csr"))
    ext_file = directory / f"{name}.ext"
    ext_file.write_text(extensions)
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
        "-keyout", str(key), "-out", str(csr),
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext_file), "-out", str(cert),
        cwd=directory,
    )  # fmt: skip
    return cert, key


def make_certificates(directory: Path) -> Certificates:
    ca = make_ca(directory, "test-ca")
    server = _signed(
        directory,
        "redis-server",
        ca,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    client = _signed(directory, "notifier-client", ca, "extendedKeyUsage=clientAuth\n")
    return Certificates(ca[0], server[0], server[1], client[0], client[1])


class TLSRedisServer:
    """``redis-server`` listening only on a TLS port, demanding client certificates and an
    ACL user (``default`` is off)."""

    def __init__(self, directory: Path, certs: Certificates) -> None:
        self.directory = directory
        self.certs = certs
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"rediss://{USERNAME}:{PASSWORD}@127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(
            port=self.port,
            username=USERNAME,
            password=PASSWORD,
            ssl=True,
            ssl_ca_certs=str(self.certs.ca),
            ssl_certfile=str(self.certs.client_cert),
            ssl_keyfile=str(self.certs.client_key),
            decode_responses=True,
            socket_connect_timeout=1,
        )

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        acl_file = self.directory / "users.acl"
        acl_file.write_text(f"user default off\nuser {USERNAME} on >{PASSWORD} ~* &* +@all\n")
        args = [
            redis_server_binary(),
            "--port", "0",
            "--tls-port", str(self.port),
            "--bind", "127.0.0.1",
            "--tls-cert-file", str(self.certs.server_cert),
            "--tls-key-file", str(self.certs.server_key),
            "--tls-ca-cert-file", str(self.certs.ca),
            "--tls-auth-clients", "yes",
            "--aclfile", str(acl_file),
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            "--maxmemory-policy", "noeviction",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        client = self.client()
        deadline = time.monotonic() + 15
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    if self.process.poll() is not None:
                        output = self.process.stdout.read() if self.process.stdout else b""
                        if b"tls" in output.lower():
                            pytest.skip(f"this redis-server cannot serve TLS: {output[-300:]!r}")
                        message = f"redis-server (TLS) exited: {output[-500:]!r}"
                        raise RuntimeError(message) from None
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"TLS redis-server not up on {self.port}") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None
