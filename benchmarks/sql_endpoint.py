"""A mart query through the warm SQL endpoint (issue #20: at most 2 s) next to ``python -m govlake.pipeline sql``.

One run:

1. builds a lakehouse in ``--home`` (default ``/tmp/govlake-bench-sql``) as ``make demo`` does — the embedded sample
   (``python -m sample.embedded``) then ``python -m govlake.pipeline run`` — with ``GOVLAKE_METASTORE_URL`` set to
   the database ``--metastore-db`` of the PostgreSQL on ``--pg-port``, so the pipeline registers every table in the
   persistent catalog; ``--reuse`` keeps a home (and its metastore) that already holds the marts. The PostgreSQL is
   started (``docker/services.sh start``, FerretDB on ``--mongo-port`` with it) when nothing listens on
   ``--pg-port``, and stopped at the end only then;
2. starts the SQL endpoint (:mod:`govlake.serve.sql_endpoint`) on ``--sql-port`` with that metastore, logs in with
   PyHive as ``analyst`` (``auth=CUSTOM``, password from ``$GOVLAKE_HOME/sql-endpoint/analyst.password``), runs each
   query once to warm up, then times ``--repeat`` executions of each on that connection (``execute`` + ``fetchall``,
   wall seconds); the endpoint is stopped afterwards, also on error;
3. runs the same queries with ``python -m govlake.pipeline sql`` in a subprocess, ``--cli-repeat`` times each (a new
   JVM each time, same environment and catalog), wall seconds of the whole command;
4. checks both sides return the same rows (values compared as the text ``DataFrame.show`` prints, NULL as
   ``NULL``) and writes the report to ``benchmarks/results/sql_endpoint.txt`` (also printed): date, git commit, load
   averages before and after, residents, then per query and side every repetition's seconds, median and max, and
   whether the endpoint met the target (every timed repetition at most ``TARGET_S``).

Only one Spark JVM of this benchmark runs at a time: the pipeline, then the endpoint, then each CLI run. The machine
may be shared: compare runs by their load averages.

Usage::

    nice -n 10 .venv/bin/python benchmarks/sql_endpoint.py [--home DIR] [--reuse] [--pg-port 29432]
        [--sql-port 20000] [--repeat 5] [--cli-repeat 2] [--residents 2000]

Exit status 0 when the two sides agree (whether the target is met is reported, not asserted), 1 otherwise.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

LOGICAL_DATE = "2025-06-30"
#: The endpoint's target for a mart query (issue #20), wall seconds.
TARGET_S = 2.0
#: Real marts (tables/marts.*.yaml): a plain read of one mart, and an aggregation over another. DECIMAL instead of
#: DOUBLE so both sides print the same text.
QUERIES = {
    "density": (f"SELECT district_code, district_name, population, "
                f"CAST(round(density_per_km2, 1) AS DECIMAL(12, 1)) AS density_per_km2 "
                f"FROM marts.population_density WHERE snapshot_date = DATE'{LOGICAL_DATE}' ORDER BY district_code"),
    "sex_by_district": (f"SELECT district_code, sex_code, sum(population) AS population "
                        f"FROM marts.population_by_district_sex_age WHERE snapshot_date = DATE'{LOGICAL_DATE}' "
                        f"GROUP BY district_code, sex_code ORDER BY district_code, sex_code"),
}
RESULT = REPO / "benchmarks" / "results" / "sql_endpoint.txt"

Rows = list[tuple[str, ...]]


def listening(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def services_env(pg_port: int, mongo_port: int) -> dict[str, str]:
    """The environment ``docker/services.sh`` reads for its ports (its run folder follows the PostgreSQL port)."""
    return {**os.environ, "GOVLAKE_PG_PORT": str(pg_port), "GOVLAKE_MONGO_PORT": str(mongo_port)}


def drop_database(pg_port: int, name: str) -> None:
    """Drop the PostgreSQL database ``name`` (user ``govlake`` of ``docker/services.sh``) when it exists."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(host="127.0.0.1", port=pg_port, user="govlake", dbname="postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def run_logged(cmd: list[str], env: dict[str, str], log: Path) -> float:
    """Run ``cmd`` with its output appended to ``log``; returns its wall seconds.

    Raises:
        RuntimeError: non-zero exit (the message ends with the log's last lines).
    """
    start = time.perf_counter()
    with open(log, "ab") as out:
        done = subprocess.run(cmd, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{' '.join(cmd[1:4])} exited with {done.returncode}:\n{tail}")
    return seconds


def build(home: Path, env: dict[str, str], residents: int, reuse: bool, pg_port: int, metastore_db: str) -> str:
    """Make ``home`` hold the pipeline's tables, registered in the metastore; returns one line saying how.

    Without ``reuse`` (or when the home has no marts) the home and the metastore database are deleted first, then the
    sample is generated and the whole pipeline runs (their output in ``home/bench.log``).
    """
    if reuse and (home / "lakehouse" / "marts" / "population_density").is_dir():
        return f"reused {home}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    drop_database(pg_port, metastore_db)
    log = home / "bench.log"
    sample_s = run_logged([sys.executable, "-m", "sample.embedded", "--date", LOGICAL_DATE, "--residents",
                           str(residents)], env, log)
    pipeline_s = run_logged([sys.executable, "-m", "govlake.pipeline", "run", "--date", LOGICAL_DATE], env, log)
    return f"built {home}: sample {sample_s:.1f} s, pipeline run {pipeline_s:.1f} s"


def text(value: Any) -> str:
    """A value as ``DataFrame.show`` prints it (NULL for None)."""
    return "NULL" if value is None else str(value)


def time_endpoint(env: dict[str, str], port: int, metastore: str, repeat: int
                  ) -> tuple[list[str], dict[str, list[float]], dict[str, Rows]]:
    """Start the endpoint, warm it up and time each query ``repeat`` times on one PyHive connection; the endpoint is
    stopped before returning (also on error).

    Returns:
        (info lines: start and login seconds, seconds per query, rows per query as text).
    """
    from pyhive import hive

    from govlake.core.config import Settings
    from govlake.serve import sql_endpoint as ep

    settings = Settings.from_env(env)
    ep.init(settings)  # the password goes to its file, not to this benchmark's output
    password = ep.password_file(settings).read_text(encoding="utf-8").strip()
    info, seconds, rows = [], {}, {}
    start = time.perf_counter()
    try:
        pid = ep.start(settings, port, metastore)
        info.append(f"endpoint start (JVM, metastore, listening): {time.perf_counter() - start:.1f} s (pid {pid})")
        for attempt in ("first", "second"):  # the second connection is kept for the queries
            start = time.perf_counter()
            conn = hive.connect(host=ep.BIND_HOST, port=port, database="marts", username=ep.DEFAULT_USER,
                                password=password, auth="CUSTOM")
            info.append(f"login ({attempt} connection, PBKDF2 check included): {time.perf_counter() - start:.2f} s")
            if attempt == "first":
                conn.close()
        cursor = conn.cursor()
        for name, query in QUERIES.items():
            start = time.perf_counter()
            cursor.execute(query)
            warm = cursor.fetchall()
            info.append(f"warm-up {name}: {time.perf_counter() - start:.2f} s, {len(warm)} rows")
            times = []
            for _ in range(repeat):
                start = time.perf_counter()
                cursor.execute(query)
                fetched = cursor.fetchall()
                times.append(time.perf_counter() - start)
                if fetched != warm:
                    raise RuntimeError(f"{name}: the endpoint returned other rows on a repetition")
            seconds[name] = times
            rows[name] = [tuple(text(v) for v in row) for row in warm]
        conn.close()
    finally:
        ep.stop(settings)
    return info, seconds, rows


def parse_show(stdout: str) -> Rows:
    """The rows of a ``DataFrame.show(truncate=False)`` table in ``stdout`` (header and borders dropped; cells
    stripped; a cell must not contain ``|``)."""
    lines = [line for line in stdout.splitlines() if line.startswith("|")]
    return [tuple(cell.strip() for cell in line.strip("|").split("|")) for line in lines[1:]]


def time_cli(env: dict[str, str], repeat: int) -> tuple[dict[str, list[float]], dict[str, Rows]]:
    """Run each query ``repeat`` times with ``python -m govlake.pipeline sql`` (a new JVM each time).

    Returns:
        (wall seconds per query, rows per query as text).

    Raises:
        RuntimeError: the command failed, or printed other rows on a repetition.
    """
    seconds: dict[str, list[float]] = {}
    rows: dict[str, Rows] = {}
    for name, query in QUERIES.items():
        seconds[name] = []
        for _ in range(repeat):
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "govlake.pipeline", "sql", query, "--limit", "100000"],
                                  env=env, cwd=REPO, capture_output=True, text=True, check=False)
            seconds[name].append(time.perf_counter() - start)
            if done.returncode != 0:
                raise RuntimeError(f"pipeline sql {name} exited with {done.returncode}:\n{done.stderr[-3000:]}")
            parsed = parse_show(done.stdout)
            if rows.setdefault(name, parsed) != parsed:
                raise RuntimeError(f"pipeline sql {name}: other rows on a repetition")
    return seconds, rows


