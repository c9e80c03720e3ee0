"""Shared pytest fixtures: one session-scoped SparkSession tuned for tiny data.

The session uses a throw-away lakehouse under pytest's temporary folder, so tests never touch
``var/``. Fixtures for the real PostgreSQL and FerretDB servers live in ``tests/servers.py``.
"""
from __future__ import annotations

import os

import pytest

from govlake.core.config import Settings


@pytest.fixture(scope="session")
def settings(tmp_path_factory) -> Settings:
    """Settings pointing at a temporary GovLake home (lakehouse, sources, reports)."""
    home = tmp_path_factory.mktemp("govlake-home")
    return Settings.from_env({**os.environ, "GOVLAKE_HOME": str(home)})


@pytest.fixture(scope="session")
def spark(settings):
    """The one SparkSession of the test session: local[2], one shuffle partition, no UI."""
    from govlake.core.spark import get_spark

    session = get_spark(settings.__class__(**{**settings.__dict__, "spark_master": "local[2]"}),
                        app_name="govlake-tests", tiny=True)
    yield session
    session.stop()


from tests.browser import browser  # noqa: E402,F401  (shared fixture)
from tests.servers import (  # noqa: E402,F401  (shared fixtures)
    dag_rerun,
    dag_run,
    mongo_client,
    mongo_url,
    pg_engine,
    pg_url,
    start_dag_run,
)


@pytest.hookimpl(trylast=True)  # after -k / -m deselection
def pytest_collection_modifyitems(session, config, items):
    """Run the whole-pipeline DAG run in the background while the other tests run.

    When a selected test uses the ``dag_run`` fixture and the servers are configured, the run
    (:class:`tests.servers.DagRun`: ``airflow dags test`` then a rerun, each in its own process) starts now;
    its tests are ordered after the others, and tests marked ``sample_servers`` (they load the generator's
    sample into the shared departments database and FerretDB, which the DAG run and its tests read) after those,
    also when they use the run (e.g. day N+1 on a copy of it, tests/unified/test_unify_days.py).
    """
    uses_run = [i for i in items if "dag_run" in getattr(i, "fixturenames", ())]
    loads = [i for i in items if i.get_closest_marker("sample_servers")]
    rest = [i for i in items if i not in uses_run and i not in loads]
    items[:] = rest + [i for i in uses_run if i not in loads] + loads
    for item in uses_run:  # the first of them waits for the whole background run (two pipeline runs)
        item.add_marker(pytest.mark.timeout(2700))
    if (uses_run and not config.option.collectonly and os.environ.get("GOVLAKE_PG_URL")
            and os.environ.get("GOVLAKE_MONGO_URL")):
        start_dag_run(config)
