"""Fault injection: kill a stage at a failpoint, rerun it, and compare every table with an uninterrupted run.

Used by ``tests/test_faults.py`` (a fixed set of kill points, in CI) and ``benchmarks/soak.py`` (random kill points,
seeded). A :class:`Reference` is one uninterrupted run of every stage in this process, with a copy of the lakehouse
and its content digests (:mod:`govlake.core.digest`) after each stage. A trial copies the lakehouse as it was before a
stage into a home of its own, runs that stage in a child process (its own session, so the kill takes its Spark JVM
with it) with ``GOVLAKE_FAILPOINTS`` set, reruns the stage in this process as an operator or Airflow's retry would, and
compares the digests with the reference after that stage.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from govlake.core import digest, lake
from govlake.core.config import REPO_ROOT, Settings
from govlake.pipeline import STAGES, run_stage
from sample.embedded import ensure_sample_sources

KILLED = -signal.SIGKILL


def settings_for(home: Path) -> Settings:
    """Settings of a GovLake home (embedded sources)."""
    return Settings.from_env({**os.environ, "GOVLAKE_HOME": str(home), "GOVLAKE_SOURCES": "embedded"})


def child_env(home: Path, failpoints: str | None = None, **extra: str) -> dict[str, str]:
    """Environment of a child run in ``home``: tiny Spark, embedded sources, the failpoints."""
    env = {**os.environ, "GOVLAKE_HOME": str(home), "GOVLAKE_SOURCES": "embedded", "GOVLAKE_SPARK_TINY": "1",
           "GOVLAKE_SPARK_MASTER": "local[1]", "PYTHONPATH": str(REPO_ROOT), "GX_ANALYTICS_ENABLED": "False",
           **extra}
    env.pop("GOVLAKE_RUN_ID", None)
    env.pop("GOVLAKE_LAKEHOUSE", None)
    if failpoints:
        env["GOVLAKE_FAILPOINTS"] = failpoints
    else:
        env.pop("GOVLAKE_FAILPOINTS", None)
    return env


def start_child(home: Path, day: dt.date, stage: str = "all", failpoints: str | None = None, wait_s: float = 0,
                log: Path | None = None, **extra: str) -> subprocess.Popen:
    """Start ``python -m govlake.pipeline run --stage <stage>`` for ``day`` in ``home``, in a session of its own (a
    failpoint's kill takes the process group: this process and its JVM, not the caller)."""
    cmd = [sys.executable, "-m", "govlake.pipeline", "run", "--date", day.isoformat(), "--stage", stage,
           "--wait", str(wait_s)]
    out = open(log or home / f"child-{stage}-{time.time_ns()}.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=child_env(home, failpoints, **extra), stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)


def copy_tree(src: Path, dst: Path) -> None:
    """Copy a folder (a lakehouse or a sources folder) whole; ``dst`` is replaced."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, symlinks=True)


def _log_listing(table: Path) -> tuple:
    """The files of a Delta table's log with their sizes: equal listings mean equal tables (a copy, or no commit
    since the copy)."""
    log = table / "_delta_log"
    return tuple(sorted((p.name, p.stat().st_size) for p in log.iterdir() if p.is_file())) if log.is_dir() else ()


def _tables(lakehouse: Path) -> dict[str, Path]:
    from govlake.core.lake import LAYERS

    return {f"{layer}.{t.name}": t for layer in LAYERS if (lakehouse / layer).is_dir()
            for t in sorted((lakehouse / layer).iterdir()) if (t / "_delta_log").is_dir()}


def compare_lakehouses(spark, expected: Path, got: Path, cache: dict | None = None) -> list[str]:
    """:func:`govlake.core.digest.differences` between two lakehouses, digesting only the tables whose Delta logs differ
    (an identical log is an identical table); ``cache`` keeps the digests of ``expected``'s tables by path."""
    cache = {} if cache is None else cache
    a, b = _tables(expected), _tables(got)
    differing = sorted(n for n in set(a) | set(b)
                       if n not in a or n not in b or _log_listing(a[n]) != _log_listing(b[n]))
    if not differing:
        return []

    def digests(tables: dict[str, Path], names: list[str]) -> dict:
        frames = {n: spark.read.format("delta").load(str(tables[n])) for n in names
                  if n in tables and lake.exists(spark, str(tables[n]))}
        return digest.digests_of(frames, {n: digest.VOLATILE_COLUMNS | digest.VOLATILE_BY_TABLE.get(n, frozenset())
                                          for n in frames})

    missing = [n for n in differing if (str(expected), n) not in cache]
    for n, d in digests(a, missing).items():
        cache[(str(expected), n)] = d
    want = {n: cache[(str(expected), n)] for n in differing if (str(expected), n) in cache}
    return digest.differences(want, digests(b, differing))


@dataclass
class Reference:
    """An uninterrupted run, stage by stage: ``snapshots[i]`` is the lakehouse before stage ``STAGES[i]``
    (``snapshots[len(STAGES)]`` after the last one)."""

    home: Path
    day: dt.date
    snapshots: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    digest_cache: dict = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return settings_for(self.home)

    def before(self, stage: str) -> int:
        return STAGES.index(stage)


def build_reference(spark, home: Path, day: dt.date, residents: int, seed: int,
                    after_stage=None) -> Reference:
    """Generate the sample in ``home/sources`` and run every stage once, keeping the lakehouse after each
    (``after_stage(stage)`` is called after each stage, e.g. to count the failpoints it reached)."""
    ref = Reference(home, day)
    settings = ref.settings
    ensure_sample_sources(settings, day, residents, seed)
    lakehouse = Path(settings.lakehouse)
    lakehouse.mkdir(parents=True, exist_ok=True)
    for i, stage in enumerate(("start",) + STAGES):
        if stage != "start":
            started = time.monotonic()
            run_stage(stage, day, settings, spark)
            ref.seconds[stage] = round(time.monotonic() - started, 1)
            if after_stage:
                after_stage(stage)
        snap = home / "snapshots" / f"{i}_{stage}"
        copy_tree(lakehouse, snap)
        ref.snapshots.append(snap)
    return ref


@dataclass
class Trial:
    """Outcome of one kill-and-rerun trial."""

    failpoints: str
    stage: str
    killed: bool
    returncode: int
    differences: list[str]
    unreadable_files: list[str]
    seconds: float

    @property
    def passed(self) -> bool:
        return self.killed and not self.differences and not self.unreadable_files

    def line(self) -> str:
        verdict = "PASS" if self.passed else ("NOT KILLED" if not self.killed else "FAIL")
        detail = "; ".join(self.differences[:5] + self.unreadable_files[:5])
        return f"{verdict:10} {self.stage:9} {self.failpoints:45} {self.seconds:6.1f} s {detail}"


def unreadable_report_files(home: Path) -> list[str]:
    """Report files a reader could not use: JSON that does not parse, empty HTML or YAML (a half-written file)."""
    bad: list[str] = []
    reports = home / "reports"
    if not reports.is_dir():
        return bad
    for path in sorted(reports.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix == ".json":
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                bad.append(f"{path.relative_to(home)}: {exc}")
        elif path.suffix in (".html", ".yml", ".yaml") and path.stat().st_size == 0:
            bad.append(f"{path.relative_to(home)}: empty")
        elif path.suffix == ".xlsx":  # the workbook (报表): a whole zip whose entries all check
            try:
                with zipfile.ZipFile(path) as archive:
                    if (broken := archive.testzip()) is not None:
                        bad.append(f"{path.relative_to(home)}: bad entry {broken}")
            except zipfile.BadZipFile as exc:
                bad.append(f"{path.relative_to(home)}: {exc}")
    return bad


def run_trial(spark, ref: Reference, stage: str, failpoints: str, home: Path) -> Trial:
    """Copy the reference as it was before ``stage`` into ``home``, run ``stage`` in a child killed at
    ``failpoints``, rerun it here, and compare with the reference after ``stage``."""
    started = time.monotonic()
    i = ref.before(stage)
    home.mkdir(parents=True, exist_ok=True)
    copy_tree(ref.home / "sources", home / "sources")
    copy_tree(ref.snapshots[i], home / "lakehouse")
    child = start_child(home, ref.day, stage, failpoints, log=home / "killed.log")
    returncode = child.wait(timeout=1800)
    settings = settings_for(home)
    run_stage(stage, ref.day, settings, spark, wait_s=0)
    differences = compare_lakehouses(spark, ref.snapshots[i + 1], Path(settings.lakehouse), ref.digest_cache)
    return Trial(failpoints, stage, returncode == KILLED, returncode, differences,
                 unreadable_report_files(home), round(time.monotonic() - started, 1))
