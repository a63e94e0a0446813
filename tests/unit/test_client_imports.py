"""notifier.client must import, and publish, with only celery installed."""

from __future__ import annotations

import subprocess
import sys

from tests.support.worker import REPO

BLOCKER = """
import sys

BLOCKED = {"pydantic", "pydantic_core", "pydantic_settings", "jinja2", "aiosmtplib", "fastapi",
           "orjson", "css_inline", "html2text", "aiosmtpd", "email_validator", "uvicorn"}

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED or name == "redis.asyncio":
            raise ImportError(f"{name} is blocked")
        return None

sys.meta_path.insert(0, Blocker())
"""


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + code],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_client_imports_without_the_service_dependencies() -> None:
    result = run(
        "import notifier.client\n"
        "from notifier.client import NotifierClient\n"
        "client = NotifierClient('redis://127.0.0.1:1/0', api_url='http://127.0.0.1:1')\n"
        "client.close()\n"
        "print(sorted(m for m in sys.modules if m.startswith('notifier')))\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "['notifier', 'notifier.client', 'notifier.errors', 'notifier.messages']"
    )


def test_the_blocker_really_blocks() -> None:
    result = run("import notifier.compose.requests\n")
    assert result.returncode != 0
    assert "is blocked" in result.stderr


def test_package_exports_the_client_and_every_error_lazily() -> None:
    result = run(
        "import notifier\n"
        "from notifier import NotifierClient, NotifierError, NotificationFailed\n"
        "import notifier.client, notifier.errors\n"
        "assert NotifierClient is notifier.client.NotifierClient\n"
        "assert issubclass(NotificationFailed, notifier.errors.DeliveryError)\n"
        "print(sorted(m for m in sys.modules if m.startswith('notifier')))\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "['notifier', 'notifier.client', 'notifier.errors', 'notifier.messages']"
    )


def test_all_lists_the_client_and_every_exception_class() -> None:
    import notifier
    from notifier import errors

    classes = {
        name
        for name in errors.__all__
        if isinstance(getattr(errors, name), type)
        and issubclass(getattr(errors, name), BaseException)
    }
    assert set(notifier.__all__) == classes | {"NotifierClient"}
    for name in notifier.__all__:
        assert getattr(notifier, name) is not None
    assert "NotifierClient" in dir(notifier)
