"""Run options: every GOVLAKE_* variable is read and checked in govlake.core.config, nowhere else."""
from __future__ import annotations

import re

import pytest

from govlake.core import config
from govlake.core.config import REPO_ROOT


def test_run_options_have_their_defaults():
    assert (config.extract_mode({}), config.data_docs({}), config.gx_engine({}), config.validate_threads({}),
            config.lease_seconds({}), config.run_id({}), config.spark_tiny({}), config.failpoints_spec({})) == (
        "incremental", True, "single-pass", 2, (0.0, 600.0), None, False, None)


def test_run_options_read_their_variables():
    env = {"GOVLAKE_EXTRACT_MODE": "snapshot", "GOVLAKE_DATA_DOCS": "0", "GOVLAKE_GX_ENGINE": "spark",
           "GOVLAKE_VALIDATE_THREADS": "3", "GOVLAKE_LEASE_WAIT_S": "2.5", "GOVLAKE_LEASE_TTL_S": "60",
           "GOVLAKE_RUN_ID": "airflow:govlake_daily:r1", "GOVLAKE_SPARK_TINY": "1", "GOVLAKE_FAILPOINTS": "unify.merge"}
    assert (config.extract_mode(env), config.data_docs(env), config.gx_engine(env), config.validate_threads(env),
            config.lease_seconds(env), config.run_id(env), config.spark_tiny(env), config.failpoints_spec(env)) == (
        "snapshot", False, "spark", 3, (2.5, 60.0), "airflow:govlake_daily:r1", True, "unify.merge")
    assert config.lease_seconds({}, wait_default="900") == (900.0, 600.0)
    assert (config.dashboard_port({}), config.dashboard_port({"GOVLAKE_DASHBOARD_PORT": "28501"})) == (8501, 28501)


@pytest.mark.parametrize("fn, env, message", [
    (config.extract_mode, {"GOVLAKE_EXTRACT_MODE": "full"}, "GOVLAKE_EXTRACT_MODE must be incremental"),
    (config.gx_engine, {"GOVLAKE_GX_ENGINE": "pandas"}, "GOVLAKE_GX_ENGINE must be one of single-pass, spark"),
    (config.validate_threads, {"GOVLAKE_VALIDATE_THREADS": "0"}, "GOVLAKE_VALIDATE_THREADS must be a positive"),
    (config.lease_seconds, {"GOVLAKE_LEASE_TTL_S": "10"}, "GOVLAKE_LEASE_TTL_S must be at least 30 seconds"),
    (config.lease_seconds, {"GOVLAKE_LEASE_WAIT_S": "soon"}, "GOVLAKE_LEASE_WAIT_S must be a number of seconds"),
    (config.dashboard_port, {"GOVLAKE_DASHBOARD_PORT": "70000"}, "GOVLAKE_DASHBOARD_PORT must be a TCP port"),
])
def test_a_bad_value_names_its_variable(fn, env, message):
    with pytest.raises(ValueError, match=message):
        fn(env)


def test_no_module_outside_config_reads_a_govlake_variable():
    """A GOVLAKE_* read is an environment lookup with the variable's name as a literal (os.environ.get("GOVLAKE_…"),
    env["GOVLAKE_…"], os.getenv("GOVLAKE_…")); only govlake/core/config.py may do it."""
    read = re.compile(r"""(environ|env|getenv)\s*(\.get\(|\[|\()\s*["']GOVLAKE_""")
    offenders = [f"{path.relative_to(REPO_ROOT)}:{n}"
                 for folder in ("govlake", "dags", "plugins")
                 for path in sorted((REPO_ROOT / folder).rglob("*.py")) if path.name != "config.py"
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if read.search(line)]
    assert offenders == []
