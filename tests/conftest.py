"""Shared pytest fixtures: one session-scoped SparkSession tuned for tiny data.

The session uses a throw-away lakehouse under pytest's temporary folder, so tests never touch
``var/``. Fixtures for the real PostgreSQL and FerretDB servers live in ``tests/servers.py``.
"""
from __future__ import annotations

import os

import pytest

from jobs.config import Settings


@pytest.fixture(scope="session")
def settings(tmp_path_factory) -> Settings:
    """Settings pointing at a temporary GovLake home (lakehouse, sources, reports)."""
    home = tmp_path_factory.mktemp("govlake-home")
    return Settings.from_env({**os.environ, "GOVLAKE_HOME": str(home)})


@pytest.fixture(scope="session")
def spark(settings):
    """The one SparkSession of the test session: local[2], one shuffle partition, no UI."""
    from jobs.spark import get_spark

    session = get_spark(settings.__class__(**{**settings.__dict__, "spark_master": "local[2]"}),
                        app_name="govlake-tests", tiny=True)
    yield session
    session.stop()


from tests.servers import dag_run, mongo_client, mongo_url, pg_engine, pg_url  # noqa: E402,F401  (shared fixtures)
