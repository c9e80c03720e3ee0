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


@pytest.fixture(scope="session")
def dag_run(tmp_path_factory, pg_url, mongo_url):
    """The whole pipeline once, as the scheduler runs it: ``docker/dag_test.sh`` loads a 150-resident sample
    municipality (seed 20250630) into PostgreSQL and FerretDB plus its file drop, then ``airflow dags test
    govlake_daily`` runs every task for business day 2025-06-30 in servers mode (Data Docs off: the GX
    checkpoint has its own test). Shared by the DAG test and the end-to-end pipeline tests, so the suite pays
    for one full run.

    Returns:
        ``(settings, returncode, log)``: settings of the run's GovLake home (servers mode), the script's exit
        code and its stdout + stderr.
    """
    import subprocess

    from jobs.config import REPO_ROOT, Settings

    tmp = tmp_path_factory.mktemp("dag-run")
    home = tmp / "home"
    env = {**os.environ, "AIRFLOW_HOME": str(tmp / "airflow"), "AIRFLOW_HOME_DAGTEST": str(tmp / "airflow"),
           "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PYTHONPATH": str(REPO_ROOT),
           "GOVLAKE_HOME": str(home), "GOVLAKE_DATA_DOCS": "0", "GOVLAKE_SPARK_TINY": "1"}
    out = subprocess.run(["bash", str(REPO_ROOT / "docker" / "dag_test.sh"), "2025-06-30", "150"], env=env,
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=2400)
    settings = Settings.from_env({"GOVLAKE_HOME": str(home), "GOVLAKE_SOURCES": "servers"})
    return settings, out.returncode, out.stdout + out.stderr
