"""Issue 14 (hardening): what a security review and a fuzz run found, through the real API."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.api.conftest import StoreProbe, assert_problem, welcome

pytestmark = pytest.mark.usefixtures("worker")


def test_relay_control_header_is_422_naming_it(client: httpx.Client, probe: StoreProbe) -> None:
    before = probe.snapshot()
    body = welcome("ada@example.com", headers={"X-SMTPAPI": '{"to": ["a@b.c", "d@e.f"]}'})
    assert_problem(client.post("/api/v1/notifications", json=body), 422, field="headers.X-SMTPAPI")
    assert probe.snapshot() == before
