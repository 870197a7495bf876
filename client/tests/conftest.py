"""Fixtures: a :class:`FakeService` on a free loopback port, and a client pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_service import FakeService

from dces_client import DCESClient


@pytest.fixture
def service() -> Iterator[FakeService]:
    fake = FakeService().start()
    yield fake
    fake.stop()


@pytest.fixture
def client(service: FakeService) -> Iterator[DCESClient]:
    # A short retry window: tests that wait for the service say so.
    with DCESClient(service.url, retry_for=3.0) as dces:
        yield dces
