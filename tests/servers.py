"""Fixtures for the real PostgreSQL and FerretDB servers started by ``docker/services.sh``.

The URLs come from ``docker/services.sh env`` (``GOVLAKE_PG_URL``, ``GOVLAKE_MONGO_URL`` and the
sources' ``AIRFLOW_CONN_*``). Outside CI a test needing them is skipped when they are unset; in CI
(``CI`` set) a missing server is an error, so the suite can never pass by skipping them.
"""
from __future__ import annotations

import os
from pathlib import Path

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


class DagRun:
    """The whole pipeline run as the scheduler runs it, then rerun for the same logical date, in a background
    thread, so the rest of the suite runs meanwhile (see ``pytest_collection_modifyitems`` in
    tests/conftest.py, which starts it right after collection and orders its tests last).

    1. ``docker/dag_test.sh 2025-06-30 150``: loads a 150-resident sample municipality (seed 20250630) into
       PostgreSQL and FerretDB plus its file drop, then ``airflow dags test govlake_daily`` runs every task for
       business day 2025-06-30 in servers mode (Data Docs off: the GX checkpoint has its own test);
    2. the latest Delta version of every table of the lakehouse is recorded (``versions``);
    3. ``python -m govlake.pipeline run --date 2025-06-30`` reruns every stage for the same day (servers mode).

    Both commands run in their own processes (own SparkSession); a failure of step 1 skips step 3.
    """

    DAY = "2025-06-30"
    RESIDENTS = "150"

    def __init__(self, tmp: Path):
        import threading

        from govlake.core.config import REPO_ROOT, Settings

        home = tmp / "home"
        self.env = {**os.environ, "AIRFLOW_HOME": str(tmp / "airflow"), "AIRFLOW_HOME_DAGTEST": str(tmp / "airflow"),
                    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
                    "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
                    "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PYTHONPATH": str(REPO_ROOT),
                    "GOVLAKE_HOME": str(home), "GOVLAKE_SOURCES": "servers", "GOVLAKE_DATA_DOCS": "0",
                    "GOVLAKE_SPARK_TINY": "1"}
        self.root = REPO_ROOT
        self.settings = Settings.from_env({"GOVLAKE_HOME": str(home), "GOVLAKE_SOURCES": "servers"})
        self.first: tuple[int, str] | None = None
        self.rerun: tuple[int, str] | None = None
        self.versions: dict[str, int] = {}
        self._thread = threading.Thread(target=self._run, name="govlake-dag-run", daemon=True)

    def start(self) -> DagRun:
        self._thread.start()
        return self

    def _call(self, argv: list[str]) -> tuple[int, str]:
        import subprocess

        try:
            out = subprocess.run(argv, env=self.env, cwd=self.root, capture_output=True, text=True, timeout=2400)
        except Exception as exc:  # noqa: BLE001 - reported to the waiting test, never swallowed
            return -1, f"{argv}: {exc!r}"
        return out.returncode, out.stdout + out.stderr

    def _run(self) -> None:
        self.first = self._call(["bash", str(self.root / "docker" / "dag_test.sh"), self.DAY, self.RESIDENTS])
        if self.first[0] != 0:
            self.rerun = (-1, "not run: the DAG run failed")
            return
        self.versions = delta_versions(self.settings)
        self.rerun = self._call([str(self.root / ".venv" / "bin" / "python"), "-m", "govlake.pipeline", "run",
                                 "--date", self.DAY])

    def wait(self) -> DagRun:
        self._thread.join()
        return self


def delta_versions(settings) -> dict[str, int]:
    """Latest committed version of every Delta table of the lakehouse (``layer.table`` -> version), read from
    the ``_delta_log`` commit file names (no Spark)."""
    from govlake.core.lake import LAYERS

    root = Path(settings.lakehouse.removeprefix("file:"))
    versions = {}
    for layer in LAYERS:
        for log in sorted((root / layer).glob("*/_delta_log")):
            commits = [int(p.stem) for p in log.glob("*.json") if p.stem.isdigit()]
            if commits:
                versions[f"{layer}.{log.parent.name}"] = max(commits)
    return versions


def start_dag_run(config) -> DagRun:
    """Start the background :class:`DagRun` once per test session (kept in ``config.stash``)."""
    run = config.stash.get(DAG_RUN_KEY, None)
    if run is None:
        run = DagRun(config._tmp_path_factory.mktemp("dag-run")).start()
        config.stash[DAG_RUN_KEY] = run
    return run


DAG_RUN_KEY = pytest.StashKey[DagRun]()


@pytest.fixture(scope="session")
def dag_run(request, pg_url, mongo_url):
    """The whole pipeline once, as the scheduler runs it (:class:`DagRun` step 1), shared by the DAG test and
    the end-to-end pipeline tests so the suite pays for one full run. Started in the background right after
    collection when a selected test needs it; this fixture waits for it.

    Returns:
        ``(settings, returncode, log)``: settings of the run's GovLake home (servers mode), the script's exit
        code and its stdout + stderr. The state seen is after the rerun (step 3), which must change nothing.
    """
    run = start_dag_run(request.config).wait()
    return run.settings, run.first[0], run.first[1]


@pytest.fixture(scope="session")
def dag_rerun(request, dag_run):
    """The rerun of the same logical date after :func:`dag_run` (:class:`DagRun` step 3).

    Returns:
        ``(versions, returncode, log)``: the latest Delta version of every table after the first run
        (``layer.table`` -> version), and the rerun's exit code and output.
    """
    run = start_dag_run(request.config).wait()
    return run.versions, run.rerun[0], run.rerun[1]
