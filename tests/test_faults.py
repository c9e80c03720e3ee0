"""Fault injection (slow, run in CI): a stage killed at a failpoint and rerun leaves every table content-equal to an
uninterrupted run; two runs of one date never run at once; a source that fails mid-read or a full disk fails the
batch alone and a rerun recovers. The trials are seeded by their fixed failpoints; benchmarks/soak.py draws random
ones."""
from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import time

import pytest

from jobs import digest
from jobs.pipeline import raw_tables
from tests.fault_harness import KILLED, build_reference, run_trial, settings_for, start_child

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
    """Killed after the first unified tables are committed: readers (publications, the registered views) still see
    the previous publication, not a mix of two runs."""
    from jobs import lake
    from tests.fault_harness import copy_tree

    home = tmp_path / "half"
    copy_tree(reference.home / "sources", home / "sources")
    copy_tree(reference.snapshots[-1], home / "lakehouse")  # published for DAY
    settings = settings_for(home)
    published = lake.published_versions(spark, settings, "unified")
    next_day = DAY + dt.timedelta(days=1)
    child = start_child(home, next_day, "unify", "unify.after_table@2", log=home / "killed.log")
    assert child.wait(timeout=900) == KILLED
    assert lake.published_versions(spark, settings, "unified") == published
    assert lake.table_version(spark, settings.table_path("unified", "person_link")) > published[1]["person_link"]
    lake.register_tables(spark, settings)
    assert spark.table("unified.person_link").count() == spark.read.format("delta").option(
        "versionAsOf", published[1]["person_link"]).load(settings.table_path("unified", "person_link")).count()


def _lease_rows(spark, settings):
    from delta.tables import DeltaTable

    from jobs.lease import lease_path

    path = lease_path(settings)
    return spark.read.format("delta").load(path).collect() if DeltaTable.isDeltaTable(spark, path) else []


def test_two_runs_of_one_date_never_run_at_once(spark, reference, tmp_path):
    """A second run of the date is refused with the holder's name, or waits for it; neither fails on a Delta
    conflict, and the tables equal one run's."""
    from tests.fault_harness import copy_tree

    home = tmp_path / "twice"
    copy_tree(reference.home / "sources", home / "sources")
    copy_tree(reference.snapshots[0], home / "lakehouse")
    settings = settings_for(home)
    first = start_child(home, DAY, "extract", log=home / "first.log")
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
    got = digest.lakehouse_digests(spark, settings.lakehouse)
    assert digest.differences(reference.digests[1], got) == []
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
        from jobs.pipeline import run_stage

        run_stage("validate", DAY, settings_for(home), spark)
        got = digest.lakehouse_digests(spark, settings_for(home).lakehouse)
        assert digest.differences(reference.digests[2], got) == []
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