def figures(times: list[float]) -> str:
    """``a, b, c s (median m, max x)``."""
    return (f"{', '.join(f'{t:.2f}' for t in times)} s (median {statistics.median(times):.2f}, "
            f"max {max(times):.2f})")


def git_commit() -> str:
    """The short commit of the checkout, ``+dirty`` when tracked files differ from it."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout.strip()
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=REPO, check=False).returncode != 0
    return commit + ("+dirty" if dirty else "")


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, default=Path("/tmp/govlake-bench-sql"), help="GOVLAKE_HOME to build")
    parser.add_argument("--reuse", action="store_true", help="keep a home that already holds the marts")
    parser.add_argument("--residents", type=int, default=2000, help="size of the sample municipality")
    parser.add_argument("--pg-port", type=int, default=29432, help="PostgreSQL of the metastore (started if down)")
    parser.add_argument("--mongo-port", type=int, default=29018, help="FerretDB port when PostgreSQL is started")
    parser.add_argument("--metastore-db", default="metastore_bench_sql", help="metastore database (dropped on build)")
    parser.add_argument("--sql-port", type=int, default=20000, help="port of the SQL endpoint")
    parser.add_argument("--repeat", type=int, default=5, help="timed executions of each query on the endpoint")
    parser.add_argument("--cli-repeat", type=int, default=2, help="runs of each query with pipeline sql")
    parser.add_argument("--out", type=Path, default=RESULT, help="results file")
    args = parser.parse_args(argv)

    home = args.home.resolve()
    metastore = f"postgresql://govlake@127.0.0.1:{args.pg_port}/{args.metastore_db}"
    env = {**os.environ, "GOVLAKE_HOME": str(home), "GOVLAKE_METASTORE_URL": metastore,
           "GOVLAKE_SQL_PORT": str(args.sql_port), "PYTHONPATH": str(REPO)}
    env.pop("GOVLAKE_LAKEHOUSE", None)  # the lakehouse under the home
    load_before = load()
    started_pg = not listening(args.pg_port)
    if started_pg:
        subprocess.run(["bash", "docker/services.sh", "start"], cwd=REPO, check=True,
                       env=services_env(args.pg_port, args.mongo_port))
    try:
        built = build(home, env, args.residents, args.reuse, args.pg_port, args.metastore_db)
        print(built, flush=True)
        info, endpoint_s, endpoint_rows = time_endpoint(env, args.sql_port, metastore, args.repeat)
        cli_s, cli_rows = time_cli(env, args.cli_repeat)
    finally:
        if started_pg:
            subprocess.run(["bash", "docker/services.sh", "stop"], cwd=REPO, check=False,
                           env=services_env(args.pg_port, args.mongo_port))

    lines = [
        "SQL endpoint vs pipeline sql (benchmarks/sql_endpoint.py)",
        f"date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, commit {git_commit()}, {os.cpu_count()} CPUs",
        f"load average (1/5/15 min): before {load_before}, after {load()}",
        f"residents: {args.residents} (logical date {LOGICAL_DATE}); {built}",
        f"endpoint: warm Thrift server, one PyHive connection, execute + fetchall, {args.repeat} timed runs after a "
        f"warm-up; pipeline sql: whole subprocess (new JVM, catalog registration, query, show), "
        f"{args.cli_repeat} runs",
        *info,
    ]
    agree = True
    for name, query in QUERIES.items():
        same = endpoint_rows[name] == cli_rows[name]
        agree = agree and same
        met = max(endpoint_s[name]) <= TARGET_S
        lines += [
            "",
            f"{name}: {query}",
            f"  endpoint:     {figures(endpoint_s[name])}; target <= {TARGET_S:.0f} s "
            f"{'met' if met else 'NOT met'}",
            f"  pipeline sql: {figures(cli_s[name])}",
            f"  rows: endpoint {len(endpoint_rows[name])}, pipeline sql {len(cli_rows[name])}, "
            f"{'equal' if same else 'DIFFERENT'}",
        ]
        if not same:
            lines += [f"    endpoint first rows:     {endpoint_rows[name][:3]}",
                      f"    pipeline sql first rows: {cli_rows[name][:3]}"]
    report = "\n".join(lines) + "\n"
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
