"""The one SparkSession factory of GovLake.

Every job and test gets its session from :func:`get_spark`, so all of them run with Delta Lake's
SQL extension and catalog, the Asia/Shanghai session time zone, the jars cached by
``docker/setup.sh`` (no download at run time) and GovLake's own SQL functions (:mod:`govlake.codes.udf`).
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from govlake.core import config
from govlake.core.config import TIME_ZONE, Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: log4j2 configuration of the driver: to stdout, WARN, known noise cut (see the file's comments).
LOG4J2_PROPERTIES = Path(__file__).with_name("log4j2.properties")


def cached_jars(jars_dir: Path) -> list[str]:
    """Paths of the cached jars (Delta Lake, delta-storage, PostgreSQL JDBC) in ``jars_dir``; GovLake's own
    function jar is not among them (:func:`govlake.codes.udf.build_jar` gives it).

    Raises:
        FileNotFoundError: the cache is missing or has no Delta jar; run ``docker/setup.sh``.
    """
    from govlake.codes.udf import JAR_PREFIX

    # GovLake's own jars (govlake-udf-*, govlake-auth-*) are built from sources, not cached: never listed here
    jars = sorted(str(p) for p in Path(jars_dir).glob("*.jar")
                  if not p.name.startswith((JAR_PREFIX, "govlake-")))
    if not any("delta-spark" in Path(j).name for j in jars):
        raise FileNotFoundError(
            f"no Delta Lake jar in {jars_dir}; run docker/setup.sh to fetch it from Maven Central"
        )
    return jars


def metastore_jdbc(url: str) -> dict[str, str]:
    """Split ``GOVLAKE_METASTORE_URL`` (:func:`govlake.core.config.metastore_url`) into its JDBC parts.

    Accepts ``postgresql[+driver]://user[:password]@host[:port]/database`` (SQLAlchemy / libpq style, as
    ``docker/services.sh env`` prints) and ``jdbc:postgresql://host[:port]/database?user=..&password=..``.

    Returns:
        ``{"jdbc_url": "jdbc:postgresql://host:port/database", "user": .., "password": .. ("" when none),
        "host": .., "port": .. (default "5432"), "database": ..}``; the JDBC URL carries no credentials.

    Raises:
        ValueError: no host or no database in the URL.
    """
    from urllib.parse import parse_qs, unquote, urlsplit

    text = url[len("jdbc:"):] if url.startswith("jdbc:") else url
    parts = urlsplit(text)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    database = parts.path.lstrip("/")
    if not parts.hostname or not database:
        raise ValueError("GOVLAKE_METASTORE_URL needs a host and a database: postgresql://user@host:port/metastore")
    port = str(parts.port or 5432)
    return {"jdbc_url": f"jdbc:postgresql://{parts.hostname}:{port}/{database}",
            "user": unquote(parts.username or query.get("user", "")),
            "password": unquote(parts.password or query.get("password", "")),
            "host": parts.hostname, "port": port, "database": database}


def ensure_metastore_database(url: str) -> bool:
    """Create the metastore's PostgreSQL database when it is missing (its tables are created by DataNucleus on first
    use, ``datanucleus.schema.autoCreateAll``); connects to the server's ``postgres`` database to do so.

    Returns:
        True when the database was created.

    Raises:
        psycopg.OperationalError: the server is unreachable or refuses the user.
    """
    import psycopg
    from psycopg import sql

    parts = metastore_jdbc(url)
    with psycopg.connect(host=parts["host"], port=parts["port"], user=parts["user"] or None,
                         password=parts["password"] or None, dbname="postgres", autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (parts["database"],)).fetchone():
            return False
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(parts["database"])))
        except psycopg.errors.DuplicateDatabase:  # another process created it since the check
            return False
        return True


#: pg_advisory_lock key of the metastore's DDL (any 64-bit number; "GovLake" in ASCII)
METASTORE_LOCK_KEY = 0x476F764C616B65


@contextmanager
def metastore_lock(url: str, timeout_s: int = 900) -> Iterator[None]:
    """Hold a PostgreSQL advisory lock on the metastore's server while the body runs, so the processes of a run
    (Airflow tasks run two at a time) change the metastore one at a time: DataNucleus creates its schema lazily
    and two JVMs creating it together, or two ``CREATE DATABASE/TABLE IF NOT EXISTS`` of one name, fail.

    Raises:
        psycopg.errors.LockNotAvailable: another process held the lock for longer than ``timeout_s`` seconds.
        psycopg.OperationalError: the server is unreachable or refuses the user.
    """
    import psycopg

    parts = metastore_jdbc(url)
    with psycopg.connect(host=parts["host"], port=parts["port"], user=parts["user"] or None,
                         password=parts["password"] or None, dbname="postgres", autocommit=True) as conn:
        conn.execute(f"SET lock_timeout = '{int(timeout_s)}s'")
        conn.execute("SELECT pg_advisory_lock(%s)", (METASTORE_LOCK_KEY,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (METASTORE_LOCK_KEY,))


def metastore_conf(url: str, settings: Settings) -> dict[str, str]:
    """Spark properties of a session whose catalog is the persistent Hive metastore in PostgreSQL at ``url``
    (Spark's built-in Hive 2.3 metastore client over JDBC; the pipeline's sessions, the SQL endpoint and
    ``spark-sql`` use the same ones, so a table registered by one is seen by the others by name).

    The metastore's schema is created on first use (``datanucleus.schema.autoCreateAll``; no schema version check,
    ``hive.metastore.schema.verification=false``). Hive's scratch and log folders go under
    ``$GOVLAKE_HOME/hive`` instead of the shared ``/tmp/hive``.

    Returns:
        property -> value (contains the database password when the URL has one: never put it on a command line).
    """
    parts = metastore_jdbc(url)
    hive_dir = settings.home / "hive"
    pg_jars = sorted(str(p) for p in Path(settings.jars_dir).glob("postgresql-*.jar"))
    conf = {
        "spark.sql.catalogImplementation": "hive",
        "spark.hadoop.javax.jdo.option.ConnectionURL": parts["jdbc_url"],
        "spark.hadoop.javax.jdo.option.ConnectionDriverName": "org.postgresql.Driver",
        "spark.hadoop.javax.jdo.option.ConnectionUserName": parts["user"],
        "spark.hadoop.javax.jdo.option.ConnectionPassword": parts["password"],
        # tables and columns created on first use, but no foreign keys: DataNucleus adds a table's keys (ALTER TABLE …
        # REFERENCES "TBLS") on a second connection while the metastore's transaction holds TBLS, and PostgreSQL makes
        # the two wait for each other forever. autoCreateAll=true would switch the constraints back on.
        "spark.hadoop.datanucleus.schema.autoCreateAll": "false",
        "spark.hadoop.datanucleus.schema.autoCreateTables": "true",
        "spark.hadoop.datanucleus.schema.autoCreateColumns": "true",
        "spark.hadoop.datanucleus.schema.autoCreateConstraints": "false",
        "spark.hadoop.hive.metastore.schema.verification": "false",
        "spark.hadoop.hive.exec.scratchdir": str(hive_dir / "scratch"),
        "spark.hadoop.hive.exec.local.scratchdir": str(hive_dir / "local-scratch"),
        "spark.hadoop.hive.downloaded.resources.dir": str(hive_dir / "resources"),
        "spark.hadoop.hive.querylog.location": str(hive_dir / "querylog"),
        "spark.hadoop.hive.server2.logging.operation.log.location": str(hive_dir / "operation-logs"),
        "spark.sql.warehouse.dir": str(settings.home / "spark-warehouse"),
    }
    if pg_jars:  # DataNucleus loads the JDBC driver from the JVM's class path, not from spark.jars
        conf["spark.driver.extraClassPath"] = pg_jars[-1]
    return conf


def get_spark(settings: Settings | None = None, app_name: str = "govlake", tiny: bool = False,
              extra_conf: dict[str, str] | None = None) -> SparkSession:
    """Return the active SparkSession or build one for GovLake.

    Args:
        settings: run settings (master, jars); default :meth:`Settings.from_env`.
        app_name: Spark application name.
        tiny: tune for tiny data (tests): one shuffle partition, no UI, small memory; also on when
            ``GOVLAKE_SPARK_TINY=1`` (the Airflow end-to-end test's tasks).
        extra_conf: further Spark properties, applied last.

    With ``GOVLAKE_METASTORE_URL`` set the session's catalog is the persistent Hive metastore
    (:func:`metastore_conf`, database created when missing); otherwise Spark's in-memory catalog.

    Side effect: sets the process time zone (``TZ``) to Asia/Shanghai, so that timestamps
    collected to Python read as the session's wall time.

    Returns:
        a ``pyspark.sql.SparkSession`` with Delta's extension and catalog and the functions of
        :data:`govlake.codes.udf.FUNCTIONS` registered (their jar is built first when missing,
        :func:`govlake.codes.udf.build_jar`).

    Raises:
        FileNotFoundError: the jar cache is missing (see :func:`cached_jars`), or the function jar is missing and
            no ``javac`` can build it.
        RuntimeError: under ``spark-submit``, the function jar was not passed with ``--jars``.
    """
    from pyspark.sql import SparkSession

    from govlake.codes import udf

    settings = settings or Settings.from_env()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # PySpark turns TIMESTAMP values into naive datetimes in the *Python process's* time zone;
    # keep it equal to the session time zone so collected values read as Asia/Shanghai wall time.
    if os.environ.get("TZ") != TIME_ZONE:
        os.environ["TZ"] = TIME_ZONE
        time.tzset()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # Under spark-submit (which starts Python with PYSPARK_GATEWAY_PORT set) the master, jars and
    # memory come from the submit command / cluster; only SQL and Delta settings are ours.
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ
    conf = {
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.session.timeZone": TIME_ZONE,
        "spark.sql.shuffle.partitions": "4",
        # Delta's log replay defaults to 50 partitions: pure overhead on a lakehouse of small batches.
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        "spark.sql.ansi.enabled": "false",
        # FAIR between pools: the run lease's renewals (pool govlake.core.lease.POOL) get a core while a long job runs;
        # every other job stays in the default pool, FIFO as before
        "spark.scheduler.mode": "FAIR",
        # HotSpot does not JIT-compile a method over 8000 bytes of bytecode: a whole-stage-codegen method of the
        # quality gate (dozens of rules in one projection) ran interpreted. 8000 = OpenJDK's HugeMethodLimit, as
        # Spark's configuration docs advise on HotSpot: such a subtree falls back to per-expression code, which is
        # compiled (benchmarks/README.md gives the saving).
        "spark.sql.codegen.hugeMethodLimit": "8000",
    }
    if not submitted:
        conf.update({
            "spark.jars": ",".join([*cached_jars(settings.jars_dir), str(udf.build_jar(settings.jars_dir))]),
            "spark.sql.warehouse.dir": str(settings.home / "spark-warehouse"),
            # Spark's log to stdout at WARN (LOG4J2_PROPERTIES: Airflow logs a task's stderr as ERROR)
            "spark.driver.extraJavaOptions": f"-Dderby.system.home={settings.home / 'derby'} "
                                             f"-Duser.timezone={TIME_ZONE} "
                                             f"-Dlog4j2.configurationFile={LOG4J2_PROPERTIES.as_uri()}",
            "spark.driver.memory": "4g",
            "spark.ui.showConsoleProgress": "false",
        })
    metastore = config.metastore_url()
    if metastore and not submitted:
        conf.update(metastore_conf(metastore, settings))
    if tiny or config.spark_tiny():
        conf.update({
            "spark.sql.shuffle.partitions": "1",
            "spark.default.parallelism": "1",
            "spark.ui.enabled": "false",
            "spark.databricks.delta.snapshotPartitions": "1",
            "spark.sql.adaptive.enabled": "false",
            # a few rows: nothing to gain from JIT-compiled code, and the per-expression fallback compiles more
            "spark.sql.codegen.hugeMethodLimit": "65535",
        })
    conf.update(extra_conf or {})
    builder = SparkSession.builder.appName(app_name)
    if not submitted:
        builder = builder.master(settings.spark_master)
    for key, value in conf.items():
        builder = builder.config(key, value)
    if metastore and not submitted:
        with metastore_lock(metastore):
            ensure_metastore_database(metastore)
            spark = builder.getOrCreate()
            spark.sql("SHOW DATABASES").collect()  # the metastore client starts (DataNucleus' first tables) here
    else:
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    udf.register(spark)
    return spark

