"""Fixtures for the real PostgreSQL and FerretDB servers started by ``docker/services.sh``.

The URLs come from ``docker/services.sh env`` (``GOVLAKE_PG_URL``, ``GOVLAKE_MONGO_URL`` and the
sources' ``AIRFLOW_CONN_*``). Outside CI a test needing them is skipped when they are unset; in CI
(``CI`` set) a missing server is an error, so the suite can never pass by skipping them.
"""
from __future__ import annotations

import os

import pytest


def _require(var: str) -> str:
    value = os.environ.get(var)
    if not value:
        if os.environ.get("CI"):
            pytest.fail(f"{var} is unset in CI: docker/services.sh must start the servers")
        pytest.skip(f"{var} unset: start the servers with `make services-start` and export `docker/services.sh env`")
    return value


@pytest.fixture(scope="session")
def pg_url() -> str:
    """SQLAlchemy URL of the test PostgreSQL server (database ``departments``)."""
    return _require("GOVLAKE_PG_URL")


@pytest.fixture(scope="session")
def mongo_url() -> str:
    """MongoDB URL of the test FerretDB server."""
    return _require("GOVLAKE_MONGO_URL")


@pytest.fixture()
def pg_engine(pg_url):
    """A SQLAlchemy engine on the test PostgreSQL server, disposed after the test."""
    import sqlalchemy as sa

    engine = sa.create_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture()
def mongo_client(mongo_url):
    """A pymongo client on the test FerretDB server."""
    import pymongo

    client = pymongo.MongoClient(mongo_url, serverSelectionTimeoutMS=5000)
    yield client
    client.close()
