"""Fault injection (slow, run in CI): a stage killed at a failpoint and rerun leaves every table content-equal to an
uninterrupted run; two runs of one date never run at once; a source that fails mid-read or a full disk fails the
batch alone and a rerun recovers. The trials are seeded by their fixed failpoints; benchmarks/soak.py draws random
ones."""
from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from govlake.core.config import REPO_ROOT, Settings
from govlake.extract.stage import raw_tables
from tests.fault_harness import (
    KILLED,
    build_reference,
    compare_lakehouses,
    run_trial,
    settings_for,
    start_child,
)

DAY = dt.date(2025, 6, 30)
RESIDENTS, SEED = 40, 20250630

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference(spark, tmp_path_factory):
    """Every stage once, uninterrupted, with the lakehouse kept after each (40 residents, embedded sources)."""
    return build_reference(spark, tmp_path_factory.mktemp("fault-reference"), DAY, RESIDENTS, SEED)


@pytest.mark.parametrize("stage, failpoints", [
    ("extract", "extract.after_raw_write@4"),          # raw committed, ledger not written
    ("validate", "validate.after_staging@3"),         # staging committed, quarantine not
    ("unify", "unify.merge@3=kill-after:1.5"),        # inside the third table's MERGE
    ("unify", "unify.before_publication"),            # every table committed, publication not recorded
    ("marts", "marts.after_table@6"),
    ("analysis", "analysis.before_report"),
])
def test_a_stage_killed_at_a_failpoint_and_rerun_equals_an_uninterrupted_run(spark, reference, tmp_path, stage,
                                                                              failpoints):
    trial = run_trial(spark, reference, stage, failpoints, tmp_path / "trial")
    assert trial.killed, f"the child was not killed (exit {trial.returncode}): {failpoints} not reached"
    assert trial.differences == []
    assert trial.unreadable_files == []
    if stage == "validate":  # nothing lost: raw = accepted + quarantined for every raw batch of the day
        settings = settings_for(tmp_path / "trial")
        for table in raw_tables():
            n = {layer: spark.read.format("delta").load(settings.table_path(layer, table))
                 .where(f"_logical_date = DATE'{DAY}'").count() for layer in ("raw", "staging", "quarantine")}
            assert n["raw"] == n["staging"] + n["quarantine"], (table, n)


def test_a_unified_layer_killed_between_its_tables_is_invisible_to_readers(spark, reference, tmp_path):
    """Killed after the first unified tables are committed, readers (the marts stage, the registered names) see the
    last publication, not a mix of two runs; before any publication they see no unified table at all."""
    from delta.tables import DeltaTable

    from govlake.core import lake
    from govlake.pipeline import run_stage
    from tests.fault_harness import copy_tree

    # the first unify of a lakehouse killed half-way: nothing of it is readable
    home = tmp_path / "first"
    copy_tree(reference.home / "sources", home / "sources")
    copy_tree(reference.snapshots[reference.before("unify")], home / "lakehouse")
    settings = settings_for(home)
    assert start_child(home, DAY, "unify", "unify.after_table@2", log=home / "killed.log").wait(timeout=900) == KILLED
    assert lake.table_version(spark, settings.table_path("unified", "person_link")) is not None  # committed ...
    assert lake.published_versions(spark, settings, "unified") is None                           # ... not published
    assert not [n for n in lake.register_tables(spark, settings) if n.startswith("unified.")]
    with pytest.raises(RuntimeError, match="the unified layer has no publication"):
        run_stage("marts", DAY, settings, spark)

    # a published day, then a changed record and a unify killed between its tables: readers keep the publication
    home = tmp_path / "later"
    copy_tree(reference.home / "sources", home / "sources")
    copy_tree(reference.snapshots[-1], home / "lakehouse")
    settings = settings_for(home)
    published = lake.published_versions(spark, settings, "unified")
    staging = DeltaTable.forPath(spark, settings.table_path("staging", "hukou_persons"))
    key = spark.read.format("delta").load(settings.table_path("staging", "hukou_persons")).first()["person_no"]
    staging.update(f"person_no = '{key}'", {"name": "'改名测试'"})
    assert start_child(home, DAY, "unify", "unify.after_table@2", log=home / "killed.log").wait(timeout=900) == KILLED
    link_path = settings.table_path("unified", "person_link")
    assert lake.table_version(spark, link_path) > published[1]["person_link"]  # the new state is committed ...
    assert lake.published_versions(spark, settings, "unified") == published     # ... and not published
    lake.register_tables(spark, settings)
    names = {r["name"] for r in spark.sql("SELECT name FROM unified.person_link").collect()}
    assert "改名测试" not in names
    assert "改名测试" in {r["name"] for r in spark.read.format("delta").load(link_path).collect()}
    assert lake.read_published(spark, settings, "unified", "person", DAY).where("name = '改名测试'").count() == 0


