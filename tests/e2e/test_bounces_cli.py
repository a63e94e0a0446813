"""`notifier suppressions ...` and `notifier bounces` against a real redis-server: one line and
a non-zero exit for bad input or a missing setting, never a traceback."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from tests.support.cli import run_cli
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer
from tests.support.worker import service_env


@pytest.fixture
def env(redis_server: RedisServer) -> dict[str, str]:
    values = service_env(redis_url=redis_server.url, smtp_port=1025)
    values["REDIS_PREFIX"] = f"cli{uuid.uuid4().hex[:8]}"
    values.pop("BOUNCE_DOMAIN", None)
    return values


def cli(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    result = run_cli(env, *args, stdin=stdin)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_suppressions_commands(env: dict[str, str]) -> None:
    added = cli(
        env, "suppressions", "add", "Ada@Example.COM", "--reason", "complaint", "--note", "fbl"
    )
    assert added.returncode == 0 and "added Ada@example.com" in added.stdout
    assert (
        "replaced"
        in cli(env, "suppressions", "add", "Ada@example.com", "--reason", "complaint").stdout
    )
    listed = cli(env, "suppressions", "list", "--reason", "complaint")
    assert "Ada@example.com  complaint  cli" in listed.stdout
    assert "empty" in cli(env, "suppressions", "list", "--reason", "unsubscribe").stdout

    past = cli(env, "suppressions", "add", "b@example.com", "--expires", "2000-01-01")
    assert past.returncode == 2 and "--expires" in past.stderr
    bad_address = cli(env, "suppressions", "add", "no-at-sign")
    assert bad_address.returncode == 2

    bad_csv = cli(env, "suppressions", "import", "-", stdin="address,reason\nc@example.com,oops\n")
    assert bad_csv.returncode == 1 and "row[1]" in bad_csv.stderr
    assert "c@example.com" not in cli(env, "suppressions", "export").stdout
    good_csv = cli(
        env, "suppressions", "import", "-",
        stdin="address,reason,expires\nc@example.com,manual,2999-01-01\nd@example.com,,\n",
    )  # fmt: skip
    assert good_csv.returncode == 0 and "imported 2 entries (2 new" in good_csv.stdout
    exported = cli(env, "suppressions", "export").stdout.splitlines()
    assert exported[0] == "address,reason,category,source,created,expires,note"
    assert any(line.startswith("c@example.com,manual,,import:cli,") and "2999-01-01" in line
               for line in exported)  # fmt: skip

    assert cli(env, "suppressions", "remove", "ada@example.com").returncode == 1  # local part
    assert cli(env, "suppressions", "remove", "Ada@EXAMPLE.com").returncode == 0


def test_bounces_command_needs_a_domain_and_lists_kept_mail(env: dict[str, str]) -> None:
    missing = cli(env, "bounces", "--port", str(free_port()))
    assert missing.returncode == 2 and "BOUNCE_DOMAIN" in missing.stderr
    assert "no kept inbound mail" in cli(env, "bounces", "unclassified").stdout
    assert cli(env, "bounces", "unclassified", "nope").returncode == 1


def test_redis_down_is_one_line(env: dict[str, str]) -> None:
    down = cli({**env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}, "suppressions", "list")
    assert down.returncode == 1 and down.stderr.startswith("error:")
    assert len(down.stderr.strip().splitlines()) == 1
