"""The Great Expectations project under <reports>/gx (govlake.quality.gx, through govlake.quality.rules's GX
functions), on real GX projects: threads storing results and building Data Docs at once never fail, a broken project
file is recovered, readers never see a half-written project file or result, the project file is not rewritten when
nothing changed."""
from __future__ import annotations

import datetime as dt
import io
import json
import logging
import sys
import threading

import pytest
from ruamel.yaml import YAML

from govlake.quality.audit import stored_result
from govlake.quality.rules import (
    BatchCounts,
    _gx_context,
    build_data_docs,
    gx_project_lock,
    load_suite,
    save_validation_result,
)

UTC = dt.UTC


def _suite(folder, i: int):
    doc = {"name": f"raw.t{i}", "meta": {"table": f"raw.t{i}", "key_columns": ["k"]}, "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "k"},
         "meta": {"rule_id": f"t{i}.k.not_null", "action": "quarantine"}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "k"},
         "meta": {"rule_id": f"t{i}.k.unique", "action": "quarantine"}}]}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"raw.t{i}.json").write_text(json.dumps(doc), encoding="utf-8")
    return load_suite(f"raw.t{i}", folder)


def _counts(suite, failed: int = 1) -> BatchCounts:
    """5 rows; the not-null rule fails ``failed`` of them, the uniqueness rule none."""
    return BatchCounts(rows=5, rules=[{"rule_id": r.rule_id, "evaluated": 5, "failed": failed if i == 0 else 0}
                                      for i, r in enumerate(suite.rules)])


def _save(suite, reports, run: str, minute: int = 0, data_docs: bool = False) -> dict:
    return save_validation_result(suite, _counts(suite), run, reports, data_docs=data_docs,
                                  run_time=dt.datetime(2025, 6, 30, 18, minute, tzinfo=UTC))


def _yaml_mapping(text: str):
    return YAML(typ="safe").load(io.StringIO(text))


