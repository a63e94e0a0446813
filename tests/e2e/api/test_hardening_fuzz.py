"""Issue 14: a schemathesis run against the real app (real Redis, real worker) in `make test`.

Bounded (examples per operation, a fixed seed) so CI time stays predictable; ``make fuzz`` runs
the same with many more examples before a release. It must find no 5xx (503 excepted: Redis
or a worker unavailable, documented) and no schema non-conformance: status codes, content
types, response headers and bodies, and the Allow header of 405 answers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.api_server import API_KEY, ApiServer, api_settings
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.usefixtures("worker")

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "unsupported_method",
)
#: Examples per operation and phase; ``make fuzz`` sets FUZZ_MAX_EXAMPLES much higher.
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "8"))
SEED = int(os.environ.get("FUZZ_SEED", "20261130"))

CONFIG = """\
[checks.not_a_server_error]
# 503: Redis unreachable, or no worker answered /health/worker in time (both documented).
expected-statuses = ["1xx", "2xx", "3xx", "4xx", "503"]
"""


@pytest.fixture
def fuzzed_api(redis_server: RedisServer) -> Iterator[ApiServer]:
    # A prefix of its own: the notifications the fuzzer creates stay out of other tests' lists.
    settings = api_settings(redis_server.url, redis_prefix=f"fuzz-{uuid.uuid4().hex[:8]}")
    server = ApiServer(settings).start()
    yield server
    server.stop()


def test_schemathesis_finds_no_server_error_and_no_nonconformance(
    fuzzed_api: ApiServer, tmp_path: Path
) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(config),
        "run",
        f"{fuzzed_api.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {API_KEY}",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-database",
        "none",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--continue-on-failure",
        "--no-color",
    ]
    result = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=1700, check=False
    )
    output = result.stdout + result.stderr
    print(output[-3000:])  # the summary (phases, timings) in the test log, pass or fail
    assert result.returncode == 0, output[-20000:]
