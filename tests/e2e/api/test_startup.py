"""Starting the API: ``notifier api`` refuses production without keys; ``api.main:app`` loads."""

from __future__ import annotations

import subprocess
import sys

from tests.support.redis_server import RedisServer
from tests.support.worker import REPO, service_env


def test_notifier_api_refuses_production_without_keys(redis_server: RedisServer) -> None:
    env = service_env(
        redis_url=redis_server.url,
        smtp_port=25,
        extra={"NOTIFIER_ENV": "production", "API_KEYS": ""},
    )
    result = subprocess.run(
        [str(REPO / ".venv" / "bin" / "notifier"), "api", "--port", "1"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "API_KEYS" in result.stderr
    assert "Traceback" not in result.stderr


def test_module_level_app_is_built_on_first_access(redis_server: RedisServer) -> None:
    env = service_env(redis_url=redis_server.url, smtp_port=25, extra={"API_KEYS": "k"})
    code = (
        "import api.main as m, sys\n"
        "assert 'app' not in vars(m)\n"
        "app = m.app\n"
        "assert app is m.app\n"
        "print(list(app.openapi()['paths']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "/api/v1/notifications/batch" in result.stdout
