"""Tests of govlake.core.fsio: a reader never sees a half-written file, a killed writer leaves the old or the new
content, a failed write leaves the old file and no temporary file, the file lock excludes threads."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from govlake.core import fsio
from govlake.core.config import REPO_ROOT

OLD, NEW = b"old\n" * 400_000, b"new\n" * 400_000  # 1.6 MB each: many write() calls of the kernel


def test_write_replaces_the_content_and_keeps_no_temporary_file(tmp_path):
    target = tmp_path / "sub" / "report.json"
    assert fsio.atomic_write_text(target, "{\"a\": 1}\n") is True  # the folder is created
    assert target.read_text(encoding="utf-8") == "{\"a\": 1}\n"
    assert fsio.atomic_write_text(target, "{\"a\": 2}\n") is True
    assert target.read_text(encoding="utf-8") == "{\"a\": 2}\n"
    with fsio.atomic_open(tmp_path / "sub" / "page.html") as out:
        out.write("<p>一</p>\n")
    assert (tmp_path / "sub" / "page.html").read_bytes() == "<p>一</p>\n".encode()
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["page.html", "report.json"]


def test_unchanged_content_is_not_rewritten(tmp_path):
    target = tmp_path / "a.yml"
    fsio.atomic_write_text(target, "x: 1\n")
    before = target.stat()
    assert fsio.atomic_write_text(target, "x: 1\n", skip_unchanged=True) is False
    after = target.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert fsio.atomic_write_text(target, "x: 2\n", skip_unchanged=True) is True
    assert target.read_text(encoding="utf-8") == "x: 2\n" and target.stat().st_ino != before.st_ino


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError, match="serialisation failed"), fsio.atomic_open(target) as out:
        out.write("new, half")
        raise RuntimeError("serialisation failed")
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    with pytest.raises(ValueError, match="mode"), fsio.atomic_open(target, "a"):
        pass
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_permissions_are_those_of_open_or_of_the_existing_file(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    fsio.atomic_write_text(tmp_path / "new.html", "x")
    assert (tmp_path / "new.html").stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600
    (tmp_path / "old.html").write_text("x", encoding="utf-8")
    os.chmod(tmp_path / "old.html", 0o640)
    fsio.atomic_write_text(tmp_path / "old.html", "y")
    assert (tmp_path / "old.html").stat().st_mode & 0o777 == 0o640


def test_a_polling_reader_sees_only_whole_contents(tmp_path):
    target = tmp_path / "index.html"
    fsio.atomic_write_bytes(target, OLD)
    seen, stop = set(), threading.Event()

    def read():
        while not stop.is_set():
            data = target.read_bytes()
            seen.add(data if data in (OLD, NEW) else f"partial: {len(data)} bytes")

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(30):
            fsio.atomic_write_bytes(target, NEW if i % 2 == 0 else OLD)
    finally:
        stop.set()
        reader.join()
    assert seen <= {OLD, NEW} and NEW in seen


def test_a_writer_killed_mid_write_leaves_the_old_or_the_new_content(tmp_path):
    """A writer process killed with SIGKILL at a random moment of its writes (a Data Docs build or a report killed
    by the scheduler or the OOM killer) leaves a whole file: at worst a stray temporary file next to it."""
    target = tmp_path / "result.json"
    fsio.atomic_write_bytes(target, OLD)
    writer = textwrap.dedent(f"""
        import sys
        from govlake.core import fsio
        old, new = b"old\\n" * 400_000, b"new\\n" * 400_000
        print("ready", flush=True)
        i = 0
        while True:
            fsio.atomic_write_bytes({str(target)!r}, new if i % 2 == 0 else old)
            i += 1
    """)
    outcomes = []
    for delay in (0.0, 0.01, 0.03, 0.05, 0.08, 0.13, 0.21):
        child = subprocess.Popen([sys.executable, "-c", writer], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                 env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
        assert child.stdout.readline() == b"ready\n"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        data = target.read_bytes()
        outcomes.append("old" if data == OLD else "new" if data == NEW else f"partial: {len(data)} bytes")
    assert set(outcomes) <= {"old", "new"}, outcomes
    assert all(fsio.is_temp_name(p.name) for p in tmp_path.iterdir() if p.name != "result.json")


def test_file_lock_excludes_other_threads(tmp_path):
    """flock belongs to an open file description: each holder opens the lock file anew, so threads of one
    process exclude each other as processes do."""
    inside, overlaps = [], []

    def hold(i):
        for _ in range(20):
            with fsio.file_lock(tmp_path / "locks" / ".lock"):
                inside.append(i)
                if len(inside) > 1:
                    overlaps.append(list(inside))
                time.sleep(0.001)
                inside.remove(i)

    threads = [threading.Thread(target=hold, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == [] and inside == []


#: In-place writes allowed in govlake/ (not sample/, which generates test data), by (file, call), and why.
IN_PLACE_WRITES = {
    ("govlake/pipeline.py", "made_by.write_text"): "the sample generator's fingerprint marker under <sources>/truth: "
                                                 "a half-written one only makes the next run generate the sample again",
    ("govlake/serve/reports_http.py", "open"): "the server's log, appended to by the child it is handed to",
    ("govlake/serve/sql_endpoint.py", "open"): "the endpoint's log, appended to by the JVM it is handed to",
}
_WRITERS = {"write_text", "write_bytes", "write_html", "write_image", "savefig", "to_csv", "to_json", "to_parquet",
            "dump"}


def test_jobs_write_files_only_through_fsio():
    """Every file GovLake writes outside Delta goes through govlake.core.fsio: no in-place write call (pathlib's
    write_text/write_bytes, open() for writing, json.dump, pandas/plotly/matplotlib file writers) in govlake/."""
    import ast

    found = []
    for path in sorted((REPO_ROOT / "govlake").rglob("*.py")):
        rel = path.relative_to(REPO_ROOT).as_posix()
        if rel == "govlake/core/fsio.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func, call = node.func, ast.unparse(node.func)
            if isinstance(func, ast.Attribute) and func.attr in _WRITERS:
                if call == "F.to_json" or (func.attr == "dump" and call != "json.dump"):
                    continue  # Spark's to_json builds a column; yaml/other dump calls are checked by their target
            elif isinstance(func, ast.Name) and func.id == "open" or call.endswith(".open"):
                modes = [a.value for a in node.args[1:2] + [k.value for k in node.keywords if k.arg == "mode"]
                         if isinstance(a, ast.Constant)]
                if not any(set(str(m)) & set("wax+") for m in modes):
                    continue  # opened for reading
            else:
                continue
            if (rel, call) not in IN_PLACE_WRITES:
                found.append(f"{rel}:{node.lineno}: {ast.unparse(node)[:120]}")
    assert found == []