def _lease_rows(spark, settings):
    from govlake.core import lake
    from govlake.core.lease import lease_path

    path = lease_path(settings)
    return spark.read.format("delta").load(path).collect() if lake.exists(spark, path) else []


def test_two_runs_of_one_date_never_run_at_once(spark, reference, tmp_path):
    """A second run of the date is refused with the holder's name, or waits for it; neither fails on a Delta
    conflict, and the tables equal one run's."""
    from tests.fault_harness import copy_tree

    home = tmp_path / "twice"
    copy_tree(reference.home / "sources", home / "sources")
    copy_tree(reference.snapshots[0], home / "lakehouse")
    settings = settings_for(home)
    first = start_child(home, DAY, "extract", "extract.after_ledger=pause:40", log=home / "first.log")
    deadline = time.monotonic() + 300
    while not _lease_rows(spark, settings):
        assert first.poll() is None and time.monotonic() < deadline, (home / "first.log").read_text()[-3000:]
        time.sleep(0.5)
    second = start_child(home, DAY, "extract", wait_s=0, log=home / "refused.log")
    assert second.wait(timeout=300) == 75
    message = (home / "refused.log").read_text()
    assert f"date={DAY} of lakehouse" in message and "is held by run cli:" in message
    waiting = start_child(home, DAY, "extract", wait_s=600, log=home / "waited.log")
    assert first.wait(timeout=600) == 0, (home / "first.log").read_text()[-3000:]
    assert waiting.wait(timeout=600) == 0, (home / "waited.log").read_text()[-3000:]
    assert "Concurrent" not in (home / "first.log").read_text() + (home / "waited.log").read_text()
    assert compare_lakehouses(spark, reference.snapshots[1], home / "lakehouse", reference.digest_cache) == []
    assert _lease_rows(spark, settings) == []


def test_a_full_disk_fails_the_stage_and_a_rerun_with_space_recovers(spark, reference, tmp_path):
    """The lakehouse on a small tmpfs that fills up during validate: the stage fails with ENOSPC, nothing half
    written is published; with space again, its rerun equals the uninterrupted run."""
    from tests.fault_harness import copy_tree

    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a size-limited tmpfs here (needs root); see docs/operations.md for the manual check")
    try:
        home = mount / "home"
        copy_tree(reference.home / "sources", home / "sources")
        copy_tree(reference.snapshots[1], home / "lakehouse")  # after extract
        free = shutil.disk_usage(mount).free
        filler = mount / "filler"
        with open(filler, "wb") as fh:
            fh.truncate(0)
            fh.write(b"\0" * max(0, free - 1_500_000))
        child = start_child(home, DAY, "validate", log=tmp_path / "full.log")
        assert child.wait(timeout=900) not in (0, KILLED)
        assert "No space left on device" in (tmp_path / "full.log").read_text(errors="replace")
        filler.unlink()
        from govlake.pipeline import run_stage

        run_stage("validate", DAY, settings_for(home), spark)
        assert compare_lakehouses(spark, reference.snapshots[2], home / "lakehouse", reference.digest_cache) == []
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


# --- a source that disappears mid-read ---------------------------------------------------------------------------

