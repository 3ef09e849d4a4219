"""Fixtures of the web tests that start real processes: one signing worker per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.processes import SigningWorker


@pytest.fixture(scope="module")
def signing_set(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[SigningWorker]:
    """One private Redis and one signing worker for the module, on a port of its ``PORTS``."""
    s = SigningWorker(tmp_path_factory.mktemp("signing-set"), request.module.PORTS)
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _worker_idle_before_the_flush(request: pytest.FixtureRequest) -> Iterator[None]:
    """Set up after the test database, so its teardown runs before the database is flushed."""
    yield
    if "signing_set" in request.fixturenames:
        request.getfixturevalue("signing_set").wait_idle()