def test_threads_storing_results_and_building_data_docs_at_once_never_fail(tmp_path):
    """The validate stage stores each table's result from its own thread (GOVLAKE_VALIDATE_THREADS) while the site
    may be built: every use of the project is under the lock, so none fails (GX's module-level YAML parser, used by
    two threads at once, failed with ParserError) and nothing is lost."""
    reports = tmp_path / "reports"
    suites = [_suite(tmp_path / "suites", i) for i in range(4)]
    _save(suites[0], reports, "t0:warmup")  # the project exists before the threads start
    rounds, errors = 12, []
    start = threading.Barrier(len(suites))

    def work(i: int):
        start.wait()
        for r in range(rounds):
            try:
                _save(suites[i], reports, f"t{i}:{r}", minute=r)
                if i == 0 and r % 4 == 3:
                    build_data_docs(reports, [f"t{j}:{r}" for j in range(len(suites))])
            except Exception as exc:  # noqa: BLE001 - every failure is collected and reported below
                errors.append(f"t{i} round {r}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(suites))]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads switch every 10 µs instead of 5 ms: a race shows in most runs, not a few
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    stored = list((reports / "gx" / "uncommitted" / "validations").rglob("*.json"))
    assert len(stored) == 1 + len(suites) * rounds
    assert all(stored_result(reports, f"t{i}:{rounds - 1}") is not None for i in range(len(suites)))
    index = build_data_docs(reports, [f"t{i}:{rounds - 1}" for i in range(len(suites))]).read_text(encoding="utf-8")
    assert all(f"t{i}:{rounds - 1}" in index for i in range(len(suites)))


@pytest.mark.parametrize("broken", ["", "config_version: 4.0\nstores:\n  expectations_store:\n    class_name: Exp",
                                    "\x00\x00\x00\x00", "- just\n- a list\n"],
                         ids=["empty", "cut-mid-write", "zeros", "not-a-mapping"])
def test_a_broken_project_file_is_recovered(tmp_path, caplog, broken):
    """A project file left empty or half-written (an earlier writer killed mid-write, a full disk) is rewritten
    from GovLake's project config with a warning, instead of failing every later run; the results and pages are
    separate files and stay."""
    reports = tmp_path / "reports"
    suite = _suite(tmp_path / "suites", 0)
    _save(suite, reports, "t0:2025-06-29", data_docs=True)
    project = reports / "gx" / "great_expectations.yml"
    project.write_text(broken, encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        out = _save(suite, reports, "t0:2025-06-30", minute=1, data_docs=True)
    assert out["success"] is False and out["expectations"][0]["unexpected_count"] == 1
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and str(project) in r.getMessage()]
    assert len(warnings) == 1 and "rewritten from GovLake's project config" in warnings[0]
    assert (reports / "gx" / "great_expectations.yml.broken").read_text(encoding="utf-8") == broken
    config = _yaml_mapping(project.read_text(encoding="utf-8"))
    assert set(config["stores"]) == {"expectations_store", "validation_results_store", "validation_definition_store",
                                     "checkpoint_store"}
    assert stored_result(reports, "t0:2025-06-29") is not None  # the earlier result is still there
    index = build_data_docs(reports).read_text(encoding="utf-8")
    assert "t0:2025-06-29" in index and "t0:2025-06-30" in index


def test_a_polling_reader_never_sees_a_half_written_result(tmp_path):
    """A reader of the project that takes no lock (the Data Docs pages in a browser, a copy to an archive) sees a
    stored result whole while GX rewrites it through the validation results store."""
    reports = tmp_path / "reports"
    old, new = json.dumps({"v": "o" * 2_000_000}), json.dumps({"v": "n" * 2_000_000})
    key = ("raw", "t0", "t0:2025-06-30", "20250630T180000.000000Z", "govlake_spark-raw.t0")
    with gx_project_lock(reports):
        backend = _gx_context(reports).validation_results_store.store_backend
        path = backend.full_base_directory + "/" + backend._convert_key_to_filepath(key)
        backend.set(key, old)
        seen, stop = set(), threading.Event()

        def read():
            while not stop.is_set():
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                seen.add(text if text in (old, new) else f"partial: {len(text)} characters")

        reader = threading.Thread(target=read)
        reader.start()
        try:
            for i in range(30):
                backend.set(key, new if i % 2 == 0 else old)
        finally:
            stop.set()
            reader.join()
    assert seen <= {old, new} and new in seen


def test_the_project_file_is_written_whole_and_only_when_it_changes(spark, tmp_path):
    """GX rewrites great_expectations.yml when a datasource asset is added (GOVLAKE_GX_ENGINE=spark, a table's first
    checkpoint): a reader polling it always parses a whole project config. Storing results, building the site and
    reading results leave the file as it is (same inode, same modification time)."""
    reports = tmp_path / "reports"
    suite = _suite(tmp_path / "suites", 0)
    _save(suite, reports, "t0:2025-06-29")
    project = reports / "gx" / "great_expectations.yml"
    seen, stop = [], threading.Event()

    def read():
        while not stop.is_set():
            text = project.read_text(encoding="utf-8")
            try:
                config = _yaml_mapping(text)
                seen.append("whole" if isinstance(config, dict) and "stores" in config and "data_docs_sites" in config
                            else f"partial: {len(text)} characters")
            except Exception as exc:  # noqa: BLE001 - any parser error is a half-written file
                seen.append(f"unparseable ({type(exc).__name__}): {len(text)} characters")

    reader = threading.Thread(target=read)
    reader.start()
    try:
        with gx_project_lock(reports):
            context = _gx_context(reports)
            datasource = context.data_sources.add_spark("govlake_spark", persist=False)
            for i in range(12):
                datasource.add_dataframe_asset(f"raw.t{i}").add_batch_definition_whole_dataframe("whole_batch")
    finally:
        stop.set()
        reader.join()
    assert seen and set(seen) == {"whole"}, sorted(set(seen))
    config = _yaml_mapping(project.read_text(encoding="utf-8"))
    assert sorted(config["fluent_datasources"]["govlake_spark"]["assets"]) == sorted(f"raw.t{i}" for i in range(12))

    before = project.stat()
    _save(suite, reports, "t0:2025-06-30", minute=1, data_docs=True)
    build_data_docs(reports)
    assert stored_result(reports, "t0:2025-06-30") is not None
    after = project.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_an_older_project_is_brought_to_govlake_settings_once(tmp_path):
    """A project GX scaffolded itself (GX's in-place store backend, analytics on, a config variables file) is
    rewritten once with GovLake's settings, its results kept; later opens leave it as it is."""
    import great_expectations as gx

    reports = tmp_path / "reports"
    gx.get_context(mode="file", project_root_dir=str(reports))  # GX 1.24's own scaffolding
    suite = _suite(tmp_path / "suites", 0)
    _save(suite, reports, "t0:2025-06-29")
    project = reports / "gx" / "great_expectations.yml"
    config = _yaml_mapping(project.read_text(encoding="utf-8"))
    backends = [s["store_backend"] for s in config["stores"].values()] + [config["data_docs_sites"]["local_site"]
                                                                          ["store_backend"]]
    assert [(b["class_name"], b["module_name"]) for b in backends] == \
        [("AtomicTupleFilesystemStoreBackend", "govlake.quality.gx")] * 5
    assert config["analytics_enabled"] is False and config["progress_bars"] == {"globally": False,
                                                                                "metric_calculations": False}
    assert not config.get("config_variables_file_path")
    before = project.stat()
    _save(suite, reports, "t0:2025-06-30", minute=1, data_docs=True)
    assert stored_result(reports, "t0:2025-06-29") is not None
    after = project.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