class PrivateServers:
    """PostgreSQL and FerretDB of this test alone (docker/services.sh on ports of their own), so stopping one does
    not touch the servers the rest of the suite shares."""

    def __init__(self):
        import socket

        ports = []
        for _ in range(2):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                ports.append(s.getsockname()[1])
        self.pg_port, self.mongo_port = ports
        self.run = Path(f"/tmp/govlake-faults-{self.pg_port}")
        self.env = {**os.environ, "GOVLAKE_PG_PORT": str(self.pg_port), "GOVLAKE_MONGO_PORT": str(self.mongo_port),
                    "GOVLAKE_RUN_DIR": str(self.run)}
        self.pg_url = f"postgresql://govlake@127.0.0.1:{self.pg_port}/departments"
        self.mongo_url = f"mongodb://127.0.0.1:{self.mongo_port}/"

    def services(self, action: str) -> None:
        subprocess.run(["bash", str(REPO_ROOT / "docker" / "services.sh"), action], env=self.env, check=True,
                       capture_output=True)

    def stop_postgres(self) -> None:
        pgbin = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
        subprocess.run(["runuser", "-u", "postgres", "--", str(pgbin / "pg_ctl"), "-D", str(self.run / "pg"),
                        "-m", "immediate", "-w", "stop"], check=True, capture_output=True)

    def stop_ferretdb(self) -> None:
        os.kill(int((self.run / "ferretdb.pid").read_text()), signal.SIGKILL)
        (self.run / "ferretdb.pid").unlink()


@pytest.fixture()
def private_servers():
    if (not sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
            or not (REPO_ROOT / ".cache/bin/ferretdb").is_file()):
        pytest.skip("PostgreSQL / FerretDB not installed: docker/setup.sh --servers")
    servers = PrivateServers()
    servers.services("start")
    yield servers
    servers.services("stop")
    shutil.rmtree(servers.run, ignore_errors=True)


