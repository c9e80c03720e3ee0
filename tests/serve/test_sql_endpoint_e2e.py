"""The SQL endpoint end to end, on the real PostgreSQL: a pipeline-side session registers Delta tables once in the
persistent metastore, the Thrift endpoint serves them by name to PyHive with a password (and refuses a client
without one or with a wrong one), and a fresh ``spark-sql`` sees them. Each JVM runs in its own process."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid

import pytest
import sqlalchemy as sa

from govlake.core.config import Settings
from govlake.serve import sql_endpoint as ep

pytestmark = pytest.mark.slow

REGISTER = textwrap.dedent("""
    import os
    from govlake.core import lake
    from govlake.core.config import Settings
    from govlake.core.spark import get_spark
    settings = Settings.from_env()
    spark = get_spark(settings, app_name="register-test", tiny=True)
    rows = [("130102", "长安区", 194), ("130104", "桥西区", 201), ("130105", "新华区", 188)]
    spark.createDataFrame(rows, "district_code string, district_name string, population long") \\
        .write.format("delta").mode("overwrite").save(settings.table_path("marts", "population_by_district"))
    print("REGISTERED", ",".join(n for n in lake.register_new_tables(spark, settings) if n.startswith("marts.")))
    print("AGAIN", ",".join(n for n in lake.register_new_tables(spark, settings) if n.startswith("marts.")))
    spark.stop()
""")


@pytest.fixture()
def metastore(pg_url):
    """A fresh metastore database on the test PostgreSQL (dropped afterwards); yields its URL."""
    name = f"metastore_{uuid.uuid4().hex[:8]}"
    url = sa.engine.make_url(pg_url).set(database=name)
    yield url.render_as_string(hide_password=False)
    engine = sa.create_engine(sa.engine.make_url(pg_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tables_registered_once_are_served_by_name_with_a_password(tmp_path, metastore):
    from pyhive import hive
    from thrift.transport.TTransport import TTransportException

    port = _free_port()
    env = {**os.environ, "GOVLAKE_HOME": str(tmp_path), "GOVLAKE_METASTORE_URL": metastore,
           "GOVLAKE_SQL_PORT": str(port), "GOVLAKE_SPARK_TINY": "1"}
    done = subprocess.run([sys.executable, "-c", REGISTER], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith(("REGISTERED", "AGAIN"))]
    assert lines == ["REGISTERED marts.population_by_district", "AGAIN marts.population_by_district"]

    settings = Settings.from_env(env)
    started = subprocess.run([sys.executable, "-m", "govlake.serve.sql_endpoint", "start"], env=env,
                             capture_output=True, text=True, timeout=400)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        password = ep.password_file(settings).read_text(encoding="utf-8").strip()
        assert password not in " ".join(_command_lines())  # never on a command line
        # the steward reads tables as registered (other roles read share views: tests/governance)
        steward = ep.password_file(settings, "steward").read_text(encoding="utf-8").strip()
        cursor = hive.connect(host="127.0.0.1", port=port, database="marts", username="steward",
                              password=steward, auth="CUSTOM").cursor()
        cursor.execute("SELECT district_code, population FROM marts.population_by_district ORDER BY district_code")
        assert cursor.fetchall() == [("130102", 194), ("130104", 201), ("130105", 188)]
        for kwargs in ({"username": "analyst", "password": "wrong", "auth": "CUSTOM"}, {}):
            with pytest.raises(TTransportException, match="Error validating the login"):
                hive.connect(host="127.0.0.1", port=port, database="marts", **kwargs).cursor().execute("SELECT 1")

        shell = subprocess.run([sys.executable, "-m", "govlake.serve.sql_endpoint", "spark-sql", "-e",
                                "SELECT sum(population) FROM marts.population_by_district"],
                               env=env, capture_output=True, text=True, timeout=400)
        assert shell.returncode == 0, shell.stderr[-3000:]
        assert shell.stdout.strip().splitlines()[-1] == "583"
    finally:
        subprocess.run([sys.executable, "-m", "govlake.serve.sql_endpoint", "stop"], env=env, timeout=120)
    assert not ep.port_in_use(port)
    assert not (settings.home / "sql-endpoint" / "server.pid").exists()


def _command_lines() -> list[str]:
    import psutil

    lines = []
    for proc in psutil.process_iter(["cmdline"]):
        lines.append(" ".join(proc.info["cmdline"] or []))
    return lines
