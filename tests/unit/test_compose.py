"""The Docker files: docker-compose.yml's services and wiring, and the Dockerfile's essentials."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def command_words(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return command.split() if isinstance(command, str) else [str(word) for word in command]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {name: str(value) for name, value in env.items()}


def published_ports(service: dict[str, Any]) -> list[str]:
    """Host:container pairs, with ``${NAME:-default}`` read as compose does when NAME is unset."""
    return [re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(port)) for port in service.get("ports", [])]


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """Dependencies and their conditions; the short list form means service_started."""
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def test_exactly_the_expected_services(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {"redis", "mailhog", "api", "worker", "bounces", "flower"}


def test_no_mongodb_port_anywhere() -> None:
    assert "27017" not in COMPOSE_FILE.read_text()


def test_redis_is_durable_healthchecked_and_only_on_6379(
    services: dict[str, dict[str, Any]],
) -> None:
    redis = services["redis"]
    assert redis["image"] == "redis:7-alpine"
    assert published_ports(redis) == ["127.0.0.1:6379:6379"]
    words = command_words(redis)
    assert words[words.index("--appendonly") + 1] == "yes"
    assert words[words.index("--maxmemory-policy") + 1] == "noeviction"
    assert "redis-cli" in redis["healthcheck"]["test"]
    assert "ping" in redis["healthcheck"]["test"]
    volume_targets = [str(v).split(":")[1] for v in redis["volumes"]]
    assert volume_targets == ["/data"]


def test_mailhog_catches_mail(services: dict[str, dict[str, Any]]) -> None:
    mailhog = services["mailhog"]
    assert mailhog["image"].startswith("mailhog/mailhog")
    assert sorted(published_ports(mailhog)) == ["127.0.0.1:1025:1025", "127.0.0.1:8025:8025"]


@pytest.mark.parametrize("name", ["api", "worker"])
def test_api_and_worker_build_the_image_and_share_settings(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    service = services[name]
    build = service["build"]
    context = build if isinstance(build, str) else build["context"]
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (ROOT / context / dockerfile).resolve() == DOCKERFILE
    env = environment(service)
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["SMTP_HOST"] == "mailhog"
    assert env["SMTP_PORT"] == "1025"
    assert env["SMTP_SECURITY"] == "none"
    assert env["API_KEYS"] == "${API_KEYS:-dev-key}"
    assert env["TEMPLATES_DIR"] == "/app/templates"
    assert env["NOTIFIER_ENV"] == "development"
    assert "@" in env["MAIL_FROM"]
    assert depends_on(service)["redis"] == "service_healthy"


def test_api(services: dict[str, dict[str, Any]]) -> None:
    api = services["api"]
    assert command_words(api) == ["notifier", "api", "--host", "0.0.0.0", "--port", "8000"]
    assert published_ports(api) == ["127.0.0.1:8000:8000"]
    assert set(depends_on(api)) == {"redis"}


def test_worker_can_scale_and_emits_events(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    words = command_words(worker)
    assert words[:4] == ["celery", "-A", "notifier", "worker"]
    assert "-E" in words
    assert words[words.index("--concurrency") + 1] == "2"
    assert "ports" not in worker
    assert "container_name" not in worker
    assert depends_on(worker) == {"redis": "service_healthy", "mailhog": "service_started"}
    # The image's HEALTHCHECK probes the API; the worker must answer a Celery ping instead.
    probe = " ".join(worker["healthcheck"]["test"])
    assert "inspect ping" in probe
    assert "$$HOSTNAME" in probe


def test_flower_watches_the_broker(services: dict[str, dict[str, Any]]) -> None:
    flower = services["flower"]
    assert flower["image"].startswith("mher/flower")
    env = environment(flower)
    assert env["CELERY_BROKER_URL"] == "redis://redis:6379/0"
    assert env["CELERY_RESULT_BACKEND"] == "redis://redis:6379/0"
    assert published_ports(flower) == ["127.0.0.1:5555:5555"]
    assert set(depends_on(flower)) == {"redis", "worker"}


def test_no_beat_service(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        command = command_words(service) if "command" in service else []
        assert "beat" not in command, f"{name} runs celery beat"


def test_dockerfile_runs_as_non_root() -> None:
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert users, "the image must switch to a non-root user"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_dockerfile_installs_dependencies_before_the_source() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    assert "FROM python:3.11-slim" in lines
    copies = [line for line in lines if line.startswith("COPY")]
    assert copies[0] == "COPY pyproject.toml ./"
    text = DOCKERFILE.read_text()
    assert text.index("pip install -r") < text.index("COPY . /app") < text.index("--no-deps")
    assert "WORKDIR /app" in lines


def test_dockerfile_has_healthcheck_and_default_command() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^HEALTHCHECK\s.*\n?.*/healthz", text, flags=re.MULTILINE)
    assert 'CMD ["notifier", "api", "--host", "0.0.0.0"]' in text


def test_templates_reach_app_templates() -> None:
    # `COPY . /app` copies the templates to /app/templates only if .dockerignore lets them in.
    assert "COPY . /app" in DOCKERFILE.read_text()
    rules = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*"
    assert {"!templates/", "!notifier/", "!pyproject.toml"} <= set(rules)
    assert (ROOT / "templates").is_dir()


def test_bounce_receiver_service(services: dict[str, dict[str, Any]]) -> None:
    bounces = services["bounces"]
    assert command_words(bounces) == ["notifier", "bounces"]
    assert bounces["environment"]["BOUNCE_SMTP_HOST"] == "0.0.0.0"
    assert (
        bounces["environment"]["BOUNCE_DOMAIN"]
        == services["worker"]["environment"]["BOUNCE_DOMAIN"]
    )
    assert bounces["ports"] == ["127.0.0.1:${BOUNCE_HOST_PORT:-2525}:2525"]
    assert depends_on(bounces) == {"redis": "service_healthy"}
    assert "2525" in " ".join(bounces["healthcheck"]["test"])