def _read_in_background(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``fn`` in a thread; returns (thread, outcome dict with 'result' or 'error')."""
    outcome: dict[str, Any] = {}

    def target():
        try:
            outcome["result"] = fn()
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


def _when_reading(then, timeout_s: float = 300) -> None:
    """Wait until this process reaches the failpoint ``extract.reading``, then call ``then``."""
    from govlake.core import failpoints

    before = failpoints.reached.get("extract.reading", 0)
    deadline = time.monotonic() + timeout_s
    while failpoints.reached.get("extract.reading", 0) == before:
        assert time.monotonic() < deadline, "the read never reached extract.reading"
        time.sleep(0.1)
    then()


def _ledger(spark, settings):
    return [(r.batch_id, r.status, r.rows_written, r.error) for r in
            spark.read.format("delta").load(settings.table_path("ops", "exchange_ledger")).collect()]


def _attempt(spark, settings, spec, obj, interrupt, restart):
    """One extraction interrupted mid-read by ``interrupt`` (the failpoint pauses it 4 s), recorded; then
    ``restart`` and a second extraction. Returns (the first attempt's error, the second's result)."""
    from govlake.core import failpoints
    from govlake.extract.raw import extract_batch, failed_batch, record_batches
    from govlake.extract.registry import Window

    failpoints.reset()
    window = Window.for_date(DAY)
    started = dt.datetime.now(dt.UTC)
    thread, outcome = _read_in_background(lambda: extract_batch(spark, settings, spec, obj, window))
    _when_reading(interrupt)
    thread.join(timeout=600)
    error = outcome.get("error")
    assert error is not None, f"the interrupted read succeeded: {outcome.get('result')}"
    record_batches(spark, settings, [failed_batch(spec, obj, window, error, started)])
    restart()
    os.environ.pop("GOVLAKE_FAILPOINTS", None)
    again = extract_batch(spark, settings, spec, obj, window)
    record_batches(spark, settings, [again])
    return error, again


def test_postgresql_stopped_mid_read_fails_the_batch_and_a_rerun_delivers_it(spark, tmp_path, private_servers,
                                                                            monkeypatch):
    import sqlalchemy as sa

    from govlake.extract.registry import ObjectSpec, SourceSpec, SourceUnavailable

    engine = sa.create_engine(private_servers.pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA dept; CREATE TABLE dept.persons (person_no text PRIMARY KEY, "
                             "name text, updated_at timestamp)"))
        conn.execute(sa.text("INSERT INTO dept.persons SELECT 'P' || g, '人' || g, TIMESTAMP '2025-06-30 08:00' "
                             "FROM generate_series(1, 5) g"))
    engine.dispose()
    monkeypatch.setenv("AIRFLOW_CONN_GOVLAKE_TEST_DEPT", private_servers.pg_url)
    monkeypatch.setenv("GOVLAKE_FAILPOINTS", "extract.reading=pause:4")
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path), "GOVLAKE_SOURCES": "servers"})
    obj = ObjectSpec(name="persons", business_key=("person_no",), watermark="updated_at",
                     columns=("person_no", "name", "updated_at"))
    spec = SourceSpec(source="dept", department="d", kind="sql", objects={"persons": obj},
                      connection_id="govlake_test_dept", db_schema="dept")
    error, again = _attempt(spark, settings, spec, obj, private_servers.stop_postgres,
                            lambda: private_servers.services("start"))
    assert isinstance(error, SourceUnavailable) and str(error).startswith("source dept.persons: "), error
    assert (again.status, again.rows_read, again.rows_written) == ("written", 5, 5)
    assert _ledger(spark, settings) == [("dept.persons:2025-06-30", "written", 5, None)]


def test_ferretdb_stopped_mid_read_fails_the_batch_and_a_rerun_delivers_it(spark, tmp_path, private_servers,
                                                                          monkeypatch):
    import pymongo

    from govlake.extract.registry import ObjectSpec, SourceSpec, SourceUnavailable

    client = pymongo.MongoClient(private_servers.mongo_url)
    day = dt.datetime(2025, 6, 30, 1, 0)  # UTC, within the Asia/Shanghai business day
    client["dept"]["events"].insert_many([{"_id": f"e{k:04d}", "event_no": f"E{k:04d}", "updated_at": day}
                                          for k in range(2500)])  # more than one cursor batch
    client.close()
    monkeypatch.setenv("AIRFLOW_CONN_GOVLAKE_TEST_EVENTS", private_servers.mongo_url)
    monkeypatch.setenv("GOVLAKE_FAILPOINTS", "extract.reading=pause:4")
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path), "GOVLAKE_SOURCES": "servers"})
    obj = ObjectSpec(name="events", business_key=("event_no",), watermark="updated_at",
                     projection={"event_no": "$.event_no"})
    spec = SourceSpec(source="dept", department="d", kind="mongo", objects={"events": obj},
                      connection_id="govlake_test_events", database="dept")
    error, again = _attempt(spark, settings, spec, obj, private_servers.stop_ferretdb,
                            lambda: private_servers.services("start"))
    assert isinstance(error, SourceUnavailable) and str(error).startswith("source dept.events: "), error
    assert (again.status, again.rows_read, again.rows_written) == ("written", 2500, 2500)
    assert _ledger(spark, settings) == [("dept.events:2025-06-30", "written", 2500, None)]
    staging = Path(settings.lakehouse) / "_staging"
    assert not staging.exists() or not any(staging.iterdir())


def test_a_drop_file_truncated_while_read_is_rejected_whole_and_a_rerun_delivers_it(spark, tmp_path, monkeypatch):
    import hashlib
    import json

    from govlake.extract.registry import ManifestMismatch, ObjectSpec, SourceSpec

    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path)})
    drop = settings.sources_dir / "inbox" / "dept" / DAY.isoformat()
    drop.mkdir(parents=True)
    data = "编号,名称\n" + "".join(f"M{k},留言{k}\n" for k in range(20))
    (drop / "messages.csv").write_text(data, encoding="utf-8")
    (drop / "manifest.json").write_text(json.dumps({"files": [{
        "name": "messages.csv", "sha256": hashlib.sha256(data.encode()).hexdigest(), "rows": 20,
        "encoding": "utf-8", "format": "csv"}]}), encoding="utf-8")
    obj = ObjectSpec(name="messages", business_key=("message_id",), file="messages.csv",
                     header_map={"编号": "message_id", "名称": "title"}, columns=("message_id", "title"))
    spec = SourceSpec(source="dept", department="d", kind="file_drop", objects={"messages": obj}, inbox="inbox/dept")
    monkeypatch.setenv("GOVLAKE_FAILPOINTS", "extract.reading=pause:2")
    path = drop / "messages.csv"

    def truncate():
        with open(path, "r+b") as fh:
            fh.truncate(len(data.encode()) // 2)

    error, again = _attempt(spark, settings, spec, obj, truncate, lambda: path.write_text(data, encoding="utf-8"))
    assert isinstance(error, ManifestMismatch) and "SHA-256" in str(error) and "dept.messages" in str(error)
    assert (again.status, again.rows_read, again.rows_written) == ("written", 20, 20)
    assert _ledger(spark, settings) == [("dept.messages:2025-06-30", "written", 20, None)]
